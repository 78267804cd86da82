"""The follow-up's pure state step (center/followup/states.py): the legal path, every refusal, the notes'
cleaning, and a hypothesis walk over random action sequences."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from center.followup.states import (ACTIONS, MAX_NOTE, STATES, STEPS, Followup, IllegalStep, allowed, clean_note,
                                    note_entry, step)


def test_the_whole_path_with_who_when_and_notes() -> None:
    fu = Followup()
    fu, e1 = step(fu, "contact", "lee", 10.0, "电话联系，情况属实")
    fu, e2 = step(fu, "answer", "lee", 20.0, "已向群众说明")
    fu, e3 = step(fu, "rectify", "wang", 30.0, "窗口增派人员")
    fu, e4 = step(fu, "close", "wang", 40.0)
    assert fu == Followup("closed", 10.0, 20.0, 30.0, 40.0, 40.0, "wang")
    assert [(e.action, e.who, e.at) for e in (e1, e2, e3, e4)] == [
        ("contact", "lee", 10.0), ("answer", "lee", 20.0), ("rectify", "wang", 30.0), ("close", "wang", 40.0)]
    assert e1.text == "电话联系，情况属实"
    fu, e5 = step(fu, "reopen", "wang", 50.0, "整改不到位")
    assert (fu.state, fu.rectified_at, fu.closed_at, fu.contacted_at) == ("answered", None, None, 10.0)


def test_close_straight_after_the_answer() -> None:
    fu, _ = step(Followup("answered", 1.0, 2.0), "close", "lee", 3.0)
    assert fu.state == "closed" and fu.rectified_at is None and fu.closed_at == 3.0


@pytest.mark.parametrize("state,action", [("open", "answer"), ("open", "close"), ("contacted", "rectify"),
                                          ("closed", "contact"), ("rectified", "rectify"), ("open", "reopen"),
                                          ("answered", "contact")])
def test_illegal_steps_are_refused(state: str, action: str) -> None:
    with pytest.raises(IllegalStep):
        step(Followup(state), action, "lee", 1.0, "说明")


def test_required_notes_who_and_unknown_actions() -> None:
    with pytest.raises(IllegalStep, match="needs a note"):
        step(Followup("contacted"), "answer", "lee", 1.0, "  \n ")
    with pytest.raises(IllegalStep, match="needs a note"):
        step(Followup("closed"), "reopen", "lee", 1.0)
    with pytest.raises(IllegalStep):
        step(Followup(), "contact", "", 1.0)
    with pytest.raises(IllegalStep):
        step(Followup(), "delete", "lee", 1.0)
    with pytest.raises(IllegalStep):
        step(Followup(), "contact", "lee", 1.0, "x" * (MAX_NOTE + 1))
    with pytest.raises(IllegalStep):
        note_entry("lee", 1.0, "\x00\x1b")
    assert note_entry("lee", 1.0, "ok").action == "note"


def test_notes_lose_control_and_direction_characters_but_keep_lines() -> None:
    assert clean_note(" a\x1b[31mb\r\nc\u202ed\x00 ") == "a[31mb\ncd"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ACTIONS + ("bogus",)), st.sampled_from(["", "说明"])), max_size=20))
def test_random_walks_follow_the_table(walk: list[tuple[str, str]]) -> None:
    fu, now = Followup(), 0.0
    for action, note in walk:
        now += 1
        legal = action in STEPS and fu.state in STEPS[action][0] and (note or action not in
                                                                      ("answer", "rectify", "reopen"))
        try:
            after, entry = step(fu, action, "lee", now, note)
        except IllegalStep:
            assert not legal
            continue
        assert legal and after.state == STEPS[action][1] and after.updated == now and entry.action == action
        assert after.state in STATES and action in allowed(fu.state)
        # what a state says has happened has a time, and times never run backwards
        stamps = [after.contacted_at, after.answered_at, after.rectified_at, after.closed_at]
        need = {"open": (), "contacted": (0,), "answered": (0, 1), "rectified": (0, 1, 2), "closed": (0, 1, 3)}
        assert all(stamps[i] is not None for i in need[after.state])
        assert after.state == "closed" or after.closed_at is None
        done = [s for s in stamps if s is not None]
        assert done == sorted(done)
        fu = after
