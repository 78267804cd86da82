"""docs/fleet.md from the fleet's results: every figure beside its target, the plots, what limits the fleet."""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[1]

# (key, target text, check) — check(value) -> bool, None: reported only
TARGETS = [
    ("fleet_terminals", "≥ 2,000 on this 2-core machine", lambda v: v >= 2000),
    ("steady_press_to_receipt_p50_ms", "", None),
    ("steady_press_to_receipt_p99_ms", "≤ 1,000 ms", lambda v: v <= 1000),
    ("storm_settle_s", "≤ 120 s (2,000 × 100 backlog)", lambda v: v <= 120),
    ("city_replay_per_s", "≥ 2,000/s", lambda v: v >= 2000),
    ("kill_settle_s", "reported", None),
    ("slow_settle_after_release_s", "reported", None),
    ("slow_ledger_rss_peak_mb", "bounded", None),
    ("lost", "0 (every scenario)", lambda v: v == 0),
    ("duplicated", "0 (every scenario)", lambda v: v == 0),
    ("power_cuts", "≥ 1,000", lambda v: v >= 1000),
    ("power_cut_lost", "0", lambda v: v == 0),
    ("ledger_workers_scaling", "reported, with the bottleneck named", None),
]
# Targets set for the sizes: a smaller (quick) run is reported beside them, not judged by them.
SIZE_BOUND = {"steady_press_to_receipt_p99_ms", "storm_settle_s", "city_replay_per_s", "power_cuts"}
PER_SCENARIO = ("steady", "storm", "kill", "slow", "city", "power_cut", "ledger_workers")


def fmt(v) -> str:
    if v is None:
        return "not reached"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {fmt(x)}" for k, x in v.items())
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def plots(r: dict, out_dir: Path) -> list[tuple[str, str]]:
    """PNG files (matplotlib, Agg) in out_dir; (file name, caption) each."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out_dir.mkdir(parents=True, exist_ok=True)
    series = r.get("_series", {})
    made = []
    lat = series.get("steady", {}).get("latency")
    if lat and lat["t"]:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.scatter(lat["t"], lat["ms"], s=3, alpha=0.5)
        ax.axhline(1000, color="red", lw=1, ls="--", label="target p99 1,000 ms")
        ax.set_yscale("log")
        ax.set_xlabel("s since the first receipt")
        ax.set_ylabel("press → receipt (ms)")
        ax.set_title(f"steady: {r.get('_plan', {}).get('steady_n', '?')} terminals, one rating each 2–5 min")
        ax.legend(loc="upper right")
        fig.tight_layout()
        fig.savefig(out_dir / "steady-latency.png", dpi=100)
        plt.close(fig)
        made.append(("steady-latency.png", "Steady state: press → receipt of every rating over time"))
    for name, title in (("storm", "morning storm"), ("kill", "kill -9 mid-drain"), ("slow", "slow ledger")):
        s = series.get(name)
        if not s or not s.get("t"):
            continue
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.plot(s["t"], [max(0, x) for x in s["outbox"]], label="rows in all outboxes")
        ax.set_xlabel("s")
        ax.set_ylabel("outbox rows (all terminals)")
        for t, what in s.get("marks", []):
            ax.axvline(t, color="grey", ls=":", lw=1)
            ax.annotate(what, (t, ax.get_ylim()[1] * 0.95), rotation=90, fontsize=7, va="top", ha="right")
        if name == "slow":
            ax2 = ax.twinx()
            ax2.plot(s["t"], s["ledger_rss_mb"], color="tab:orange", label="ledger RSS (MB)")
            ax2.set_ylabel("ledger RSS (MB)")
            ax2.set_ylim(bottom=0)
            lines = ax.get_lines() + ax2.get_lines()
            ax.legend(lines, [line.get_label() for line in lines], loc="center left")
        ax.set_title(f"{title}: backlog over time")
        fig.tight_layout()
        fig.savefig(out_dir / f"{name}-backlog.png", dpi=100)
        plt.close(fig)
        made.append((f"{name}-backlog.png", f"{title.capitalize()}: total outbox rows over time"))
    bars = [(k, r.get(f"{k}_settle_s" if k != "slow" else "slow_settle_after_release_s"))
            for k in ("storm", "kill", "slow")]
    bars = [(k, v) for k, v in bars if isinstance(v, (int, float))]
    if bars:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.bar([k for k, _ in bars], [v for _, v in bars])
        ax.axhline(120, color="red", lw=1, ls="--", label="storm target 120 s")
        ax.set_ylabel("s until every outbox is empty")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "settle.png", dpi=100)
        plt.close(fig)
        made.append(("settle.png", "Settle time per scenario (storm: from reconnect; kill: from start of the "
                                   "drain; slow: from the lock's release)"))
    return made


def render(r: dict, pictures: list[tuple[str, str]], rel: str) -> str:
    meta, plan = r.get("_meta", {}), r.get("_plan", {})
    out = ["# The fleet: thousands of terminals on one center kit", "",
           "Generated by `make fleet` (`python -m bench.fleet`) from `bench/fleet.json`; do not edit by hand.",
           "",
           f"Run of {meta.get('when', '?')} ({meta.get('mode', '?')} mode) on {meta.get('machine', '?')}, "
           f"{meta.get('cpus', '?')} CPUs, {meta.get('mem_gb', '?')} GB RAM, Python {meta.get('python', '?')}. "
           "**The simulated terminals, the broker, the ledger, PostgreSQL and the city stand-in all share these "
           f"{meta.get('cpus', '?')} cores** (and, during development, other jobs did too): a real center runs "
           "the terminals elsewhere, so every figure here is pessimistic for the center side.",
           "", f"Deployment: {r.get('deployment', 'not started')}.", ""]
    if meta.get("mode") != "full":
        out += [f"**This is a {meta.get('mode')} run** ({plan.get('steady_n', '?')} terminals in the steady state, "
                f"{plan.get('storm_n', '?')} × {plan.get('storm_backlog', '?')} in the storm, "
                f"{fmt(plan.get('city_n', '?'))} ratings for the city): the issue's sizes are `make fleet` without "
                "`--quick`; targets set for those sizes are not judged here.", ""]
    out += [
           "| figure | measured | target | met |", "|---|---|---|---|"]
    for key, target, check in TARGETS:
        if key not in r:
            out.append(f"| `{key}` | not measured | {target} | |")
            continue
        v = r[key]
        met = "" if check is None or not isinstance(v, (int, float)) else ("yes" if check(v) else "**no**")
        if met and key in SIZE_BOUND and meta.get("mode") != "full":
            met = "not judged: smaller run"
        out.append(f"| `{key}` | {fmt(v)} | {target} | {met} |")
    errors = r.get("_errors", {})
    if errors:
        out += ["", "Not measured in this run:", ""]
        out += [f"- {k}: {v}" for k, v in errors.items()]
    for name in PER_SCENARIO:
        keys = sorted(k for k in r if k.startswith(name + "_"))
        if keys:
            out += ["", f"### {name}", ""]
            out += [f"- `{k}`: {fmt(r[k])}" for k in keys]
    out += ["", "## Plots", ""]
    for file, caption in pictures:
        out += [f"**{caption}**", "", f"![{caption}]({rel}/{file})", ""]
    if not pictures:
        out += ["(none in this run)", ""]
    out.append(NOTES.format(per=plan.get("steady_n", "?"), rss=fmt(r.get("steady_sim_rss_per_terminal_mb")),
                            idle=fmt(r.get("steady_idle_sim_cpu_cores")), busy=fmt(r.get("steady_sim_cpu_cores")),
                            fds=fmt(r.get("steady_sim_fds")), threads=fmt(r.get("steady_sim_threads")),
                            procs=fmt(r.get("steady_sim_processes")), storm_settle=fmt(r.get("storm_settle_s")),
                            storm_rate=fmt(r.get("storm_ratings_per_s")),
                            p99=fmt(r.get("steady_press_to_receipt_p99_ms"))))
    section = HERE / "powercut.md"
    if section.exists():
        out += ["", section.read_text().rstrip(), ""]
    return "\n".join(out) + "\n"


NOTES = """
## How the fleet is simulated

- Every simulated terminal is the real `device.terminal.Terminal` — its SQLite outbox (WAL,
  `synchronous=FULL`), its courier, its MQTT link (paho-mqtt, its own connection and client id, persistent
  session, last will, paho's network thread) and its core with the state machine — with production timings
  (reconnect 1–60 s, receipt timeout 30 s, re-offer backoff up to 600 s), one window each. Nothing is
  re-implemented. On a board the core and the courier run on threads of their own; here each process's
  terminals are stepped by 4 `device.driver.Driver` threads (`Terminal.start(driver)`: the same `Terminal`
  and `Courier` code, `pump()`ed when an input is queued or a deadline passes), because three threads a
  terminal are 6,000 threads for 2,000 terminals (see the last section).
- A case feed (one MQTT connection) opens a case at each window every 2–5 minutes (retained case topic,
  as the center service publishes it) and closes it later; a simulated citizen presses a level 0.5–3 s
  after the case shows, through the terminal's port (`submit(LevelPressed)`), so the rating is committed
  by the core exactly as a tap is.
- Press → receipt: the press time is taken when the citizen presses; the receipt time when the courier
  deletes the receipted record. The seam is bench code only (`bench/fleet/sim.py` wraps the outbox's
  `add` and `delivered` on each instance).
- The backlog of the storm, kill and slow scenarios is written into each outbox before the terminal
  starts, through the outbox's own `add`, with `synchronous=OFF` for the fill only (then `os.sync()`):
  200,000 fsyncs would take minutes of setup and measure nothing.
- The invariant, per scenario: every rating id a terminal committed is in the center's `ratings` table
  exactly once (`lost`, `duplicated`, and `extra` rows no terminal committed), and every outbox is
  empty at the end (`*_outbox_left`).

## Reading the kill and slow plots

- After `kill -9` of the broker (no persistence in the fleet's broker: its sessions and in-flight messages
  are gone) the drain stalls until the terminals' receipt timeout (`outbox.receipt_timeout_s`, 30 s)
  re-offers what was in flight; the last records wait for the next re-offer (jittered backoff up to
  `outbox.retry_max_s`). The settle time is those timers, not the center's speed: a center that wants a
  faster recovery after a broker crash shortens the receipt timeout (more duplicates on the wire, which
  the ledger absorbs by id). Killing the ledger worker alone costs less: the broker holds its persistent
  session and delivers what came meanwhile when it is back.
- While PostgreSQL is held by the lock, nothing is stored and no receipt goes out: every new rating
  stays in its terminal's outbox (the backlog rises), the ledger holds what it received in memory (its
  RSS, sampled each second), and after the release everything settles in seconds.

## How many terminals fit, and what limits them

- **2,000 fit** (this run, full mode): 20 processes of 100 terminals, each terminal with its own
  MQTT connection, outbox and paho network thread, their cores and couriers stepped by 4
  `device.driver.Driver` threads a process ({threads} threads in all, {fds} descriptors, {rss} MB
  resident per terminal). Idle, the fleet's processes use {idle} cores; at the steady rate {busy}.
  Before the drivers, each terminal ran three threads of its own (6,000 for 2,000): a 2,000-terminal run
  had not finished its steady state after 24 minutes (load average ~1,400) and was stopped.
- **Descriptors per process set the shape**: paho-mqtt's network loop uses `select()`, which cannot watch
  a descriptor numbered 1,024 or above; a terminal holds about 8 (socket, wake-up pair, SQLite files),
  so a process hosts at most ~120. The simulator runs 100 ({procs} processes for {per}).
- **Starting 2,000 at once loads the machine** for about a minute; in earlier runs some terminals missed their keepalive then and were dropped by the broker (Mosquitto
  logs a few of these as "disconnected due to out of memory", a misleading message for a client gone
  before its PUBACK: eclipse-mosquitto#3253); they reconnect and re-offer — nothing lost.
- **The GIL's switch interval.** A simulator process hosts ~105 threads, and CPython wakes every thread
  waiting for the GIL once per switch interval (5 ms by default) to ask for it. When a broadcast (the
  catalog) woke all 100 network threads of a process at once, `perf` showed most of the CPU in futex
  calls and task switching (75 % system time); the processes starved for ~45 s (garbage-collector passes
  of up to 10 s in the `sim-N.log`s) and 1,990 of the 2,000 terminals missed their keepalive, reconnected,
  and got every retained message again — in run 3 below (p99 5,115 ms) and in the next attempt, stopped.
  The simulator's processes now run with a 50-ms interval (`bench/fleet/sim.py`); a board runs one
  terminal and a handful of threads, so nothing changes there. (The case feed also publishes duty at 200
  windows a second now, 10 s for 2,000; that alone did not prevent the collapse — the stopped attempt
  had it.)
- **The storm is paced by the receipts.** A terminal with a backlog offers 8 records at first, then as
  many as got their receipts in the last `outbox.window_target_s` (10 s), in bunches of at least half
  that window (its records then share the ledger's batches and receipt messages), at most
  `outbox.window`: a busy center holds about 10 s of its own pace from each terminal, a quiet one sees
  the window double every round trip. A record without a receipt after 30 s is not offered again while
  receipts for records sent before it keep coming — unless a record sent well after it was answered
  (then it was dropped on the way), and at most for 4 timeouts (`device/courier.py`). This run: 2,000 ×
  100 settled in {storm_settle} s ({storm_rate} a second); the ledger's last log line counts the offers
  it dropped while busy (its intake holds 20,000 a worker).
- **The steady tail was PostgreSQL deadlocks between the ledger workers.** Every worker writes what the
  center publishes (cases, duty: here one staff member at every window); the two workers' transactions
  locked the same rows in different orders, and PostgreSQL found each deadlock only after
  `deadlock_timeout` (1 s): those batches' ratings made the p99. A batch holding published state now
  takes an advisory lock first, and each batch's device records are stored sorted by device (first
  ratings pin their terminals' bindings in one order) — `docs/deployment.md`,
  `tests/center/test_state_lock.py`; run 4's worker logs hold no deadlock. The simulated terminals log
  stalls of 200 ms or more (an outbox `add` with its fsync, a `delivered`, a garbage-collector pass) into
  their `sim-N.log`: in run 4, 18 at the start-up and 19 at the final collection, and one (an `add`'s
  fsync, 279 ms) during the ten minutes of cases; Mosquitto logged no keepalive timeout in any scenario.
- The 2 cores are shared: under the storm the simulated terminals used more CPU than the ledger (`top`
  over 10 s, ~60 s into run 3's storm below: the 20 simulator processes ~110 % together, the two
  ledger workers 27 % each, PostgreSQL's backends ~22 %, Mosquitto 8 %). A real center's terminals bring
  their own CPUs.

## The full runs of 2026-12-01/02, and what changed between them

Each row is a whole `make fleet` (2,000 terminals, Mosquitto + 2 ledger workers + PostgreSQL); the
machine was slower on the second day (one ledger worker: 4,412 ratings/s in run 2; 3,405 and 3,062 in
runs 3 and 4; `bench/core.py`'s raw paho publishing ~29,000/s on the first day, 18,000–22,000/s on the
second).

| run | steady p99 | storm | what changed before it / what it showed |
|---|---|---|---|
| 1 (12-01 07:46) | 1,476 ms | 1,173 s | every terminal offered its whole backlog at once (200,000 in flight); the ledger held 20,000 a worker and dropped the rest, re-offered after 30 s and each backoff: ~400 s with almost nothing drained |
| 2 (12-01 11:45) | 16.6 ms | 131.2 s | the courier paced by a smoothed receipt rate; the advisory lock (the steady tail: 6 deadlocks in ten minutes before it). Storm and kill still showed 6 deadlocks between the workers pinning first-use bindings |
| 3 (12-01 23:51) | 5,115 ms | 144.1 s | device records sorted by device (0 deadlocks). The start-up collapse above (GIL). In the storm the smoothed rate overshot just after bursts of receipts: both workers reached their intake limit (20,000 held each) and dropped offers; the storm alone, same hour, dropped 4,425 and its last records waited ~40 s for re-offers |
| 4 (this one) | {p99} ms | {storm_settle} s | the window counts the receipts of the last 10 s; 50-ms GIL interval in the simulator |

Storm alone between runs 3 and 4 (`--only storm`, same hour): the smoothed rate 140.0 s (4,425 dropped);
the count over 5 s 157.7 s (0 dropped, but smaller bunches cost the simulated terminals more CPU); over
10 s 109.9 s (0 dropped).
"""


def write(r: dict, doc: Path) -> None:
    pics_dir = doc.parent / "fleet"
    try:
        pictures = plots(r, pics_dir)
    except ImportError:
        pictures = []
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render(r, pictures, "fleet"))


def main() -> int:
    r = json.loads((ROOT / "bench" / "fleet.json").read_text())
    write(r, ROOT / "docs" / "fleet.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
