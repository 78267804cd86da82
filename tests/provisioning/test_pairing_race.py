"""Regression (issue 9, item 2): a rotation racing a rebind, through the real center broker.

A rotated password arrived on the network thread while the core thread applied a move: both wrote
`credentials.json` through the same temp file, without a lock, and the later write could undo the
other's change (the new window lost, or the rotated password lost). Now paho callbacks only decode;
the core thread alone steps `device.pairing` and writes the files.
"""
from __future__ import annotations

import json
import threading

from device import enrolment
from devkit.waiting import wait_for
from tests.provisioning.conftest import code_of, paired_idle


def test_a_rotation_racing_a_rebind_keeps_the_last_granted_password_and_window(site, enrol, monkeypatch):
    t = enrol("race1")
    site.prov.pair(code_of(t), "W01", "tester")
    paired_idle(t, "W01")
    writes: list[tuple[str, str]] = []  # (thread, file) of every private file the terminal writes
    real_write = enrolment.write_private

    def recording(path, data) -> None:
        writes.append((threading.current_thread().name, path.name))
        real_write(path, data)

    monkeypatch.setattr(enrolment, "write_private", recording)
    creds_file = t.data_dir / "credentials.json"
    for generation, window in ((2, "W02"), (3, "W01")):
        race = [threading.Thread(target=site.prov.rotate, args=("race1", "tester")),
                threading.Thread(target=site.prov.move, args=("race1", window, "tester"))]
        for th in race:
            th.start()
        for th in race:
            th.join()
        paired_idle(t, window)
        wait_for(lambda: site.reg.device("race1").cred == generation, 30, f"generation {generation} in force")

        def settled() -> bool:
            c = json.loads(creds_file.read_text())
            return t.online and c["cred"] == generation and not c["next_password"] and c["window"] == window

        wait_for(settled, 30, f"back online with generation {generation} at {window}")
        assert t.binding["window"] == window and t.cfg.center.window == window
        assert t.snapshot.window == window and t.snapshot.pairing is None
    assert ("credentials.json" in {name for _, name in writes}) and ("binding.json" in {name for _, name in writes})
    assert {thread for thread, _ in writes} == {"core-race1"}, writes  # one writer: no shared temp file
    # a retained binding delivered again may be being written right now: a leftover would never go away
    wait_for(lambda: not list(t.data_dir.glob("*.tmp")), 10, "no temp file left behind")
