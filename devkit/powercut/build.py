"""Compile the shim (shim.c) with the machine's gcc into a directory of the caller's: no committed binaries."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("shim.c")


class BuildError(RuntimeError):
    pass


def build(outdir: Path) -> Path:
    """`outdir/powercut-shim.so`, built from shim.c; BuildError names what is missing or failed."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise BuildError("gcc not found: the power-cut shim is compiled at test time (Debian package gcc)")
    out = Path(outdir) / "powercut-shim.so"
    r = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(out), str(SOURCE), "-ldl",
                        "-lpthread"], capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"compiling {SOURCE} failed:\n{r.stderr}")
    return out
