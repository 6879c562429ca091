//! Tiny servers on `127.0.0.1:0` for probe tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How the test server answers each connection.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reply {
    /// Write these bytes after reading the request head, then close.
    Raw(&'static str),
    /// As `Raw`, after a delay.
    DelayThen(Duration, &'static str),
    /// Accept (and complete TLS, if any), then never answer and never close.
    Hang,
}

/// Serves `reply` on every connection, over TLS when `tls` is set. Every request head received
/// is sent on the returned channel.
pub(crate) async fn serve(
    reply: Reply,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => handle(stream, reply, tx).await,
                    Some(config) => {
                        if let Ok(stream) =
                            tokio_rustls::TlsAcceptor::from(config).accept(stream).await
                        {
                            handle(stream, reply, tx).await;
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    reply: Reply,
    tx: mpsc::UnboundedSender<String>,
) {
    if let Reply::Hang = reply {
        // Hold the connection open until the test's runtime ends.
        std::future::pending::<()>().await;
    }
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
    let text = match reply {
        Reply::Raw(text) => text,
        Reply::DelayThen(delay, text) => {
            tokio::time::sleep(delay).await;
            text
        }
        Reply::Hang => return,
    };
    let _ = stream.write_all(text.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A TCP listener that accepts (and completes TLS, if any) and then holds connections.
pub(crate) async fn tcp_server(tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    serve(Reply::Hang, tls).await.0
}

/// An address on which nothing listens (bound, then released).
pub(crate) async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}
