"""The pure state machine: every transition, without threads, brokers or clocks."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from device import machine as m
from device.model import Case, Catalog, Reason, Staff
from protocol.values import Channel, Level

STAFF = Staff("S1", "王芳", "0101")
CAT = Catalog("2026.1", (Reason("501", "等候时间长"), Reason("505", "态度不好")))


def case(cid: str = "C1") -> Case:
    return Case(cid, "310115-001", "居住证办理", STAFF, "ap_0123456789", "张*")


STAFF_ON = m.Settings(staff_rating_when_idle=True)


def run(events, state: m.State | None = None, start: float = 0.0):
    """Feed (event, at) pairs; return the final state and all effects."""
    s = state or m.State(catalog=CAT, staff=STAFF, settings=STAFF_ON)
    effects = []
    for ev, at in events:
        s, eff = m.step(s, ev, at)
        effects += eff
    return s, effects


def commits(effects):
    return [e.draft for e in effects if isinstance(e, m.CommitRating)]


def test_good_rating_commits_then_thanks_then_idle():
    s, eff = run([(m.CaseOpened(case()), 0), (m.LevelPressed(Level.SATISFIED), 1)])
    assert s.phase == m.Phase.COMMITTING
    [draft] = commits(eff)
    assert (draft.kind, draft.level, draft.case.id, draft.staff.id, draft.reasons) == \
        ("case", Level.SATISFIED, "C1", "S1", ())
    s, _ = m.step(s, m.Committed("r1"), 1.01)
    assert s.phase == m.Phase.THANKS and s.last_rating_id == "r1"
    s, _ = m.step(s, m.Tick(), 1.01 + s.settings.thanks_s)
    assert s.phase == m.Phase.IDLE


@pytest.mark.parametrize("level", [Level.DISSATISFIED, Level.VERY_DISSATISFIED])
def test_bad_rating_needs_a_reason(level):
    s, eff = run([(m.CaseOpened(case()), 0), (m.LevelPressed(level), 1), (m.ReasonsConfirmed(), 2)])
    assert s.phase == m.Phase.REASONS and not commits(eff)
    assert any(isinstance(e, m.Ignored) and "reason" in e.reason for e in eff)
    s, eff = run([(m.ReasonToggled("505"), 3), (m.ReasonToggled("999"), 3), (m.ReasonsConfirmed(), 4)], s)
    [draft] = commits(eff)
    assert draft.reasons == ("505",) and draft.catalog_version == "2026.1" and draft.level == level


def test_bad_rating_without_catalog_cannot_be_committed():
    s, eff = run([(m.CaseOpened(case()), 0), (m.LevelPressed(Level.DISSATISFIED), 1),
                  (m.ReasonToggled("501"), 2), (m.ReasonsConfirmed(), 3)], m.State(staff=STAFF))
    assert s.phase == m.Phase.REASONS and not commits(eff)


def test_toggling_twice_unselects_and_back_returns_to_case():
    s, _ = run([(m.CaseOpened(case()), 0), (m.LevelPressed(Level.DISSATISFIED), 1),
                (m.ReasonToggled("501"), 2), (m.ReasonToggled("501"), 3)])
    assert s.selected == frozenset()
    s, _ = m.step(s, m.Back(), 4)
    assert s.phase == m.Phase.CASE and s.level is None


def test_case_screen_times_out_and_a_later_close_emits_unrated():
    s, _ = run([(m.CaseOpened(case()), 0)])
    s, _ = m.step(s, m.Tick(), s.settings.case_timeout_s + 1)
    assert s.phase == m.Phase.IDLE and s.case is not None
    s, eff = m.step(s, m.CaseClosed("C1"), 500)
    assert [type(e) for e in eff] == [m.EmitUnrated] and s.case is None


def test_reasons_time_out_back_to_case():
    s, _ = run([(m.CaseOpened(case()), 0), (m.LevelPressed(Level.DISSATISFIED), 1)])
    s, _ = m.step(s, m.Tick(), 1 + s.settings.reasons_timeout_s)
    assert s.phase == m.Phase.CASE


def test_closed_while_choosing_reasons_lets_the_citizen_finish():
    s, eff = run([(m.CaseOpened(case()), 0), (m.LevelPressed(Level.DISSATISFIED), 1),
                  (m.CaseClosed("C1"), 2), (m.ReasonToggled("501"), 3), (m.ReasonsConfirmed(), 4)])
    assert commits(eff) and not any(isinstance(e, m.EmitUnrated) for e in eff)
    s, eff = m.step(s, m.Committed("r"), 4)
    assert s.phase == m.Phase.THANKS and s.case is None and eff == []


def test_closed_while_choosing_reasons_then_abandoned_is_unrated():
    s, eff = run([(m.CaseOpened(case()), 0), (m.LevelPressed(Level.DISSATISFIED), 1), (m.CaseClosed("C1"), 2)])
    s, eff = m.step(s, m.Tick(), 1 + s.settings.reasons_timeout_s)
    assert s.phase == m.Phase.IDLE and [type(e) for e in eff] == [m.EmitUnrated]


def test_rated_elsewhere_closes_the_screen_and_blocks_presses():
    s, eff = run([(m.CaseOpened(case()), 0), (m.CaseRatedElsewhere("C1", Channel.QR), 1),
                  (m.LevelPressed(Level.SATISFIED), 2)])
    assert s.phase == m.Phase.RATED_ELSEWHERE and not commits(eff)
    s, eff = m.step(s, m.CaseClosed("C1"), 3)
    assert not any(isinstance(e, m.EmitUnrated) for e in eff)


def test_one_case_one_rating_late_and_repeated_presses_ignored():
    s, eff = run([(m.CaseOpened(case()), 0), (m.LevelPressed(Level.SATISFIED), 1),
                  (m.LevelPressed(Level.VERY_DISSATISFIED), 1.001)])
    assert len(commits(eff)) == 1
    s, _ = m.step(s, m.Committed("r"), 1.01)
    s, eff = run([(m.LevelPressed(Level.SATISFIED), 2), (m.CaseOpened(case()), 3)], s)
    assert not commits(eff)
    s, _ = m.step(s, m.Tick(), 10)
    s, eff = m.step(s, m.LevelPressed(Level.SATISFIED), 11)  # within the repeat guard after thanks
    assert not commits(eff)


def test_a_case_already_rated_before_a_restart_is_not_shown():
    s, eff = run([(m.CaseOpened(case(), already_rated=True), 0), (m.LevelPressed(Level.SATISFIED), 1)])
    assert s.phase in (m.Phase.IDLE, m.Phase.COMMITTING)
    assert all(d.kind == "staff" for d in commits(eff))


def test_staff_only_rating_when_idle():
    s, eff = run([(m.LevelPressed(Level.SATISFIED, Channel.KEYS), 0)])
    [draft] = commits(eff)
    assert (draft.kind, draft.case, draft.staff.id, draft.channel) == ("staff", None, "S1", Channel.KEYS)


def test_staff_only_rating_needs_staff_on_duty_and_the_setting():
    _, eff = run([(m.LevelPressed(Level.SATISFIED), 0)], m.State(settings=STAFF_ON))
    assert not commits(eff)
    off = m.State(staff=STAFF, settings=m.Settings(staff_rating_when_idle=False))
    _, eff = run([(m.LevelPressed(Level.SATISFIED), 0)], off)
    assert not commits(eff)


def test_idle_staff_ratings_are_off_unless_configured():
    """Issue 8 item 16: at a case window anyone could add a staff rating every repeat_guard_s."""
    assert m.Settings().staff_rating_when_idle is False
    _, eff = run([(m.LevelPressed(Level.SATISFIED), 0)], m.State(catalog=CAT, staff=STAFF))
    assert not commits(eff)


@pytest.mark.parametrize("staff_on", [True, False])
def test_a_press_after_the_case_screen_timed_out_rates_the_open_case(staff_on):
    """Issue 8 item 15: the case is still open at the center, so the press is that case's rating —
    not a staff rating that leaves the case `unrated` (an SMS to the citizen who just pressed)."""
    state = m.State(catalog=CAT, staff=STAFF, settings=m.Settings(staff_rating_when_idle=staff_on))
    s, _ = run([(m.CaseOpened(case()), 0), (m.Tick(), 121)], state)
    assert s.phase == m.Phase.IDLE and s.case is not None
    s, eff = m.step(s, m.LevelPressed(Level.SATISFIED, Channel.KEYS), 300)
    [draft] = commits(eff)
    assert (draft.kind, draft.case.id, draft.staff.id, draft.channel) == ("case", "C1", "S1", Channel.KEYS)
    s, _ = m.step(s, m.Committed("r1"), 300)
    s, eff = run([(m.Tick(), 400), (m.CaseClosed("C1"), 401)], s)
    assert s.case is None and not any(isinstance(e, m.EmitUnrated) for e in eff)


def test_a_bad_press_after_the_case_screen_timed_out_asks_reasons_for_the_case():
    s, _ = run([(m.CaseOpened(case()), 0), (m.Tick(), 121), (m.LevelPressed(Level.DISSATISFIED), 200),
                (m.ReasonToggled("501"), 201)])
    assert s.phase == m.Phase.REASONS and s.kind == "case"
    s, _ = m.step(s, m.Back(), 202)
    assert s.phase == m.Phase.CASE  # back to the case it belongs to


def test_a_cleared_case_leaves_without_an_unrated_follow_up():
    """Issue 8 item 13: an empty retained payload clears the case; it is not a close."""
    s, eff = run([(m.CaseOpened(case()), 0), (m.CaseCleared(), 1)])
    assert s.phase == m.Phase.IDLE and s.case is None and s.qr is None
    assert not any(isinstance(e, m.EmitUnrated) for e in eff)
    s, eff = run([(m.CaseClosed("C1"), 2), (m.LevelPressed(Level.SATISFIED), 3)], s)
    assert not any(isinstance(e, m.EmitUnrated) for e in eff)
    assert all(d.kind == "staff" for d in commits(eff))  # the cleared case is not rateable any more


def test_a_case_cleared_while_choosing_reasons_lets_the_citizen_finish_and_owes_nothing():
    s, _ = run([(m.CaseOpened(case()), 0), (m.LevelPressed(Level.DISSATISFIED), 1), (m.CaseCleared(), 2)])
    assert s.phase == m.Phase.REASONS
    s, eff = m.step(s, m.Tick(), 1 + s.settings.reasons_timeout_s)
    assert s.phase == m.Phase.IDLE and s.case is None and eff == []
    s, eff = run([(m.CaseOpened(case("C2")), 0), (m.LevelPressed(Level.DISSATISFIED), 1), (m.CaseCleared(), 2),
                  (m.ReasonToggled("501"), 3), (m.ReasonsConfirmed(), 4)])
    [draft] = commits(eff)
    assert draft.case.id == "C2"
    s, eff = m.step(s, m.Committed("r"), 4)
    assert s.phase == m.Phase.THANKS and s.case is None and eff == []


def test_new_case_replaces_an_unrated_one_and_reports_it():
    s, eff = run([(m.CaseOpened(case("A")), 0), (m.CaseOpened(case("B")), 1)])
    assert s.case.id == "B" and [e.case.id for e in eff if isinstance(e, m.EmitUnrated)] == ["A"]


def test_commit_failure_shows_unavailable_then_returns_to_the_case():
    s, _ = run([(m.CaseOpened(case()), 0), (m.LevelPressed(Level.SATISFIED), 1)])
    s, _ = m.step(s, m.CommitFailed("disk_full"), 1)
    assert s.phase == m.Phase.UNAVAILABLE
    s, _ = m.step(s, m.Tick(), 1 + s.settings.thanks_s)
    assert s.phase == m.Phase.CASE and not s.case_rated


def test_catalog_change_drops_codes_that_no_longer_exist():
    s, _ = run([(m.CaseOpened(case()), 0), (m.LevelPressed(Level.DISSATISFIED), 1), (m.ReasonToggled("501"), 2)])
    s, _ = m.step(s, m.CatalogChanged(Catalog("2026.2", (Reason("505", "态度不好"),))), 3)
    assert s.selected == frozenset()


EVENTS = st.one_of(
    st.builds(m.CaseOpened, st.sampled_from([case("A"), case("B")]), st.booleans()),
    st.builds(m.CaseClosed, st.sampled_from(["A", "B", "Z"])), st.just(m.CaseCleared()),
    st.builds(m.CaseRatedElsewhere, st.sampled_from(["A", "B"])),
    st.builds(m.LevelPressed, st.sampled_from(list(Level)), st.sampled_from([Channel.TOUCH, Channel.KEYS])),
    st.builds(m.ReasonToggled, st.sampled_from(["501", "505", "x"])),
    st.just(m.ReasonsConfirmed()), st.just(m.Back()), st.just(m.Tick()),
    st.builds(m.Committed, st.just("r")), st.builds(m.CommitFailed, st.just("io")),
)


def test_a_case_reopened_after_its_rating_is_not_rated_again():
    s, _ = run([(m.CaseOpened(case()), 0), (m.LevelPressed(Level.SATISFIED), 1)])
    s, _ = m.step(s, m.Committed("r"), 1)
    s, _ = run([(m.CaseClosed("C1"), 2), (m.Tick(), 100), (m.CaseOpened(case()), 101)], s)
    s, eff = m.step(s, m.LevelPressed(Level.SATISFIED), 200)
    assert all(d.kind == "staff" for d in commits(eff))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(EVENTS, st.floats(0, 200)), max_size=40))
def test_invariants_under_any_event_sequence(script):
    """Whatever happens: at most one case rating per case, bad ratings carry reasons and a catalog,
    never a staff rating while a case is open and unrated, never `unrated` for a case rated here."""
    s = m.State(catalog=CAT, staff=STAFF, settings=STAFF_ON)
    now = 0.0
    rated_cases: list[str] = []
    pending: m.RatingDraft | None = None
    for ev, dt in script:
        now += dt
        if isinstance(ev, (m.Committed, m.CommitFailed)) and pending is None:
            continue  # the runtime only answers a commit it was asked for
        before = s
        s, eff = m.step(s, ev, now)
        if isinstance(ev, m.Committed) and pending.kind == "case":
            rated_cases.append(pending.case.id)
        if isinstance(ev, (m.Committed, m.CommitFailed)):
            pending = None
        for d in commits(eff):
            assert pending is None, "a second commit while one is pending"
            pending = d
            if d.level.is_bad:
                assert d.reasons and d.catalog_version
            if d.kind == "case":
                assert d.case.id not in rated_cases, "one case, one rating"
            else:
                assert d.case is None
                assert before.case is None or before.case_rated, "a staff rating while a case is open"
        for e in eff:
            if isinstance(e, m.EmitUnrated):
                assert e.case.id not in rated_cases, "unrated follow-up for a case rated here"
        assert s.phase != m.Phase.REASONS or s.level.is_bad
        assert (s.phase == m.Phase.COMMITTING) == (pending is not None)
