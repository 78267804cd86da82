"""`make bench`: run every benchmark module, print a table, write bench/results.json.

Each module in SUITES exposes `run() -> dict[str, float]`; a figure and its baseline come from the
same run. Targets (from the issues) are printed beside the figures; nothing here fails on them.
"""
from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from pathlib import Path

SUITES = ["bench.core"]
OPTIONAL_SUITES = ["bench.ui", "bench.drivers"]  # present once their rooms land
RESULTS = Path(__file__).with_name("results.json")


def main() -> int:
    results: dict[str, float] = {}
    for name in SUITES + OPTIONAL_SUITES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if name in OPTIONAL_SUITES and e.name == name:
                continue
            raise
        t0 = time.monotonic()
        print(f"running {name} …", flush=True)
        results.update(mod.run())
        print(f"  {name} took {time.monotonic() - t0:.1f} s", flush=True)
    meta = {"machine": platform.machine(), "python": platform.python_version(),
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    RESULTS.write_text(json.dumps({**results, "_meta": meta}, indent=2, ensure_ascii=False) + "\n")
    width = max(map(len, results)) + 2
    for key, value in results.items():
        print(f"{key:<{width}}{value:>12.3f}")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
