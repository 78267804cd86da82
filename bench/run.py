"""`make bench`: run every benchmark suite, print a table, write bench/results.json.

Each suite (a module with `run() -> dict[str, float]`) runs in a fresh Python process, as the
terminal does in production, so one suite's leftovers (heap, caches, background writeback) do not
land in the next one's figures. A figure and its baseline always come from the same suite run.
Nothing here fails on a target; `bench.report` puts the figures beside them in docs/performance.md.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

SUITES = ["bench.core", "bench.ui", "bench.drivers", "bench.center", "bench.feed", "bench.data", "bench.city"]
RESULTS = Path(__file__).with_name("results.json")
ROOT = Path(__file__).resolve().parents[1]


def run_suite(name: str) -> dict[str, float]:
    """`name.run()` in a child process; its figures come back as one JSON line on stdout."""
    code = f"import json, {name} as m; print('RESULT ' + json.dumps(m.run()), flush=True)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{name} failed (exit {proc.returncode}); its output:\n{proc.stdout[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> int:
    results: dict[str, float] = {}
    for name in SUITES:
        os.sync()  # the previous suite's dirty pages are written out before this one's fsyncs
        t0 = time.monotonic()
        print(f"running {name} …", flush=True)
        results.update(run_suite(name))
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
