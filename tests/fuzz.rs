//! A bounded mutation fuzzer for the four decoders.
//!
//! Seeds are every example message and every invalid fixture; each round
//! mutates one (flip, insert, delete, duplicate, splice with another seed,
//! wrap in deep nesting, swap a value for a hostile one) and feeds it to
//! `ClientMessage`, `ServerMessage`, `AgentInput` and `AgentOutput`. A panic
//! fails the test; so does a decoded message that does not survive
//! encode → decode unchanged, or an error without a message.
//!
//! `FUZZ_SECONDS` bounds the run (default 3; `scripts/test-all` gives it 30).
//! `FUZZ_SEED` replays a run. The figures are printed.

mod common;

use std::time::{Duration, Instant};

use agentwire::protocol::*;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for dir in ["schema/examples", "tests/fixtures/invalid/client"] {
        let mut stack = vec![common::repo().join(dir)];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else if path.extension().is_some_and(|e| e == "json") {
                seeds.push(std::fs::read(&path).unwrap());
            }
        }
    }
    assert!(seeds.len() > 100, "too few seeds: {}", seeds.len());
    seeds
}

const HOSTILE: &[&str] = &[
    "null",
    "-1",
    "4294967296",
    "1e999",
    "\"\\ud800\"",
    "[]",
    "{}",
    "\"\"",
    "true",
    "18446744073709551616",
    "\"\\u0000\"",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(8) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => data.insert(at, rng.next() as u8),
            2 if at < data.len() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            3 if at < data.len() => {
                let end = (at + 1 + rng.below(64)).min(data.len());
                let chunk = data[at..end].to_vec();
                data.splice(at..at, chunk);
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let to = (from + rng.below(other.len() - from + 1)).min(other.len());
                data.splice(at..at, other[from..to].iter().copied());
            }
            5 => {
                let depth = 1 + rng.below(5000);
                let (open, close) = if rng.below(2) == 0 {
                    ("[", "]")
                } else {
                    ("{\"a\":", "}")
                };
                let wrapped = format!(
                    "{}{}{}",
                    open.repeat(depth),
                    String::from_utf8_lossy(&data),
                    close.repeat(depth)
                );
                data = wrapped.into_bytes();
            }
            6 => {
                // Replace the value after a colon with a hostile one.
                let from = at.min(data.len());
                if let Some(colon) = data[from..].iter().position(|b| *b == b':') {
                    let start = from + colon + 1;
                    let end = data[start..]
                        .iter()
                        .position(|b| matches!(b, b',' | b'}'))
                        .map_or(data.len(), |p| start + p);
                    let value = HOSTILE[rng.below(HOSTILE.len())].as_bytes();
                    data.splice(start..end, value.iter().copied());
                }
            }
            _ => {
                let long = "x".repeat(1 + rng.below(100_000));
                data.splice(at..at, long.into_bytes());
            }
        }
    }
    data
}

macro_rules! check {
    ($ty:ty, $text:expr, $decoded:expr) => {{
        let text: &str = $text;
        match <$ty>::decode(text) {
            Ok(message) => {
                let again = <$ty>::decode(&message.encode()).unwrap_or_else(|e| {
                    panic!("{} re-decode failed: {e}\ninput: {text:.300}", stringify!($ty))
                });
                assert_eq!(
                    again,
                    message,
                    "{} round trip changed\ninput: {text:.300}",
                    stringify!($ty)
                );
                $decoded += 1;
            }
            Err(error) => assert!(!error.message.is_empty(), "empty error for {text:.300}"),
        }
    }};
}

#[test]
fn decoders_survive_mutated_messages() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let seeds = seeds();
    let mut rng = Rng(seed);
    let until = Instant::now() + Duration::from_secs(seconds);
    let (mut inputs, mut decoded, mut utf8) = (0u64, 0u64, 0u64);
    while Instant::now() < until {
        for _ in 0..256 {
            let data = mutate(&mut rng, &seeds);
            inputs += 1;
            // Frames arrive as UTF-8 text; invalid bytes are the socket layer's to refuse.
            let Ok(text) = std::str::from_utf8(&data) else {
                continue;
            };
            utf8 += 1;
            let result = std::panic::catch_unwind(|| {
                let mut decoded = 0u64;
                check!(ClientMessage, text, decoded);
                check!(ServerMessage, text, decoded);
                check!(AgentInput, text, decoded);
                check!(AgentOutput, text, decoded);
                decoded
            });
            match result {
                Ok(n) => decoded += n,
                Err(_) => panic!("FUZZ_SEED={seed}: a decoder panicked on input {:.500}", text),
            }
        }
    }
    println!(
        "fuzz: {inputs} inputs in {seconds} s ({:.0}/s), {utf8} valid UTF-8, {decoded} decoded and round-tripped; FUZZ_SEED={seed}",
        inputs as f64 / seconds as f64
    );
    assert!(
        decoded > 0,
        "no mutated input decoded: the mutations are too destructive to test anything"
    );
}
