//! The process runtime: any program, spoken to in JSON lines over stdin/stdout
//! (the protocol's "Agent I/O").

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, Command};
use tokio::time::{Instant, timeout, timeout_at};

use super::{AgentError, AgentEvent, AgentRuntime, BoxFuture, ProcessConfig, RunContext};
use crate::protocol::{
    AgentExecute, AgentInput, AgentMessageType, AgentOutput, AgentResponse, AgentUserMessage, ErrorCode,
};

/// How long a run may take when the config says nothing: 30 s.
pub const DEFAULT_TIMEOUT_MS: u32 = 30_000;
/// How much an agent may write to stdout in one run when the config says
/// nothing: 1 MiB.
pub const DEFAULT_MAX_OUTPUT_BYTES: u32 = 1 << 20;
/// How much of the end of an agent's stderr is kept for error messages.
pub const STDERR_TAIL_BYTES: usize = 4096;

/// The variables of the server's environment a child inherits; everything else
/// (tokens, keys) stays out.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG"];
/// How long an agent that said `done` has to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// How long to wait for the rest of stderr once the agent has exited.
const STDERR_GRACE: Duration = Duration::from_millis(500);
/// How long to wait for a killed child to be reaped.
const REAP_GRACE: Duration = Duration::from_secs(2);
/// How much of an invalid line an error message quotes.
const QUOTED_LINE_CHARS: usize = 200;

/// Runs a program as an agent, speaking JSON lines.
///
/// Each run spawns `command` afresh, with a cleared environment (only `PATH`,
/// `HOME`, `LANG` and the configured `env`), writes one
/// [`AgentInput`] line to its stdin and closes it, then reads [`AgentOutput`]
/// lines from its stdout until `done` (success) or `error` (failure):
///
/// - `action` → [`AgentEvent::Action`];
/// - `internal_monologue`, `assistant_message`, `function_message` →
///   [`AgentEvent::Say`];
/// - blank lines are skipped.
///
/// The run fails with `execution_failed` when a line is not valid agent output,
/// when the program exits (or closes stdout) before `done`, or when it writes
/// more than `max_output_bytes`; it fails with `timeout` when it takes longer
/// than `timeout_ms`. The last [`STDERR_TAIL_BYTES`] of stderr are quoted in
/// the error when the program exits early.
///
/// The child is killed on every failure, when it does not exit within a second
/// of `done`, and when the run's future is dropped. Processes the child itself
/// started are not tracked.
#[derive(Clone, Debug)]
pub struct ProcessRuntime {
    config: ProcessConfig,
}

impl ProcessRuntime {
    /// The runtime's name on the wire.
    pub const NAME: &'static str = "process";

    /// A runtime for this program.
    pub fn new(config: ProcessConfig) -> Self {
        ProcessRuntime { config }
    }

    /// The program it runs.
    pub fn config(&self) -> &ProcessConfig {
        &self.config
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS).into())
    }

    fn max_output_bytes(&self) -> usize {
        usize::try_from(self.config.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT_BYTES))
            .unwrap_or(usize::MAX)
    }

    fn spawn(&self) -> Result<Child, AgentError> {
        let Some((program, args)) = self.config.command.split_first() else {
            return Err(AgentError::failed("the agent's `command` is empty"));
        };
        let mut command = Command::new(program);
        command.args(args).env_clear();
        for name in INHERITED_ENV {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command
            .envs(&self.config.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
            .spawn()
            .map_err(|e| AgentError::failed(format!("could not start the agent `{program}`: {e}")))
    }

    /// One run: spawn, write `input`, read until `done` or `error`, clean up.
    async fn run(&self, ctx: RunContext, input: AgentInput) -> Result<(), AgentError> {
        let deadline = Instant::now() + self.timeout();
        let mut child = self.spawn()?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            kill(&mut child).await;
            return Err(AgentError::new(
                ErrorCode::InternalError,
                "the agent's stdin, stdout or stderr was not piped",
            ));
        };
        let tail = Mutex::new(Tail::default());
        let drain = drain_stderr(stderr, &tail);
        tokio::pin!(drain);
        let mut stderr_open = true;

        let mut line = input.encode();
        line.push('\n');
        let reader = LineReader::new(stdout, self.max_output_bytes());
        let talk = timeout_at(deadline, talk(&ctx, stdin, line, reader));
        tokio::pin!(talk);
        let outcome = loop {
            tokio::select! {
                outcome = &mut talk => break outcome,
                () = &mut drain, if stderr_open => stderr_open = false,
            }
        };

        let result = match outcome {
            Err(_elapsed) => Err(self.timed_out()),
            Ok(Outcome::Done) => {
                // Give the agent a moment to exit on its own; it is killed below
                // if it does not.
                let grace = deadline.min(Instant::now() + EXIT_GRACE);
                let _ = timeout_at(grace, child.wait()).await;
                Ok(())
            }
            Ok(Outcome::Failed(error)) => Err(error),
            Ok(Outcome::Eof) => {
                // Stdout is closed: the agent exited (or is about to). Wait for
                // its status, and for the rest of its stderr.
                let stderr_rest = async {
                    if stderr_open {
                        let _ = timeout(STDERR_GRACE, &mut drain).await;
                    }
                };
                let (status, ()) = tokio::join!(timeout_at(deadline, child.wait()), stderr_rest);
                match status {
                    Err(_elapsed) => Err(self.timed_out()),
                    Ok(status) => {
                        let exit = match status {
                            Ok(status) => describe(status),
                            Err(e) => format!("an unknown status ({e})"),
                        };
                        let stderr = lock(&tail).text();
                        let mut message = format!("agent exited with {exit} before `done`");
                        if !stderr.is_empty() {
                            message.push_str(": ");
                            message.push_str(&stderr);
                        }
                        Err(AgentError::failed(message))
                    }
                }
            }
        };
        kill(&mut child).await;
        result
    }

    fn timed_out(&self) -> AgentError {
        AgentError::timeout(format!(
            "agent did not finish within {} ms",
            self.config.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)
        ))
    }
}

impl AgentRuntime for ProcessRuntime {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn execute<'a>(&'a self, ctx: RunContext) -> BoxFuture<'a, Result<(), AgentError>> {
        let input = AgentInput::Execute(AgentExecute::new(
            ctx.execution_id.clone(),
            ctx.agent_id.clone(),
            ctx.input.clone(),
        ));
        Box::pin(self.run(ctx, input))
    }

    fn chat<'a>(&'a self, ctx: RunContext, message: String) -> BoxFuture<'a, Result<(), AgentError>> {
        let input = AgentInput::UserMessage(AgentUserMessage::new(ctx.agent_id.clone(), message));
        Box::pin(self.run(ctx, input))
    }
}

/// How the conversation with the agent ended.
enum Outcome {
    /// The agent said `done`.
    Done,
    /// The run failed; the agent is to be killed.
    Failed(AgentError),
    /// Stdout closed before `done` or `error`.
    Eof,
}

/// Write the input line (then close stdin) while reading and forwarding output
/// lines, until the agent says `done` or `error`, or the output ends.
async fn talk<R: AsyncRead + Unpin>(
    ctx: &RunContext,
    mut stdin: ChildStdin,
    line: String,
    mut reader: LineReader<R>,
) -> Outcome {
    // Written concurrently with reading, so that an agent that answers before
    // reading all of a large input cannot deadlock the run. A failed write (the
    // agent exited without reading) is not an error by itself: what the agent
    // wrote, and how it exited, says more.
    let write = async move {
        let _ = stdin.write_all(line.as_bytes()).await;
        let _ = stdin.shutdown().await;
    };
    tokio::pin!(write);
    let mut written = false;
    loop {
        let next = tokio::select! {
            () = &mut write, if !written => {
                written = true;
                continue;
            }
            next = reader.next_line() => next,
        };
        let text = match next {
            Ok(Line::Text(text)) => text,
            Ok(Line::Eof) => return Outcome::Eof,
            Ok(Line::TooLong) => {
                return Outcome::Failed(AgentError::failed(format!(
                    "agent wrote more than {} bytes of output",
                    reader.limit
                )));
            }
            Ok(Line::NotUtf8) => {
                return Outcome::Failed(AgentError::failed("agent wrote an invalid line: it is not UTF-8"));
            }
            Err(e) => {
                return Outcome::Failed(AgentError::failed(format!(
                    "could not read the agent's output: {e}"
                )));
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        let event = match AgentOutput::decode(&text) {
            Ok(AgentOutput::Action(action)) => AgentEvent::Action(action),
            Ok(AgentOutput::InternalMonologue(said)) => {
                say(AgentMessageType::InternalMonologue, said.message)
            }
            Ok(AgentOutput::AssistantMessage(said)) => say(AgentMessageType::AssistantMessage, said.message),
            Ok(AgentOutput::FunctionMessage(said)) => say(AgentMessageType::FunctionMessage, said.message),
            Ok(AgentOutput::Done) => return Outcome::Done,
            Ok(AgentOutput::Error(failure)) => return Outcome::Failed(AgentError::failed(failure.message)),
            Err(e) => {
                return Outcome::Failed(AgentError::failed(format!(
                    "agent wrote an invalid line: {} (line: {})",
                    e.message,
                    excerpt(&text)
                )));
            }
        };
        if let Err(error) = ctx.emit(event).await {
            return Outcome::Failed(error);
        }
    }
}

fn say(kind: AgentMessageType, message: String) -> AgentEvent {
    AgentEvent::Say(AgentResponse::new(kind, message))
}

/// The start of an invalid line, quoted, for an error message.
fn excerpt(line: &str) -> String {
    let mut chars = line.chars();
    let head: String = chars.by_ref().take(QUOTED_LINE_CHARS).collect();
    let more = if chars.next().is_some() { "…" } else { "" };
    format!("{head:?}{more}")
}

/// How an agent exited, for an error message.
fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("signal {signal}");
        }
    }
    status.to_string()
}

/// Kill the child unless it has exited, and reap it. Dropping the child would
/// kill it too (`kill_on_drop`); this also waits, so that no zombie is left.
async fn kill(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = child.start_kill();
    let _ = timeout(REAP_GRACE, child.wait()).await;
}

fn lock(tail: &Mutex<Tail>) -> std::sync::MutexGuard<'_, Tail> {
    tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Read stderr to its end, keeping the last bytes.
async fn drain_stderr(mut stderr: ChildStderr, tail: &Mutex<Tail>) {
    let mut chunk = [0u8; 4096];
    loop {
        match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => lock(tail).push(&chunk[..n]),
        }
    }
}

/// The last [`STDERR_TAIL_BYTES`] bytes written to stderr.
#[derive(Default)]
struct Tail {
    bytes: VecDeque<u8>,
    truncated: bool,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend(chunk);
        let excess = self.bytes.len().saturating_sub(STDERR_TAIL_BYTES);
        if excess > 0 {
            self.bytes.drain(..excess);
            self.truncated = true;
        }
    }

    /// The tail as text, trimmed; `…` marks a cut start.
    fn text(&self) -> String {
        let (front, back) = self.bytes.as_slices();
        let bytes = [front, back].concat();
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        if self.truncated && !text.is_empty() {
            format!("…{text}")
        } else {
            text.to_owned()
        }
    }
}

/// One result of [`LineReader::next_line`].
#[derive(Debug)]
enum Line {
    /// A line, without its `\n` (or `\r\n`).
    Text(String),
    /// The output ended.
    Eof,
    /// The output went over the limit.
    TooLong,
    /// The line is not UTF-8.
    NotUtf8,
}

/// Splits a stream into lines, failing once more than `limit` bytes have been
/// read in all (so no line, and no run, can make it buffer more).
///
/// `next_line` is cancel-safe: a call dropped while waiting loses nothing.
struct LineReader<R> {
    inner: R,
    /// Bytes read but not yet returned.
    buffer: Vec<u8>,
    /// How far `buffer` is known to hold no `\n`.
    scanned: usize,
    /// Bytes returned so far, newlines included.
    consumed: usize,
    limit: usize,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R, limit: usize) -> Self {
        LineReader {
            inner,
            buffer: Vec::new(),
            scanned: 0,
            consumed: 0,
            limit,
            eof: false,
        }
    }

    async fn next_line(&mut self) -> std::io::Result<Line> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(offset) = self.buffer[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + offset;
                if self.consumed + end + 1 > self.limit {
                    return Ok(Line::TooLong);
                }
                let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
                self.consumed += line.len();
                self.scanned = 0;
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8(line).map_or(Line::NotUtf8, Line::Text));
            }
            self.scanned = self.buffer.len();
            if self.consumed + self.buffer.len() > self.limit {
                return Ok(Line::TooLong);
            }
            if self.eof {
                if self.buffer.is_empty() {
                    return Ok(Line::Eof);
                }
                // A last line without a newline.
                let line = std::mem::take(&mut self.buffer);
                self.consumed += line.len();
                self.scanned = 0;
                return Ok(String::from_utf8(line).map_or(Line::NotUtf8, Line::Text));
            }
            let room = (self.limit - self.consumed - self.buffer.len()).saturating_add(1);
            let want = chunk.len().min(room);
            let n = self.inner.read(&mut chunk[..want]).await?;
            if n == 0 {
                self.eof = true;
            } else {
                self.buffer.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], limit: usize) -> Vec<String> {
        let mut reader = LineReader::new(input, limit);
        let mut out = Vec::new();
        loop {
            match reader.next_line().await {
                Ok(Line::Text(text)) => out.push(text),
                Ok(Line::Eof) => return out,
                Ok(other) => {
                    out.push(format!("<{other:?}>"));
                    return out;
                }
                Err(e) => {
                    out.push(format!("<{e}>"));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn splits_lines_and_enforces_the_limit() {
        assert_eq!(lines(b"a\r\nbc\n\nd", 100).await, ["a", "bc", "", "d"]);
        assert_eq!(lines(b"abc\n", 4).await, ["abc"]);
        assert_eq!(lines(b"abc\nd", 4).await, ["abc", "<TooLong>"]);
        assert_eq!(lines(b"abcd\n", 4).await, ["<TooLong>"]);
        assert_eq!(lines(&[b'x'; 10_000], 5000).await, ["<TooLong>"]);
        assert_eq!(lines(b"ok\n\xff\n", 100).await, ["ok", "<NotUtf8>"]);
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut tail = Tail::default();
        tail.push(b"start ");
        assert_eq!(tail.text(), "start");
        tail.push(&[b'y'; STDERR_TAIL_BYTES]);
        tail.push(b" end\n");
        let text = tail.text();
        assert!(text.starts_with('…') && text.ends_with("y end"), "{text}");
        assert!(text.len() <= STDERR_TAIL_BYTES + '…'.len_utf8());
    }
}
