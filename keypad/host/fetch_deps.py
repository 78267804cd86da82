"""Fetch the keypad's pinned third-party code into keypad/.deps/ (git-ignored): run by tools/bootstrap.

- micropython-lib's `umqtt.simple` as published on PyPI (`micropython-umqtt.simple`, pinned by version
  and SHA-256). Its sdist has no setup.py (it was made for MicroPython's `upip`), so pip cannot install
  it; pip finds the pinned file, this checks its SHA-256 and unpacks `umqtt/simple.py`.
- the MicroPython WebAssembly port (npm `@micropython/micropython-webassembly-pyscript`, pinned), with npm.
"""
from __future__ import annotations

import hashlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

UMQTT = ("micropython-umqtt.simple", "1.3.4", "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f")
WASM = "@micropython/micropython-webassembly-pyscript@1.27.0"
DEPS = Path(__file__).resolve().parent.parent / ".deps"


def _sdist(name: str, version: str, sha: str) -> bytes:
    """The pinned sdist's bytes. pip (with this machine's index settings) finds it; it cannot install it
    (no setup.py: the package was made for MicroPython's `upip`), so it names the file and we fetch that."""
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                              "--disable-pip-version-check", "-d", tmp, f"{name}=={version}"],
                             capture_output=True, text=True)
        got = list(Path(tmp).glob("*.tar.gz"))
        if got:
            data = got[0].read_bytes()
        else:
            found = re.search(r" from (\S+\.tar\.gz)", run.stdout + run.stderr)
            if not found:
                sys.exit(f"fetch_deps: pip did not find {name} {version}:\n{(run.stdout + run.stderr)[-2000:]}")
            data = urllib.request.urlopen(found.group(1), timeout=60).read()
    if hashlib.sha256(data).hexdigest() != sha:
        sys.exit(f"fetch_deps: {name} {version} does not have the pinned SHA-256 {sha}")
    return data


def umqtt() -> None:
    target = DEPS / "umqtt" / "simple.py"
    if target.exists():
        return
    name, version, sha = UMQTT
    with tarfile.open(fileobj=io.BytesIO(_sdist(name, version, sha))) as tar:
        body = tar.extractfile(tar.getmember(f"{name}-{version}/umqtt/simple.py")).read()
    target.parent.mkdir(parents=True, exist_ok=True)
    (target.parent / "__init__.py").write_text("")
    target.write_bytes(body)


def wasm() -> None:
    if (DEPS / "node_modules" / WASM.rsplit("@", 1)[0] / "micropython.mjs").exists():
        return
    DEPS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(DEPS), WASM],
                   check=True)


if __name__ == "__main__":
    umqtt()
    wasm()
    print(f"fetch_deps: {DEPS} ready")
