"""The center simulator (the demo's case system) through a real broker: it re-publishes its window's
state on every reconnect, and publishes the bindings it is asked to."""
from __future__ import annotations

import threading

from devkit.broker import Broker
from devkit.center import Center
from devkit.simulator import Simulator
from devkit.waiting import wait_for
from protocol import codec, topics


def test_the_window_state_is_published_again_after_a_broker_restart(tmp_path):
    """A broker restored from an older snapshot brings back an older retained case: the simulator's
    re-publication on reconnect supersedes it."""
    (tmp_path / "b").mkdir()
    b = Broker(workdir=str(tmp_path / "b")).start()
    stop = threading.Event()
    sim = Simulator("127.0.0.1", b.port, "C1", "W01", hold_s=600, gap_s=1)
    runner = threading.Thread(target=sim.run, args=(stop,), daemon=True)
    runner.start()
    case_topic = topics.Topics("C1", "W01", "+").case
    try:
        watcher = Center(b.port)
        current = wait_for(lambda: watcher.messages_on(case_topic), what="the first case")[-1]
        watcher.close()
        b.stop()
        b = Broker(port=b.port, workdir=str(tmp_path / "b")).start()  # empty: no retained messages
        stale = {**current, "case": {**current["case"], "id": "SH-FROM-AN-OLD-SNAPSHOT"}}
        old = Center(b.port)
        old.publish(case_topic, stale)  # what the snapshot brought back, before the simulator is back
        assert not sim.c.is_connected()
        wait_for(lambda: any(m["case"]["id"] == current["case"]["id"] for m in old.messages_on(case_topic)),
                 what="the current case published again")
        old.close()
        fresh = Center(b.port)  # a terminal that connects now gets the retained state
        try:
            retained = wait_for(lambda: fresh.messages_on(case_topic), what="retained case")
            assert [m["case"]["id"] for m in retained] == [current["case"]["id"]]
            # retained messages arrive one topic after another: wait for the other two as well
            wait_for(lambda: fresh.messages_on(topics.Topics("C1", "W01", "+").duty), what="retained duty")
            wait_for(lambda: fresh.messages_on(topics.Topics("C1", "W01", "+").catalog), what="retained catalog")
        finally:
            fresh.close()
    finally:
        stop.set()
        runner.join(10)
        sim.c.disconnect()
        sim.c.loop_stop()
        b.stop()


def test_bind_publishes_the_terminals_binding_like_provisioning(broker):
    watcher = Center(broker.port)
    stop = threading.Event()
    sim = Simulator("127.0.0.1", broker.port, "C1", "W01", hold_s=600, gap_s=1, bind=("t1",))
    runner = threading.Thread(target=sim.run, args=(stop,), daemon=True)
    runner.start()
    try:
        topic = topics.Topics("C1", "W01", "t1").binding
        [body] = wait_for(lambda: watcher.messages_on(topic), what="binding")
        assert codec.decode("binding", codec.encode(body))["window"] == "W01"
        assert body["state"] == "active" and body["device"] == "t1"
    finally:
        stop.set()
        runner.join(10)
        sim.c.disconnect()
        sim.c.loop_stop()
        watcher.close()


def test_the_demo_loop_stores_unflagged_first_ratings(broker, tmp_path):
    """`make run`'s parts (ledger, simulator with --bind, terminal): a rating is first and carries no flag."""
    from center.ledger import Ledger, query
    from device.machine import LevelPressed, Phase
    from devkit.terminals import terminal_config, terminals
    from protocol.values import Channel, Level

    led = Ledger(tmp_path / "ledger.db", port=broker.port).start()
    stop = threading.Event()
    sim = Simulator("127.0.0.1", broker.port, "demo", "W01", hold_s=600, gap_s=1, bind=("tdemo",))
    runner = threading.Thread(target=sim.run, args=(stop,), daemon=True)
    runner.start()
    try:
        with terminals() as start:
            t = start(terminal_config(broker.port, tmp_path / "t", HCP_DEVICE_ID="tdemo", HCP_CENTER_ID="demo"),
                      "tdemo")
            wait_for(lambda: t.state.phase == Phase.CASE, what="the simulator's case on the terminal")
            t.submit(LevelPressed(Level.SATISFIED, Channel.TOUCH))
            wait_for(lambda: t.outbox.counts().pending == 0 and query(led.db_path, "SELECT 1 FROM ratings"),
                     what="stored and receipted")
        assert query(led.db_path, "SELECT device, first, flags FROM ratings") == [("tdemo", 1, None)]
        assert query(led.db_path, "SELECT state, window, source FROM bindings") == [("active", "W01", "binding")]
    finally:
        stop.set()
        runner.join(10)
        sim.c.disconnect()
        sim.c.loop_stop()
        led.stop()
