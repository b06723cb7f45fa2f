//! The Kubernetes API fixture as a process of its own (`tenure-chaos
//! kube-api`), so that the harness can freeze it (SIGSTOP) as it freezes
//! redis-server or etcd. It prints its URL on stdout and serves until
//! killed.

use std::io::Write;
use std::process::ExitCode;

use tenure_kube_fixture::KubeApiServer;

pub(crate) fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let server = match KubeApiServer::start().await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("tenure-chaos kube-api: {e}");
                return ExitCode::from(1);
            }
        };
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{}", server.url());
        let _ = out.flush();
        std::future::pending::<()>().await;
        ExitCode::SUCCESS
    })
}
