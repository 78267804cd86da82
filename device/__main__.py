"""`python -m device`: run the terminal with the console view (the Kivy UI comes in ui/)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from device import config, identity
from device.config import ConfigError
from device.root import hardware_ok, serve, setup_logging


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
    # a check writes nothing: the id it shows is the one kept in the data directory, if any
    dev = identity.device_id(cfg.device.id, data_dir=None if args.check_config else Path(cfg.device.data_dir))
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
    return serve(cfg, dev, lambda term, hardware: ConsoleView(term))


if __name__ == "__main__":
    sys.exit(main())
