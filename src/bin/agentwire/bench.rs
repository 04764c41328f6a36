//! `agentwire bench`: a load generator that drives a running server over real
//! sockets and prints figures (never asserts on time).
//!
//! It is lean on purpose so that it does not become the bottleneck: after
//! tungstenite's handshake, frames are written and read by hand
//! ([`frames`]), a borrowed JSON view of each answer is checked, one task per
//! connection, a single-threaded runtime unless `--threads` says otherwise.
//! It speaks only the wire protocol, so it drives the baselines in
//! `bench/baselines/` just as well as agentwire.
//!
//! - `exec`: N connections send execute requests back to back (formats 1, 2, 3
//!   in rotation), each waiting for its `completed`; prints executions/s and
//!   p50/p90/p99/p99.9/max latency, and counts protocol violations.
//! - `idle`: holds N connections open and reads the server's memory from
//!   `/proc/<pid>/status` before and after.
//! - `fanout`: M connections attach to one chat agent; one sends
//!   `user_message`s; counts the step messages delivered per second.
//!
//! With `--pid`, `exec` and `fanout` also print the cores the server and the
//! load generator used, and how long their threads waited to run (runnable,
//! not running: `/proc/PID/task/*/schedstat`); then the CPU time of each
//! execution (or message) by the server's thread names, the load generator's,
//! and the time the machine's CPUs sat idle for each (`/proc/stat`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agentwire::protocol::ServerMessage;
use futures_util::{SinkExt, StreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

mod frames;

use frames::{Frames, ReadError};

type Ws = WebSocketStream<TcpStream>;

/// `agentwire bench` options.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(clap::Subcommand)]
enum Mode {
    /// Execute round trips: N connections, requests back to back, mixed formats.
    Exec(ExecArgs),
    /// Hold N idle connections open and report the server's memory per connection.
    Idle(IdleArgs),
    /// Chat fan-out: M connections on one agent, one of them sending messages.
    Fanout(FanoutArgs),
}

#[derive(clap::Args)]
struct Common {
    /// The server's WebSocket URL (ws:// only).
    #[arg(long, default_value = "ws://127.0.0.1:8765")]
    url: String,
    /// Worker threads of the load generator; 1 is a single-threaded runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The server's process id: its CPU time and its threads' waits to run
    /// (exec, fanout) and its memory (idle) are read from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// Append the figures as one JSON line to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// A label copied into the JSON line (which server, which scenario).
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(clap::Args)]
struct ExecArgs {
    #[command(flatten)]
    common: Common,
    /// Connections.
    #[arg(long, short = 'c', default_value_t = 32)]
    connections: usize,
    /// Requests in flight per connection (more than 1 sends `request_id`s).
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Seconds measured, after the warmup.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Send exactly this many requests in all (no warmup) instead of running for `--duration`.
    #[arg(long)]
    requests: Option<u64>,
    /// The agent to run.
    #[arg(long, default_value = "bench")]
    agent: String,
    /// Request formats, used in rotation.
    #[arg(long, default_value = "1,2,3", value_delimiter = ',')]
    formats: Vec<u8>,
    /// Send a `request_id` even with one request in flight.
    #[arg(long)]
    request_ids: bool,
    /// How many results each `completed` must carry (unchecked when absent).
    #[arg(long)]
    expect_actions: Option<usize>,
    /// Seconds to wait for an answer before giving up on a connection.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

#[derive(clap::Args)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    /// Connections to hold.
    #[arg(long, short = 'c', default_value_t = 10_000)]
    connections: usize,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Seconds to hold the connections (memory read at the end).
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
}

#[derive(clap::Args)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Connections attached to the agent (the sender included).
    #[arg(long, short = 'c', default_value_t = 1000)]
    connections: usize,
    /// Steps (user messages) to send.
    #[arg(long, default_value_t = 200)]
    steps: u64,
    /// Steps in flight: the sender sends the next message when it sees a step end.
    #[arg(long, default_value_t = 4)]
    window: u64,
    /// `agent_response`s each step must carry (unchecked when absent).
    #[arg(long)]
    expect_responses: Option<u32>,
    /// The agent's name; default: a fresh one.
    #[arg(long)]
    name: Option<String>,
    /// Seconds without a frame before a connection gives up.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

/// Run the benchmark on its own runtime.
pub fn run(args: Args) -> ExitCode {
    let threads = match &args.mode {
        Mode::Exec(a) => a.common.threads,
        Mode::Idle(a) => a.common.threads,
        Mode::Fanout(a) => a.common.threads,
    };
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.mode {
            Mode::Exec(a) => exec(a).await,
            Mode::Idle(a) => idle(a).await,
            Mode::Fanout(a) => fanout(a).await,
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("agentwire bench: {e}");
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------------------
// Shared pieces

/// Open a WebSocket with small buffers (the default read buffer is 128 KiB).
async fn connect(url: &str, read_buffer: usize) -> Result<Ws, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let stream = TcpStream::connect(authority)
        .await
        .map_err(|e| format!("connect {authority}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .map_err(|e| format!("handshake with {url}: {e}"))?;
    Ok(ws)
}

/// The fields of a server frame the checks read, borrowed where possible.
#[derive(Deserialize)]
struct View<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(default, borrow)]
    data: Option<DataView<'a>>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    agent_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DataView<'a> {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    agent_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    execution_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(default)]
    execution_count: Option<u64>,
    #[serde(default)]
    results: Option<Vec<serde::de::IgnoredAny>>,
}

/// Protocol violations: a count and the first few, described.
#[derive(Default)]
struct Violations {
    count: u64,
    examples: Vec<String>,
}

impl Violations {
    fn add(&mut self, what: impl Into<String>) {
        self.count += 1;
        if self.examples.len() < 5 {
            self.examples.push(what.into());
        }
    }

    fn merge(&mut self, other: Violations) {
        self.count += other.count;
        for example in other.examples {
            if self.examples.len() < 5 {
                self.examples.push(example);
            }
        }
    }

    fn print(&self) {
        println!("protocol violations: {}", self.count);
        for example in &self.examples {
            println!("  e.g. {example}");
        }
    }
}

fn clip(text: &str) -> &str {
    match text.char_indices().nth(200) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// A process's resident memory, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// A process's CPU time (user + system, all threads), in seconds.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0) // USER_HZ is 100 on Linux
}

/// The first two fields of `/proc/PID/task/*/schedstat` for each of a
/// process's threads, in nanoseconds: time on a CPU, and time runnable but
/// waiting for one; with the thread's name. A thread gone between the
/// listing and the reads is left out. `None` where the kernel keeps no such
/// figures.
fn task_clocks(pid: &str) -> Option<Vec<(String, u64, u64)>> {
    let mut tasks = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path();
        let (Ok(name), Ok(text)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("schedstat")),
        ) else {
            continue;
        };
        let mut fields = text.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(running)), Some(Ok(waiting))) = (fields.next(), fields.next()) else {
            return None;
        };
        tasks.push((name.trim_end().to_owned(), running, waiting));
    }
    Some(tasks)
}

/// How long a process's threads have waited to run: runnable, not running
/// (from [`task_clocks`], summed), in seconds.
fn run_delay_seconds(pid: &str) -> Option<f64> {
    let nanos: u64 = task_clocks(pid)?.iter().map(|(_, _, waiting)| waiting).sum();
    Some(nanos as f64 / 1e9)
}

/// CPU time of each of a process's threads, by thread name (the threads of
/// one name summed), in seconds (from [`task_clocks`]).
fn thread_seconds(pid: &str) -> Option<HashMap<String, f64>> {
    let mut threads = HashMap::new();
    for (name, running, _) in task_clocks(pid)? {
        *threads.entry(name).or_insert(0.0) += running as f64 / 1e9;
    }
    Some(threads)
}

/// The machine's idle CPU time, `idle` and `iowait` of `/proc/stat`'s `cpu`
/// line (all CPUs), in seconds.
fn idle_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    Some((fields.get(3)? + fields.get(4)?) as f64 / 100.0) // USER_HZ is 100 on Linux
}

/// One process's CPU use over the measured window, in cores.
#[derive(Clone, Copy, Default)]
struct Cores {
    /// Time on a CPU.
    running: Option<f64>,
    /// Time its threads were ready to run and waited for a CPU.
    waiting: Option<f64>,
}

/// The running and waiting clocks of one process, read at two moments.
struct ProcessClock {
    pid: Option<String>,
    running: Option<f64>,
    waiting: Option<f64>,
}

impl ProcessClock {
    fn start(pid: Option<String>) -> Self {
        ProcessClock {
            running: pid.as_deref().and_then(cpu_seconds),
            waiting: pid.as_deref().and_then(run_delay_seconds),
            pid,
        }
    }

    fn since_start(&self, wall: f64) -> Cores {
        let rate = |now: Option<f64>, then: Option<f64>| Some((now? - then?) / wall);
        let pid = self.pid.as_deref();
        Cores {
            running: rate(pid.and_then(cpu_seconds), self.running),
            waiting: rate(pid.and_then(run_delay_seconds), self.waiting),
        }
    }
}

/// What the CPUs did over the measured window, in cores (CPU-seconds a
/// second).
#[derive(Default)]
struct Cpu {
    server: Cores,
    own: Cores,
    /// The server's threads by name, busiest first (with `--pid`).
    threads: Vec<(String, f64)>,
    /// The machine's CPUs idle, or waiting for the disk with nothing to run.
    idle: Option<f64>,
}

/// CPU use of the server and of this process, read at two moments.
struct CpuClock {
    at: Instant,
    server: ProcessClock,
    own: ProcessClock,
    threads: Option<HashMap<String, f64>>,
    idle: Option<f64>,
}

impl CpuClock {
    fn start(pid: Option<u32>) -> Self {
        let server = pid.map(|p| p.to_string());
        CpuClock {
            threads: server.as_deref().and_then(thread_seconds),
            server: ProcessClock::start(server),
            own: ProcessClock::start(Some("self".to_owned())),
            idle: idle_seconds(),
            at: Instant::now(),
        }
    }

    /// What the CPUs did since `start`.
    fn cpu(&self) -> Cpu {
        let wall = self.at.elapsed().as_secs_f64();
        let mut threads: Vec<(String, f64)> = match (&self.threads, self.server.pid.as_deref()) {
            (Some(before), Some(pid)) => thread_seconds(pid)
                .unwrap_or_default()
                .into_iter()
                .map(|(name, now)| {
                    let then = before.get(&name).copied().unwrap_or(0.0);
                    let cores = ((now - then) / wall).max(0.0);
                    (name, cores)
                })
                .collect(),
            _ => Vec::new(),
        };
        threads.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Cpu {
            server: self.server.since_start(wall),
            own: self.own.since_start(wall),
            threads,
            idle: idle_seconds()
                .zip(self.idle)
                .map(|(now, then)| (now - then) / wall),
        }
    }
}

/// Print the CPU figures: the cores each process used, and how many more its
/// threads spent waiting for a CPU (a thread woken on a busy machine, or on a
/// virtual CPU that has to be woken first).
fn print_cores(cpu: &Cpu) {
    let show = |c: Option<f64>| c.map_or("?".to_owned(), |c| format!("{c:.2}"));
    println!(
        "cpu: server {} cores, load generator {} cores; waiting to run: server {}, load generator {}",
        show(cpu.server.running),
        show(cpu.own.running),
        show(cpu.server.waiting),
        show(cpu.own.waiting)
    );
}

/// Print where the CPU time went for each `unit` (an execution, a message)
/// done at `per_sec`: the server's busiest threads, the load generator, and
/// the machine's idle time. With `--pid` only.
fn print_per_unit(cpu: &Cpu, per_sec: f64, unit: &str) {
    let Some(own) = cpu.own.running else { return };
    if per_sec <= 0.0 || cpu.threads.is_empty() {
        return;
    }
    let us = |cores: f64| cores * 1e6 / per_sec;
    // The threads' clocks count nanoseconds, the process's ticks of 10 ms:
    // their sum is the server's figure here.
    let total: f64 = cpu.threads.iter().map(|(_, cores)| cores).sum();
    // Threads under 2% of the server's time are summed as "other".
    let (shown, rest): (Vec<_>, Vec<_>) = cpu.threads.iter().partition(|(_, c)| *c >= total * 0.02);
    let mut parts: Vec<String> = shown
        .iter()
        .map(|(name, c)| format!("{name} {:.2}", us(*c)))
        .collect();
    let other: f64 = rest.iter().map(|(_, c)| c).sum();
    if other > 0.0 {
        parts.push(format!("other {:.2}", us(other)));
    }
    let idle = cpu.idle.map_or("?".to_owned(), |idle| format!("{:.2}", us(idle)));
    println!(
        "cpu per {unit}: server {:.2} us ({}), load generator {:.2} us, machine idle {idle} us",
        us(total),
        parts.join(", "),
        us(own)
    );
}

/// `figures` with those of [`Cpu`], for the JSON line.
fn with_cpu(cpu: &Cpu, mut figures: Value) -> Value {
    let threads: serde_json::Map<String, Value> = cpu
        .threads
        .iter()
        .map(|(name, cores)| (name.clone(), json!(cores)))
        .collect();
    figures["server_cores"] = json!(cpu.server.running);
    figures["loadgen_cores"] = json!(cpu.own.running);
    figures["server_waiting_cores"] = json!(cpu.server.waiting);
    figures["loadgen_waiting_cores"] = json!(cpu.own.waiting);
    figures["server_thread_cores"] = Value::Object(threads);
    figures["idle_cores"] = json!(cpu.idle);
    figures
}

fn write_json(common: &Common, mut figures: Value) -> Result<(), String> {
    let Some(path) = &common.json else { return Ok(()) };
    figures["label"] = json!(common.label);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(file, "{figures}").map_err(|e| format!("{}: {e}", path.display()))
}

/// The value at quantile `q` of sorted nanoseconds, in microseconds.
fn quantile_us(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

// ---------------------------------------------------------------------------
// exec

struct ExecPlan {
    agent: String,
    /// The agent id as a JSON string literal.
    agent_json: String,
    formats: Vec<u8>,
    with_ids: bool,
    in_flight: usize,
    expect_actions: Option<usize>,
    timeout: Duration,
}

impl ExecPlan {
    fn request(&self, format: u8, id: Option<u64>) -> String {
        let agent = &self.agent_json;
        match (format, id) {
            (1, None) => format!(r#"{{"type":"websocket_execution","agent_id":{agent}}}"#),
            (1, Some(id)) => {
                format!(r#"{{"type":"websocket_execution","agent_id":{agent},"request_id":"{id}"}}"#)
            }
            (2, None) => format!(r#"{{"type":"execute","agent_id":{agent}}}"#),
            (2, Some(id)) => format!(r#"{{"type":"execute","agent_id":{agent},"request_id":"{id}"}}"#),
            (_, None) => format!(r#"{{"type":"execute","data":{{"agent_id":{agent}}}}}"#),
            (_, Some(id)) => {
                format!(r#"{{"type":"execute","data":{{"agent_id":{agent},"request_id":"{id}"}}}}"#)
            }
        }
    }
}

/// Whether answers are being counted, and whether to stop sending.
struct Control {
    recording: AtomicBool,
    stop: AtomicBool,
}

struct Pending {
    sent: Instant,
    recorded: bool,
    started: bool,
    execution_id: Option<String>,
    /// Also decode its answers with the library's full decoder.
    strict: bool,
}

#[derive(Default)]
struct ExecResult {
    latencies: Vec<u32>,
    completed: u64,
    violations: Violations,
    error: Option<String>,
}

async fn exec(args: ExecArgs) -> Result<bool, String> {
    if args.connections == 0 || args.in_flight == 0 {
        return Err("--connections and --in-flight must be at least 1".into());
    }
    if let Some(bad) = args.formats.iter().find(|f| !(1..=3).contains(*f)) {
        return Err(format!("unknown request format {bad} (expected 1, 2 or 3)"));
    }
    let plan = Arc::new(ExecPlan {
        agent_json: serde_json::to_string(&args.agent).expect("a string serializes"),
        agent: args.agent.clone(),
        formats: args.formats.clone(),
        with_ids: args.request_ids || args.in_flight > 1,
        in_flight: args.in_flight,
        expect_actions: args.expect_actions,
        timeout: Duration::from_secs_f64(args.timeout),
    });
    let counted = args.requests.is_some();
    let control = Arc::new(Control {
        recording: AtomicBool::new(counted),
        stop: AtomicBool::new(false),
    });
    let url: Arc<str> = args.common.url.clone().into();

    // Connect every connection first, so that handshakes are not measured.
    let mut sockets = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        sockets.push(connect(&url, 16 * 1024).await?);
    }
    let began = Instant::now();
    let mut tasks = Vec::with_capacity(args.connections);
    for (index, ws) in sockets.into_iter().enumerate() {
        let quota = args.requests.map(|total| {
            let n = args.connections as u64;
            total / n + u64::from((index as u64) < total % n)
        });
        tasks.push(tokio::spawn(exec_connection(
            Frames::new(ws, 16 * 1024, index as u32 + 1),
            index,
            quota,
            plan.clone(),
            control.clone(),
        )));
    }

    let (window, clock) = if counted {
        (None, CpuClock::start(args.common.pid))
    } else {
        tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
        control.recording.store(true, Ordering::Relaxed);
        let clock = CpuClock::start(args.common.pid);
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
        control.stop.store(true, Ordering::Relaxed);
        (Some(t0.elapsed()), clock)
    };
    let cpu = if counted { Cpu::default() } else { clock.cpu() };

    let mut latencies = Vec::new();
    let mut completed = 0;
    let mut violations = Violations::default();
    let mut errors = Vec::new();
    for task in tasks {
        let result = task.await.map_err(|e| e.to_string())?;
        latencies.extend_from_slice(&result.latencies);
        completed += result.completed;
        violations.merge(result.violations);
        errors.extend(result.error);
    }
    let elapsed = window.unwrap_or_else(|| began.elapsed());
    let cpu = if counted { clock.cpu() } else { cpu };
    latencies.sort_unstable();
    let rate = completed as f64 / elapsed.as_secs_f64();
    let [p50, p90, p99, p999] = [0.50, 0.90, 0.99, 0.999].map(|q| quantile_us(&latencies, q));
    let max = latencies.last().map_or(0.0, |&ns| f64::from(ns) / 1000.0);
    let formats: Vec<String> = args.formats.iter().map(u8::to_string).collect();

    println!(
        "exec: {} connections x {} in flight, formats {}, agent {:?}, {:.1} s measured",
        args.connections,
        args.in_flight,
        formats.join("/"),
        args.agent,
        elapsed.as_secs_f64()
    );
    println!("executions: {completed} ({rate:.0}/s)");
    println!(
        "latency: p50 {p50:.1} us, p90 {p90:.1} us, p99 {p99:.1} us, p99.9 {p999:.1} us, max {max:.1} us ({} samples)",
        latencies.len()
    );
    print_cores(&cpu);
    print_per_unit(&cpu, rate, "execution");
    violations.print();
    for error in &errors {
        println!("connection error: {error}");
    }
    write_json(
        &args.common,
        with_cpu(
            &cpu,
            json!({
                "mode": "exec",
                "connections": args.connections,
                "in_flight": args.in_flight,
                "seconds": elapsed.as_secs_f64(),
                "executions": completed,
                "per_sec": rate,
                "p50_us": p50,
                "p90_us": p90,
                "p99_us": p99,
                "p999_us": p999,
                "max_us": max,
                "violations": violations.count,
                "errors": errors.len(),
            }),
        ),
    )?;
    Ok(violations.count == 0 && errors.is_empty() && completed > 0)
}

async fn exec_connection(
    mut ws: Frames,
    index: usize,
    quota: Option<u64>,
    plan: Arc<ExecPlan>,
    control: Arc<Control>,
) -> ExecResult {
    let mut out = ExecResult::default();
    let mut pending: HashMap<u64, Pending> = HashMap::with_capacity(plan.in_flight * 2);
    let mut next: u64 = 0;
    loop {
        // Fill the window.
        let mut fed = false;
        while pending.len() < plan.in_flight
            && !control.stop.load(Ordering::Relaxed)
            && quota.is_none_or(|q| next < q)
        {
            let format = plan.formats[(index + next as usize) % plan.formats.len()];
            ws.queue_text(&plan.request(format, plan.with_ids.then_some(next)));
            pending.insert(
                next,
                Pending {
                    sent: Instant::now(),
                    recorded: control.recording.load(Ordering::Relaxed),
                    started: false,
                    execution_id: None,
                    strict: next == 0,
                },
            );
            next += 1;
            fed = true;
        }
        if fed && let Err(e) = ws.flush().await {
            out.error = Some(format!("send failed: {e}"));
            return out;
        }
        if pending.is_empty() {
            break;
        }

        let text = match tokio::time::timeout(plan.timeout, ws.next_text()).await {
            Err(_) => {
                out.violations.add(format!(
                    "no answer within {:?} with {} requests pending",
                    plan.timeout,
                    pending.len()
                ));
                return out;
            }
            Ok(Ok(None)) => {
                out.violations.add(format!(
                    "connection closed with {} requests pending",
                    pending.len()
                ));
                return out;
            }
            Ok(Err(ReadError::Io(e))) => {
                out.error = Some(format!("read failed: {e}"));
                return out;
            }
            Ok(Err(ReadError::Protocol(what))) => {
                out.violations.add(what);
                return out;
            }
            Ok(Ok(Some(text))) => text,
        };
        let now = Instant::now();
        check_exec_answer(&plan, &control, &mut pending, &mut out, text, now);
    }
    ws.close().await;
    out
}

fn check_exec_answer(
    plan: &ExecPlan,
    control: &Control,
    pending: &mut HashMap<u64, Pending>,
    out: &mut ExecResult,
    text: &str,
    now: Instant,
) {
    let view: View = match serde_json::from_str(text) {
        Ok(view) => view,
        Err(e) => {
            return out
                .violations
                .add(format!("not a JSON message ({e}): {}", clip(text)));
        }
    };
    if view.ty != "execution_response" {
        return out
            .violations
            .add(format!("unexpected `{}`: {}", view.ty, clip(text)));
    }
    let Some(data) = view.data else {
        return out.violations.add(format!("no `data`: {}", clip(text)));
    };
    let key = if plan.with_ids {
        match data.request_id.as_deref().and_then(|r| r.parse::<u64>().ok()) {
            Some(key) => key,
            None => {
                return out
                    .violations
                    .add(format!("no request_id of ours: {}", clip(text)));
            }
        }
    } else {
        match pending.keys().next() {
            Some(&key) => key,
            None => {
                return out
                    .violations
                    .add(format!("an answer with no request pending: {}", clip(text)));
            }
        }
    };
    let Some(request) = pending.get_mut(&key) else {
        return out
            .violations
            .add(format!("an answer to no pending request: {}", clip(text)));
    };
    if request.strict
        && let Err(e) = ServerMessage::decode(text)
    {
        out.violations.add(format!(
            "not a valid server message ({}): {}",
            e.message,
            clip(text)
        ));
    }
    if data.agent_id.as_deref() != Some(plan.agent.as_str()) {
        out.violations
            .add(format!("wrong or missing agent_id: {}", clip(text)));
    }
    if data.success != Some(true) {
        out.violations.add(format!("success is not true: {}", clip(text)));
    }
    match data.status.as_deref() {
        Some("started") => {
            if request.started {
                out.violations.add(format!("a second `started`: {}", clip(text)));
            }
            request.started = true;
            request.execution_id = data.execution_id.map(Cow::into_owned);
        }
        Some("completed") => {
            if !request.started {
                out.violations
                    .add(format!("`completed` before `started`: {}", clip(text)));
            }
            if request.execution_id.is_some()
                && data.execution_id.as_deref() != request.execution_id.as_deref()
            {
                out.violations.add(format!(
                    "execution_id differs from the started one: {}",
                    clip(text)
                ));
            }
            let count = data.results.as_ref().map(Vec::len);
            if data.execution_count != count.map(|c| c as u64) {
                out.violations.add(format!(
                    "execution_count is not the number of results: {}",
                    clip(text)
                ));
            }
            if let Some(expected) = plan.expect_actions
                && count != Some(expected)
            {
                out.violations
                    .add(format!("expected {expected} results: {}", clip(text)));
            }
            let request = pending.remove(&key).expect("looked up above");
            if control.recording.load(Ordering::Relaxed) && !control.stop.load(Ordering::Relaxed) {
                out.completed += 1;
                if request.recorded {
                    let ns = now.duration_since(request.sent).as_nanos();
                    out.latencies.push(u32::try_from(ns).unwrap_or(u32::MAX));
                }
            }
        }
        _ => out.violations.add(format!("unknown status: {}", clip(text))),
    }
}

// ---------------------------------------------------------------------------
// idle

async fn idle(args: IdleArgs) -> Result<bool, String> {
    let url = args.common.url.as_str();
    let before = args.common.pid.and_then(rss_kib);
    let own_before = rss_kib(std::process::id());
    let began = Instant::now();
    let opened: Vec<Result<Ws, String>> = stream::iter(0..args.connections)
        .map(|_| connect(url, 1024))
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let open_time = began.elapsed();
    let mut sockets = Vec::with_capacity(opened.len());
    let mut errors = Vec::new();
    for result in opened {
        match result {
            Ok(ws) => sockets.push(ws),
            Err(e) => errors.push(e),
        }
    }
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let after = args.common.pid.and_then(rss_kib);
    let own_after = rss_kib(std::process::id());

    // Every connection must still answer: a WebSocket ping, which every server answers.
    let alive = stream::iter(sockets.iter_mut())
        .map(|ws| async move {
            if ws
                .send(Message::Ping(Bytes::from_static(b"bench")))
                .await
                .is_err()
            {
                return false;
            }
            loop {
                match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                    Ok(Some(Ok(Message::Pong(_)))) => return true,
                    Ok(Some(Ok(Message::Ping(_) | Message::Text(_) | Message::Binary(_)))) => {}
                    _ => return false,
                }
            }
        })
        .buffer_unordered(512)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    let held = sockets.len();
    drop(sockets);

    let per_connection = match (before, after) {
        (Some(b), Some(a)) if held > 0 => Some((a as f64 - b as f64) / held as f64),
        _ => None,
    };
    let own_per_connection = match (own_before, own_after) {
        (Some(b), Some(a)) if held > 0 => Some((a as f64 - b as f64) / held as f64),
        _ => None,
    };
    println!(
        "idle: {held} of {} connections opened in {:.2} s, held {:.1} s; {alive} answered a ping afterwards",
        args.connections,
        open_time.as_secs_f64(),
        args.hold
    );
    match (before, after, per_connection) {
        (Some(b), Some(a), Some(per)) => {
            println!("server RSS: {b} KiB before, {a} KiB after: {per:.2} KiB per connection")
        }
        _ => println!("server RSS: unknown (give --pid)"),
    }
    if let Some(own) = own_per_connection {
        println!("load generator: {own:.2} KiB per connection");
    }
    for error in errors.iter().take(5) {
        println!("connection error: {error}");
    }
    write_json(
        &args.common,
        json!({
            "mode": "idle",
            "connections": args.connections,
            "held": held,
            "alive": alive,
            "open_seconds": open_time.as_secs_f64(),
            "rss_before_kib": before,
            "rss_after_kib": after,
            "kib_per_connection": per_connection,
            "errors": errors.len(),
        }),
    )?;
    Ok(errors.is_empty() && alive == held)
}

// ---------------------------------------------------------------------------
// fanout

/// Read frames until a `command_response`; its `agent_id`, or why it failed.
async fn command(ws: &mut Ws, text: String, timeout: Duration) -> Result<Option<String>, String> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| format!("send failed: {e}"))?;
    loop {
        let frame = tokio::time::timeout(timeout, ws.next())
            .await
            .map_err(|_| "no command_response".to_owned())?
            .ok_or("connection closed")?
            .map_err(|e| format!("read failed: {e}"))?;
        let Message::Text(text) = frame else { continue };
        let view: View =
            serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {}", clip(&text)))?;
        if view.ty != "command_response" {
            return Err(format!("expected command_response: {}", clip(&text)));
        }
        if !view.status.as_deref().unwrap_or("").starts_with("OK") {
            return Err(format!("command refused: {}", clip(&text)));
        }
        return Ok(view.agent_id.map(Cow::into_owned));
    }
}

#[derive(Default)]
struct FanoutResult {
    frames: u64,
    steps: u64,
    last: Option<Instant>,
    violations: Violations,
}

/// Read steps until `steps` have ended; the sender (`send` set) also sends the
/// user messages, `window` steps ahead.
async fn fanout_connection(
    mut ws: Frames,
    steps: u64,
    send: Option<(u64, String)>,
    expect_responses: Option<u32>,
    timeout: Duration,
) -> FanoutResult {
    let mut out = FanoutResult::default();
    let mut sent = 0;
    let message = |n: u64, target: &str| {
        json!({"type": "user_message", "message": format!("hello {n}"), "agent_name": target}).to_string()
    };
    if let Some((window, target)) = &send {
        while sent < (*window).min(steps) {
            ws.queue_text(&message(sent, target));
            sent += 1;
        }
        if let Err(e) = ws.flush().await {
            out.violations.add(format!("send failed: {e}"));
            return out;
        }
    }
    let mut in_step = false;
    let mut responses = 0u32;
    while out.steps < steps {
        let text = match tokio::time::timeout(timeout, ws.next_text()).await {
            Ok(Ok(Some(text))) => text,
            Ok(Err(e)) => {
                out.violations.add(format!("after {} steps: {e}", out.steps));
                break;
            }
            Ok(Ok(None)) => {
                out.violations
                    .add(format!("connection closed after {} steps", out.steps));
                break;
            }
            Err(_) => {
                out.violations.add(format!(
                    "nothing for {timeout:?}: saw {} of {steps} steps",
                    out.steps
                ));
                break;
            }
        };
        out.frames += 1;
        out.last = Some(Instant::now());
        let view: View = match serde_json::from_str(text) {
            Ok(view) => view,
            Err(e) => {
                out.violations.add(format!("not JSON ({e}): {}", clip(text)));
                continue;
            }
        };
        match &*view.ty {
            "agent_response_start" => {
                if in_step {
                    out.violations.add("a step started inside another");
                }
                in_step = true;
                responses = 0;
            }
            "agent_response" => {
                if !in_step {
                    out.violations.add("agent_response outside a step");
                }
                responses += 1;
            }
            "agent_response_end" => {
                if !in_step {
                    out.violations.add("agent_response_end outside a step");
                }
                if let Some(expected) = expect_responses
                    && responses != expected
                {
                    out.violations.add(format!(
                        "a step with {responses} agent_responses, expected {expected}"
                    ));
                }
                in_step = false;
                out.steps += 1;
                if let Some((_, target)) = &send
                    && sent < steps
                {
                    ws.queue_text(&message(sent, target));
                    if let Err(e) = ws.flush().await {
                        out.violations.add(format!("send failed: {e}"));
                        break;
                    }
                    sent += 1;
                }
            }
            other => out
                .violations
                .add(format!("unexpected `{other}` during steps: {}", clip(text))),
        }
    }
    ws.close().await;
    out
}

async fn fanout(args: FanoutArgs) -> Result<bool, String> {
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    let url = args.common.url.as_str();
    let timeout = Duration::from_secs_f64(args.timeout);
    let name = args.name.clone().unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("bench-fanout-{}-{nanos}", std::process::id())
    });
    let mut sender = connect(url, 16 * 1024).await?;
    let create = json!({"type": "command", "command": "create_agent", "config": {"name": name}}).to_string();
    command(&mut sender, create, timeout).await?;
    let load = json!({"type": "command", "command": "load_agent", "name": name}).to_string();
    let attached: Vec<Result<Ws, String>> = stream::iter(1..args.connections)
        .map(|_| {
            let load = load.clone();
            async move {
                let mut ws = connect(url, 4096).await?;
                command(&mut ws, load, timeout).await?;
                Ok(ws)
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let receivers = attached.into_iter().collect::<Result<Vec<Ws>, String>>()?;

    let clock = CpuClock::start(args.common.pid);
    let began = Instant::now();
    let mut tasks = Vec::with_capacity(args.connections);
    for (index, ws) in receivers.into_iter().enumerate() {
        tasks.push(tokio::spawn(fanout_connection(
            Frames::new(ws, 4096, index as u32 + 1),
            args.steps,
            None,
            args.expect_responses,
            timeout,
        )));
    }
    tasks.push(tokio::spawn(fanout_connection(
        Frames::new(sender, 16 * 1024, 0),
        args.steps,
        Some((args.window.max(1), name.clone())),
        args.expect_responses,
        timeout,
    )));
    let mut frames = 0;
    let mut complete = 0;
    let mut last = began;
    let mut violations = Violations::default();
    for task in tasks {
        let result = task.await.map_err(|e| e.to_string())?;
        frames += result.frames;
        complete += u64::from(result.steps == args.steps);
        if let Some(at) = result.last {
            last = last.max(at);
        }
        violations.merge(result.violations);
    }
    let elapsed = last.duration_since(began).as_secs_f64().max(1e-9);
    let cpu = clock.cpu();
    let rate = frames as f64 / elapsed;
    let steps_rate = args.steps as f64 / elapsed;
    println!(
        "fanout: {} connections on agent {name:?}, {} steps ({} in flight) in {elapsed:.2} s",
        args.connections, args.steps, args.window
    );
    println!(
        "delivered: {frames} messages ({rate:.0}/s), {steps_rate:.0} steps/s; {complete} of {} connections saw every step",
        args.connections
    );
    print_cores(&cpu);
    print_per_unit(&cpu, rate, "message");
    violations.print();
    write_json(
        &args.common,
        with_cpu(
            &cpu,
            json!({
                "mode": "fanout",
                "connections": args.connections,
                "steps": args.steps,
                "seconds": elapsed,
                "messages": frames,
                "per_sec": rate,
                "steps_per_sec": steps_rate,
                "complete": complete,
                "violations": violations.count,
            }),
        ),
    )?;
    Ok(violations.count == 0 && complete == args.connections as u64)
}
