//! A TCP fault proxy between a client and a real server: pass, black-hole,
//! reset or delay traffic on command.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::harness::{Fault, FaultSwitch};

/// Listens on a loopback port and forwards to `upstream`, applying the
/// current [`Fault`] to new and existing connections.
///
/// ```no_run
/// # async fn f(redis: std::net::SocketAddr) -> std::io::Result<()> {
/// use tenure_conformance::{Fault, FaultProxy};
/// let proxy = FaultProxy::start(redis).await?;
/// // point the client at proxy.addr(), then:
/// proxy.set(Fault::Hang);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    fault: Arc<watch::Sender<Fault>>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port, passing traffic.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let fault = Arc::new(watch::Sender::new(Fault::Pass));
        let task = tokio::spawn(accept_loop(listener, upstream, fault.clone()));
        Ok(FaultProxy { addr, fault, task })
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies `fault` from now on, to existing connections too.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// A switch for this proxy that can be shared with a scenario.
    pub fn switch(&self) -> Arc<dyn FaultSwitch> {
        Arc::new(ProxySwitch(self.fault.clone()))
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct ProxySwitch(Arc<watch::Sender<Fault>>);

impl FaultSwitch for ProxySwitch {
    fn set(&self, fault: Fault) {
        self.0.send_replace(fault);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: Arc<watch::Sender<Fault>>,
) {
    // Dropping the set (when the proxy is dropped) aborts every connection.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                conns.spawn(serve(client, upstream, fault.subscribe()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve(client: TcpStream, upstream: SocketAddr, mut fault: watch::Receiver<Fault>) {
    let _ = client.set_nodelay(true);
    let current = *fault.borrow_and_update();
    match current {
        Fault::Fail => return reset(client),
        Fault::Hang => return swallow(client, fault).await,
        Fault::Pass | Fault::Slow(_) => {}
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return reset(client);
    };
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, fault.clone());
    let down = pump(sr, cw, fault.clone());
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = wait_for_reset(&mut fault) => {}
    }
    // Dropping the halves closes both sides.
}

/// Copies one direction, applying the fault to every chunk.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, fault: watch::Receiver<Fault>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let current = *fault.borrow();
        match current {
            Fault::Pass => {}
            Fault::Slow(d) => tokio::time::sleep(d).await,
            Fault::Hang => continue, // swallowed: the peer waits forever
            Fault::Fail => return,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn wait_for_reset(fault: &mut watch::Receiver<Fault>) {
    let _ = fault.wait_for(|f| *f == Fault::Fail).await;
}

/// Reads and discards until the client gives up or the fault becomes Fail.
async fn swallow(mut client: TcpStream, mut fault: watch::Receiver<Fault>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            r = client.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = wait_for_reset(&mut fault) => return reset(client),
        }
    }
}

/// Closes with an RST rather than a FIN. (`SO_LINGER` is deprecated in
/// tokio because a non-zero linger blocks on drop; zero never blocks.)
#[allow(deprecated)]
fn reset(stream: TcpStream) {
    let _ = stream.set_linger(Some(std::time::Duration::ZERO));
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn proxy_passes_blackholes_resets_and_delays() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        assert_eq!(round_trip(proxy.addr()).await.unwrap(), b"ping");

        proxy.set(Fault::Hang);
        let hung = tokio::time::timeout(Duration::from_millis(300), round_trip(proxy.addr())).await;
        assert!(hung.is_err(), "a black-holed connection must not answer");

        proxy.set(Fault::Fail);
        assert!(round_trip(proxy.addr()).await.is_err());

        proxy.set(Fault::Slow(Duration::from_millis(100)));
        let start = std::time::Instant::now();
        assert_eq!(round_trip(proxy.addr()).await.unwrap(), b"ping");
        assert!(start.elapsed() >= Duration::from_millis(200));

        proxy.set(Fault::Pass);
        assert_eq!(round_trip(proxy.addr()).await.unwrap(), b"ping");
    }
}
