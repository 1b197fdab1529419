"""bench.py end to end in quick mode with very small counts: it runs and prints every row (figures unchecked)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import bench

TINY = replace(bench.QUICK, one_by_one=4, concurrent=40, slow_one_by_one=2, slow_concurrent=40,
               journal_signals=200, journal_trades=20, startup_runs=1, run_seconds=10, warm_up_hold_seconds=0.3)

ROWS = [
    "## Targets", "## Latency and throughput", "## Accepted alerts by side", "## The floor", "## Exchange REST calls",
    "## Memory", "## Start-up",
    *[f"| {alert} | {exchange} ms | {concurrency} |" for exchange in (0, 150) for concurrency in (1, 20)
      for alert in ("REJECTED", "ACCEPTED, BUY and SELL in turn")],
    *[f"| {exchange} ms | {concurrency} | {side} |" for exchange in (0, 150) for concurrency in (1, 20)
      for side in ("BUY", "SELL", "both")],
    *[f"| {exchange} ms | {concurrency} |" for exchange, concurrency in ((0, 1), (150, 1), (150, 20))],
    "| first BUY, cold caches", "| first BUY after the warm-up |", "| first SELL after it |",
    "| accepted BUY, steady state |", "| accepted SELL, steady state |", "| accepted both, steady state |",
    "| rejected alert, steady state |", "| none: the monitor's background refreshes",
    "| idle, after start-up", "| after ", "| empty |", "| 200 signal rows + 20 trade rows",
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    output = tmp_path_factory.mktemp("bench") / "bench_results.md"
    return bench.run(TINY, output), output


def test_quick_run_prints_every_row_and_writes_the_same_tables(results: tuple[str, Path]) -> None:
    text, output = results
    missing = [row for row in ROWS if row not in text]
    assert not missing, text
    assert output.read_text(encoding="utf-8") == text


TARGETS = ["| 1.00 exchange call per accepted alert, BUY and SELL in turn, steady state |",
           "| median latency bot / forwarder <= 1.05 (c=1, exchange 150 ms) |",
           "| median latency bot / forwarder <= 2 (c=1, exchange 0 ms) |",
           "| >= 1,000 rejected alerts/s (c=20) |", "| start-up <= 1 s with 200 signal + 20 trade rows |",
           "| idle RSS <= 80 MB |",
           "| no growth of REJECTED latency with the journal", "| no growth of ACCEPTED latency with the journal"]


def test_every_target_has_a_row_with_a_verdict(results: tuple[str, Path]) -> None:
    text, _ = results
    for target in TARGETS:
        [row] = [line for line in text.splitlines() if line.startswith(target)]
        assert row.endswith(("| PASS |", "| MISS |")), row


def test_the_generated_journal_replays_into_the_positions_of_its_open_buys(results: tuple[str, Path]) -> None:
    """bench.run raises if /status disagrees with the journal's open BUYs; the row shows what it reported."""
    text, _ = results
    [first] = [line for line in text.splitlines() if line.startswith("| 200 signal rows + 20 trade rows")]
    assert "first start: no checkpoint" in first
    [row] = [line for line in text.splitlines() if line.startswith("| the same journal, a restart")]
    assert all(symbol in row for symbol in ("BTCUSDT", "ETHUSDT", "BNBUSDT")), row


def test_quick_mode_never_writes_the_committed_results(monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[Path] = []
    monkeypatch.setattr(bench, "run", lambda plan, output: written.append(output))
    bench.main(["--quick"])
    bench.main([])
    assert [path.name for path in written] == ["bench_results_quick.md", "bench_results.md"]
