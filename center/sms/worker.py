"""The worker that drains the SMS outbox: due jobs → message → gateway → result recorded.

The gateway call happens outside any transaction (it may take seconds); each job is claimed in a short
write right before it (so one cancelled meanwhile is not sent) and its result recorded in another.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from center.polling import PollingWorker

from center.sms import jobs, message
from center.sms.gateway import Delivery, Gateway, Outgoing, idempotency_key, mask
from center.sms.schedule import SmsPolicy

log = logging.getLogger("center.sms")


class SmsWorker(PollingWorker):
    """`run_once()` sends what is due now; `start()`/`stop()` do it every `poll_s` in a thread."""

    name = "sms-worker"

    def __init__(self, store, gateway: Gateway, policy: SmsPolicy, link_base: str, signature: str,
                 clock: Callable[[], float] = time.time, *, batch: int = 50, lease_s: float = 300,
                 poll_s: float = 1.0):
        self.store, self.gateway, self.policy = store, gateway, policy
        self.link_base, self.signature, self.clock = link_base.rstrip("/"), signature, clock
        self.batch, self.lease_s, self.poll_s = batch, lease_s, poll_s
        super().__init__()

    def url(self, token: str) -> str:
        return f"{self.link_base}/s/{token}"

    def run_once(self, now: float | None = None) -> int:
        """Send every job due at `now` (default: the clock). Returns how many went to the gateway."""
        now = self.clock() if now is None else now
        with self.store.read() as conn:
            due = jobs.due(conn, now, self.batch)
        handed = 0
        for job in due:
            with self.store.write() as conn:
                if not jobs.claim(conn, job, now, self.lease_s):
                    continue
            delivery = self._deliver(job)
            handed += delivery is not None
            if delivery is None:
                delivery = Delivery("failed", error="the message cannot be built (signature or link too long)")
            with self.store.write() as conn:
                state = jobs.mark(conn, job.id, delivery, now, self.policy)
            log.info("sms %s/%s to %s: %s%s", job.center, job.case_id, mask(job.phone), state,
                     f" ({delivery.error})" if delivery.error else "")
        return handed

    def _deliver(self, job: jobs.DueJob) -> Delivery | None:
        """The gateway's answer; None when there is no message to send. A gateway that raises is a retry."""
        try:
            text = message.text(self.signature, job.center_name, job.item_name, self.url(job.link))
        except ValueError:
            return None
        out = Outgoing(job.id, job.center, job.case_id, job.phone, text, idempotency_key(job.center, job.case_id))
        try:
            return self.gateway.send(out)
        except Exception as e:  # noqa: BLE001 - the barrier: a broken gateway must not stop the worker
            detail = str(e).replace(job.phone, mask(job.phone)) if job.phone else str(e)
            return Delivery("retry", error=f"gateway raised {type(e).__name__}: {detail}"[:500])
