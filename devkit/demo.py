"""`make run`: the whole loop on one machine — broker, the center service (record, phone pages, SMS
follow-up), a center simulator (the case system) and a terminal.

Everything lives under ./.demo (outbox, the center's database, SMS spool, logs); Ctrl-C (or closing the
window) stops all of it. The terminal's QR code opens the real phone page (on this machine; `--lan` serves
it to phones on the local network); a case that closes unrated leaves an SMS in .demo/center/sms-spool
with a working link. The terminal runs in the foreground:

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
import time
from pathlib import Path

from center.__main__ import lan_address
from devkit.broker import Broker, free_port


DEMO_UI = {"HCP_UI_MAINTENANCE_PIN": "2468"}


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


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> bool:
    """Until `url` answers (the service is up), or `proc` died, or the time is up."""
    import urllib.request
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def _hall_url(center_dir: Path, public: str) -> str:
    """The demo hall's printed code (the center service makes the key on first start)."""
    from center.service import secret_file
    from center.web import links
    key = secret_file(center_dir / "secrets" / "static.key")
    return links.hall_url(public, links.sign_hall("s1", key, "demo", 1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devkit.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--view", choices=("auto", "kivy", "console"),
                    default=os.environ.get("RATING_DEMO_VIEW", "auto"),
                    help="how the terminal shows itself (default: auto, or $RATING_DEMO_VIEW)")
    ap.add_argument("--lan", action="store_true", default=os.environ.get("RATING_DEMO_LAN", "") not in ("", "0"),
                    help="serve the phone pages on this machine's LAN address, so a phone on the same network can "
                         "scan the QR code (or RATING_DEMO_LAN=1 make run)")
    args = ap.parse_args(argv)
    view = choose_view(args.view)
    root = Path(os.environ.get("RATING_DEMO_DIR", ".demo")).resolve()
    (root / "logs").mkdir(parents=True, exist_ok=True)
    broker = Broker(free_port(), workdir=str(root / "logs")).start()
    py = sys.executable
    web_port = free_port()
    center_dir = root / "center"
    public = f"http://{lan_address() if args.lan else '127.0.0.1'}:{web_port}"
    logs = [open(root / "logs" / name, "ab") for name in ("center.log", "simulator.log")]
    # The center side runs in sessions of its own: Ctrl-C reaches only the terminal, which says goodbye
    # (retained offline status) while the broker is still up; then the rest stops in order.
    procs = [subprocess.Popen([py, "-m", "center", "serve", "--demo", "--mqtt-port", str(broker.port),
                               "--web-port", str(web_port), "--data", str(center_dir),
                               *(["--lan"] if args.lan else [])],
                              stdout=logs[0], stderr=logs[0], start_new_session=True)]
    if not _wait_http(f"http://127.0.0.1:{web_port}/healthz", procs[0]):
        broker.stop()
        print(f"demo: the center service did not start; see {root / 'logs' / 'center.log'}", file=sys.stderr)
        return 1
    procs.append(subprocess.Popen(
        [py, "-m", "devkit.simulator", "--port", str(broker.port), *_bind_demo_terminal(),
         "--feed", f"http://127.0.0.1:{web_port}", "--feed-key-file", str(center_dir / "secrets" / "feed.key")],
        stdout=logs[1], stderr=logs[1], start_new_session=True))
    env = {**os.environ, "HCP_MQTT_PORT": str(broker.port), "HCP_DEVICE_DATA_DIR": str(root / "terminal"),
           "HCP_DEVICE_LOG_LEVEL": os.environ.get("HCP_DEVICE_LOG_LEVEL", "WARNING"),
           "HCP_CENTER_ID": "demo", "HCP_CENTER_WINDOW": "W01",
           "HCP_QR_URL_TEMPLATE": f"{public}/r?t={{token}}",
           "HCP_UI_HALL_QR_URL": _hall_url(center_dir, public),
           "HCP_QR_DEMO": "true"}  # the published demo key, asked for explicitly (never a default)
    print(f"demo: broker on 127.0.0.1:{broker.port}; phone pages on {public} (the terminal's QR code opens "
          f"them); SMS follow-ups land in {center_dir / 'sms-spool'}; logs and data in {root}; Ctrl-C stops "
          "everything")
    from center.service import DEMO_USERS
    print(f"demo: the center's console on {public}/console/ — " + ", ".join(
        f"{name} / {password} ({role})" for name, password, role, _ in DEMO_USERS))
    if view == "kivy":
        env = {**{k: v for k, v in DEMO_UI.items() if k not in os.environ}, **env}
        print("demo: the terminal opens in a Kivy window (--view console for the text view); maintenance: "
              f"tap the top-left corner five times, PIN {env['HCP_UI_MAINTENANCE_PIN']}")
        cmd = [py, "-m", "ui", "--config", str(root / "terminal.toml")]
    else:
        cmd = [py, "-m", "device", "--config", str(root / "terminal.toml")]
    term = subprocess.Popen(cmd, env=env)
    signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERM to the demo stops everything, as Ctrl-C does
    try:
        term.wait()
    except KeyboardInterrupt:
        term.send_signal(signal.SIGINT)
        term.wait()
    finally:
        for p in reversed(procs):  # simulator, then the center service
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
