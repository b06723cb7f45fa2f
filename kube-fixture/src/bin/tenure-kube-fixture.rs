//! The API server fixture as a process of its own, for clients built
//! against other `kube` versions (the peer benchmark under `bench/peers`).
//!
//! `tenure-kube-fixture [--port N]` prints `http://127.0.0.1:PORT` on its
//! first line of output, then serves until its standard input closes (so
//! it never outlives the process that started it) or it is killed.
//! `GET /_fixture/requests` answers the request counts per verb; `DELETE`
//! answers them and sets them back to zero.

use tenure_kube_fixture::KubeApiServer;
use tokio::io::AsyncReadExt;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = match args.iter().position(|a| a == "--port") {
        Some(i) => args
            .get(i + 1)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| std::io::Error::other("--port needs a number"))?,
        None => 0,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server = KubeApiServer::start_on(port).await?;
        println!("{}", server.url());
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while stdin.read(&mut buf).await? > 0 {}
        drop(server);
        Ok(())
    })
}
