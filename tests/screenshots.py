"""Where rendered screens go: a temporary directory, unless `make screens` asks for the docs.

Tests never write tracked files: `make test` leaves `docs/screens/` alone. `make screens` sets
`HCP_SCREENS_DIR=docs/screens` and runs the rendering tests to refresh the README's pictures.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

ENV = "HCP_SCREENS_DIR"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "screens"
_session_dir: Path | None = None


def screens_dir() -> Path:
    """`$HCP_SCREENS_DIR` when set (relative to the repository), else one temporary directory per run."""
    global _session_dir
    asked = os.environ.get(ENV, "").strip()
    if asked:
        path = Path(asked)
        path = path if path.is_absolute() else DOCS.parents[1] / path
    else:
        if _session_dir is None:
            _session_dir = Path(tempfile.mkdtemp(prefix="hcp-screens-"))
        path = _session_dir
    path.mkdir(parents=True, exist_ok=True)
    return path
