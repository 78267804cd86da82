"""The worker that drains the follow-up alerts: sweeps for clocks that ran out (queuing `overdue` alerts),
then sends due alerts through the gateway and records each result. Like center/sms/worker.py: the gateway
call happens outside any transaction, each alert claimed in a short write right before it."""
from __future__ import annotations

import logging
import time
from typing import Callable

from center.polling import PollingWorker

from center.followup import alerts
from center.followup.store import sweep_overdue
from center.sms.gateway import Delivery

log = logging.getLogger("center.followup")


class AlertWorker(PollingWorker):
    """`run_once()` sweeps (every `sweep_s`) and sends what is due; `start()`/`stop()` run it in a thread."""

    name = "followup-alerts"

    def __init__(self, store, gateway: alerts.AlertGateway, clock: Callable[[], float] = time.time, *,
                 batch: int = 50, lease_s: float = 300, poll_s: float = 1.0, sweep_s: float = 60,
                 max_attempts: int = alerts.MAX_ATTEMPTS):
        self.store, self.gateway, self.clock = store, gateway, clock
        self.batch, self.lease_s, self.poll_s, self.sweep_s = batch, lease_s, poll_s, sweep_s
        self.max_attempts = max_attempts
        self._swept = float("-inf")
        super().__init__()

    def sweep(self, now: float) -> int:
        with self.store.write() as conn:
            queued = sweep_overdue(conn, now)
        self._swept = now
        return queued

    def run_once(self, now: float | None = None) -> int:
        """Sweep when due, then send every alert due at `now`. How many went to the gateway."""
        now = self.clock() if now is None else now
        if now - self._swept >= self.sweep_s:
            self.sweep(now)
        with self.store.read() as conn:
            due = alerts.due(conn, now, self.batch)
        handed = 0
        for alert in due:
            with self.store.write() as conn:
                if not alerts.claim(conn, alert, now, self.lease_s):
                    continue
            try:
                delivery = self.gateway.send(alert)
            except Exception as e:  # noqa: BLE001 - the barrier: a broken gateway must not stop the worker
                delivery = Delivery("retry", error=f"gateway raised {type(e).__name__}"[:500])
            handed += 1
            with self.store.write() as conn:
                state = alerts.mark(conn, alert, delivery, now, self.max_attempts)
            log.info("alert %s (%s/%s): %s%s", alert.key, alert.center, alert.window, state,
                     f" ({delivery.error})" if delivery.error else "")
        return handed
