"""The composition root: one terminal, the drivers of its hardware profile and one view, started and
stopped in one place. `python -m device` (the console view) and `python -m ui` (the kiosk) both run
through `serve`.

Start: the Terminal, then the drivers (they watch it), then the view; `Terminal.start()` starts the
network, courier and core threads. Stop (the view returns: `q`, the window closed, SIGTERM or SIGINT):
the drivers detach, then `Terminal.stop()` joins its threads and closes the outbox.
"""
from __future__ import annotations

import logging
import signal
import sys
from typing import Any, Callable, Protocol

from device import config
from device.port import TerminalPort


class View(Protocol):
    def run(self) -> None:
        """Block until the view quits or `stop()` is called."""

    def stop(self) -> None:
        """Ask `run` to return (called from a signal handler)."""


def setup_logging(cfg: config.Config) -> None:
    logging.basicConfig(level=cfg.device.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def hardware_ok(cfg: config.Config) -> bool:
    """A wrong hardware profile is named by key before anything starts."""
    if not cfg.hardware.profile:
        return True
    import drivers
    try:
        drivers.check(cfg.hardware)
    except ValueError as e:
        print(e, file=sys.stderr)
        return False
    return True


def serve(cfg: config.Config, device_id: str, make_view: Callable[[TerminalPort, Any], View]) -> int:
    """Run the terminal with `make_view(terminal, hardware)` (hardware: the drivers' Attachment or None)
    until the view returns; then stop everything."""
    from device.terminal import Terminal

    term = Terminal(cfg, device_id)
    hardware = None
    if cfg.hardware.profile:
        import drivers
        hardware = drivers.attach(term)  # keys, LEDs, backlight, printer, small display
    view = make_view(term, hardware)
    signal.signal(signal.SIGTERM, lambda *_: view.stop())
    signal.signal(signal.SIGINT, lambda *_: view.stop())
    term.start()
    try:
        view.run()
    finally:
        if hardware is not None:
            hardware.close()
        term.stop()
    return 0
