"""`Terminal.start()/stop()` own every thread of the terminal (issue 9, item 5): nobody else starts the
core loop, and `stop()` joins the core before it closes the outbox."""
from __future__ import annotations

import threading

from device.machine import CaseOpened, LevelPressed, Phase
from device.model import Case, Staff
from device.terminal import Terminal
from devkit.terminals import terminal_config
from devkit.waiting import wait_for
from protocol.values import Channel, Level


def test_after_stop_no_thread_of_the_terminal_is_alive_and_the_outbox_closed_after_the_core(broker, tmp_path):
    before = set(threading.enumerate())
    t = Terminal(terminal_config(broker.port, tmp_path / "t1", HCP_DEVICE_ID="t1"), "t1")
    assert not t.alive and set(threading.enumerate()) == before  # constructing starts nothing
    closed_with_core_alive: list[bool] = []
    close = t.outbox.close

    def recording_close() -> None:
        closed_with_core_alive.append(t.alive)
        close()

    t.outbox.close = recording_close
    t.start()
    ours = set(threading.enumerate()) - before
    assert t.alive and {th.name for th in ours} >= {"core-t1", "courier"}
    wait_for(lambda: t.online, what="online")
    case = Case("T1", "310115-001", "居住证办理", Staff("S0101", "王芳", "0101"), "ap_0123456789abcdef", "张*")
    t.submit(CaseOpened(case, qr=t.dynamic_qr(case)))
    t.submit(LevelPressed(Level.SATISFIED, Channel.TOUCH))  # the core is busy committing while stop() comes
    t.stop()
    assert closed_with_core_alive == [False]
    assert not [th.name for th in ours if th.is_alive()]
    assert not [th.name for th in set(threading.enumerate()) - before if th.is_alive()]
    assert t.state.phase in (Phase.CASE, Phase.THANKS, Phase.IDLE)
    t.stop()  # a second stop is harmless
