"""`python -m device`: run the terminal with the console view (the Kivy UI comes in ui/)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from device import config, identity
from device.config import ConfigError


def setup_logging(cfg: config.Config) -> None:
    logging.basicConfig(level=cfg.device.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def hardware_ok(cfg: config.Config) -> bool:
    """A wrong hardware profile is named by key before anything starts (also for `python -m ui`)."""
    if not cfg.hardware.profile:
        return True
    import drivers
    try:
        drivers.check(cfg.hardware)
    except ValueError as e:
        print(e, file=sys.stderr)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rating-terminal", description=__doc__)
    ap.add_argument("--config", action="append", help="TOML file(s), in order (default: "
                    f"{config.MAIN_FILE}, {config.ENROLMENT_FILE}, then {config.BOOT_OVERRIDE})")
    ap.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    args = ap.parse_args(argv)
    try:
        cfg = config.load(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    setup_logging(cfg)
    dev = identity.device_id(cfg.device.id)
    if not hardware_ok(cfg):
        return 2
    if args.check_config:
        problems = config.check(cfg)
        if problems:
            print(ConfigError(problems), file=sys.stderr)
            return 2
        enrol = f"; enrols with center {cfg.center.id} as {cfg.enrolment.username}" if cfg.enrolment.username else ""
        print(f"configuration ok; device id {dev}{enrol}")
        return 0

    from device.console import ConsoleView
    from device.terminal import Terminal

    term = Terminal(cfg, dev)
    hardware = None
    if cfg.hardware.profile:
        import drivers
        hardware = drivers.attach(term)  # keys, LEDs, backlight, printer, small display
    view = ConsoleView(term)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    term.start()
    view.start()
    if term.enrolled:  # the console view shows the rating screens; say what the Unpaired screen would
        term.watch_pairing(lambda p: print(f"[未配对 {p.state}] 配对码 {p.code or '—'} {p.qr_url} {p.detail}".rstrip()
                                           if p else "[已配对] 窗口 " + term.cfg.center.window, flush=True))
    core = threading.Thread(target=term.run, name="core", daemon=True)
    core.start()
    while not stop.is_set() and not view.quit.is_set():
        stop.wait(0.2)
    if hardware is not None:
        hardware.close()
    term.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
