"""Rating keys: the edge filter (bounce, chords, holds, bursts), gpiozero Buttons on MockFactory, routing.

MockFactory runs `when_pressed` synchronously and does not simulate bounce, so bouncy edge sequences
are generated here and driven pin by pin; time comes from a fake clock.
"""
from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings, strategies as st

from device.machine import Back, LevelPressed, Phase, ReasonsConfirmed, ReasonToggled, State
from drivers.keys import SOFT_KEYS, KeyFilter, KeyRouter, KeyTiming, RatingKeys, ReasonCursor
from protocol.values import LEVELS, Channel, Level
from tests.drivers.conftest import CATALOG, case_state

KEYS = [lvl.value for lvl in LEVELS]
PINS = dict(zip(KEYS, (5, 6, 13, 19, 26)))
T = KeyTiming(debounce_s=0.03, hold_max_s=3.0, burst_max=4, burst_window_s=2.0)


def feed(f: KeyFilter, edges):
    return [p for p in (f.edge(k, d, t) for k, d, t in edges) if p is not None]


def bouncy_press(key: str, start: float, hold: float, bounces_in: int = 3, bounces_out: int = 3, gap=0.002):
    """Edges of one press whose contacts chatter on the way down and on the way up."""
    edges, t = [], start
    for _ in range(bounces_in):
        edges += [(key, True, t), (key, False, t + gap)]
        t += 2 * gap
    edges.append((key, True, t))
    t = start + hold
    for _ in range(bounces_out):
        edges += [(key, False, t), (key, True, t + gap)]
        t += 2 * gap
    edges.append((key, False, t))
    return edges


def test_bouncy_presses_count_once():
    f = KeyFilter(KEYS, T)
    out = feed(f, bouncy_press("satisfied", 0.0, 0.15) + bouncy_press("satisfied", 1.0, 0.2, 5, 5))
    assert [(p.key, p.accepted) for p in out] == [("satisfied", True), ("satisfied", True)]
    assert out[0].start == 0.0 and out[0].end == pytest.approx(0.15)


def test_a_blip_shorter_than_debounce_is_not_a_press():
    f = KeyFilter(KEYS, T)
    assert feed(f, [("satisfied", True, 0.0), ("satisfied", False, 0.005)]) == []
    # the next real press starts afresh (not measured from the blip)
    out = feed(f, [("satisfied", True, 5.0), ("satisfied", False, 5.1)])
    assert [(p.accepted, round(p.duration, 3)) for p in out] == [(True, 0.1)]


def test_chord_rejects_both_keys():
    f = KeyFilter(KEYS, T)
    out = feed(f, [("satisfied", True, 0.0), ("very_dissatisfied", True, 0.04),
                   ("satisfied", False, 0.2), ("very_dissatisfied", False, 0.25)])
    assert [(p.key, p.accepted, p.reason) for p in out] == [("satisfied", False, "chord"),
                                                             ("very_dissatisfied", False, "chord")]


def test_keys_one_after_the_other_are_not_a_chord():
    f = KeyFilter(KEYS, T)
    out = feed(f, bouncy_press("satisfied", 0.0, 0.1) + bouncy_press("dissatisfied", 0.101, 0.1))
    assert [(p.key, p.accepted) for p in out] == [("satisfied", True), ("dissatisfied", True)]


def test_held_key_is_rejected_and_reported_while_down():
    f = KeyFilter(KEYS, T)
    assert feed(f, [("satisfied", True, 0.0)]) == []
    assert f.held(2.0) == {"satisfied": 2.0}
    out = feed(f, [("satisfied", False, 3.5)])
    assert [(p.accepted, p.reason) for p in out] == [(False, "held")]
    assert f.held(4.0) == {}


def test_burst_is_rejected_until_it_calms_down():
    f = KeyFilter(KEYS, T)
    edges = []
    for i in range(7):
        edges += [("satisfied", True, i * 0.2), ("satisfied", False, i * 0.2 + 0.08)]
    out = feed(f, edges)
    assert [p.accepted for p in out] == [True] * 4 + [False] * 3
    assert {p.reason for p in out[4:]} == {"burst"}
    later = feed(f, [("satisfied", True, 5.0), ("satisfied", False, 5.1)])
    assert later[0].accepted


@st.composite
def press_plans(draw):
    """Non-overlapping presses with chatter; spaced so that no burst rule applies."""
    plans, t = [], 0.0
    for _ in range(draw(st.integers(1, 12))):
        key = draw(st.sampled_from(KEYS))
        hold = draw(st.floats(0.06, 2.5))
        plans.append((key, t, hold, draw(st.integers(0, 4)), draw(st.integers(0, 4)), draw(st.floats(0.0005, 0.003))))
        t += hold + draw(st.floats(0.6, 3.0))
    return plans


@settings(max_examples=300, deadline=None)
@given(press_plans())
def test_every_bouncy_press_counts_exactly_once(plans):
    f = KeyFilter(KEYS, T)
    edges = [e for key, t, hold, bi, bo, gap in plans for e in bouncy_press(key, t, hold, bi, bo, gap)]
    out = feed(f, edges)
    assert [(p.key, p.accepted) for p in out] == [(key, True) for key, *_ in plans]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KEYS[:3]), st.booleans(), st.floats(0.0, 0.5)), max_size=60))
def test_never_more_presses_than_the_keys_went_down(raw):
    f = KeyFilter(KEYS, T)
    t, edges = 0.0, []
    for key, down, dt in raw:
        t += dt
        edges.append((key, down, t))
    out = feed(f, edges)
    assert len(out) <= sum(1 for _, down, _ in edges if down)
    fresh, level, changed = [], {}, {}  # downs of a key that had been still for a debounce: new presses
    for k, d, t in edges:
        if d != level.get(k, False):
            if d and t - changed.get(k, -1e9) >= T.debounce_s:
                fresh.append((k, t))
            level[k], changed[k] = d, t
    for p in out:  # an accepted press lasted from debounce to hold_max, and no other key was newly pressed meanwhile
        if p.accepted:
            assert T.debounce_s <= p.duration <= T.hold_max_s
            assert not any(k != p.key and p.start <= t < p.end for k, t in fresh)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(KEYS), st.sampled_from(KEYS), st.floats(0.0, 0.5), st.floats(0.05, 1.0), st.floats(0.05, 1.0))
def test_any_overlap_of_two_keys_rejects_both(a, b, offset, hold_a, extra):
    if a == b:
        return
    hold_b = max(0.05, hold_a - offset + extra)
    if offset >= hold_a:  # b starts after a let go: not a chord
        return
    f = KeyFilter(KEYS, T)
    edges = sorted([(a, True, 0.0), (a, False, hold_a), (b, True, offset), (b, False, offset + hold_b)],
                   key=lambda e: e[2])
    out = feed(f, edges)
    assert sorted(p.key for p in out) == sorted([a, b]) and all(p.reason == "chord" for p in out)


# ---- gpiozero Buttons on MockFactory ----------------------------------------------------------

def test_buttons_on_mock_pins_filter_bounce_chords_and_holds(factory, clock, caplog):
    got, rejected = [], []
    keys = RatingKeys(PINS, T, pin_factory=factory, on_press=got.append,
                      on_reject=lambda k, r: rejected.append((k, r)), clock=clock)
    pin = factory.pin(PINS["satisfied"])
    caplog.set_level(logging.WARNING, logger="drivers.keys")
    for _ in range(3):  # bounce on the way down
        pin.drive_low(); clock.advance(0.002); pin.drive_high(); clock.advance(0.002)
    pin.drive_low(); clock.advance(0.15)
    for _ in range(3):  # and on the way up
        pin.drive_high(); clock.advance(0.002); pin.drive_low(); clock.advance(0.002)
    pin.drive_high()
    assert got == ["satisfied"] and rejected == []
    clock.advance(1)
    other = factory.pin(PINS["very_dissatisfied"])
    pin.drive_low(); clock.advance(0.03); other.drive_low(); clock.advance(0.1); pin.drive_high(); clock.advance(0.05)
    other.drive_high()
    clock.advance(1)
    pin.drive_low(); clock.advance(5); pin.drive_high()
    assert got == ["satisfied"]
    assert rejected == [("satisfied", "chord"), ("very_dissatisfied", "chord"), ("satisfied", "held")]
    assert keys.rejected == {"chord": 2, "held": 1}
    assert "rejected: chord" in caplog.text and "rejected: held" in caplog.text
    keys.close()


def test_pull_down_keys_are_pressed_high(factory, clock):
    got = []
    keys = RatingKeys({"satisfied": 6}, T, pull_up=False, pin_factory=factory, on_press=got.append, clock=clock)
    pin = factory.pin(6)
    pin.drive_high(); clock.advance(0.1); pin.drive_low()
    assert got == ["satisfied"]
    keys.close()


def test_diverted_presses_do_not_reach_the_terminal(factory, clock):
    got, diverted = [], []
    keys = RatingKeys(PINS, T, pin_factory=factory, on_press=got.append, clock=clock)
    pin = factory.pin(PINS["dissatisfied"])
    with keys.diverted(diverted.append):
        pin.drive_low(); clock.advance(0.1); pin.drive_high()
    clock.advance(1)
    pin.drive_low(); clock.advance(0.1); pin.drive_high()
    assert [p.key for p in diverted] == ["dissatisfied"] and got == ["dissatisfied"]
    keys.close()


# ---- routing ------------------------------------------------------------------------------------

def test_levels_become_key_channel_events_outside_reasons():
    sent = []
    r = KeyRouter(sent.append, "screen")
    r.state(case_state())
    for key in KEYS:
        r.press(key)
    assert sent == [LevelPressed(Level(k), Channel.KEYS) for k in KEYS]
    sent.clear()
    r.state(State())  # idle: the machine applies the staff-only rule, so the press still goes in
    r.press("satisfied")
    assert sent == [LevelPressed(Level.SATISFIED, Channel.KEYS)]


def test_touch_box_leaves_reasons_to_the_screen():
    sent = []
    r = KeyRouter(sent.append, "screen")
    r.state(case_state(phase=Phase.REASONS, level=Level.DISSATISFIED))
    for key in KEYS:
        r.press(key)
    assert sent == []


def test_buttons_only_reason_flow_soft_keys():
    sent, cursor = [], ReasonCursor()
    r = KeyRouter(sent.append, "keys", cursor)
    key_for = {action: key for key, action in SOFT_KEYS.items()}
    s = case_state(phase=Phase.REASONS, level=Level.VERY_DISSATISFIED)
    r.state(s)
    assert cursor.get() == (0, "")
    r.press(key_for["confirm"])  # nothing chosen: the machine refuses, the display says why
    assert cursor.get()[1] == "请至少选择一项原因"
    r.press(key_for["down"]); r.press(key_for["down"])
    r.press(key_for["toggle"])
    r.press(key_for["up"]); r.press(key_for["up"]); r.press(key_for["up"])  # wraps to the last reason
    r.press(key_for["toggle"])
    r.state(s.__class__(**{**s.__dict__, "selected": frozenset({"503", "506"})}))
    r.press(key_for["confirm"])
    r.press(key_for["back"])
    assert sent == [ReasonsConfirmed(), ReasonToggled("503"), ReasonToggled(CATALOG.reasons[-1].code),
                    ReasonsConfirmed(), Back()]
    assert cursor.get() == (len(CATALOG.reasons) - 1, "")


def test_reason_cursor_starts_at_the_top_of_each_reasons_screen():
    cursor = ReasonCursor()
    r = KeyRouter(lambda e: None, "keys", cursor)
    cursor.set(3)
    r.state(case_state())
    r.state(case_state(phase=Phase.REASONS, level=Level.DISSATISFIED))
    assert cursor.get() == (0, "")


def test_extra_keys_call_their_hooks():
    calls = []
    r = KeyRouter(lambda e: calls.append(e), "screen", extras={"print_slip": lambda: calls.append("print")})
    r.press("print_slip")
    assert calls == ["print"]
