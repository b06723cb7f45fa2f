//! The API server fixture as a process of its own (`tenure-kube-fixture`),
//! its request counters, and one client per kube version pointed at it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The fixture process; killed on drop.
pub struct Fixture {
    child: Child,
    pub url: String,
}

impl Fixture {
    /// Starts `tenure-kube-fixture` (built by `cargo build --release -p
    /// tenure-kube-fixture` in the main workspace) and reads its URL.
    pub fn start() -> Fixture {
        let bin = std::env::var("TENURE_KUBE_FIXTURE_BIN")
            .unwrap_or_else(|_| "../../target/release/tenure-kube-fixture".into());
        let mut child = Command::new(&bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {bin}: {e}; build it first: \
                     (cd ../.. && cargo build --release -p tenure-kube-fixture)"
                )
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("the fixture prints its URL");
        Fixture {
            child,
            url: line.trim().to_owned(),
        }
    }

    /// Requests answered per verb since the last reset, and resets them.
    pub async fn take_counts(&self) -> BTreeMap<String, u64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.url.trim_start_matches("http://");
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!(
            "DELETE /_fixture/requests HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await.expect("send");
        let mut resp = Vec::new();
        conn.read_to_end(&mut resp).await.expect("read");
        let body = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| &resp[i + 4..])
            .expect("an HTTP response");
        serde_json::from_slice(body).expect("request counts")
    }
}

/// A kube 5 client (tenure, kube-lease-manager) for the fixture at `url`.
pub fn kube5(url: &str) -> kube5::Client {
    let mut c = kube5::Config::new(url.parse().expect("url"));
    // kube 4 and 5 retry 429/503/504 on their own; count what the peer sends.
    c.default_retry = false;
    kube5::Client::try_from(c).expect("kube 5 client")
}

/// A kube 4 client (kube-leader-election).
pub fn kube4(url: &str) -> kube4::Client {
    let mut c = kube4::Config::new(url.parse().expect("url"));
    c.default_retry = false;
    kube4::Client::try_from(c).expect("kube 4 client")
}

/// A kube 2 client (kube-coordinate).
pub fn kube2(url: &str) -> kube2::Client {
    kube2::Client::try_from(kube2::Config::new(url.parse().expect("url"))).expect("kube 2 client")
}

/// A kube-client 1.1 client (kubert).
pub fn kube1(url: &str) -> kube_client_1::Client {
    kube_client_1::Client::try_from(kube_client_1::Config::new(url.parse().expect("url")))
        .expect("kube-client 1.1 client")
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's CPU time (user + system), from `/proc/self/stat`.
pub fn cpu_time() -> std::time::Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces) start at ")".
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    std::time::Duration::from_millis(ticks * 10) // USER_HZ = 100
}
