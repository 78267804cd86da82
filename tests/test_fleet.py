"""The fleet simulator (bench/fleet/): every scenario at a handful of terminals — real Mosquitto, real ledger
process on PostgreSQL, real Terminals with their own outboxes, the real city delivery — with its invariant
(every committed rating id in the record exactly once, every outbox empty). No figure is checked here:
`make fleet` measures. Everything is written under tmp_path."""
from __future__ import annotations

import sqlite3

import pytest

from bench.fleet import report, scenarios
from bench.fleet.__main__ import run

FLEET = ("steady", "storm", "kill", "slow")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    work = tmp_path_factory.mktemp("fleet")
    return run([*FLEET, "city"], scenarios.SMOKE, work, quick=True, log=lambda *_: None)


def test_every_scenario_ran(results):
    assert results["_errors"] == {}
    assert results["deployment"].startswith("mosquitto")


@pytest.mark.parametrize("name", FLEET)
def test_nothing_lost_nothing_left(results, name):
    assert results[f"{name}_ratings"] > 0
    assert results[f"{name}_lost"] == 0
    assert results[f"{name}_duplicated"] == 0
    assert results[f"{name}_extra"] == 0
    assert results[f"{name}_outbox_left"] == 0


def test_scenarios_did_what_they_say(results):
    plan = scenarios.SMOKE
    assert results["steady_receipted"] == results["steady_ratings"]  # every press timed to its receipt
    assert results["steady_press_to_receipt_p99_ms"] >= results["steady_press_to_receipt_p50_ms"] > 0
    assert results["storm_ratings"] == results["storm_backlog"] == plan.storm_n * plan.storm_backlog
    assert results["kill_ratings"] == plan.kill_n * plan.kill_backlog
    marks = [m for _, m in results["_series"]["kill"]["marks"]]
    assert marks == ["kill -9 broker", "broker back", "kill -9 ledger worker", "worker back"]
    # the lock held the ledger: what the terminals committed meanwhile was still in their outboxes
    assert results["slow_backlog_at_release"] >= plan.slow_n * plan.slow_backlog
    assert results["slow_ledger_rss_peak_mb"] > 0
    assert results["city_ratings"] == plan.city_n
    assert results["city_lost"] == results["city_duplicated"] == 0
    assert results["lost"] == results["duplicated"] == 0
    assert results["fleet_terminals"] == plan.steady_n


def test_report_shows_figures_beside_targets(results, tmp_path):
    doc = tmp_path / "docs" / "fleet.md"
    report.write(results, doc)
    text = doc.read_text()
    assert "| `steady_press_to_receipt_p99_ms` |" in text and "≤ 1,000 ms" in text
    assert "| `power_cuts` | not measured |" in text  # not run here: said so, never a number
    for png in ("steady-latency.png", "storm-backlog.png", "kill-backlog.png", "slow-backlog.png", "settle.png"):
        assert (tmp_path / "docs" / "fleet" / png).stat().st_size > 1000
        assert f"(fleet/{png})" in text


def test_invariant_sees_loss_duplicates_and_strangers(tmp_path):
    db = tmp_path / "record.db"
    with sqlite3.connect(db) as conn:  # the columns the check reads; no unique id, so duplicates can exist
        conn.execute("CREATE TABLE ratings (id TEXT, device TEXT)")
        conn.executemany("INSERT INTO ratings VALUES (?, ?)", [("a", "t-00001"), ("a", "t-00001"), ("c", "t-00002"),
                                                               ("x", "t-00003"), ("b", "other-00001")])
    got = scenarios.invariant(str(db), "t", ["a", "b", "c"])
    assert got == {"lost": 1, "duplicated": 1, "extra": 1, "committed": 3}
