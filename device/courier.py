"""The courier: moves records from the outbox to the broker until each one has its receipt.

One thread owns all delivery state. New records go first (a backlog never holds up today's
ratings), then the backlog in sequence order. The backlog is paced by the receipts: at most as many
records await receipts as got theirs in the last `window_target_s` (at least `WINDOW_MIN`, at most
`window`), so a thousand terminals draining at once do not flood a center that can store only so
many a second (issue 14's morning storm). A record without a receipt after `receipt_timeout_s` is
offered again, with jittered exponential backoff — unless receipts are still arriving for records sent
before it and none sent well after it has been answered: then it is only queued behind them (a busy
center, not a lost record), up to `STALL_LIMIT` timeouts. Duplicates on the wire are expected and the
ledger keeps one row per id. A PUBACK reason code ≥ 0x80 or a "rejected" receipt
moves the record to quarantine with an alarm — it is never deleted. A record offered
`outbox.alarm_after_offers` times without any answer raises `no_receipt` and stays in the outbox (under
MQTT 3.1.1 that is how a broker's refusal shows: the broker acknowledges and drops the message).
"""
from __future__ import annotations

import bisect
import heapq
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable

from device.config import OutboxSection
from device.outbox import Outbox, OutboxError, Record
from protocol.transport import backoff

log = logging.getLogger(__name__)
RECENT_RECEIPTS = 20_000
BACKLOG_READ = 500    # records read from the outbox at a time while draining a backlog
WINDOW_MIN = 8        # backlog records in flight however slowly receipts come
FAILED_PAUSE_S = 0.5  # after a cycle failed (say the outbox is unavailable), before the next
STALL_LIMIT = 4       # a record waiting behind a moving queue is offered again after this × receipt_timeout_s
PASS_STEP_S = 0.5     # how finely the courier remembers which sending time got receipts when


@dataclass
class Flight:
    record: Record
    mid: int | None = None
    attempts: int = 0
    offers: int = 0        # times paho took it (attempts while paho would not take it do not count)
    acked: bool = False
    next_offer: float = 0.0
    sent_at: float = 0.0   # the last offer


class Courier:
    def __init__(self, outbox: Outbox, cfg: OutboxSection, *, publish: Callable[[Record], int | None],
                 on_alarm: Callable[[str, str], None], on_clear: Callable[[str], None] = lambda code: None,
                 clock: Callable[[], float] = time.monotonic, max_unacked: int = 100):
        self.outbox = outbox
        self.cfg = cfg
        self.max_unacked = max_unacked
        self._publish = publish
        self._alarm = on_alarm
        self._clear = on_clear
        self._overdue: set[str] = set()   # ids offered alarm_after_offers times without a receipt
        self._newly_overdue: list[str] = []
        self._clock = clock
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._flights: dict[str, Flight] = {}
        self._mids: dict[int, str] = {}
        self._fresh: list[Record] = []
        self._recent: OrderedDict[str, None] = OrderedDict()  # ids receipted lately
        self._undeleted: dict[str, int | None] = {}  # receipted, but their deletion has not committed yet
        self._timers: list[tuple[float, int, str]] = []        # heap of (next offer, seq, id)
        self._cursor = 0          # highest sequence read from the outbox by the backlog scan
        self._backlog: deque[Record] = deque()  # read ahead, not yet offered
        self._online = False
        self._lately: deque[tuple[float, int]] = deque()  # (when, how many) receipts of the last window_target_s
        self._lately_n = 0        # their sum: the backlog's window
        self._receipt_at = -1e18  # when the last receipt came
        # (when, latest `sent_at` receipted by then), appended as that latest rises: what passed what
        self._passes: list[tuple[float, float]] = []
        self._thread = threading.Thread(target=self._run, name="courier", daemon=True)
        self.notify: Callable[[], None] = lambda: None  # told of every queued input (set by a `Driver`)
        self._wake_at = 0.0                             # when `pump` next cycles without new input
        self._paused_until = 0.0                        # no cycle before this after a failed one

    # ---- called from other threads --------------------------------------------------------------

    def start(self) -> None:
        """Deliver on the courier's own thread (else a `device.driver.Driver` calls `pump`)."""
        self._thread.start()

    def stop(self) -> None:
        self._put(("stop",))
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _put(self, item: tuple) -> None:
        self._inbox.put(item)
        self.notify()

    def new_record(self, record: Record) -> None:
        self._put(("new", record))

    def puback(self, mid: int, code: int, name: str) -> None:
        self._put(("puback", mid, code, name))

    def receipts(self, items: list[dict]) -> None:
        self._put(("receipts", items))

    def connection(self, up: bool) -> None:
        self._put(("online" if up else "offline",))

    def requeue(self) -> None:
        self._put(("requeue",))

    def sync(self, timeout: float = 10) -> dict[str, tuple[int, bool]] | None:
        """Wait until the courier has handled everything queued before this call and offered what is due;
        then the records awaiting a receipt: id → (offers so far, PUBACK in). None if it did not answer."""
        done, answer = threading.Event(), {}
        self._put(("sync", done, answer))
        return answer if done.wait(timeout) else None

    # ---- the courier thread (or a driver's) ------------------------------------------------------

    def _run(self) -> None:
        while True:
            pause = self._paused_until - self._clock()
            if pause > 0:  # a failed cycle: on its own thread the courier sleeps (a driver's `pump` skips)
                time.sleep(min(pause, FAILED_PAUSE_S))
                self._paused_until = 0.0
            if not self._cycle(self._next_wakeup()):
                return

    def pump(self) -> None:
        """One cycle without waiting, if anything is queued or due (a driver hosting many couriers)."""
        now = self._clock()
        if now >= self._paused_until and (not self._inbox.empty() or now >= self._wake_at):
            self._cycle(0)

    def _cycle(self, timeout: float) -> bool:
        """Handle what is queued (waiting up to `timeout` for the first), deliver, offer; False on stop."""
        try:
            item = self._inbox.get(timeout=timeout) if timeout > 0 else self._inbox.get_nowait()
        except queue.Empty:
            item = None
        items = [item] if item else []
        while True:  # take everything queued: receipts and pubacks arrive in bursts
            try:
                items.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        try:
            for it in items:
                if it[0] == "stop":
                    return False
                self._handle(it)
            if self._undeleted:
                self._deliver(list(self._undeleted.items()))
            if self._online:
                self._offer()
        except Exception:  # noqa: BLE001 - the courier must outlive any single failure
            log.exception("courier cycle failed; retrying")
            self._paused_until = self._clock() + FAILED_PAUSE_S
        for it in items:
            if it[0] == "sync":
                it[2].update({rid: (f.offers, f.acked) for rid, f in self._flights.items()})
                it[1].set()
        self._wake_at = self._clock() + self._next_wakeup()
        return True

    def _next_wakeup(self) -> float:
        if not self._online or not self._timers:
            return 1.0
        return max(0.0, min(1.0, self._timers[0][0] - self._clock()))

    def _handle(self, it: tuple) -> None:
        kind = it[0]
        if kind == "new":
            self._fresh.append(it[1])
        elif kind == "puback":
            self._on_puback(*it[1:])
        elif kind == "receipts":
            self._on_receipts(it[1])
        elif kind == "online":
            self._online = True
        elif kind == "offline":
            self._online = False
        elif kind == "sync":
            pass  # answered at the end of the cycle
        elif kind == "requeue":
            n = self.outbox.requeue_quarantined()
            self._cursor = 0
            self._backlog.clear()
            log.info("requeued %d quarantined records", n)

    def _on_puback(self, mid: int, code: int, name: str) -> None:
        rid = self._mids.pop(mid, None)
        flight = self._flights.get(rid) if rid else None
        if flight is None or flight.mid != mid:
            return
        if code >= 0x80:
            self._flights.pop(rid, None)
            self._answered(rid)
            if self.outbox.quarantine(rid, f"PUBACK 0x{code:02x} {name}", flight.record.seq):
                log.error("broker refused record %s: 0x%02x %s; quarantined", rid, code, name)
                self._alarm("publish_refused", f"record {rid}: PUBACK 0x{code:02x} {name}; quarantined")
            return
        flight.acked = True  # 0x00 or 0x10 (no subscribers): now we wait for the receipt

    def _on_receipts(self, items: list[dict]) -> None:
        done: list[tuple[str, int | None]] = []
        for i in items:
            rid = i["id"]
            if rid in self._recent:
                continue  # a second receipt for a record already gone (it was offered twice)
            flight = self._flights.get(rid)
            seq = flight.record.seq if flight else None
            if flight is not None and (not self._passes or flight.sent_at > self._passes[-1][1] + PASS_STEP_S):
                self._passed(flight.sent_at)
            self._answered(rid)
            if i["status"] == "rejected":
                self._forget(rid)
                if self.outbox.quarantine(rid, f"rejected by the ledger: {i.get('reason', '')}", seq):
                    self._alarm("record_rejected", f"record {rid}: {i.get('reason', '')}")
            else:
                done.append((rid, seq))
        if done:
            self._receipt_at = self._clock()
            self._lately.append((self._receipt_at, len(done)))
            self._lately_n += len(done)
            self._deliver(done)

    def _deliver(self, done: list[tuple[str, int | None]]) -> None:
        """Delete receipted records; only a committed deletion makes them done.

        If the deletion does not commit (a full disk), the records stay in flight without being offered
        again, and the deletion is retried on every cycle (at least once a second).
        """
        try:
            self.outbox.delivered(done)
        except OutboxError as e:
            if not self._undeleted:
                log.warning("could not remove %d receipted records (%s); trying again", len(done), e)
            self._undeleted.update(done)
            return
        for rid, _ in done:
            self._undeleted.pop(rid, None)
            self._forget(rid)
        while len(self._recent) > RECENT_RECEIPTS:
            self._recent.popitem(last=False)

    def _forget(self, rid: str) -> None:
        """The record has its answer: no more offers, and a second receipt for it is ignored."""
        flight = self._flights.pop(rid, None)
        if flight is not None and flight.mid is not None:
            self._mids.pop(flight.mid, None)
        self._recent[rid] = None

    def _answered(self, rid: str) -> None:
        """A record got its answer: it no longer counts towards `no_receipt`."""
        if rid in self._overdue:
            self._overdue.discard(rid)
            if not self._overdue:
                self._clear("no_receipt")

    def _offer(self) -> None:
        """Hand records to paho: due re-offers, then today's ratings, then the backlog in order.

        Besides the window of records awaiting receipts, at most `max_unacked` may await their PUBACK:
        paho scans everything it holds on every PUBACK, so feeding it more only costs CPU.
        """
        now = self._clock()
        while self._timers and self._timers[0][0] <= now:    # re-offers that are due (never held back)
            when, _, rid = heapq.heappop(self._timers)
            f = self._flights.get(rid)
            if f is not None and f.next_offer == when and rid not in self._undeleted:  # else receipted,
                # rescheduled since, or receipted and waiting for its deletion to commit
                if self._queued_behind(f, now):
                    f.next_offer = min(now + self.cfg.receipt_timeout_s,
                                       f.sent_at + STALL_LIMIT * self.cfg.receipt_timeout_s)
                    heapq.heappush(self._timers, (f.next_offer, f.record.seq, rid))
                else:
                    self._send(f, now)
        while self._fresh and len(self._mids) < self.max_unacked:  # today's ratings before the backlog
            rec = self._fresh.pop(0)
            if rec.id not in self._flights:
                self._send(Flight(rec), now)
        window = self.window(now)
        room = window - len(self._flights)
        if room < window // 2:
            room = 0  # the backlog goes in bunches: a terminal's records share the ledger's batches and receipts
        room = min(room, self.max_unacked - len(self._mids))
        while room > 0 and not self._fresh:                  # then the backlog, in order
            if not self._backlog:
                self._backlog.extend(self.outbox.due(BACKLOG_READ, after=self._cursor))
                if not self._backlog:
                    break
                self._cursor = self._backlog[-1].seq
            rec = self._backlog.popleft()
            if rec.id not in self._flights and rec.id not in self._recent:  # not already sent, or receipted
                self._send(Flight(rec), now)
                room -= 1
        if self._newly_overdue:  # one alarm per cycle, however many records passed the limit in it
            first, n = self._newly_overdue[0], len(self._newly_overdue)
            self._newly_overdue.clear()
            log.error("%d record(s) newly offered %d times without a receipt (e.g. %s); kept in the outbox",
                      n, self.cfg.alarm_after_offers, first)
            self._alarm("no_receipt", f"{len(self._overdue)} record(s) offered {self.cfg.alarm_after_offers} "
                        f"times without a receipt, e.g. {first}; kept in the outbox")

    def window(self, now: float) -> int:
        """Backlog records allowed in flight now: as many as got receipts in the last `window_target_s`.

        So a busy center holds about `window_target_s` of its own pace from each terminal, and a quiet one
        sees the window double every round trip. A count, not a rate smoothed from short samples: receipts
        come in bursts (a ledger batch at a time), and a window sized just after a burst overshoots.
        """
        while self._lately and self._lately[0][0] <= now - self.cfg.window_target_s:
            self._lately_n -= self._lately.popleft()[1]
        return min(self.cfg.window, max(WINDOW_MIN, self._lately_n))

    @property
    def rate(self) -> float:
        """Receipts a second over the last `window_target_s` (as of the last `window` call)."""
        return self._lately_n / self.cfg.window_target_s

    def _queued_behind(self, f: Flight, now: float) -> bool:
        """Is `f`, due for a re-offer, more likely waiting in a busy center's queue than lost?

        Yes if the broker took it, while receipts keep coming (one within the receipt timeout), and `f`
        has waited less than `STALL_LIMIT` timeouts — unless a record sent after `f` got its receipt a
        third of the timeout ago or earlier: queues are first in, first out, so `f` was passed over
        (dropped by a broker or a full ledger). The third allows for N ledger workers' queues.
        """
        t = self.cfg.receipt_timeout_s
        i = bisect.bisect_right(self._passes, f.sent_at, key=lambda p: p[1])
        passed = i < len(self._passes) and now - self._passes[i][0] >= t / 3
        return (f.mid is not None and not passed and now - self._receipt_at < t
                and now - f.sent_at < STALL_LIMIT * t)

    def _passed(self, sent_at: float) -> None:
        """A record sent at `sent_at`, later than any receipted before, got its receipt now."""
        now = self._clock()
        self._passes.append((now, sent_at))  # (at most STALL_LIMIT × receipt_timeout_s / PASS_STEP_S kept)
        del self._passes[:bisect.bisect_left(self._passes, (now - STALL_LIMIT * self.cfg.receipt_timeout_s,))]

    def _send(self, f: Flight, now: float) -> None:
        mid = self._publish(f.record)
        f.sent_at = now
        if f.mid is not None:
            self._mids.pop(f.mid, None)
        f.mid, f.acked = mid, False
        f.next_offer = now + backoff(f.attempts, self.cfg.receipt_timeout_s, self.cfg.retry_max_s) \
            if f.attempts else now + self.cfg.receipt_timeout_s
        f.attempts += 1
        self._flights[f.record.id] = f
        if mid is not None:
            self._mids[mid] = f.record.id
            f.offers += 1
            if f.offers == self.cfg.alarm_after_offers:
                self._overdue.add(f.record.id)
                self._newly_overdue.append(f.record.id)
        else:
            f.next_offer = now + 1.0  # paho would not take it now (disconnected): try again soon
        heapq.heappush(self._timers, (f.next_offer, f.record.seq, f.record.id))
        if len(self._timers) > 4 * self.cfg.window + 1000:  # drop entries of records already receipted
            self._timers = [(x.next_offer, x.record.seq, x.record.id) for x in self._flights.values()]
            heapq.heapify(self._timers)
