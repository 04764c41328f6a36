"""bench/figures.py, which prints the benchmark's figures and pools runs:
pairs are matched by run and round, and the interval after each paired
median is the order statistics the coverage formula names.
"""

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("figures", REPO / "bench" / "figures.py")
figures = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(figures)


def write_run(path, results):
    """A results file: (label, per_sec, extra fields) per line."""
    with open(path, "w", encoding="utf-8") as f:
        for label, per_sec, extra in results:
            f.write(json.dumps({"label": label, "mode": label.split("/")[1], "per_sec": per_sec, **extra}) + "\n")
    return path


def test_pairs_are_matched_by_run_and_round_never_by_position(tmp_path):
    # Run 1 measured `ours` in rounds 1 and 2 but `ours-mem` only in round 2;
    # run 2 lists its rounds out of order. Pairing by position would divide
    # 200 by 100 and 330 by 110.
    one = write_run(tmp_path / "one.jsonl", [
        ("ours/exec32/1", 100, {}),
        ("ours/exec32/2", 110, {}),
        ("ours-mem/exec32/2", 121, {}),
    ])
    two = write_run(tmp_path / "two.jsonl", [
        ("ours-mem/exec32/2", 330, {}),
        ("ours-mem/exec32/1", 200, {}),
        ("ours/exec32/1", 160, {}),
        ("ours/exec32/2", 300, {}),
    ])
    rows = figures.load([one, two])
    assert sorted(figures.paired_ratios(rows, "ours-mem", "ours", "per_sec")) == [1.1, 1.1, 1.25]
    # The same file twice is two runs: each pair counted once per run.
    assert figures.paired_ratios(figures.load([one, one]), "ours-mem", "ours", "per_sec") == [1.1, 1.1]


def test_load_reads_rounds_and_the_servers_cpu_per_execution(tmp_path):
    path = write_run(tmp_path / "run.jsonl", [
        ("ours/idle", None, {"kib_per_connection": 4.3}),
        ("ours/exec32/3", 50_000, {"server_thread_cores": {"agentwire-io-0": 0.5, "agentwire-store": 0.25}}),
    ])
    idle, exec32 = figures.load([path])
    assert (idle["server"], idle["scenario"], idle["round"], idle["run"]) == ("ours", "idle", None, 0)
    assert "server_us" not in idle
    assert exec32["round"] == "3"
    assert abs(exec32["server_us"] - 15.0) < 1e-9  # 0.75 cores / 50,000 per second


def test_the_median_interval_is_the_order_statistics_its_coverage_names():
    xs = [8, 3, 5, 1, 7, 2, 6, 4]
    # 8 rounds: the 2nd to the 7th, 1 - 2 (1 + 8) / 256.
    assert figures.median_interval(xs) == (2, 7, 1 - 18 / 256)
    # 4 rounds cannot reach 90%: 1 - 2 / 16 = 87.5%.
    assert figures.median_interval([1, 2, 3, 4]) is None
    # 5 rounds: the whole range, 1 - 2 / 32.
    assert figures.median_interval([5, 1, 4, 2, 3]) == (1, 5, 1 - 2 / 32)
    # 24 rounds (three runs of 8 pooled): the 8th to the 17th; the 9th would cover less than 90%.
    low, high, cover = figures.median_interval(list(range(1, 25)))
    assert (low, high) == (8, 17) and 0.9 <= cover < 0.96


def test_pooled_runs_name_the_file_of_a_violation_and_fail(tmp_path, capsys):
    good = write_run(tmp_path / "good.jsonl", [("ours/exec32/1", 100, {}), ("ours-mem/exec32/1", 104, {})])
    bad = write_run(tmp_path / "bad.jsonl", [("ours/exec32/1", 100, {"violations": 3}), ("ours-mem/exec32/1", 106, {})])
    assert figures.main([str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "medians of 2 rounds from 2 runs" in out
    assert ":memory: / SQLite, executions/s, exec 32 conns, round by round: 1.040, 1.060 (median 1.050)" in out
    assert "protocol violations or errors in: ours/exec32/1 (file 2)" in out
    assert figures.main([str(good)]) == 0
    assert "protocol violations or errors in: none" in capsys.readouterr().out
