"""`Terminal.start(driver)`: many real terminals' cores and couriers stepped on one thread (the fleet
simulator's way to host hundreds per process) — the same behaviour as their own threads."""
from __future__ import annotations

import threading

from center.ledger import query
from device.driver import Driver
from device.machine import Phase
from device.terminal import Terminal
from devkit.terminals import terminal_config
from devkit.waiting import wait_for
from tests.device.test_delivery import rate_cases


def driven(broker, tmp_path, driver: Driver, n: int, **env) -> list[Terminal]:
    out = []
    for k in range(n):
        t = Terminal(terminal_config(broker.port, tmp_path / f"d{k}", HCP_DEVICE_ID=f"d{k}",
                                     HCP_CENTER_WINDOW=f"W{k:02d}", **env), f"d{k}")
        t.start(driver)
        out.append(t)
    return out


def test_driven_terminals_deliver_every_rating_once_with_no_core_or_courier_threads(broker, ledger, tmp_path):
    before = threading.active_count()
    driver = Driver()
    fleet = driven(broker, tmp_path, driver, 5)
    try:
        wait_for(lambda: all(t.online for t in fleet), what="all online")
        # paho's network thread per terminal and the driver's one: no core or courier threads of their own
        assert threading.active_count() - before == len(fleet) + 1
        assert all(t.alive for t in fleet)
        for k, t in enumerate(fleet):
            rate_cases(t, 8, f"DRV{k}-")
        wait_for(lambda: ledger.stored == 40 and all(t.outbox.counts().pending == 0 for t in fleet),
                 what="40 ratings receipted")
        assert query(ledger.db_path, "SELECT count(*), count(DISTINCT id) FROM ratings") == [(40, 40)]
        assert all(t.state.phase == Phase.THANKS for t in fleet), "the last rating of each: thank you"
    finally:
        for t in fleet:
            t.stop()
        driver.stop()
    assert len(driver) == 0 and not driver.alive


def test_deadlines_pass_under_a_driver(broker, ledger, tmp_path):
    """No input at all: the driver's turns still step the core when a deadline passes (thanks → idle)."""
    driver = Driver()
    [t] = driven(broker, tmp_path, driver, 1, HCP_RATING_THANKS_S="1")
    try:
        wait_for(lambda: t.online, what="online")
        rate_cases(t, 1, "DL-")
        wait_for(lambda: t.state.phase == Phase.THANKS, what="thank you")
        wait_for(lambda: t.state.phase == Phase.IDLE, timeout=10, what="back to idle after thanks_s")
        wait_for(lambda: ledger.stored == 1 and t.outbox.counts().pending == 0, what="receipted")
    finally:
        t.stop()
        driver.stop()


def test_a_stopped_terminal_leaves_the_driver_and_the_others_go_on(broker, ledger, tmp_path):
    driver = Driver()
    a, b = driven(broker, tmp_path, driver, 2)
    try:
        wait_for(lambda: a.online and b.online, what="both online")
        a.stop()
        assert len(driver) == 1 and not a.alive
        rate_cases(b, 3, "GO-")
        wait_for(lambda: ledger.stored == 3 and b.outbox.counts().pending == 0, what="b's ratings receipted")
    finally:
        b.stop()
        driver.stop()


class Broken:
    def __init__(self):
        self.turns = 0

    def pump(self) -> None:
        self.turns += 1
        raise RuntimeError("this terminal's turn fails")


class Counting:
    def __init__(self):
        self.turns = 0

    def pump(self) -> None:
        self.turns += 1


def test_one_failing_turn_does_not_stop_the_others():
    driver = Driver(every_s=0.01)
    broken, counting = Broken(), Counting()
    driver.add(broken)
    driver.add(counting)
    try:
        wait_for(lambda: broken.turns >= 5 and counting.turns >= 5, what="both stepped again and again")
        assert driver.alive
    finally:
        driver.stop()
