"""The courier's pacing and re-offers, on a real outbox, with the broker's side played by the test.

The publish seam stands for paho (it hands back a message id, as paho does once it took a message); the
test answers with PUBACKs and receipts and moves the courier's clock itself, so the rules are checked
without waiting 30-second receipt timeouts. Runs through real brokers and ledgers are in
test_delivery.py and in the fleet scenarios (bench/fleet, tests/test_fleet.py).
"""
from __future__ import annotations

from collections import Counter

import pytest

from device.config import OutboxSection
from device.courier import STALL_LIMIT, WINDOW_MIN, Courier
from device.outbox import Outbox
from protocol import builders
from tests.device.test_outbox import DRAFT, ORIGIN

TIMEOUT = 30.0


class Center:
    """The other side of the wire: takes offers, answers PUBACKs and receipts when the test says."""

    def __init__(self, tmp_path, backlog: int, **cfg):
        self.now = 1000.0
        self.outbox = Outbox(tmp_path / "outbox.db")
        for _ in range(backlog):
            self.outbox.add("rating", lambda rid, seq, ts: builders.rating(DRAFT, ORIGIN, rid, seq, ts))
        self.offers: Counter[str] = Counter()
        self.waiting: list[tuple[int, str]] = []  # (mid, id) offered, no receipt yet, in order
        self._mid = 0
        self.courier = Courier(self.outbox, OutboxSection(receipt_timeout_s=TIMEOUT, **cfg),
                               publish=self._publish, on_alarm=lambda code, msg: None, clock=lambda: self.now)
        self.courier.connection(True)
        self.cycle()

    def _publish(self, record) -> int:
        self._mid += 1
        self.offers[record.id] += 1
        self.waiting.append((self._mid, record.id))
        return self._mid

    def cycle(self) -> None:
        self.courier._cycle(0)

    def answer(self, n: int | None = None, skip: int = 0) -> list[str]:
        """PUBACK and receipt the oldest `n` offers waiting (all by default), passing over `skip` first."""
        take = self.waiting[skip:skip + n if n is not None else None]
        for mid, _ in take:
            self.courier.puback(mid, 0, "Success")
        self.courier.receipts([{"id": rid, "status": "stored"} for _, rid in take])
        taken = {mid for mid, _ in take}
        self.waiting = [w for w in self.waiting if w[0] not in taken]
        self.cycle()
        return [rid for _, rid in take]

    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.cycle()

    @property
    def in_flight(self) -> int:
        return len({rid for _, rid in self.waiting})


def test_a_backlog_starts_with_a_small_window_and_opens_as_fast_as_receipts_come(tmp_path):
    c = Center(tmp_path, backlog=3000)
    assert c.in_flight == WINDOW_MIN  # nothing receipted yet: a few, not the whole backlog
    seen = []
    for _ in range(400):  # a quiet center answers at once: the window doubles every round trip
        if not c.outbox.counts().pending:
            break
        c.answer()
        c.tick(0.05)
        seen.append(c.in_flight)
    assert not c.outbox.counts().pending
    assert c.now < 1000 + 4  # 3,000 at up to 100 a turn, 20 turns a second: ~2 s once the window opened
    assert seen[:4] == [8, 16, 32, 64]  # the receipts of the last window_target_s: all so far
    assert max(seen) == c.courier.max_unacked  # the window opened past what may await a PUBACK
    assert set(c.offers.values()) == {1}


def test_a_busy_center_gets_about_window_target_s_of_its_pace_in_flight(tmp_path):
    c = Center(tmp_path, backlog=500, window_target_s=5.0)
    for _ in range(60):  # two receipts a second
        c.answer(2)
        c.tick(1.0)
    assert 1.6 <= c.courier.rate <= 2.0  # receipts at whole seconds: 4 or 5 of them inside the last 5 s
    assert WINDOW_MIN <= c.in_flight <= 2 * 5 + 1  # the receipts of window_target_s (5 s), not 1,000


def test_receipts_in_bursts_do_not_open_the_window_beyond_their_pace(tmp_path):
    """A ledger answers a batch at a time: 40 receipts every 4 s is 10 a second, so 50 in flight at most."""
    c = Center(tmp_path, backlog=2000, window_target_s=5.0)
    peak = 0
    for step in range(240):  # 60 s in quarter seconds
        if step % 16 == 0:
            c.answer(40)
        c.tick(0.25)
        peak = max(peak, c.in_flight)
    assert peak <= 2 * 40 + 1  # a burst counts once for window_target_s: at most two bursts inside 5 s
    assert c.in_flight >= 40


def test_records_queued_behind_a_moving_queue_are_not_offered_again(tmp_path):
    c = Center(tmp_path, backlog=WINDOW_MIN, window=WINDOW_MIN)
    for _ in range(int(2 * TIMEOUT)):  # one receipt every 8 s: the last record waits ~64 s, twice the timeout
        c.tick(1.0)
        if int(c.now) % 8 == 0:
            c.answer(1)
    c.answer()
    assert c.outbox.counts().pending == 0
    assert set(c.offers.values()) == {1}  # without the rule: every record past 30 s offered twice


def test_a_record_passed_over_is_offered_again_at_its_timeout(tmp_path):
    c = Center(tmp_path, backlog=200)
    lost = c.waiting[0][1]  # dropped on the way (a full ledger, a dead worker's share)
    c.waiting.pop(0)
    for _ in range(int(TIMEOUT) + 2):
        c.answer()  # everything else is answered at once, records sent long after `lost` among them
        c.tick(1.0)
    assert c.offers[lost] == 2
    c.answer()
    assert c.outbox.counts().pending == 0


def test_with_no_receipt_at_all_records_are_offered_again_at_their_timeout(tmp_path):
    c = Center(tmp_path, backlog=20)
    first = set(rid for _, rid in c.waiting)
    c.tick(TIMEOUT - 1)
    assert set(c.offers.values()) == {1}
    c.tick(2)
    assert all(c.offers[rid] == 2 for rid in first)  # a stalled center (or a lost broker): as before


def test_waiting_behind_a_queue_ends_after_the_stall_limit(tmp_path):
    c = Center(tmp_path, backlog=WINDOW_MIN + 1, window=WINDOW_MIN + 1)
    stuck = c.waiting[0][1]
    limit = STALL_LIMIT * TIMEOUT  # 120 s
    while c.now < 1000 + limit - 1:  # a receipt every 15 s, never for `stuck`, none for a record sent after it
        c.tick(1.0)
        if int(c.now) % 15 == 0:
            c.answer(1, skip=1)
    assert c.offers[stuck] == 1
    c.tick(2.0)
    assert c.offers[stuck] == 2


@pytest.mark.parametrize("window", [1, 5])
def test_a_configured_window_below_the_minimum_is_kept(tmp_path, window):
    c = Center(tmp_path, backlog=50, window=window)
    assert c.in_flight == window


def test_on_a_driver_a_failing_courier_pauses_without_sleeping_the_drivers_thread(tmp_path, monkeypatch, caplog):
    import device.courier as courier_mod
    c = Center(tmp_path, backlog=5)

    def unavailable(*a, **k):
        raise RuntimeError("store unavailable")

    def no_sleep(s):
        raise AssertionError("the driver's thread slept: its other terminals would wait")

    c.courier.outbox.due = unavailable
    monkeypatch.setattr(courier_mod.time, "sleep", no_sleep)
    c.courier._flights.clear()  # what was in flight is gone: the next cycle reads the outbox, and fails
    c.courier._backlog.clear()
    for _ in range(10):  # inputs keep coming at one moment: one failed cycle, then a pause
        c.courier.connection(True)
        c.courier.pump()
    failed = lambda: sum("courier cycle failed" in r.getMessage() for r in caplog.records)  # noqa: E731
    assert failed() == 1
    c.now += 0.6
    c.courier.pump()
    assert failed() == 2
