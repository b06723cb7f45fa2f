//! TLS and mTLS against a real etcd serving https with certificates made
//! here by the `openssl` command line.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tenure_conformance::fixtures::process::{
    ServerProcess, free_port, require_binary, wait_for_port,
};
use tenure_core::{LeaderRecord, LockStore, StoreError};
use tenure_etcd::{EtcdStore, EtcdTls};

fn openssl(dir: &Path, args: &[&str]) {
    let bin = require_binary("openssl", "apt-get install -y openssl");
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=tenure-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    for (name, cn, ext) in [
        (
            "server",
            "/CN=127.0.0.1",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        ),
        (
            "client",
            "/CN=root",
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        ),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        let (key, csr, crt, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", cn]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ],
        );
    }
}

/// etcd serving clients over https, requiring client certificates.
fn start_tls_etcd(dir: &Path) -> (ServerProcess, String) {
    let etcd = require_binary("etcd", "apt-get install -y etcd-server");
    let (client, peer) = (free_port(), free_port());
    let url = format!("https://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut cmd = Command::new(etcd);
    cmd.arg("--name=tls")
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen-client-urls={url}"))
        .arg(format!("--advertise-client-urls={url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=tls={peer_url}"))
        .arg(format!("--cert-file={}", dir.join("server.crt").display()))
        .arg(format!("--key-file={}", dir.join("server.key").display()))
        .arg(format!(
            "--trusted-ca-file={}",
            dir.join("ca.crt").display()
        ))
        .arg("--client-cert-auth")
        .arg("--log-level=warn");
    let log = dir.join("etcd.log");
    let process = ServerProcess::spawn(cmd, &log);
    wait_for_port(
        std::net::SocketAddr::from(([127, 0, 0, 1], client)),
        Duration::from_secs(30),
        &log,
    );
    (process, url)
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_connects_and_plain_or_anonymous_clients_do_not() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let (_etcd, url) = start_tls_etcd(dir.path());
    let d = dir.path();
    let tls = EtcdTls::new()
        .ca_pem(read(d, "ca.crt"))
        .client_identity_pem(read(d, "client.crt"), read(d, "client.key"));
    assert!(!format!("{tls:?}").contains("PRIVATE"));

    let store = EtcdStore::builder([url.clone()], "tls")
        .tls(tls.clone())
        .request_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    // The member may still be electing itself: retry for a while.
    let start = Instant::now();
    let v = loop {
        match store
            .create(&LeaderRecord::held_by("a", Duration::from_secs(5)))
            .await
        {
            Ok(v) => break v,
            Err(StoreError::Unavailable { message: e, .. })
                if start.elapsed() < Duration::from_secs(20) =>
            {
                eprintln!("waiting for etcd: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("mTLS create: {e}"),
        }
    };
    assert_eq!(store.get().await.unwrap().unwrap().version, v);
    assert!(store.describe().contains("/tenure/locks/tls"));

    // The same endpoint given as host:port also takes TLS from the settings.
    let bare = EtcdStore::builder([url.trim_start_matches("https://")], "tls")
        .tls(tls)
        .build()
        .await
        .unwrap();
    assert_eq!(bare.get().await.unwrap().unwrap().version, v);

    // TLS without a client certificate is refused by the server.
    let anonymous = EtcdStore::builder([url.clone()], "tls")
        .tls(EtcdTls::new().ca_pem(read(d, "ca.crt")))
        .request_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    assert!(anonymous.get().await.is_err());

    // A client that does not trust the CA refuses the server.
    let untrusting = EtcdStore::builder([url.clone()], "tls")
        .tls(EtcdTls::new().ca_pem(read(d, "client.crt")))
        .request_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    assert!(untrusting.get().await.is_err());

    // Plain text to a TLS port fails (quickly, as Unavailable).
    let plain = EtcdStore::builder([url.replace("https://", "http://")], "tls")
        .request_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    assert!(matches!(
        plain.get().await,
        Err(StoreError::Unavailable { .. })
    ));
}
