"""`python -m ui`: the rating terminal with its Kivy kiosk UI.

Picks the display by itself: a window on an X11/Wayland desktop, full screen on KMSDRM (a Pi with
no desktop), the console view when there is no display at all or with `--headless`.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from device import config, identity
from device.config import ConfigError
from device.root import hardware_ok, serve, setup_logging

if TYPE_CHECKING:  # pragma: no cover
    from device.port import TerminalPort
    from drivers import Attachment
    from ui.hooks import MaintenanceHooks
    from ui.present import PairingInfo

START = time.monotonic()
log = logging.getLogger("ui")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m ui", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", action="append", help="TOML file(s), in order (default: the same files "
                    "as python -m device)")
    ap.add_argument("--headless", action="store_true", help="no window: the console view")
    ap.add_argument("--display", choices=("auto", "kmsdrm", "desktop", "offscreen"), default="auto",
                    help="where to draw (default: auto-detect)")
    ap.add_argument("--pairing-code", default="", help="show the unpaired screen with this code "
                    "(provisioning sets this; for demos and screenshots)")
    ap.add_argument("--pairing-url", default="", help="the pairing QR code's URL")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = config.load(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    if cfg.ui.rotation not in (0, 90, 180, 270):
        print(f"invalid configuration:\n  ui.rotation: expected 0, 90, 180 or 270, got {cfg.ui.rotation}",
              file=sys.stderr)
        return 2
    from ui import env
    kind = None if args.headless else (env.display_kind() if args.display == "auto" else args.display)
    if kind is None:
        print("ui: no display found: running the console view (use --display to force one)", file=sys.stderr)
        return _console(args)
    if kind == "offscreen":
        env.prepare_offscreen(*_size(cfg.ui.window_size))
    elif kind in ("x11", "wayland", "desktop"):
        env.prepare_desktop(*_size(cfg.ui.window_size), fullscreen=cfg.ui.fullscreen == "yes",
                            rotation=cfg.ui.rotation)
    else:
        env.prepare_kiosk(rotation=cfg.ui.rotation)
    if importlib.util.find_spec("kivy") is None:
        print("ui: Kivy is not installed (pip install -e '.[ui]'): running the console view", file=sys.stderr)
        return _console(args)
    setup_logging(cfg)
    if not hardware_ok(cfg):
        return 2
    from ui.present import PairingInfo
    pairing = PairingInfo(args.pairing_code, args.pairing_url) if args.pairing_code else None
    return run_kiosk(cfg, identity.device_id(cfg.device.id, data_dir=Path(cfg.device.data_dir)), pairing=pairing)


def _size(text: str) -> tuple[int, int]:
    w, h = text.split("x")
    return int(w), int(h)


def _console(args: argparse.Namespace) -> int:
    from device.__main__ import main as console_main
    return console_main(sum((["--config", c] for c in args.config or []), []))


def hardware_hooks(hardware) -> "MaintenanceHooks":
    """The maintenance screen's "test keys" and "print test page", served by the drivers."""
    from drivers.selftest import maintenance_hooks
    from ui.hooks import MaintenanceHooks

    hooks = MaintenanceHooks()
    for action, fn in maintenance_hooks(hardware, say=lambda text: log.info("self-test: %s", text),
                                        on_report=lambda report: log.info("self-test report: %s", report),
                                        on_print=lambda result: log.info("test page: %s", result)).items():
        hooks.register(action, fn)
    return hooks


class KioskView:
    """The Kivy app as the composition root's view (`device.root.serve`)."""

    def __init__(self, term: "TerminalPort", hardware: "Attachment | None", pairing: "PairingInfo | None" = None,
                 hooks: "MaintenanceHooks | None" = None):
        from ui.app import KioskApp
        from ui.audio import make_voice

        if hardware is not None and hooks is None:
            hooks = hardware_hooks(hardware)
        ui = term.snapshot.ui
        self.app = KioskApp(term, pairing=pairing, hooks=hooks,
                            voice=make_voice(ui.voice, ui.language, ui.voice_player), started_at=START)

    def run(self) -> None:
        try:
            self.app.run()
        except KeyboardInterrupt:
            pass
        log.info("kiosk stopped")

    def stop(self) -> None:
        from kivy.clock import Clock
        Clock.schedule_once(lambda dt: self.app.stop(), 0)


def run_kiosk(cfg: config.Config, device_id: str, pairing=None, hooks=None) -> int:
    """The terminal with the kiosk as its view, until the app stops."""
    return serve(cfg, device_id, lambda term, hardware: KioskView(term, hardware, pairing, hooks))


if __name__ == "__main__":
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    sys.exit(main())
