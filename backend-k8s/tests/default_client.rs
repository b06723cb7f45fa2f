//! The client a lock builds when given none has `TCP_NODELAY` on every
//! connection to the API server: kube's own leaves Nagle's algorithm on,
//! which cost a graceful hand-off 44 ms on a real kube-apiserver
//! (BENCHMARKS.md). One test in its own binary: it sets `KUBECONFIG`.
//!
//! Runs on the fixture (a socket option is the client's, whatever the
//! server), and on the real kube-apiserver in `make test`'s pass there.

mod common;

use std::os::fd::RawFd;

use common::Env;
use tenure_core::LockStore;
use tenure_k8s::LeaseLock;

/// The TCP sockets of this process connected to `port` on loopback: each
/// socket's inode (new for every socket, unlike a reused fd number) and its
/// `TCP_NODELAY`.
fn sockets_to(port: u16) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        // SAFETY: getpeername/getsockopt on a descriptor number only read
        // into the buffers given; a descriptor that is not a socket fails.
        unsafe {
            let mut addr: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            if libc::getpeername(fd, (&raw mut addr).cast(), &mut len) != 0
                || i32::from(addr.ss_family) != libc::AF_INET
            {
                continue;
            }
            let v4 = &*(&raw const addr).cast::<libc::sockaddr_in>();
            if u16::from_be(v4.sin_port) != port {
                continue;
            }
            let mut on: libc::c_int = 0;
            let mut size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            let got = libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&raw mut on).cast(),
                &mut size,
            );
            assert_eq!(got, 0, "getsockopt on fd {fd}");
            let inode = std::fs::read_link(entry.path())
                .map(|l| l.display().to_string())
                .unwrap_or_default();
            found.push((inode, on != 0));
        }
    }
    found
}

#[tokio::test]
async fn a_lock_given_no_client_talks_with_tcp_nodelay() {
    let env = Env::start().await;
    let port = if common::real_cluster() {
        env.config().cluster_url.port_u16().unwrap()
    } else {
        // The fixture's URL in a kubeconfig of its own, as a user's would be.
        let url = env.server().url();
        let path = std::env::temp_dir().join(format!("tenure-nodelay-{}", std::process::id()));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: f\n  cluster:\n    server: {url}\n\
                 contexts:\n- name: f\n  context:\n    cluster: f\n    user: f\n\
                 current-context: f\nusers:\n- name: f\n  user: {{}}\n"
            ),
        )
        .unwrap();
        // SAFETY: the only test of this binary; nothing else reads the
        // environment concurrently.
        unsafe { std::env::set_var("KUBECONFIG", &path) };
        url.rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .parse()
            .unwrap()
    };
    // The test's own connections (it made the namespace) are not the lock's.
    let before: Vec<String> = sockets_to(port).into_iter().map(|(s, _)| s).collect();
    let lock = LeaseLock::builder("nodelay")
        .namespace(env.namespace.clone())
        .build()
        .await
        .expect("a lock from KUBECONFIG");
    lock.get().await.expect("a read");
    // A watch holds its connection open while we look (a pooled one may
    // be closed by then).
    let _watch = lock.watch().await.expect("a watch");
    let sockets: Vec<(String, bool)> = sockets_to(port)
        .into_iter()
        .filter(|(socket, _)| !before.contains(socket))
        .collect();
    assert!(
        !sockets.is_empty(),
        "the read made no connection to port {port}"
    );
    assert!(
        sockets.iter().all(|(_, nodelay)| *nodelay),
        "connections without TCP_NODELAY: {sockets:?}"
    );
}
