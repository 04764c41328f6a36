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
use super::metrics::StoreCounts;

/// The largest request head accepted, in bytes.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// What the head of a request asked for.
pub(crate) enum Request {
    /// A WebSocket upgrade.
    Upgrade(Upgrade),
    /// A plain request for this path.
    Plain { method: String, path: String },
    /// Not HTTP, or a head too large: answered with this status.
    Bad(u16),
}

/// A WebSocket upgrade request: what the handshake must replay, and what
/// admission checks.
pub(crate) struct Upgrade {
    /// The bytes read so far, replayed to the handshake.
    pub prefix: Vec<u8>,
    /// From `Authorization: Bearer …`, else from the `token` query parameter.
    pub token: Option<String>,
    /// The `Origin` header, sent by browsers.
    pub origin: Option<String>,
}

/// Read up to the end of the request head (`\r\n\r\n`).
pub(crate) async fn read_head(stream: &mut TcpStream) -> io::Result<Request> {
    // Read into the Vec itself: a buffer local to this future would stay in
    // every connection's task for its whole life.
    let mut buf = Vec::with_capacity(1024);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let header = |name: &str| {
                    request
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                        .map(str::trim)
                };
                let target = request.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                if header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
                    let bearer = header("authorization")
                        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
                    let token = bearer
                        .map(|t| t.trim().to_owned())
                        .or_else(|| query_param(query, "token"));
                    let origin = header("origin").map(str::to_owned);
                    return Ok(Request::Upgrade(Upgrade {
                        prefix: buf,
                        token,
                        origin,
                    }));
                }
                let method = request.method.unwrap_or("GET").to_owned();
                return Ok(Request::Plain {
                    method,
                    path: path.to_owned(),
                });
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => return Ok(Request::Bad(431)),
            Err(_) => return Ok(Request::Bad(400)),
        }
    }
}

/// The percent-decoded value of `name` in a query string.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether two secrets are equal, in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Refuse a handshake with a plain HTTP status and close.
pub(crate) async fn refuse(stream: &mut TcpStream, status: u16, why: &str) -> io::Result<()> {
    let extra = if status == 401 {
        "www-authenticate: Bearer\r\n"
    } else {
        ""
    };
    write_response(
        stream,
        status,
        "text/plain; charset=utf-8",
        extra,
        why.as_bytes(),
        false,
    )
    .await
}

/// Answer a plain request and close.
pub(crate) async fn respond(shared: &Shared, stream: &mut TcpStream, request: Request) -> io::Result<()> {
    shared.metrics.http_request();
    let head_only = matches!(&request, Request::Plain { method, .. } if method == "HEAD");
    let (status, content_type, body) = match request {
        Request::Plain { method, path } if method == "GET" || method == "HEAD" => match path.as_str() {
            "/healthz" if shared.draining.load(std::sync::atomic::Ordering::Relaxed) => {
                (503, "text/plain; charset=utf-8", "shutting down\n".to_owned())
            }
            "/healthz" => (200, "text/plain; charset=utf-8", "ok\n".to_owned()),
            "/metrics" => (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                shared
                    .metrics
                    .render(shared.running_executions(), StoreCounts::of(&shared.store)),
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
    let body = body.as_bytes();
    write_response(
        stream,
        status,
        content_type,
        "cache-control: no-store\r\n",
        body,
        head_only,
    )
    .await
}

async fn write_response(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    extra_headers: &str,
    body: &[u8],
    head_only: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Bad Request",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         {extra_headers}connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
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
