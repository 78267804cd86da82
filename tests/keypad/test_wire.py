"""The keypad's protocol code: golden vectors under real MicroPython, records checked by the reference
decoder (protocol.codec), and its decoder held to the reference on mutated messages (hypothesis)."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from protocol import codec
from tests.keypad.mpy import ROOT, on_cpython, run

GOLDEN = ROOT / "protocol" / "golden"
INBOUND = ("case", "duty", "catalog", "config", "receipt", "binding", "sealed", "grant")  # what a keypad reads


def golden_cases() -> list[list]:
    """[file, kind, payload text, expected reason or None] for every golden file of an inbound kind."""
    out = []
    for p in sorted((GOLDEN / "valid").glob("*.json")):
        if p.name.split("-")[0] in INBOUND:
            out.append([p.name, p.name.split("-")[0], p.read_text("utf-8"), None])
    for p in sorted((GOLDEN / "invalid").glob("*.json")):
        w = json.loads(p.read_text("utf-8"))
        if w["kind"] in INBOUND + ("ping",):
            text = w["raw"] if "raw" in w else json.dumps(w["message"], ensure_ascii=False)
            out.append([p.name, w["kind"], text, w["reason"]])
    return out


def test_golden_vectors_under_micropython(tmp_path):
    cases = golden_cases()
    out = run(f"""
import json, wire
cases = json.loads({json.dumps(json.dumps(cases))})
res = []
for name, kind, text, want in cases:
    try:
        wire.decode(kind, text.encode())
        got = None
    except wire.MessageError as e:
        got = e.reason
    res.append([name, got])
print("@" + json.dumps(res))
""", tmp_path)
    got = dict(out[0])
    assert len(got) == len(cases) > 30
    wrong = {name: (got[name], want) for name, _, _, want in cases if got[name] != want}
    assert wrong == {}, "file: (keypad's reason, expected reason)"


def test_records_made_under_micropython_are_the_golden_records(tmp_path):
    """Same inputs → the same rating and unrated messages as protocol/golden/valid, compact UTF-8 JSON."""
    out = run("""
import json, wire
o = {"center": "pudong", "window": "W01", "device": "rpi-1000000a3f9c2b7e"}
bad = {"kind": "case", "level": "dissatisfied", "channel": "keys", "staff": "S0101",
       "case": {"id": "SH20260302000018", "item_code": "310115-014", "staff": "S0101", "token": "ap_0b8e4d1c93a7f265"},
       "reasons": ["501", "505"], "catalog": "2026.1"}
staff = {"kind": "staff", "level": "satisfied", "channel": "touch", "staff": "S0101", "case": None, "reasons": [],
         "catalog": ""}
for m in (wire.rating(bad, o, "0195a7e2-41f0-7d22-9a10-5b6c7d8e9f01", 4128, "2026-03-02T09:40:02.007+08:00"),
          wire.rating(staff, o, "0195a7e2-4a13-7c05-b3e4-0f1e2d3c4b5a", 4129, "2026-03-02T10:02:47.880+08:00")):
    wire.check_outbound(m)
    print("@" + json.dumps(wire.encode(m).decode()))
""", tmp_path)
    for text, golden in zip(out, ("rating-case-bad.json", "rating-staff.json")):
        assert codec.decode("rating", text.encode()) == json.loads((GOLDEN / "valid" / golden).read_text("utf-8"))
        assert text.encode() == codec.encode(json.loads(text)), "compact, UTF-8"


def _mutations():
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**54), st.floats(allow_nan=False, allow_infinity=False),
                        st.text(alphabet="aZ09_-.:/ 王*", max_size=70), st.just("1"), st.just(""))
    values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.sampled_from(["id", "name", "x"]),
                                                                                   scalars, max_size=2))
    return st.tuples(st.sampled_from([p for p in sorted((GOLDEN / "valid").glob("*.json"))
                                      if p.name.split("-")[0] in INBOUND]),
                     st.sampled_from(["set", "delete", "add"]), st.integers(0, 1000), values)


def _paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_the_keypad_decoder_agrees_with_the_reference_on_mutated_messages(m):
    on_cpython()
    import wire
    path, op, pick, value = m
    kind = path.name.split("-")[0]
    msg = json.loads(path.read_text("utf-8"))
    paths = list(_paths(msg))
    where = paths[pick % len(paths)]
    parent = msg
    for k in where[:-1]:
        parent = parent[k]
    if op == "set":
        parent[where[-1]] = value
    elif op == "delete":
        del parent[where[-1]]
    elif isinstance(parent, dict):
        parent["extra_" + str(pick)] = value
    else:
        parent.append(value)
    payload = json.dumps(msg, ensure_ascii=False).encode()
    try:
        codec.decode(kind, payload)
        want = None
    except codec.MessageError as e:
        want = e.reason
    try:
        wire.decode(kind, payload)
        got = None
    except wire.MessageError as e:
        got = e.reason
    assert got == want, (kind, where, op, value)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),
       st.integers(-12 * 60, 14 * 60), st.sampled_from([0, 3, 6]))
def test_the_keypad_reads_and_writes_rfc3339_times_as_python_does(dt, offset_min, digits):
    """clock.parse (the keypad's time decoder) and clock.stamp against datetime, any date and offset."""
    import datetime as d
    on_cpython()
    import clock
    import wire
    tz = d.timezone(d.timedelta(minutes=offset_min))
    aware = dt.replace(tzinfo=tz)
    text = aware.isoformat(timespec={0: "seconds", 3: "milliseconds", 6: "microseconds"}[digits])
    assert wire.is_time(text)
    assert clock.parse(text) == int(aware.replace(microsecond=0).timestamp()), "whole seconds"
    stamped = clock.stamp(offset_min, aware.replace(microsecond=0).timestamp())
    assert d.datetime.fromisoformat(stamped) == aware.replace(microsecond=0)
    assert wire.is_time(stamped) and stamped.endswith(text[-6:])


@given(st.text(alphabet="0123456789-:T.Z+ ", max_size=32))
def test_is_time_is_the_schemas_pattern(text):
    import re
    on_cpython()
    import wire
    pattern = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
    assert wire.is_time(text) == bool(re.fullmatch(pattern, text))
