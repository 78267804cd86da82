"""The power-cut workload: the real `device.outbox.Outbox`, driven the way the terminal drives it.

Run under the shim (`python -m devkit.powercut.workload DIR --ratings N --seed S`, LD_PRELOAD set by
`harness.record`): case ratings added one by one as the core thread commits them, receipts delivered now
and then as the courier does (by id and seq), a quarantine and a requeue once in a while, and restarts
(close, open: the WAL is checkpointed and deleted, then created again). Checkpoints happen on their own.

Marks in the write log (`powercut_mark`), each written when the step it names has happened:
  `A <id> <seq> <case>`  `add` returned: the citizen saw "thank you" (also printed `ack <id>` to stdout)
  `D <id>,<id>,…`        about to call `delivered` for these: from here on each may be gone
  `Q <id>` / `U`         quarantined one / requeued all (the records stay)
  `R`                    restarted (closed and opened again)
  `S <n>`                with --salvage: a damaged store was opened (salvaged), n records in it
"""
from __future__ import annotations

import argparse
import ctypes
import random
import sys
from pathlib import Path

from device.machine import RatingDraft
from device.outbox import Outbox
from devkit.factories import CATALOG_VERSION, REASONS, case_model
from protocol import builders
from protocol.values import Channel, Level

ORIGIN = builders.Origin("C1", "W01", "pc1")
DB_NAME = "outbox.db"


def _marker():
    try:
        fn = ctypes.CDLL(None).powercut_mark
    except AttributeError:
        raise SystemExit("powercut_mark not found: run the workload with the shim in LD_PRELOAD "
                         "(devkit.powercut.harness.record)") from None
    fn.argtypes = [ctypes.c_char_p]
    return lambda text: fn(text.encode())


def salvage(data: Path) -> None:
    """Open a damaged store (the outbox moves it aside and salvages it), mark `S`, close."""
    mark = _marker()
    alarms: list[str] = []
    ob = Outbox(data / DB_NAME, on_alarm=lambda code, detail: alarms.append(code))
    mark(f"S {ob.counts().pending + ob.counts().quarantined}")
    ob.close()
    if "outbox_corrupt" not in alarms:
        raise SystemExit(f"the store was not damaged: no outbox_corrupt alarm ({alarms})")


def run(data: Path, ratings: int, seed: int, weaken: str = "") -> None:
    """`weaken` (OFF, NORMAL) lowers the adding connection's `synchronous`: only for the harness's self-test."""
    mark = _marker()
    rnd = random.Random(seed)
    alarms: list[str] = []

    def open_ob() -> Outbox:
        ob = Outbox(data / DB_NAME, on_alarm=lambda code, detail: alarms.append(code))
        if weaken:
            ob._db.execute(f"PRAGMA synchronous={weaken}")
        return ob

    ob = open_ob()
    levels = list(Level)
    for i in range(ratings):
        cid = f"K{seed % 1000:03d}{i:06d}"
        case = case_model(cid, i % 2)
        level = rnd.choice(levels)
        reasons = (rnd.choice(REASONS)["code"],) if level.is_bad else ()
        draft = RatingDraft("case", level, Channel.TOUCH, case.staff, case, reasons,
                            CATALOG_VERSION if reasons else "")
        rec = ob.add("rating", lambda rid, seq, ts: builders.rating(draft, ORIGIN, rid, seq, ts), case_id=cid)
        mark(f"A {rec.id} {rec.seq} {cid}")
        print(f"ack {rec.id}", flush=True)
        roll = rnd.random()
        if roll < 0.25:  # the courier got receipts for some of what is due (oldest first, sometimes not all)
            due = ob.due(rnd.randint(1, 20))
            keys = [(r.id, r.seq) for r in due if rnd.random() < 0.9]
            if keys:
                mark("D " + ",".join(k[0] for k in keys))
                ob.delivered(keys)
        elif roll < 0.27:
            due = ob.due(5)
            if due:
                ob.quarantine(due[-1].id, "PUBACK 0x87 Not authorized", due[-1].seq)
                mark(f"Q {due[-1].id}")
        elif roll < 0.28:
            ob.requeue_quarantined()
            mark("U")
        elif roll < 0.283:
            ob.close()
            ob = open_ob()
            mark("R")
    ob.close()
    if alarms:
        raise SystemExit(f"the workload's outbox raised alarms: {alarms}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--ratings", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--weaken", choices=("OFF", "NORMAL"), default="",
                    help="the harness's self-test: commit without fsync, so cuts must lose ratings")
    ap.add_argument("--salvage", action="store_true", help="only open a damaged store (salvage) and close it")
    a = ap.parse_args(argv)
    salvage(a.dir) if a.salvage else run(a.dir, a.ratings, a.seed, a.weaken)


if __name__ == "__main__":
    main(sys.argv[1:])
