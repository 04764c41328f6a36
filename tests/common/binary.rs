//! `agentwire serve` as a child process, for the tests of the binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The built `agentwire` binary.
pub fn agentwire() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agentwire"))
}

/// `agentwire serve` on 127.0.0.1 and an ephemeral port; killed on drop.
pub struct Serve {
    /// The process.
    pub child: Child,
    /// `ws://127.0.0.1:<port>`, read from its first line.
    pub url: String,
}

impl Serve {
    /// Start it on `db` with the agents file `agents` (or the demo agents) and
    /// `extra` flags; returns once it listens.
    pub fn start(db: &Path, agents: Option<&Path>, extra: &[&str]) -> Serve {
        let mut command = agentwire();
        command
            .args(["serve", "--host", "127.0.0.1", "--port", "0", "--db"])
            .arg(db);
        if let Some(agents) = agents {
            command.arg("--agents").arg(agents);
        }
        let mut child = command
            .args(extra)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("agentwire listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Serve { child, url }
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("ws://")
    }

    /// Send a signal by name (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// The exit code, waiting at most `within`.
    pub fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let until = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < until,
                "the server did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
