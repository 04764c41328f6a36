//! Plain HTTP on the WebSocket port: `GET /healthz`, `GET /metrics`.
//!
//! The accept loop reads each connection's request head once. An upgrade
//! request goes on to the WebSocket handshake with the head replayed in front
//! of the stream ([`Rewind`]); anything else is answered here and closed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::Shared;

/// The largest request head accepted, in bytes.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// What the head of a request asked for.
pub(crate) enum Request {
    /// A WebSocket upgrade; the bytes read so far must be replayed.
    Upgrade(Vec<u8>),
    /// A plain request for this path.
    Plain { method: String, path: String },
    /// Not HTTP, or a head too large: answered with this status.
    Bad(u16),
}

/// Read up to the end of the request head (`\r\n\r\n`).
pub(crate) async fn read_head(stream: &mut TcpStream) -> io::Result<Request> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let upgrade = request.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("upgrade")
                        && std::str::from_utf8(h.value)
                            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
                });
                if upgrade {
                    return Ok(Request::Upgrade(buf));
                }
                let path = request.path.unwrap_or("/");
                let path = path.split('?').next().unwrap_or(path).to_owned();
                let method = request.method.unwrap_or("GET").to_owned();
                return Ok(Request::Plain { method, path });
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => return Ok(Request::Bad(431)),
            Err(_) => return Ok(Request::Bad(400)),
        }
    }
}

/// Answer a plain request and close.
pub(crate) async fn respond(shared: &Shared, stream: &mut TcpStream, request: Request) -> io::Result<()> {
    shared.metrics.http_request();
    let head_only = matches!(&request, Request::Plain { method, .. } if method == "HEAD");
    let (status, content_type, body) = match request {
        Request::Plain { method, path } if method == "GET" || method == "HEAD" => match path.as_str() {
            "/healthz" => (200, "text/plain; charset=utf-8", "ok\n".to_owned()),
            "/metrics" => (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                shared.metrics.render(shared.running_executions()),
            ),
            _ => (
                404,
                "text/plain; charset=utf-8",
                "not found: this port serves WebSocket upgrades, /healthz and /metrics\n".to_owned(),
            ),
        },
        Request::Plain { .. } => (
            405,
            "text/plain; charset=utf-8",
            "method not allowed\n".to_owned(),
        ),
        Request::Bad(status) => (status, "text/plain; charset=utf-8", "bad request\n".to_owned()),
        Request::Upgrade(_) => return Ok(()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

/// A stream that yields `prefix` before reading from `inner`.
pub(crate) struct Rewind<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Rewind<S> {
    /// Replay `prefix`, then read `inner`.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Rewind {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let rest = &self.prefix[self.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
