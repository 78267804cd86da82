"""Active alarms: raised once, logged, published as events and in the retained status."""
from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class Alarms:
    """`on_change(code, detail, state)` with state "raised" (new), "again" (already active) or "cleared"."""

    def __init__(self, on_change: Callable[[str, str, str], None] = lambda code, detail, state: None):
        self._active: dict[str, str] = {}
        self._lock = threading.Lock()
        self._on_change = on_change
        self.last_error = ""

    def raise_(self, code: str, detail: str) -> None:
        """Raise (or re-raise with news): every call is logged; the change notice fires once per code."""
        with self._lock:
            new = code not in self._active
            self._active[code] = detail
            self.last_error = f"{code}: {detail}"
        log.error("ALARM %s: %s", code, detail)
        self._on_change(code, detail, "raised" if new else "again")

    def clear(self, code: str) -> None:
        with self._lock:
            if self._active.pop(code, None) is None:
                return
        log.warning("alarm cleared: %s", code)
        self._on_change(code, "", "cleared")

    def active(self) -> dict[str, str]:
        with self._lock:
            return dict(self._active)
