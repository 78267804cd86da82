"""The keypad's flash ring under real MicroPython: restarts, power cuts at every byte, a full ring, wear."""
from __future__ import annotations

from tests.keypad.mpy import run

PRELUDE = r"""
import json, os
from ring import Ring, RingFull, OVERHEAD
from twin import NorFlash, PowerCut
import random
random.seed(7)

def rid(i):
    return bytes([i & 0xFF, (i >> 8) & 0xFF]) + b"k" * 14

def body(i, n=None):
    n = n or 330 + (i * 37) % 120
    return (b'{"seq":%d,' % i + b"x" * n)[:n]

def held(ring):
    return {r: ring.read(r) for r in ring.ids() + ring.ids(True)}

def same(a, b):
    return sorted(a.items()) == sorted(b.items())
"""


def test_records_survive_a_restart_in_order_and_a_receipt_deletes_exactly_one(tmp_path):
    out = run(PRELUDE + r"""
f = NorFlash(8)
r = Ring(f)
for i in range(1, 41):
    assert r.append(rid(i), body(i)) == i
for i in range(1, 41, 3):
    assert r.delete(rid(i))
assert not r.delete(rid(1))
r.quarantine(rid(2))
again = Ring(f.image())
print("@" + json.dumps([len(again), again.next_seq, [x[0] | x[1] << 8 for x in again.ids()][:5],
      [x[0] for x in again.ids(True)], same(held(r), held(again)), again.torn, again.corrupt]))
""", tmp_path)
    assert out == [[26, 41, [3, 5, 6, 8, 9], [2], True, 0, 0]]


def test_a_power_cut_at_every_byte_of_an_append_loses_nothing_acknowledged(tmp_path):
    """Cut the power after 0, 1, 2, … bytes of one append (record, commit byte, and a sector opening with
    its relocations): after a restart every earlier record is there, unchanged; the new one is there
    whole or not at all; the ring takes and keeps new records again."""
    out = run(PRELUDE + r"""
results = []
for case in ("room in the head", "opens a sector and relocates"):
    f = NorFlash(5)
    r = Ring(f)
    if case == "room in the head":
        for i in range(1, 5):
            r.append(rid(i), body(i))
    else:
        # Record 1 is never delivered; the others are, with a lag. Stop where the next append must open
        # a sector whose successor holds live records (record 1 among them): a relocation.
        for i in range(1, 2000):
            nxt = (r.head + 2) % r.count if r.head is not None else 1
            if r.erases and r.fill[r.head] + OVERHEAD + len(body(i)) > r.size and r._live_in(nxt):
                break
            r.append(rid(i), body(i))
            if i > 6:
                r.delete(rid(i - 5))
        assert r.erases > 0
    before = held(r)
    probe = f.image()
    pr = Ring(probe)
    start = probe.programmed + sum(probe.erases)
    pr.append(rid(999), body(999))
    steps = probe.programmed + sum(probe.erases) - start
    ok = 0
    for cut in range(steps + 1):
        img = f.image()
        img.cut_after = cut
        try:
            Ring(img).append(rid(999), body(999))
            whole = True
        except PowerCut:
            whole = False
        img.cut_after = None
        after = Ring(img)
        got = held(after)
        new = got.pop(rid(999), None)
        assert same(got, before), (case, cut)
        assert new in (None, body(999)), (case, cut)
        assert whole is False or new == body(999), (case, cut)
        for j in range(1000, 1004):  # the ring goes on
            after.append(rid(j), body(j))
        final = held(Ring(img.image()))
        assert all(final.get(rid(j)) == body(j) for j in range(1000, 1004)), (case, cut)
        assert all(final.get(k) == v for k, v in before.items()), (case, cut)
        ok += 1
    results.append([case, steps, ok])
print("@" + json.dumps(results))
""", tmp_path)
    assert [o[0] for o in out[0]] == ["room in the head", "opens a sector and relocates"]
    small, opening = out[0]
    assert small[1] > 300 and small[2] == small[1] + 1, "every byte of the record and its commit byte"
    assert opening[1] > small[1] + 300, "the opening (invalidate, erase, header, a relocated record) is cut too"
    assert opening[2] == opening[1] + 1


def test_a_power_cut_while_deleting_affects_only_that_record(tmp_path):
    out = run(PRELUDE + r"""
f = NorFlash(4)
r = Ring(f)
for i in range(1, 9):
    r.append(rid(i), body(i))
before = held(r)
img = f.image()
img.cut_after = 0
try:
    Ring(img).delete(rid(3))
except PowerCut:
    pass
img.cut_after = None
got = held(Ring(img))
print("@" + json.dumps([rid(3) in got, same({k: v for k, v in got.items() if k != rid(3)},
                        {k: v for k, v in before.items() if k != rid(3)})]))
""", tmp_path)
    assert out == [[False, True]], "a half-programmed delete mark counts as deleted (the receipt had come)"


def test_a_full_ring_refuses_and_never_overwrites_an_undelivered_record(tmp_path):
    out = run(PRELUDE + r"""
f = NorFlash(5)
r = Ring(f)
i = 0
while True:
    i += 1
    try:
        r.append(rid(i), body(i))
    except RingFull:
        break
held_before = held(r)
refused = 0
for j in range(5):
    try:
        r.append(rid(500 + j), body(1))
    except RingFull:
        refused += 1
again = Ring(f.image())
intact = same(held(again), held_before)
r.delete(rid(1))
r.delete(rid(2))
r.append(rid(600), body(600))
print("@" + json.dumps([i - 1, refused, intact, len(Ring(f.image())), i - 1 - 2 + 1]))
""", tmp_path)
    stored, refused, intact, after, expected = out[0]
    assert stored > 20 and refused == 5 and intact
    assert after == expected, "after two receipts there is room again"


def test_a_stuck_record_does_not_pin_the_ring_and_wear_is_level(tmp_path):
    """A rejected (quarantined) record is carried along as sectors are reused; erases spread evenly."""
    out = run(PRELUDE + r"""
f = NorFlash(16)
r = Ring(f)
r.append(rid(1), body(1))
r.quarantine(rid(1))
live = []
for i in range(2, 3002):
    r.append(rid(i), body(i))
    live.append(rid(i))
    if len(live) > 10:
        r.delete(live.pop(0))
again = Ring(f.image())
print("@" + json.dumps([again.ids(True) == [rid(1)], again.read(rid(1)) == body(1), min(f.erases), max(f.erases),
                        r.programs, r.erases, len(again)]))
""", tmp_path)
    stuck, intact, lo, hi, programs, erases, live = out[0]
    assert stuck and intact and live == 11
    assert hi - lo <= 1, f"erases per sector {lo}..{hi}: round robin"
    assert erases > 100


def test_figures_records_per_sector_and_writes_per_rating(tmp_path):
    """The README's flash figures, measured on real records made by the keypad (wire.py)."""
    out = run(PRELUDE + r"""
import wire
o = {"center": "pudong", "window": "W01", "device": "kp-00a1b2c3"}
case = {"id": "SH20260302000018", "item_code": "310115-014", "staff": "S0101", "token": "ap_0b8e4d1c93a7f265"}
kinds = {
    "case": {"kind": "case", "level": "satisfied", "channel": "keys", "staff": "S0101", "case": case},
    "case_bad": {"kind": "case", "level": "dissatisfied", "channel": "keys", "staff": "S0101", "case": case,
                 "reasons": ["501", "505"], "catalog": "2026.1"},
    "staff": {"kind": "staff", "level": "satisfied", "channel": "keys", "staff": "S0101", "case": None},
}
res = {}
for name, d in kinds.items():
    m = wire.rating(d, o, "0195a7e2-41f0-7d22-9a10-5b6c7d8e9f01", 4128, "2026-03-02T09:40:02.007+08:00")
    p = wire.encode(wire.check_outbound(m))
    f = NorFlash(16)
    r = Ring(f)
    i = 0
    while r.head in (None, 0):
        i += 1
        r.append(rid(i), p)
    per_sector = i - 1
    for j in range(1, i + 1):
        r.delete(rid(j))
    programs, erases = r.programs, r.erases
    for j in range(i + 1, i + 2001):  # a long run: each rating committed, then receipted
        r.append(rid(j), p)
        r.delete(rid(j))
    res[name] = [len(p), per_sector, (r.programs - programs) / 2000, (r.erases - erases) / 2000, min(f.erases), max(f.erases)]
print("@" + json.dumps(res))
""", tmp_path)
    res = out[0]
    for name, (size, per_sector, programs, erases, lo, hi) in res.items():
        years = 100_000 * 16 / (erases * 200) / 365  # 100k erase cycles per sector, 16 sectors, 200 a day
        print(f"\n{name}: {size} bytes, {per_sector} per 4 KiB sector, {programs:.2f} program operations and "
              f"{erases:.4f} sector erases per rating; {years:,.0f} years at 200 a day")
        assert abs(programs - (3 + 2 * erases)) < 0.01, "body, commit byte, delete mark; per sector 2 more"
        assert hi - lo <= 1
    assert res["case"][1] >= 9 and res["staff"][1] >= 14


def test_a_record_whose_bytes_changed_on_flash_is_skipped_and_counted_the_others_stay(tmp_path):
    out = run(PRELUDE + r"""
f = NorFlash(4)
r = Ring(f)
for i in range(1, 6):
    r.append(rid(i), body(i))
e = r.index[rid(2)]
f.mem[e[0] * f.size + e[1] + 31 + 100] &= 0xF7  # one bit of record 2's payload flips (1 -> 0, as flash decays)
again = Ring(f.image())
print("@" + json.dumps([sorted(x[0] for x in again.ids()), again.corrupt, again.torn,
                        all(again.read(rid(i)) == body(i) for i in (1, 3, 4, 5))]))
""", tmp_path)
    assert out == [[[1, 3, 4, 5], 1, 0, True]]
