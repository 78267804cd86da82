"""`make run`: the whole loop on one machine — broker, ledger, center simulator and a terminal.

Everything lives under ./.demo (outbox, ledger database, logs); Ctrl-C (or closing the window) stops
all of it. The terminal runs in the foreground:

- in a Kivy window (`python -m ui`) when a display is there (DISPLAY or WAYLAND_DISPLAY set, or a Pi
  with KMSDRM) and Kivy is installed;
- with the console view (`python -m device`) otherwise, or when asked:
  `python -m devkit.demo --view console` or `RATING_DEMO_VIEW=console make run`.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

from devkit.broker import Broker, free_port


DEMO_UI = {"HCP_UI_HALL_QR_URL": "https://hcp.example.gov.cn/hall/demo",
           "HCP_UI_STAFF_QR_TEMPLATE": "https://hcp.example.gov.cn/staff/{staff}",
           "HCP_UI_MAINTENANCE_PIN": "2468"}


def choose_view(asked: str, env: dict | None = None, on_pi: bool | None = None) -> str:
    """'kivy' or 'console' for `asked` in auto | kivy | console: the window on a desktop, or on a Pi
    without a desktop (KMSDRM); not over SSH to a desktop machine, whose GPU the desktop holds."""
    if asked in ("kivy", "console"):
        return asked
    from ui.env import display_kind, is_raspberry_pi
    kind = display_kind(dict(os.environ if env is None else env))
    if kind == "kmsdrm" and not (is_raspberry_pi() if on_pi is None else on_pi):
        kind = None
    if kind in ("x11", "wayland", "kmsdrm") and importlib.util.find_spec("kivy") is not None:
        return "kivy"
    return "console"


def _bind_demo_terminal() -> list[str]:
    """The simulator publishes the demo terminal's binding (as provisioning would) so the ledger checks
    its ratings against it instead of flagging them `unbound`."""
    from device.identity import device_id
    try:
        return ["--bind", device_id(os.environ.get("HCP_DEVICE_ID", ""))]
    except RuntimeError:
        return []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devkit.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--view", choices=("auto", "kivy", "console"),
                    default=os.environ.get("RATING_DEMO_VIEW", "auto"),
                    help="how the terminal shows itself (default: auto, or $RATING_DEMO_VIEW)")
    view = choose_view(ap.parse_args(argv).view)
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
        subprocess.Popen([py, "-m", "devkit.simulator", "--port", str(broker.port), *_bind_demo_terminal()],
                         stdout=logs[1], stderr=logs[1], start_new_session=True),
    ]
    env = {**os.environ, "HCP_MQTT_PORT": str(broker.port), "HCP_DEVICE_DATA_DIR": str(root / "terminal"),
           "HCP_DEVICE_LOG_LEVEL": os.environ.get("HCP_DEVICE_LOG_LEVEL", "WARNING"),
           "HCP_CENTER_ID": "demo", "HCP_CENTER_WINDOW": "W01",
           "HCP_QR_DEMO": "true"}  # the published demo key, asked for explicitly (never a default)
    print(f"demo: broker on 127.0.0.1:{broker.port}; logs and data in {root}; Ctrl-C stops everything")
    if view == "kivy":
        env = {**{k: v for k, v in DEMO_UI.items() if k not in os.environ}, **env}
        print("demo: the terminal opens in a Kivy window (--view console for the text view); maintenance: "
              f"tap the top-left corner five times, PIN {env['HCP_UI_MAINTENANCE_PIN']}")
        cmd = [py, "-m", "ui", "--config", str(root / "terminal.toml")]
    else:
        cmd = [py, "-m", "device", "--config", str(root / "terminal.toml")]
    term = subprocess.Popen(cmd, env=env)
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
