"""The figures of one or more `scripts/bench` runs, from their JSON lines.

    python3 bench/figures.py target/bench/results.jsonl             # one run (what scripts/bench prints)
    python3 bench/figures.py run1/results.jsonl run2/results.jsonl  # several runs, their rounds pooled

Each file is one run; each line one `agentwire bench` result labelled
`server/scenario[/round]`. Prints a table of medians over every round of every
file, where one execution's CPU goes on agentwire's threads (SQLite and
`:memory:`), and the paired ratios the targets are read from: in each round
the servers run one after the other, seconds apart, so the ratio of a round's
pair is less exposed to the machine's drift than the ratio of the medians.
Pairs are matched by run and round, so pooling runs pools pairs, never mixes
one run's round with another's. After each paired median comes an interval
for it (`median_interval`). Standard library only.
"""

import json
import math
import statistics
import sys

NAMES = {
    "ours": "agentwire (SQLite)",
    "ours-mem": "agentwire (:memory:)",
    "python": "Python + websockets",
    "node": "Node + ws",
    "bare": "bare tokio-tungstenite",
}

# (title, scenario, key, format, higher is better; None: no ratio)
METRICS = [
    ("exec, 32 conns: executions/s", "exec32", "per_sec", "{:,.0f}", True),
    ("exec, 32 conns: p50 latency (µs)", "exec32", "p50_us", "{:,.0f}", False),
    ("exec, 32 conns: p99 latency (µs)", "exec32", "p99_us", "{:,.0f}", False),
    ("exec, 32 conns: p99.9 latency (µs)", "exec32", "p999_us", "{:,.0f}", False),
    ("exec, 32 conns: server CPU (cores)", "exec32", "server_cores", "{:.2f}", None),
    ("exec, 32 conns: server CPU per execution (µs)", "exec32", "server_us", "{:.2f}", False),
    ("exec, 1 conn: executions/s", "exec1", "per_sec", "{:,.0f}", True),
    ("exec, 1 conn: p50 latency (µs)", "exec1", "p50_us", "{:,.1f}", False),
    ("exec, 1 conn: p99 latency (µs)", "exec1", "p99_us", "{:,.1f}", False),
    ("idle: KiB per connection", "idle", "kib_per_connection", "{:,.2f}", False),
    ("fan-out: messages delivered/s", "fanout", "per_sec", "{:,.0f}", True),
]

# (title, numerator server, denominator server, key): exec with 32 connections.
PAIRED = [
    (":memory: / SQLite, executions/s", "ours-mem", "ours", "per_sec"),
    ("ours / Python, executions/s", "ours", "python", "per_sec"),
    ("ours / Node, executions/s", "ours", "node", "per_sec"),
    ("Node's p99 / ours", "node", "ours", "p99_us"),
    ("ours / bare, executions/s", "ours", "bare", "per_sec"),
]


def load(paths):
    """Every result of every file, with `run` (the file's index), `server`,
    `scenario`, `round` (None when unlabelled) and `server_us` (the server's
    CPU per execution, from its threads' clocks) added."""
    rows = []
    for run, path in enumerate(paths):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                parts = r["label"].split("/")
                r["run"], r["server"], r["scenario"] = run, parts[0], parts[1]
                r["round"] = parts[2] if len(parts) > 2 else None
                threads = r.get("server_thread_cores")
                if threads and r.get("per_sec"):
                    r["server_us"] = per_exec(r, sum(threads.values()))
                rows.append(r)
    return rows


def group(rows):
    """`server/scenario` → its results, in file order."""
    by = {}
    for r in rows:
        by.setdefault(f"{r['server']}/{r['scenario']}", []).append(r)
    return by


def paired_ratios(rows, a, b, key, scenario="exec32"):
    """`a`'s `key` over `b`'s, one ratio per (run, round) both measured."""
    theirs = {(r["run"], r["round"]): r for r in rows if r["server"] == b and r["scenario"] == scenario}
    each = []
    for x in rows:
        y = theirs.get((x["run"], x["round"]))
        if x["server"] == a and x["scenario"] == scenario and y and x.get(key) and y.get(key):
            each.append(x[key] / y[key])
    return each


def median_interval(xs, level=0.90):
    """How far the median of the rounds can be trusted: the j-th smallest
    to the j-th largest value, for the largest j whose chance of holding the
    true median (1 - 2 P(Binomial(n, 1/2) < j), whatever the noise's shape)
    is at least `level`, as (low, high, coverage). None with fewer than 5."""
    xs, n, best = sorted(xs), len(xs), None
    for j in range(1, n // 2 + 1):
        cover = 1 - 2 * sum(math.comb(n, i) for i in range(j)) / 2**n
        if cover >= level:
            best = (xs[j - 1], xs[n - j], cover)
    return best


def fmt(f, v):
    """`v` in format `f`, or a dash when it was not measured."""
    return "—" if v is None else f.format(v)


def ratio(a, b, higher_better):
    """How many times better ours (`a`) is than `b`: above 1 means ours wins."""
    if a is None or b is None or b == 0 or higher_better is None:
        return "—"
    return f"{a / b:.2f}×" if higher_better else f"{b / a:.2f}×" if a else "—"


def per_exec(r, cores):
    """`cores` of a result as µs of CPU per execution."""
    return None if cores is None or not r.get("per_sec") else cores * 1e6 / r["per_sec"]


def table(head, lines):
    """A Markdown table."""
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for cells in lines:
        print("| " + " | ".join(cells) + " |")
    print()


def report(rows, runs=1):
    """Print the figures of `rows` (from `runs` files); False if any run broke the protocol."""
    by = group(rows)
    servers = list(dict.fromkeys(r["server"] for r in rows))

    def get(server, scenario, key):
        values = [r[key] for r in by.get(f"{server}/{scenario}", []) if r.get(key) is not None]
        return statistics.median(values) if values else None

    both = "ours" in servers and "ours-mem" in servers
    ours = "ours" if "ours" in servers else (servers[0] if servers else None)
    others = [s for s in ("python", "node", "bare") if s in servers]
    head = ["figure"] + [NAMES.get(s, s) for s in servers] + [f"ours vs {NAMES[s].split()[0]}" for s in others]
    if both:
        head.append(":memory: / SQLite")
    lines = []
    for title, scenario, key, f, higher in METRICS:
        cells = [title] + [fmt(f, get(s, scenario, key)) for s in servers]
        cells += [ratio(get(ours, scenario, key), get(s, scenario, key), higher) for s in others]
        if both:
            a, b = get("ours-mem", scenario, key), get("ours", scenario, key)
            cells.append("—" if a is None or not b or higher is None else f"{a / b:.2f}")
        lines.append(cells)
    table(head, lines)

    # Where the CPU time of one execution goes (exec, 32 connections), from
    # the per-thread clocks `bench --pid` reads: medians over the rounds, in µs.
    ours_both = [s for s in ("ours", "ours-mem") if by.get(f"{s}/exec32") and by[f"{s}/exec32"][0].get("server_thread_cores")]
    if ours_both:
        threads = sorted({n for s in ours_both for r in by[f"{s}/exec32"] for n in r["server_thread_cores"] if n.startswith("agentwire-")})

        def cell(s, f):
            values = [v for v in (f(r) for r in by[f"{s}/exec32"]) if v is not None]
            return statistics.median(values) if values else None

        parts = [(n, lambda r, n=n: per_exec(r, r["server_thread_cores"].get(n, 0.0))) for n in threads]
        parts.append(("other server threads", lambda r: per_exec(r, sum(c for n, c in r["server_thread_cores"].items() if n not in threads))))
        parts.append(("load generator", lambda r: per_exec(r, r.get("loadgen_cores"))))
        parts.append(("machine idle", lambda r: per_exec(r, r.get("idle_cores"))))
        head = ["CPU µs per execution (exec, 32 conns)"] + [NAMES[s] for s in ours_both]
        if len(ours_both) == 2:
            head.append("SQLite − :memory:")
        lines = []
        for title, f in parts:
            values = [cell(s, f) for s in ours_both]
            cells = [title] + [fmt("{:.2f}", v) for v in values]
            if len(ours_both) == 2:
                cells.append("—" if None in values else f"{values[0] - values[1]:+.2f}")
            lines.append(cells)
        table(head, lines)

    rounds = max(len(v) for v in by.values()) if by else 0
    pooled = f" from {runs} runs" if runs > 1 else ""
    print(f"medians of {rounds} rounds{pooled}; ratios above 1× mean agentwire (SQLite) is better (more per second, or less latency/memory).")
    for key in sorted(by):
        if len(by[key]) > 1 and by[key][0].get("per_sec"):
            spread = ", ".join(f"{r['per_sec']:,.0f}" for r in by[key])
            print(f"  {key}: per second in each round: {spread}")
    for title, a, b, key in PAIRED:
        each = paired_ratios(rows, a, b, key)
        if each:
            interval = median_interval(each)
            within = f"; {interval[2]:.0%} interval {interval[0]:.3f}-{interval[1]:.3f}" if interval else ""
            print(f"  {title}, exec 32 conns, round by round: {', '.join(f'{x:.3f}' for x in each)} (median {statistics.median(each):.3f}{within})")
    bad = [f"{r['label']}" + (f" (file {r['run'] + 1})" if runs > 1 else "") for r in rows if r.get("violations") or r.get("errors")]
    print("protocol violations or errors in: " + (", ".join(bad) if bad else "none"))
    return not bad


def main(paths):
    """The command: exit code 0, 1 on a protocol violation, 2 without files."""
    if not paths:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: python3 bench/figures.py RESULTS.jsonl [MORE.jsonl ...]", file=sys.stderr)
        return 2
    return 0 if report(load(paths), runs=len(paths)) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
