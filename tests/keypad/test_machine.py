"""The keypad's state machine under real MicroPython against device/machine.py: the same random event
streams must give the same phases and the same effects (commits, unrated follow-ups, refusals)."""
from __future__ import annotations

import json
import random

from device import machine as dm
from device.model import Case, Catalog, Reason, Staff
from protocol.values import Channel, Level
from tests.keypad.mpy import run

CASES = ["A1", "A2", "A3", "B7"]
STAFF = ["S01", "S02"]
CODES = ["501", "502", "505", "599"]


def stream(rng: random.Random, n: int) -> list[list]:
    """Events as JSON lists (the keypad's form) with the time each happens."""
    now, out = 0.0, []
    for _ in range(n):
        now += rng.choice([0.1, 0.5, 0.5, 2, 2, 7, 15, 61, 130])
        r = rng.random()
        if r < 0.14:
            ev = ["case_opened", {"id": rng.choice(CASES), "item_code": "310115-001", "staff": rng.choice(STAFF),
                                  "token": "ap_0123456789ab"}, rng.random() < 0.1]
        elif r < 0.2:
            ev = ["case_closed", rng.choice(CASES)]
        elif r < 0.23:
            ev = ["case_cleared"]
        elif r < 0.27:
            ev = ["rated_elsewhere", rng.choice(CASES)]
        elif r < 0.31:
            ev = ["duty", rng.choice(STAFF + [None])]
        elif r < 0.34:
            ev = ["catalog", rng.choice(["v1", "v2"]), rng.sample(CODES, rng.randint(1, 4))]
        elif r < 0.37:
            ev = ["settings", {"staff_rating_when_idle": rng.random() < 0.6, "thanks_s": rng.choice([1, 5])}]
        elif r < 0.6:
            ev = ["level", rng.choice([lv.value for lv in Level]), "keys"]
        elif r < 0.68:
            ev = ["reason", rng.choice(CODES + ["zzz"])]
        elif r < 0.74:
            ev = ["confirm"]
        elif r < 0.77:
            ev = ["back"]
        elif r < 0.9:
            ev = ["tick"]
        elif r < 0.97:
            ev = ["committed", "r%d" % rng.randint(0, 999)]
        else:
            ev = ["commit_failed", "full"]
        out.append([now, ev])
    return out


def to_device(ev: list):
    k = ev[0]
    if k == "case_opened":
        c = ev[1]
        return dm.CaseOpened(Case(c["id"], c["item_code"], "事项", Staff(c["staff"], "王"), c["token"], "张*"), ev[2])
    if k == "settings":
        return dm.SettingsChanged(dm.Settings(**ev[1]))
    if k == "level":
        return dm.LevelPressed(Level(ev[1]), Channel(ev[2]))
    if k == "catalog":
        return dm.CatalogChanged(Catalog(ev[1], tuple(Reason(c, "原因") for c in ev[2])))
    if k == "duty":
        return dm.DutyChanged(Staff(ev[1], "王") if ev[1] else None)
    simple = {"case_closed": dm.CaseClosed, "case_cleared": dm.CaseCleared, "rated_elsewhere": dm.CaseRatedElsewhere,
              "reason": dm.ReasonToggled, "confirm": dm.ReasonsConfirmed, "back": dm.Back, "tick": dm.Tick,
              "committed": dm.Committed, "commit_failed": dm.CommitFailed}
    return simple[k](*ev[1:])


def device_trace(events: list[list]) -> list:
    s, out = dm.State(), []
    for now, ev in events:
        s, effects = dm.step(s, to_device(ev), now)
        norm = []
        for e in effects:
            if isinstance(e, dm.CommitRating):
                d = e.draft
                norm.append(["commit", d.kind, d.level.value, d.staff.id if d.staff else None,
                             d.case.id if d.case else None, list(d.reasons), d.catalog_version])
            elif isinstance(e, dm.EmitUnrated):
                norm.append(["unrated", e.case.id])
            else:
                norm.append(["ignored", e.reason])
        out.append([s.phase.value, norm])
    return out


def test_the_keypad_machine_makes_the_same_decisions_as_the_terminal(tmp_path):
    rng = random.Random(20261130)
    streams = [stream(rng, 200) for _ in range(150)]
    out = run(f"""
import json
from kmachine import Machine
streams = json.loads({json.dumps(json.dumps(streams, ensure_ascii=False))})
for events in streams:
    m = Machine()
    trace = []
    for now, ev in events:
        norm = []
        for e in m.step(tuple(ev), now):
            if e[0] == "commit":
                d = e[1]
                norm.append(["commit", d["kind"], d["level"], d["staff"], d["case"]["id"] if d["case"] else None,
                             d["reasons"], d["catalog"]])
            elif e[0] == "unrated":
                norm.append(["unrated", e[1]["id"]])
            else:
                norm.append(["ignored", e[2]])
        trace.append([m.phase, norm])
    print("@" + json.dumps(trace))
""", tmp_path)
    assert len(out) == len(streams)
    commits = unrated = 0
    for events, got in zip(streams, out):
        want = device_trace(events)
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"step {i} ({events[i]}): keypad {g} vs terminal {w}"
        commits += sum(1 for _, effs in want for e in effs if e[0] == "commit")
        unrated += sum(1 for _, effs in want for e in effs if e[0] == "unrated")
    assert commits > 100 and unrated > 50, "the streams reach commits and follow-ups"
