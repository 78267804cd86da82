"""kill -9 the terminal process at random points during capture and drain, again and again:
every rating the citizen saw acknowledged ("thank you") ends up in the ledger exactly once."""
from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
import time

from center.ledger import Ledger, query
from devkit.waiting import wait_for

KILLS = 50
ACK = re.compile(r"rating ([0-9a-f-]{36})")
SHOWN = re.compile(r"办件：(K\d+)")


class TerminalProcess:
    """`python -m device` with the console view, driven through a pipe like a person at a keyboard."""

    def __init__(self, env: dict, log):
        self.acked: set[str] = set()
        self.shown: set[str] = set()
        self.proc = subprocess.Popen([sys.executable, "-m", "device"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log, env=env, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if m := ACK.search(line):
                self.acked.add(m.group(1))
            if m := SHOWN.search(line):
                self.shown.add(m.group(1))

    def press(self, key: str) -> None:
        try:
            self.proc.stdin.write(key + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no cleanup, no flush, like a power cut for the process
        self.proc.wait()
        self.proc.stdout.close()


def test_kill_9_during_capture_and_drain(broker, center, tmp_path):
    rnd = random.Random(int(os.environ.get("CRASH_SEED", "20261126")))
    env = {**os.environ, "HCP_MQTT_PORT": str(broker.port), "HCP_DEVICE_DATA_DIR": str(tmp_path / "term"),
           "HCP_DEVICE_ID": "crash1", "HCP_CENTER_ID": "C1", "HCP_CENTER_WINDOW": "W01",
           "HCP_MQTT_RECONNECT_MIN_S": "0.2", "HCP_MQTT_RECONNECT_MAX_S": "1",
           "HCP_OUTBOX_RECEIPT_TIMEOUT_S": "2", "HCP_OUTBOX_RETRY_MAX_S": "4", "HCP_RATING_THANKS_S": "1",
           "HCP_DEVICE_LOG_LEVEL": "WARNING"}
    log = open(tmp_path / "terminal.log", "w")
    db = tmp_path / "ledger.db"
    ledger: Ledger | None = Ledger(db, port=broker.port).start()
    acked: set[str] = set()
    case_no = 0
    for kill in range(KILLS):
        if kill % 10 == 5 and ledger is not None:
            ledger.stop()          # the ledger goes away: a backlog builds up, to be drained later
            ledger = None
        elif kill % 10 == 8 and ledger is None:
            ledger = Ledger(db, port=broker.port).start()  # back: the next kills land during the drain
        term = TerminalProcess(env, log)
        kill_at = time.monotonic() + rnd.uniform(0.2, 2.0)
        while time.monotonic() < kill_at and term.proc.poll() is None:
            case_no += 1
            cid = f"K{case_no:05d}"
            center.case(cid)
            while cid not in term.shown and time.monotonic() < kill_at:
                time.sleep(0.01)
            time.sleep(rnd.uniform(0, 0.05))
            term.press(rnd.choice("1123"))
        term.kill()
        acked |= term.acked
    if ledger is None:
        ledger = Ledger(db, port=broker.port).start()
    term = TerminalProcess(env, log)  # a last, undisturbed run delivers whatever is left
    try:
        wait_for(lambda: acked <= {r[0] for r in query(db, "SELECT id FROM ratings")}, timeout=60,
                 what="every acknowledged rating in the ledger")
    finally:
        term.kill()
        ledger.stop()
    rows = query(db, "SELECT id, case_id FROM ratings")
    print(f"{KILLS} kills, {case_no} cases, {len(acked)} acknowledged, {len(rows)} in the ledger")
    assert len(acked) >= KILLS // 2, f"too few ratings acknowledged to mean anything ({len(acked)})"
    assert len(rows) == len({r[0] for r in rows})
    assert len(rows) == len({r[1] for r in rows}), "a case was rated twice"
    assert acked <= {r[0] for r in rows}
