"""The power-cut harness: record the real outbox under the shim, cut the log, open every cut state.

`record` runs the workload (workload.py) in a child process with the shim (shim.c, built by build.py)
in LD_PRELOAD: its write log and the ids it acknowledged on stdout. `plan` picks cut points and modes;
`states` replays the log (disk.py) and yields the directory a power cut at each leaves behind, with what
was acknowledged before it. `check` opens such a directory with the real `Outbox` in this process and
says what is wrong: it must open (or salvage with an alarm), hold every acknowledged rating exactly
once (unless its receipt had begun), keep each one's case marked rated, never hand out an
acknowledged sequence number again, and open cleanly a second time. `run` does all of it for one
recording; `salvage_run` cuts the outbox's own salvage of damaged stores.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from device.machine import RatingDraft
from device.outbox import Outbox
from devkit.powercut import build as shim_build
from devkit.powercut.disk import BEYOND, MODES, Disk, materialise
from devkit.powercut.log import LogError, Op, Record, read
from devkit.powercut.workload import DB_NAME, ORIGIN
from devkit.factories import staff
from protocol import builders
from protocol.values import Channel, Level

ROOT = Path(__file__).resolve().parents[2]
MODEL = ("POSIX fsync model replayed from an LD_PRELOAD write log of the real Outbox: per file, durable up to "
         "its last fsync/fdatasync; names durable as of the last directory fsync; at a cut each file keeps "
         "nothing unsynced, a random prefix of its unsynced operations, or a random subset of its unsynced "
         "4 KiB pages or 512 B sectors (old or new size; unwritten extension reads as zeros); -shm absent or "
         "garbage")


@dataclass
class Recording:
    log: Path
    records: list[Record]
    printed: list[str]  # the ids the workload printed after `add` returned


@dataclass(frozen=True)
class Cut:
    at: int      # the state after records[:at]
    mode: str
    seed: int


@dataclass
class Expect:
    """What was known at the cut: the acknowledged ratings (id → seq, case) and those being receipted."""

    acked: dict[str, tuple[int, str]] = field(default_factory=dict)
    receipting: set[str] = field(default_factory=set)

    def see(self, r: Record) -> None:
        if r.op != Op.MARK:
            return
        kind, _, rest = r.path.partition(" ")
        if kind == "A":
            rid, seq, case = rest.split(" ")
            self.acked[rid] = (int(seq), case)
        elif kind == "D":
            self.receipting.update(rest.split(","))


@dataclass
class Verdict:
    opened: bool = False
    salvaged: bool = False
    alarms: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.opened and not self.lost and not self.problems


def record(workdir: Path, *, ratings: int, seed: int, weaken: str = "", shim: Path | None = None) -> Recording:
    """Run the workload under the shim in `workdir/run`; the log is `workdir/write.log`.

    `weaken` ("OFF", "NORMAL") runs a deliberately broken outbox: the harness's self-test.
    """
    workdir = Path(workdir).resolve()
    shim = shim or shim_build.build(workdir)
    data, log = workdir / "run", workdir / "write.log"
    data.mkdir(mode=0o700, parents=True)
    env = {**os.environ, "LD_PRELOAD": str(shim), "POWERCUT_DIR": str(data), "POWERCUT_LOG": str(log),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    r = subprocess.run([sys.executable, "-m", "devkit.powercut.workload", str(data), "--ratings", str(ratings),
                        "--seed", str(seed)] + (["--weaken", weaken] if weaken else []),
                       env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"the power-cut workload failed ({r.returncode}):\n{r.stderr[-3000:]}")
    printed = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("ack ")]
    return Recording(log, read(log), printed)


def plan(records: list[Record], n: int, seed: int, modes: tuple[str, ...] = MODES) -> list[Cut]:
    """`n` cuts, `modes` in turn: half at random points, half right before or after an fsync (where
    acknowledgements turn)."""
    rnd = random.Random(seed)
    syncs = [i for i, r in enumerate(records) if r.op in (Op.SYNC, Op.DIRSYNC)]
    points = []
    for k in range(n):
        if k % 2 and syncs:
            points.append(rnd.choice(syncs) + rnd.choice((0, 1)))
        else:
            points.append(rnd.randint(0, len(records)))
    return sorted((Cut(at, modes[k % len(modes)], rnd.getrandbits(32)) for k, at in enumerate(points)),
                  key=lambda c: c.at)


def states(records: list[Record], cuts: list[Cut],
           disk: Disk | None = None) -> Iterator[tuple[Cut, dict[str, bytes], Expect]]:
    """For each cut (in order of `at`): the files the directory holds after it, and what was known then."""
    disk, expect, i = disk or Disk(), Expect(), 0
    for cut in sorted(cuts, key=lambda c: c.at):
        while i < cut.at:
            disk.apply(records[i])
            expect.see(records[i])
            i += 1
        snapshot = Expect(dict(expect.acked), set(expect.receipting))
        yield cut, disk.after_cut(cut.mode, random.Random(cut.seed)), snapshot


def check(state: Path, expect: Expect) -> Verdict:
    """Open a cut state with the real Outbox and judge it (see the module's docstring)."""
    v = Verdict()
    path = state / DB_NAME
    ob = _open(path, v)
    if ob is None:
        return v
    try:
        v.salvaged = any(a.startswith(("outbox_corrupt", "outbox_salvaged")) for a in v.alarms)
        if v.alarms and not v.salvaged:
            v.problems.append(f"unexpected alarms: {v.alarms}")
        _judge(ob, path, expect, v)
    finally:
        ob.close()
    _open_again(path, v)
    return v


def _open(path: Path, v: Verdict) -> Outbox | None:
    """The real Outbox on a cut state, its alarms in `v`; None (and the problem in `v`) if it won't serve."""
    try:
        ob = Outbox(path, on_alarm=lambda code, detail: v.alarms.append(f"{code}: {detail}"), retry_s=(3600, 3600))
    except Exception as e:  # noqa: BLE001 - any exception here is the finding
        v.problems.append(f"Outbox() raised {type(e).__name__}: {e}")
        return None
    if ob.unavailable:
        v.problems.append(f"unavailable: {ob.unavailable}")
        ob.close()
        return None
    v.opened = True
    return ob


def _open_again(path: Path, v: Verdict) -> None:
    """A store that opened once (salvaged or not) opens a second time without alarms."""
    if not v.opened:
        return
    again: list[str] = []
    ob = Outbox(path, on_alarm=lambda code, detail: again.append(code), retry_s=(3600, 3600))
    try:
        if ob.unavailable or again:
            v.problems.append(f"second open not clean: {ob.unavailable or again}")
    finally:
        ob.close()


def _judge(ob: Outbox, path: Path, expect: Expect, v: Verdict) -> None:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT seq, id, payload FROM outbox").fetchall()
    finally:
        db.close()
    ids = [r[1] for r in rows]
    if len(ids) != len(set(ids)):
        v.problems.append(f"{len(ids) - len(set(ids))} record ids more than once")
    have = {r[1]: r for r in rows}
    for rid, (seq, case) in expect.acked.items():
        if not ob.case_rated(case):
            v.problems.append(f"case {case} of acknowledged rating {rid} is not marked rated")
        row = have.get(rid)
        if row is None:
            if rid not in expect.receipting:
                v.lost.append(rid)
            continue
        if row[0] != seq and not v.salvaged:
            v.problems.append(f"rating {rid} acknowledged with seq {seq} is now seq {row[0]}")
    for seq, rid, payload in rows:
        msg = json.loads(payload)
        if msg.get("id") != rid or (msg.get("seq") != seq and not v.salvaged):
            v.problems.append(f"row seq {seq} id {rid} holds a payload for seq {msg.get('seq')} id {msg.get('id')}")
    if not v.salvaged:  # commits are durable in order: a hole is only ever a receipted record
        gone = {expect.acked[rid][0] for rid in expect.receipting if rid in expect.acked}
        stored = {r[0] for r in rows}
        holes = [s for s in range(1, max(stored, default=0)) if s not in stored and s not in gone]
        if holes:
            v.problems.append(f"sequence holes not explained by receipts: {holes[:5]}")
    top = max([s for s, _ in expect.acked.values()] + [r[0] for r in rows] + [0])
    draft = RatingDraft("staff", Level.SATISFIED, Channel.TOUCH, staff(0))
    try:
        rec = ob.add("rating", lambda rid, seq, ts: builders.rating(draft, ORIGIN, rid, seq, ts))
    except Exception as e:  # noqa: BLE001
        v.problems.append(f"add after the cut failed: {type(e).__name__}: {e}")
        return
    if rec.seq <= top:
        v.problems.append(f"the next rating got seq {rec.seq}, already taken (highest acknowledged or stored {top})")


@dataclass
class Summary:
    cuts: int = 0
    opened: int = 0
    salvaged: int = 0
    lost: int = 0
    failures: list[str] = field(default_factory=list)
    by_mode: dict[str, int] = field(default_factory=dict)
    # beyond the model (a drive lying about FLUSH): only "opens, or salvages with an alarm" is required
    beyond_cuts: int = 0
    beyond_opened: int = 0
    beyond_salvaged: int = 0
    beyond_lost: int = 0
    beyond_failures: list[str] = field(default_factory=list)

    def add(self, other: "Summary") -> None:
        for name, value in vars(other).items():
            if isinstance(value, dict):
                for k, n in value.items():
                    self.by_mode[k] = self.by_mode.get(k, 0) + n
            else:
                setattr(self, name, getattr(self, name) + value)

    def as_figures(self) -> dict:
        return {"power_cuts": self.cuts, "power_cut_lost": self.lost, "power_cut_states_opened": self.opened,
                "power_cut_salvaged": self.salvaged, "power_cut_model": MODEL}


def run(workdir: Path, *, cuts: int, ratings: int, seed: int, beyond: int = 0, weaken: str = "",
        scratch: Path | None = None, shim: Path | None = None, keep_failed: int = 3) -> tuple[Summary, Recording]:
    """Record once, then cut `cuts` times within the model and `beyond` times outside it (lost_flush);
    failing states (the first `keep_failed`) stay in `workdir/failed`.

    The workload runs, and each cut state is rebuilt, in `scratch` (default `workdir`): a RAM disk there
    makes the fsyncs free, which changes nothing about the calls logged or what a state holds.
    """
    workdir = Path(workdir)
    scratch = Path(scratch or workdir)
    logging.getLogger("device.outbox").addHandler(logging.NullHandler())  # salvage logs: not on stderr
    rec = record(scratch, ratings=ratings, seed=seed, weaken=weaken, shim=shim)
    acks = [r.path.split(" ")[1] for r in rec.records if r.op == Op.MARK and r.path.startswith("A ")]
    if acks != rec.printed:
        raise LogError(f"the log's acknowledgements ({len(acks)}) differ from what the workload printed "
                       f"({len(rec.printed)})")
    s = Summary()
    cutlist = plan(rec.records, cuts, seed) + plan(rec.records, beyond, seed + 1, BEYOND)
    for cut, files, expect in states(rec.records, cutlist):
        target = scratch / "cut"
        shutil.rmtree(target, ignore_errors=True)
        materialise(files, target)
        v = check(target, expect)
        where = f"seed {seed} cut at record {cut.at} ({cut.mode}, state seed {cut.seed})"
        if cut.mode in BEYOND:
            s.beyond_cuts += 1
            s.beyond_opened += v.opened and not v.salvaged
            s.beyond_salvaged += v.salvaged
            s.beyond_lost += len(v.lost)
            bad = [p for p in v.problems if p.startswith(("Outbox() raised", "unavailable", "second open"))]
            if not v.opened or bad:
                s.beyond_failures.append(f"{where}: {bad[:3]}")
                failed = True
            else:
                failed = False
        else:
            s.cuts += 1
            s.by_mode[cut.mode] = s.by_mode.get(cut.mode, 0) + 1
            s.opened += v.opened and not v.salvaged
            s.salvaged += v.salvaged
            s.lost += len(v.lost)
            failed = not v.ok
            if failed:
                s.failures.append(f"{where}: lost {v.lost[:3]}, {v.problems[:3]}")
        if failed and len(s.failures) + len(s.beyond_failures) <= keep_failed:
            shutil.copytree(target, workdir / "failed" / f"{cut.at}-{cut.mode}-{cut.seed}")
        shutil.rmtree(target, ignore_errors=True)
    return s, rec


# ---- a power cut while the outbox salvages a damaged store ------------------------------------------

@dataclass
class SalvageSummary:
    damaged_stores: int = 0
    cuts: int = 0
    opened: int = 0
    lost: int = 0  # records the uncut salvage kept that a cut salvage lost
    failures: list[str] = field(default_factory=list)


def salvage_run(workdir: Path, *, cuts: int, ratings: int, seed: int, stores: int = 3, scratch: Path | None = None,
                shim: Path | None = None, records: list[Record] | None = None) -> SalvageSummary:
    """Damage stores (lost_flush cuts of a recording), record the outbox salvaging each under the shim,
    and cut that log: whatever the uncut salvage keeps, a cut one must keep too (once the store opens
    again, maybe salvaging again), with each case still marked rated. `records`: a recording's log to
    damage (else one is recorded with `ratings` and `seed`)."""
    workdir = Path(workdir)
    scratch = Path(scratch or workdir)
    logging.getLogger("device.outbox").addHandler(logging.NullHandler())
    shim = shim or shim_build.build(workdir)
    if records is None:
        records = record(scratch / "first", ratings=ratings, seed=seed, shim=shim).records
    out = SalvageSummary()
    for n, files in enumerate(_damaged(records, scratch / "probe", seed, stores)):
        baseline = scratch / f"baseline-{n}"
        materialise(files, baseline)
        ob = Outbox(baseline / DB_NAME, retry_s=(3600, 3600))
        try:
            ids = {r.id for r in ob.due(10**9)} | {rid for rid, _ in ob.quarantined()}
            cases = {c for c in ob._rated}
        finally:
            ob.close()
        run_dir, log = scratch / f"salvage-{n}", scratch / f"salvage-{n}.log"
        materialise(files, run_dir)
        env = {**os.environ, "LD_PRELOAD": str(shim), "POWERCUT_DIR": str(run_dir), "POWERCUT_LOG": str(log),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        r = subprocess.run([sys.executable, "-m", "devkit.powercut.workload", str(run_dir), "--salvage"], env=env,
                           capture_output=True, text=True, cwd=ROOT, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"the salvage workload failed ({r.returncode}):\n{r.stderr[-3000:]}")
        records = read(log)
        out.damaged_stores += 1
        per_store = plan(records, cuts // stores, seed + n)
        for cut, cut_files, _ in states(records, per_store, Disk.holding(files)):
            target = scratch / "cut"
            shutil.rmtree(target, ignore_errors=True)
            materialise(cut_files, target)
            v = _check_salvaged(target, ids, cases)
            out.cuts += 1
            out.opened += v.opened
            out.lost += len(v.lost)
            if not v.ok:
                out.failures.append(f"seed {seed} store {n} salvage cut at record {cut.at} ({cut.mode}, "
                                    f"state seed {cut.seed}): lost {v.lost[:3]}, {v.problems[:3]}")
                if len(out.failures) <= 3:
                    shutil.copytree(target, workdir / "failed-salvage" / f"{n}-{cut.at}-{cut.mode}-{cut.seed}")
            shutil.rmtree(target, ignore_errors=True)
    return out


def _damaged(records: list[Record], probe: Path, seed: int, want: int) -> Iterator[dict[str, bytes]]:
    """Up to `want` lost_flush cut states that the outbox finds damaged (it salvages them)."""
    found = 0
    for _, files, _ in states(records, plan(records, 40 * want, seed, BEYOND)):
        shutil.rmtree(probe, ignore_errors=True)
        materialise(files, probe)
        alarms: list[str] = []
        Outbox(probe / DB_NAME, on_alarm=lambda code, detail: alarms.append(code), retry_s=(3600, 3600)).close()
        if "outbox_corrupt" in alarms:
            found += 1
            yield files
            if found == want:
                return


def _check_salvaged(state: Path, ids: set[str], cases: set[str]) -> Verdict:
    v = Verdict()
    ob = _open(state / DB_NAME, v)
    if ob is None:
        return v
    try:
        have = [r.id for r in ob.due(10**9)] + [rid for rid, _ in ob.quarantined()]
        if len(have) != len(set(have)):
            v.problems.append(f"{len(have) - len(set(have))} record ids more than once")
        v.lost = sorted(ids - set(have))
        missing = [c for c in cases if not ob.case_rated(c)]
        if missing:
            v.problems.append(f"{len(missing)} rated cases forgotten, e.g. {missing[:3]}")
    finally:
        ob.close()
    _open_again(state / DB_NAME, v)
    return v
