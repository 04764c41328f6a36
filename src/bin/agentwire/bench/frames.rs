//! The load generator's WebSocket client after the handshake: frames written
//! and read by hand on the TCP stream.
//!
//! The load generator shares the machine with the server it measures, so
//! every microsecond it spends per message is taken from that server. This
//! client does only what a client must (RFC 6455 §5): it masks each frame it
//! sends with a fresh key, reads the server's frames in place from one buffer,
//! joins fragments, answers pings, and reports anything else (a masked or
//! reserved-bit frame, a binary message, text that is not UTF-8) as a protocol
//! violation. tungstenite still does the handshake.
//!
//! Against `tokio-tungstenite` for every frame (alternated runs): the load
//! generator's CPU per execution fell from 6.0 to 5.5 µs, and per fan-out
//! message from 0.51 to 0.36 µs, which took measured fan-out from 1.2 to
//! 1.6M messages/s. The rest of its time is the kernel's (`send`, `recv`).

use std::io;
use std::ops::Range;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::Ws;

const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The largest message accepted (the server's own default limit is far lower).
const MAX_MESSAGE: usize = 64 << 20;

/// Why reading stopped.
pub(super) enum ReadError {
    /// The socket failed.
    Io(io::Error),
    /// The server broke the framing rules (or closed mid-frame).
    Protocol(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "read failed: {e}"),
            ReadError::Protocol(what) => f.write_str(what),
        }
    }
}

/// What the buffered bytes hold.
enum Parsed {
    /// A whole text message.
    Message(Text),
    /// A close frame.
    Closed,
    /// Not a whole message yet.
    Incomplete,
}

/// Where the last message's text is.
enum Text {
    /// In the read buffer: a message of one frame.
    Buffer(Range<usize>),
    /// Joined from fragments.
    Joined,
}

/// An open WebSocket, client side, after the handshake.
pub(super) struct Frames {
    stream: TcpStream,
    /// Bytes read; `buf[start..end]` are not parsed yet.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A fragmented message being joined.
    joined: Vec<u8>,
    joining: bool,
    /// Frames queued by [`Frames::queue_text`], written by [`Frames::flush`].
    out: Vec<u8>,
    /// xorshift32 state for the masking keys.
    rng: u32,
}

impl Frames {
    /// Take over a handshaken connection (which must have nothing buffered:
    /// the servers measured say nothing before they are asked).
    pub(super) fn new(ws: Ws, read_buffer: usize, seed: u32) -> Frames {
        Frames::over(ws.into_inner(), read_buffer, seed)
    }

    fn over(stream: TcpStream, read_buffer: usize, seed: u32) -> Frames {
        Frames {
            stream,
            buf: vec![0; read_buffer.max(16)],
            start: 0,
            end: 0,
            joined: Vec::new(),
            joining: false,
            out: Vec::with_capacity(256),
            rng: seed | 1,
        }
    }

    fn mask_key(&mut self) -> [u8; 4] {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x.to_ne_bytes()
    }

    /// Queue one frame, masked with a fresh key.
    fn queue(&mut self, opcode: u8, payload: &[u8]) {
        let key = self.mask_key();
        self.out.push(0x80 | opcode);
        match payload.len() {
            n @ 0..=125 => self.out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                self.out.push(0x80 | 126);
                self.out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                self.out.push(0x80 | 127);
                self.out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        self.out.extend_from_slice(&key);
        self.out
            .extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
    }

    /// Queue a text message; nothing is sent before [`Frames::flush`].
    pub(super) fn queue_text(&mut self, text: &str) {
        self.queue(TEXT, text.as_bytes());
    }

    /// Send every queued frame, in one write when the socket takes it.
    pub(super) async fn flush(&mut self) -> io::Result<()> {
        let result = self.stream.write_all(&self.out).await;
        self.out.clear();
        result
    }

    /// Send a close frame and shut the write side down.
    pub(super) async fn close(&mut self) {
        self.queue(CLOSE, &1000u16.to_be_bytes());
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }

    /// The next text message; `None` once the server closed (a close frame,
    /// or the end of the stream between frames).
    pub(super) async fn next_text(&mut self) -> Result<Option<&str>, ReadError> {
        let text = loop {
            let parsed = self.parse()?;
            if !self.out.is_empty() {
                // Pongs, sent before the message they came with is handed out.
                self.flush().await.map_err(ReadError::Io)?;
            }
            match parsed {
                Parsed::Message(text) => break text,
                Parsed::Closed => return Ok(None),
                Parsed::Incomplete => {}
            }
            if !self.fill().await.map_err(ReadError::Io)? {
                if self.start == self.end && !self.joining {
                    return Ok(None);
                }
                return Err(ReadError::Protocol(
                    "connection closed in the middle of a message".into(),
                ));
            }
        };
        let bytes = match text {
            Text::Buffer(range) => &self.buf[range],
            Text::Joined => &self.joined[..],
        };
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|e| ReadError::Protocol(format!("a text message that is not UTF-8: {e}")))
    }

    /// Read more bytes; false at the end of the stream. A frame larger than
    /// the buffer has had room made for it by `parse`, so moving the unparsed
    /// bytes to the front always leaves some.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n > 0)
    }

    /// Parse buffered frames up to the next whole message or close frame.
    fn parse(&mut self) -> Result<Parsed, ReadError> {
        loop {
            let avail = &self.buf[self.start..self.end];
            let [b0, b1, ..] = *avail else {
                return Ok(Parsed::Incomplete);
            };
            if b1 & 0x80 != 0 {
                return Err(ReadError::Protocol("a masked frame from the server".into()));
            }
            if b0 & 0x70 != 0 {
                return Err(ReadError::Protocol(format!("reserved bits set: {b0:#04x}")));
            }
            let (len, head) = match b1 & 0x7F {
                126 => match avail.get(2..4) {
                    Some(b) => (usize::from(u16::from_be_bytes([b[0], b[1]])), 4),
                    None => return Ok(Parsed::Incomplete),
                },
                127 => match avail.get(2..10) {
                    Some(b) => {
                        let len = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                        (usize::try_from(len).unwrap_or(usize::MAX), 10)
                    }
                    None => return Ok(Parsed::Incomplete),
                },
                n => (usize::from(n), 2),
            };
            if len > MAX_MESSAGE || self.joined.len() + len > MAX_MESSAGE {
                return Err(ReadError::Protocol(format!("a frame of {len} bytes")));
            }
            if avail.len() < head + len {
                if head + len > self.buf.len() {
                    // Room for the whole frame once `fill` moves it to the front.
                    self.buf.resize((head + len).next_power_of_two(), 0);
                }
                return Ok(Parsed::Incomplete);
            }
            let payload = self.start + head..self.start + head + len;
            self.start = payload.end;
            let fin = b0 & 0x80 != 0;
            match b0 & 0x0F {
                TEXT if !self.joining => {
                    if fin {
                        return Ok(Parsed::Message(Text::Buffer(payload)));
                    }
                    self.joining = true;
                    self.joined.clear();
                    self.joined.extend_from_slice(&self.buf[payload]);
                }
                CONTINUATION if self.joining => {
                    self.joined.extend_from_slice(&self.buf[payload]);
                    if fin {
                        self.joining = false;
                        return Ok(Parsed::Message(Text::Joined));
                    }
                }
                PING => {
                    let payload = self.buf[payload].to_vec();
                    self.queue(PONG, &payload);
                }
                PONG => {}
                CLOSE => return Ok(Parsed::Closed),
                BINARY => return Err(ReadError::Protocol("a binary message".into())),
                other => {
                    return Err(ReadError::Protocol(format!(
                        "an unexpected frame (opcode {other:#x}{})",
                        if self.joining {
                            ", inside a fragmented message"
                        } else {
                            ""
                        }
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client `Frames` and the server's end of the same TCP connection.
    async fn pair() -> (Frames, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        // A small buffer, so that frames straddle reads and the buffer grows.
        (Frames::over(client.unwrap(), 16, 7), server.unwrap().0)
    }

    /// An unmasked server frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n @ 0..=125 => out.push(n as u8),
            n @ 126..=0xFFFF => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    /// Read one client frame on the server side: (first byte, mask key, unmasked payload).
    async fn read_client_frame(server: &mut TcpStream) -> (u8, [u8; 4], Vec<u8>) {
        let mut head = [0u8; 2];
        server.read_exact(&mut head).await.unwrap();
        assert_eq!(head[1] & 0x80, 0x80, "every client frame is masked");
        let len = match head[1] & 0x7F {
            126 => usize::from(server.read_u16().await.unwrap()),
            127 => usize::try_from(server.read_u64().await.unwrap()).unwrap(),
            n => usize::from(n),
        };
        let mut key = [0u8; 4];
        server.read_exact(&mut key).await.unwrap();
        let mut payload = vec![0u8; len];
        server.read_exact(&mut payload).await.unwrap();
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
        (head[0], key, payload)
    }

    #[tokio::test]
    async fn reads_whole_fragmented_and_long_messages_and_answers_pings() {
        let (mut client, mut server) = pair().await;
        let long = "x".repeat(300);
        let mut bytes = frame(0x81, b"{\"a\":1}");
        bytes.extend(frame(0x01, b"{\"b\":"));
        bytes.extend(frame(0x89, b"are you there"));
        bytes.extend(frame(0x80, b"2}"));
        bytes.extend(frame(0x81, long.as_bytes()));
        bytes.extend(frame(0x81, "é".as_bytes()));
        bytes.extend(frame(0x88, &1000u16.to_be_bytes()));
        server.write_all(&bytes).await.unwrap();

        assert_eq!(client.next_text().await.ok().flatten(), Some("{\"a\":1}"));
        assert_eq!(client.next_text().await.ok().flatten(), Some("{\"b\":2}"));
        assert_eq!(client.next_text().await.ok().flatten(), Some(long.as_str()));
        assert_eq!(client.next_text().await.ok().flatten(), Some("é"));
        assert!(
            matches!(client.next_text().await, Ok(None)),
            "a close frame ends the stream"
        );

        let (first, _, payload) = read_client_frame(&mut server).await;
        assert_eq!(
            (first, payload.as_slice()),
            (0x8A, &b"are you there"[..]),
            "a pong with the ping's payload"
        );
    }

    #[tokio::test]
    async fn sends_text_masked_with_a_fresh_key_per_frame() {
        let (mut client, mut server) = pair().await;
        let long = "y".repeat(70_000);
        client.queue_text("hello");
        client.queue_text("hello");
        client.queue_text(&long);
        client.flush().await.unwrap();
        let (first_a, key_a, a) = read_client_frame(&mut server).await;
        let (first_b, key_b, b) = read_client_frame(&mut server).await;
        let (_, _, c) = read_client_frame(&mut server).await;
        assert_eq!((first_a, first_b), (0x81, 0x81), "final text frames");
        assert_eq!((a.as_slice(), b.as_slice()), (&b"hello"[..], &b"hello"[..]));
        assert_ne!(key_a, key_b);
        assert_eq!(c, long.as_bytes(), "a 64-bit length");

        client.close().await;
        let (first, _, code) = read_client_frame(&mut server).await;
        assert_eq!((first, code.as_slice()), (0x88, &1000u16.to_be_bytes()[..]));
        assert_eq!(
            server.read(&mut [0u8; 1]).await.unwrap(),
            0,
            "then the write side is shut"
        );
    }

    #[tokio::test]
    async fn a_frame_against_the_rules_is_a_protocol_violation() {
        let masked = {
            let mut f = frame(0x81, b"hi");
            f[1] |= 0x80;
            f.splice(2..2, [0, 0, 0, 0]);
            f
        };
        let cases: [(Vec<u8>, &str); 5] = [
            (masked, "masked"),
            (frame(0xC1, b"hi"), "reserved"),
            (frame(0x82, b"hi"), "binary"),
            (frame(0x81, &[0xFF, 0xFE]), "UTF-8"),
            (frame(0x80, b"hi"), "opcode 0x0"),
        ];
        for (bytes, expected) in cases {
            let (mut client, mut server) = pair().await;
            server.write_all(&bytes).await.unwrap();
            match client.next_text().await {
                Err(ReadError::Protocol(what)) => assert!(what.contains(expected), "{expected}: {what}"),
                Err(ReadError::Io(e)) => panic!("{expected}: an I/O error {e}"),
                Ok(text) => panic!("{expected}: read {text:?}"),
            }
        }

        let (mut client, mut server) = pair().await;
        server.write_all(&frame(0x81, b"cut sho")[..5]).await.unwrap();
        server.shutdown().await.unwrap();
        match client.next_text().await {
            Err(ReadError::Protocol(what)) => assert!(what.contains("middle"), "{what}"),
            _ => panic!("a stream cut inside a frame is a violation"),
        }
    }
}
