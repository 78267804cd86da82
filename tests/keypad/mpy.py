"""Run keypad code under real MicroPython (the WebAssembly port under Node) and import it on CPython."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FW = ROOT / "keypad" / "fw"
DEPS = ROOT / "keypad" / ".deps"
RUNNER = Path(__file__).with_name("mpy_run.mjs")
HEAP = 256 * 1024  # about what a Pico W's MicroPython has free; an ESP32 without PSRAM has ~110 KiB


def ready() -> None:
    wasm = DEPS / "node_modules" / "@micropython" / "micropython-webassembly-pyscript" / "micropython.mjs"
    if not wasm.exists() or not (DEPS / "umqtt" / "simple.py").exists() or not shutil.which("node"):
        raise RuntimeError(f"the keypad's test dependencies are missing ({DEPS}, node): run tools/bootstrap")


def run(script: str, tmp_path: Path, heap: int = HEAP, timeout: float = 300, extra_dirs: list[str] = ()) -> list:
    """Run `script` under MicroPython with keypad/fw on its path; every stdout line starting with `@`
    is a JSON value the script reports. A Python exception there fails the call with its traceback."""
    ready()
    path = tmp_path / "script.py"
    path.write_text(script, "utf-8")
    p = subprocess.run(["node", str(RUNNER), str(heap), str(path), str(FW), str(DEPS), *extra_dirs], capture_output=True,
                       text=True, timeout=timeout, env={**os.environ, "KEYPAD_DEPS": str(DEPS)})
    if p.returncode != 0:
        raise AssertionError(f"MicroPython failed:\n{p.stderr[-4000:]}\n{p.stdout[-2000:]}")
    return [json.loads(line[1:]) for line in p.stdout.splitlines() if line.startswith("@")]


def on_cpython() -> None:
    """Make keypad/fw and micropython-lib's umqtt importable here (umqtt's u-modules mapped to CPython's)."""
    import binascii
    import struct
    from tests.keypad import usocket
    ready()
    sys.modules.setdefault("usocket", usocket)
    sys.modules.setdefault("ussl", usocket)  # its wrap_socket
    sys.modules.setdefault("ustruct", struct)
    sys.modules.setdefault("ubinascii", binascii)
    for p in (str(FW), str(DEPS)):
        if p not in sys.path:
            sys.path.insert(0, p)


def report(value) -> str:
    """MicroPython source that prints one result line (see `run`)."""
    return f"print('@' + json.dumps({value}))"


__all__ = ["run", "on_cpython", "json"]
