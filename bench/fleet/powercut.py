"""Power cuts of the terminal's outbox (issue 14): ≥ 1,000 cuts, 0 acknowledged ratings lost.

The real `device.outbox.Outbox` is recorded under an LD_PRELOAD write log (devkit/powercut/), several
workloads with different seeds; each log is cut at many points, each cut state rebuilt as a disk holds
it after losing what was not fsynced (four modes, devkit/powercut/disk.py) and opened with the real
Outbox. One suite on its own: `python -m bench.fleet.powercut [--quick] [WORKDIR]`.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from devkit.powercut import harness
from devkit.powercut.build import build

FULL = {"seeds": (101, 202, 303, 404), "ratings": 1000, "cuts": 500, "beyond": 100,  # 2,000 cuts + 400
        "salvage_cuts": 300, "stores": 3}  # per seed: 3 damaged stores, 100 cuts of each one's salvage
QUICK = {"seeds": (101,), "ratings": 300, "cuts": 100, "beyond": 20, "salvage_cuts": 40, "stores": 2}


def run(workdir: Path, *, quick: bool) -> dict:
    """Record and cut; the figures (`power_cuts`, `power_cut_lost`, …). States that failed stay in `workdir`."""
    plan = QUICK if quick else FULL
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    shim = build(workdir)
    started = time.monotonic()
    total = harness.Summary()
    salvage = harness.SalvageSummary()
    ram = "/dev/shm" if os.path.isdir("/dev/shm") else None  # only the checks' own fsyncs get cheaper
    for seed in plan["seeds"]:
        with tempfile.TemporaryDirectory(prefix="powercut-", dir=ram) as scratch:
            s, rec = harness.run(workdir / f"seed-{seed}", cuts=plan["cuts"], ratings=plan["ratings"], seed=seed,
                               beyond=plan["beyond"], scratch=Path(scratch), shim=shim)
            v = harness.salvage_run(workdir / f"seed-{seed}", cuts=plan["salvage_cuts"], ratings=plan["ratings"],
                                    seed=seed, stores=plan["stores"], scratch=Path(scratch) / "salvage", shim=shim,
                                    records=rec.records)
        total.add(s)
        salvage.damaged_stores += v.damaged_stores
        salvage.cuts += v.cuts
        salvage.opened += v.opened
        salvage.lost += v.lost
        salvage.failures += v.failures
    figures = total.as_figures()
    figures.update(
        power_cut_failed_states=len(total.failures), power_cut_first_failures=total.failures[:5],
        power_cut_modes=total.by_mode,
        # outside the model (a drive acknowledging a FLUSH it did not do): losses are expected there;
        # what must hold is that the outbox opens, salvaging with an alarm, and opens cleanly again
        power_cut_lying_flush_cuts=total.beyond_cuts, power_cut_lying_flush_opened=total.beyond_opened,
        power_cut_lying_flush_salvaged=total.beyond_salvaged,
        power_cut_lying_flush_not_opened=len(total.beyond_failures),
        power_cut_lying_flush_first_failures=total.beyond_failures[:5],
        power_cut_lying_flush_lost=total.beyond_lost,
        # a cut while the outbox salvages a damaged store (within the model): what the uncut salvage
        # keeps must survive
        power_cut_salvage_stores=salvage.damaged_stores, power_cut_salvage_cuts=salvage.cuts,
        power_cut_salvage_opened=salvage.opened, power_cut_salvage_lost=salvage.lost,
        power_cut_salvage_first_failures=salvage.failures[:5],
        power_cut_s=round(time.monotonic() - started, 1))
    return figures


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    rest = [a for a in argv if a != "--quick"]
    with tempfile.TemporaryDirectory(prefix="powercut-bench-") as tmp:
        print(json.dumps(run(Path(rest[0]) if rest else Path(tmp), quick=quick), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
