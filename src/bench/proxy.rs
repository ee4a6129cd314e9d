//! A loopback TCP proxy that can add latency: what `standby bench` puts in front of the
//! secondary, so that the same run can be measured with a nearby and with a distant standby
//! cluster.
//!
//! Each accepted connection is forwarded to the target in both directions. With a latency `L`,
//! every chunk read from one side is stamped with `now + L` and written to the other side at that
//! time, in the order it was read: a request and its response each arrive `L` later, so a round
//! trip takes `2 L` more, while the bandwidth of a connection is unchanged. Memory is bounded by
//! [`CHUNKS_IN_FLIGHT`] chunks of [`CHUNK_BYTES`] per direction and connection; a full queue
//! stops reading from the sender (TCP back-pressure).
//!
//! [`Proxy::start_capped`] also caps each direction of each connection to a number of bytes per
//! second (a slow WAN link): a chunk is released no earlier than the previous one's release plus
//! its transfer time at that rate.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Most bytes read from a socket at once.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks of one direction of one connection waiting for their release time.
pub const CHUNKS_IN_FLIGHT: usize = 64;

/// A running proxy on `127.0.0.1`; stops when [`Proxy::stop`] is called or it is dropped.
pub struct Proxy {
    /// The proxy's own listening address (an ephemeral port on 127.0.0.1).
    addr: SocketAddr,
    /// Cancels the accept loop and every connection.
    cancel: CancellationToken,
    /// The accept loop and the connection tasks.
    tasks: TaskTracker,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `target`, adding `latency` to
    /// each direction (none when zero).
    ///
    /// # Errors
    /// When the listening socket cannot be bound.
    pub async fn start(target: SocketAddr, latency: Duration) -> io::Result<Proxy> {
        Proxy::start_capped(target, latency, None).await
    }

    /// As [`Proxy::start`], and with `bytes_per_second`, each direction of each connection
    /// carries at most that many bytes per second.
    ///
    /// # Errors
    /// When the listening socket cannot be bound.
    pub async fn start_capped(
        target: SocketAddr,
        latency: Duration,
        bytes_per_second: Option<u64>,
    ) -> io::Result<Proxy> {
        let link = Link {
            latency,
            bytes_per_second: bytes_per_second.filter(|&b| b > 0),
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let accept = {
            let (cancel, tasks) = (cancel.clone(), tasks.clone());
            async move {
                loop {
                    let client = tokio::select! {
                        _ = cancel.cancelled() => return,
                        accepted = listener.accept() => match accepted {
                            Ok((client, _)) => client,
                            Err(e) => {
                                tracing::debug!(error = %e, "proxy accept failed");
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        },
                    };
                    let cancel = cancel.clone();
                    tasks.spawn(async move {
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            result = connection(client, target, link) => {
                                if let Err(e) = result {
                                    tracing::debug!(error = %e, "proxied connection ended");
                                }
                            }
                        }
                    });
                }
            }
        };
        tasks.spawn(accept);
        Ok(Proxy {
            addr,
            cancel,
            tasks,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes the listener and every connection, and waits for their tasks.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// What one direction of a connection adds: a delay and, optionally, a bandwidth cap.
#[derive(Debug, Clone, Copy)]
struct Link {
    latency: Duration,
    bytes_per_second: Option<u64>,
}

/// Forwards one connection both ways until both directions are closed.
async fn connection(client: TcpStream, target: SocketAddr, link: Link) -> io::Result<()> {
    let server = TcpStream::connect(target).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let (up, down) = tokio::join!(
        pipe(client_read, server_write, link),
        pipe(server_read, client_write, link)
    );
    up.and(down)
}

/// Copies one direction; at end of input it shuts the output down (half-close), after every
/// delayed chunk has been written.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, link: Link) -> io::Result<()> {
    let Link {
        latency,
        bytes_per_second,
    } = link;
    if latency.is_zero() && bytes_per_second.is_none() {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            to.write_all(&buf[..n]).await?;
        }
        return to.shutdown().await;
    }
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(CHUNKS_IN_FLIGHT);
    let read = async move {
        let mut buf = BytesMut::with_capacity(CHUNK_BYTES);
        loop {
            buf.reserve(CHUNK_BYTES);
            let n = from.read_buf(&mut buf).await?;
            if n == 0 {
                return Ok::<(), io::Error>(());
            }
            let chunk = buf.split().freeze();
            if tx.send((Instant::now() + latency, chunk)).await.is_err() {
                return Ok(());
            }
        }
    };
    let write = async move {
        // When the link is free again: the previous chunk's release plus its transfer time.
        let mut free_at = Instant::now();
        while let Some((at, chunk)) = rx.recv().await {
            let at = match bytes_per_second {
                Some(rate) => {
                    let at = at.max(free_at);
                    let nanos = chunk.len() as u128 * 1_000_000_000 / u128::from(rate);
                    free_at = at + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                    at
                }
                None => at,
            };
            tokio::time::sleep_until(at).await;
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    let (read, write) = tokio::join!(read, write);
    read.and(write)
}
