"""`make run`: the whole loop on one machine — broker, ledger, center simulator and a terminal.

Everything lives under ./.demo (outbox, ledger database, logs); Ctrl-C stops all of it.
The terminal runs in the foreground with the console view.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from center.broker import Broker, free_port


def main() -> int:
    root = Path(os.environ.get("RATING_DEMO_DIR", ".demo")).resolve()
    (root / "logs").mkdir(parents=True, exist_ok=True)
    broker = Broker(free_port(), workdir=str(root / "logs")).start()
    py = sys.executable
    logs = [open(root / "logs" / name, "ab") for name in ("ledger.log", "simulator.log")]
    # The center side runs in sessions of its own: Ctrl-C reaches only the terminal, which says goodbye
    # (retained offline status) while the broker is still up; then the rest stops in order.
    procs = [
        subprocess.Popen([py, "-m", "center.ledger", "--port", str(broker.port), "--db", str(root / "ledger.db")],
                         stdout=logs[0], stderr=logs[0], start_new_session=True),
        subprocess.Popen([py, "-m", "center.simulator", "--port", str(broker.port)], stdout=logs[1], stderr=logs[1],
                         start_new_session=True),
    ]
    env = {**os.environ, "HCP_MQTT_PORT": str(broker.port), "HCP_DEVICE_DATA_DIR": str(root / "terminal"),
           "HCP_DEVICE_LOG_LEVEL": os.environ.get("HCP_DEVICE_LOG_LEVEL", "WARNING"),
           "HCP_CENTER_ID": "demo", "HCP_CENTER_WINDOW": "W01"}
    print(f"demo: broker on 127.0.0.1:{broker.port}; logs and data in {root}; Ctrl-C stops everything")
    term = subprocess.Popen([py, "-m", "device", "--config", str(root / "terminal.toml")], env=env)
    try:
        term.wait()
    except KeyboardInterrupt:
        term.send_signal(signal.SIGINT)
        term.wait()
    finally:
        for p in reversed(procs):  # simulator, then ledger
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()
        print("demo stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
