//! The container image: `scripts/image.sh` builds the Dockerfile's final
//! stage from this machine's libraries (no registry here), with sh and
//! sleep added for `deploy/example.yaml`'s job. The job runs in it as the
//! manifest runs it (non-root, read-only root filesystem, no
//! capabilities), its endpoints answer through a published port, and a
//! `docker stop` releases and exits 0. Needs a Docker engine
//! (`scripts/install-deps.sh` starts one).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Runs `docker ARGS`; its stdout, or a panic with its stderr.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker: install docker.io (scripts/install-deps.sh starts an engine)");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The instruction `keyword` of the last stage of a Dockerfile.
fn final_stage(dockerfile: &str, keyword: &str) -> String {
    let text = std::fs::read_to_string(repo().join(dockerfile)).unwrap();
    let last = text.rsplit("\nFROM ").next().unwrap();
    last.lines()
        .find_map(|l| l.strip_prefix(&format!("{keyword} ")))
        .unwrap_or_else(|| panic!("no {keyword} in {dockerfile}'s final stage"))
        .to_owned()
}

/// deploy/example.yaml's job: the command after `--` in its container.
fn example_job() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("deploy/example.yaml")).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    let dashes = args.iter().position(|a| a == "--").unwrap();
    args[dashes + 1..]
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// Removes the container and the image, however the test ends.
struct Cleanup {
    container: Option<String>,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(id) = &self.container {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

#[test]
fn the_image_runs_the_example_job_as_nonroot_and_releases_on_docker_stop() {
    // The image is the Dockerfile's final stage: same user and entrypoint.
    for dockerfile in ["Dockerfile", "deploy/example.Dockerfile"] {
        assert_eq!(
            final_stage(dockerfile, "USER"),
            "65532:65532",
            "{dockerfile}"
        );
        assert_eq!(
            final_stage(dockerfile, "ENTRYPOINT"),
            r#"["/usr/local/bin/tenure"]"#,
            "{dockerfile}"
        );
    }
    let tag = format!("tenure-test/example:{}", std::process::id());
    let mut cleanup = Cleanup {
        container: None,
        image: tag.clone(),
    };
    let built = Command::new("bash")
        .arg(repo().join("scripts/image.sh"))
        .args([env!("CARGO_BIN_EXE_tenure"), &tag, "sh", "sleep"])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "scripts/image.sh: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.User}} {{json .Config.Entrypoint}}",
            &tag
        ]),
        r#"65532:65532 ["/usr/local/bin/tenure"]"#
    );

    let mut run = vec![
        "run",
        "-d",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "-p",
        "127.0.0.1::8080",
        "--label",
    ];
    let label = format!("tenure.test.pid={}", std::process::id());
    run.extend([label.as_str(), tag.as_str()]);
    run.extend([
        "--log-format",
        "json",
        "--log",
        "info",
        "run",
        "--lock",
        "memory://example-job",
        "--identity",
        "example-0",
        "--http",
        "0.0.0.0:8080",
        "--",
    ]);
    let job = example_job();
    run.extend(job.iter().map(String::as_str));
    let id = docker(&run);
    cleanup.container = Some(id.clone());
    let addr = docker(&["port", &id, "8080/tcp"]);
    let addr = addr.lines().next().unwrap().to_owned();

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Docker's published port accepts before tenure listens: until
        // then a GET is reset.
        if let Ok((200, body)) = common::try_http_get(&addr, "/leader") {
            let leader: Value = serde_json::from_str(&body).unwrap();
            if leader["isLeader"] == true {
                assert_eq!(leader["identity"], "example-0");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not leading in the container within 20 s: {}",
            docker(&["logs", &id])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(common::http_get(&addr, "/healthz").0, 200);
    assert_eq!(common::http_get(&addr, "/readyz").0, 200);
    assert_eq!(
        docker(&["exec", &id, "tenure", "--version"])
            .split(' ')
            .next(),
        Some("tenure")
    );

    // SIGTERM: the job stops, the lock is released, tenure exits 0.
    docker(&["stop", "-t", "20", &id]);
    assert_eq!(docker(&["wait", &id]), "0");
    let logs = Command::new("docker").args(["logs", &id]).output().unwrap();
    let stdout = String::from_utf8_lossy(&logs.stdout);
    let stderr = String::from_utf8_lossy(&logs.stderr);
    assert!(stdout.contains("leading with fencing token 0"), "{stdout}");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["message"] == "released and stopped"),
        "{stderr}"
    );
}
