"""One thread stepping the core and courier of many terminals (`Terminal.start(driver)`).

A terminal on its board runs its own core and courier threads (device.terminal). A simulator hosting
hundreds of real terminals in one process (bench.fleet) cannot afford two threads each that wake every
second: the driver steps them all on one thread instead — the same `Terminal` and `Courier` code, each
terminal still on its own MQTT connection (paho's network thread) with its own outbox. It wakes when any
of its terminals gets an input, and at least every `every_s` for their deadlines and re-offers.
"""
from __future__ import annotations

import logging
import threading
from typing import Protocol

log = logging.getLogger(__name__)


class Pumped(Protocol):
    def pump(self) -> None: ...


class Driver:
    def __init__(self, every_s: float = 0.1, name: str = "driver"):
        self.every_s = every_s
        self._terms: list[Pumped] = []
        self._changed = threading.Lock()   # held while a turn runs: `remove` waits for it
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __len__(self) -> int:
        return len(self._terms)

    def wake(self) -> None:
        """An input is queued for one of the terminals (any thread)."""
        self._wake.set()

    def add(self, term: Pumped) -> None:
        with self._changed:
            self._terms = [*self._terms, term]
        self.wake()

    def remove(self, term: Pumped) -> None:
        """Stop stepping `term`; from another thread, returns once no turn is stepping it."""
        if threading.current_thread() is self._thread:
            self._terms = [t for t in self._terms if t is not term]
            return
        with self._changed:
            self._terms = [t for t in self._terms if t is not term]

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.every_s)
            self._wake.clear()   # before the turn: an input queued during it wakes the next one
            with self._changed:
                for term in self._terms:
                    try:
                        term.pump()
                    except Exception:  # noqa: BLE001 - one terminal's failure must not stop the others
                        log.exception("driver: a terminal's turn failed")
