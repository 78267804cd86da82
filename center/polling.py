"""A worker that drains an outbox table: `run_once()` now, or every `poll_s` seconds in its own thread."""
from __future__ import annotations

import logging
import threading

log = logging.getLogger("center")


class PollingWorker:
    """Subclasses set `name`, `poll_s` and write `run_once()`; a failing round is logged and tried again
    (the store may be briefly unavailable): the thread never dies of it."""

    name = "worker"
    poll_s: float = 1.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, now: float | None = None) -> int:
        raise NotImplementedError

    def start(self):
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as e:  # noqa: BLE001 - the barrier: keep polling
                log.error("%s round failed: %s", self.name, type(e).__name__)
            self._stop.wait(self.poll_s)
