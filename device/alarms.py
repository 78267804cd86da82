"""Active alarms: raised once, logged, published as events and in the retained status."""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable

log = logging.getLogger(__name__)
UNSENT_KEPT = 100  # alarm changes kept for sending while the link is down (the oldest go first)


class Alarms:
    """`on_change(code, detail, state)` with state "raised" (new), "again" (already active) or "cleared".

    Each change to "raised" or "cleared" also waits in `take_unsent()` until someone sends it as an event:
    an alarm raised at start, before the link is up, is sent once it is.
    """

    def __init__(self, on_change: Callable[[str, str, str], None] = lambda code, detail, state: None):
        self._active: dict[str, str] = {}
        self._unsent: deque[tuple[str, str, str]] = deque(maxlen=UNSENT_KEPT)
        self._lock = threading.Lock()
        self._on_change = on_change
        self.last_error = ""

    def raise_(self, code: str, detail: str) -> None:
        """Raise (or re-raise with news): every call is logged; the change notice fires once per code."""
        with self._lock:
            new = code not in self._active
            self._active[code] = detail
            self.last_error = f"{code}: {detail}"
            if new:
                self._unsent.append((code, detail, "raised"))
        log.error("ALARM %s: %s", code, detail)
        self._on_change(code, detail, "raised" if new else "again")

    def clear(self, code: str) -> None:
        with self._lock:
            if self._active.pop(code, None) is None:
                return
            self._unsent.append((code, "", "cleared"))
        log.warning("alarm cleared: %s", code)
        self._on_change(code, "", "cleared")

    def active(self) -> dict[str, str]:
        with self._lock:
            return dict(self._active)

    def take_unsent(self) -> list[tuple[str, str, str]]:
        """The (code, detail, state) changes not yet sent, oldest first; each is handed out once."""
        with self._lock:
            unsent = list(self._unsent)
            self._unsent.clear()
        return unsent
