"""The SMS schedule (delay, sending hours, backoff) and message text: pure functions, checked by examples
and by properties over any instant, any window and zones with and without daylight saving time."""
from __future__ import annotations

import unicodedata
from datetime import datetime

import pytest
from hypothesis import given, settings, strategies as st

from center.sms import message
from center.sms.schedule import SmsPolicy, backoff_s, due_at, in_window, next_open, retry_at

SHANGHAI = SmsPolicy()
ZONES = ["Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Santiago"]


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def local(ts: float, policy: SmsPolicy = SHANGHAI) -> str:
    return datetime.fromtimestamp(ts, policy.zone).strftime("%Y-%m-%d %H:%M:%S")


# ---- examples -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("closed, expected", [
    ("2026-11-30T10:00:00+08:00", "2026-11-30 10:10:00"),   # in hours: just the delay
    ("2026-11-30T03:00:00+08:00", "2026-11-30 08:00:00"),   # night: this morning
    ("2026-11-30T07:55:00+08:00", "2026-11-30 08:05:00"),
    ("2026-11-30T19:49:59+08:00", "2026-11-30 19:59:59"),
    ("2026-11-30T19:50:00+08:00", "2026-12-01 08:00:00"),   # 20:00 is outside: next morning
    ("2026-11-30T23:59:00+08:00", "2026-12-01 08:00:00"),
    ("2026-12-31T21:00:00+08:00", "2027-01-01 08:00:00"),
])
def test_due_at_examples(closed: str, expected: str) -> None:
    assert local(due_at(at(closed), SHANGHAI)) == expected


def test_a_window_inside_a_skipped_hour_moves_to_the_next_day() -> None:
    # New York skips 02:00-03:00 on 2026-03-08: a 02:00-02:30 window does not exist that day.
    policy = SmsPolicy(delay_s=0, start="02:00", end="02:30", tz="America/New_York")
    assert local(next_open(at("2026-03-08T01:30:00-05:00"), policy), policy) == "2026-03-09 02:00:00"
    # A start inside the skipped hour opens when the clock jumps past it.
    policy = SmsPolicy(delay_s=0, start="02:30", end="04:00", tz="America/New_York")
    assert local(next_open(at("2026-03-08T01:30:00-05:00"), policy), policy) == "2026-03-08 03:00:00"


def test_a_repeated_hour_opens_again_when_the_clock_goes_back() -> None:
    # New York repeats 01:00-02:00 on 2026-11-01: 01:15 EST (the second pass) is before a 01:30 start,
    # so the next opening is 01:30 EST, not the (earlier) 01:30 EDT.
    policy = SmsPolicy(delay_s=0, start="01:30", end="03:00", tz="America/New_York")
    t = at("2026-11-01T01:15:00-05:00")
    assert next_open(t, policy) == at("2026-11-01T01:30:00-05:00")


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_s(a, SHANGHAI) for a in range(1, 10)] == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert backoff_s(10_000, SHANGHAI) == 3600
    noon = at("2026-11-30T12:00:00+08:00")
    assert retry_at(1, noon, SHANGHAI) == noon + 30
    assert local(retry_at(8, at("2026-11-30T19:30:00+08:00"), SHANGHAI)) == "2026-12-01 08:00:00"


@pytest.mark.parametrize("kwargs", [dict(start="8:00"), dict(start="20:00", end="08:00"), dict(end="24:00"),
                                    dict(start="12:00", end="12:00"), dict(tz="Mars/Olympus"), dict(delay_s=-1),
                                    dict(link_ttl_s=0), dict(max_attempts=0), dict(retry_base_s=0),
                                    dict(retry_base_s=60, retry_max_s=30)])
def test_bad_policies_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SmsPolicy(**kwargs)


# ---- properties ---------------------------------------------------------------------------------------

@st.composite
def policies(draw) -> SmsPolicy:
    a, b = sorted(draw(st.lists(st.integers(0, 24 * 60 - 1), min_size=2, max_size=2, unique=True)))
    return SmsPolicy(delay_s=draw(st.integers(0, 3 * 86400)), start=f"{a // 60:02d}:{a % 60:02d}",
                     end=f"{b // 60:02d}:{b % 60:02d}", tz=draw(st.sampled_from(ZONES)))


instants = st.floats(min_value=at("2000-01-01T00:00:00+00:00"), max_value=at("2040-01-01T00:00:00+00:00"),
                     allow_nan=False)


def no_allowed_instant_between(lo: float, hi: float, policy: SmsPolicy) -> bool:
    """Brute force: the zones above change offset on whole minutes and windows are whole minutes, so
    being in the window can only change at a whole minute; checking lo and each minute in (lo, hi) is
    exhaustive."""
    if in_window(lo, policy):
        return False
    minute = (int(lo) // 60 + 1) * 60
    while minute < hi:
        if in_window(minute, policy):
            return False
        minute += 60
    return True


@settings(max_examples=300, deadline=None)
@given(policies(), instants)
def test_due_at_is_the_earliest_allowed_instant_after_the_delay(policy: SmsPolicy, closed: float) -> None:
    earliest = closed + policy.delay_s
    result = due_at(closed, policy)
    assert result >= earliest
    assert in_window(result, policy)
    wall = datetime.fromtimestamp(result, policy.zone).strftime("%H:%M")
    assert policy.start <= wall < policy.end
    if result > earliest:
        assert no_allowed_instant_between(earliest, result, policy)
    else:
        assert result == earliest
    assert next_open(result, policy) == result   # idempotent


@settings(max_examples=200, deadline=None)
@given(policies(), instants, st.integers(1, 50))
def test_retry_at_is_later_capped_and_in_hours(policy: SmsPolicy, now: float, attempt: int) -> None:
    result = retry_at(attempt, now, policy)
    assert in_window(result, policy)
    assert result >= now + policy.retry_base_s
    assert result == next_open(now + min(policy.retry_base_s * 2 ** (attempt - 1), policy.retry_max_s), policy)
    assert retry_at(attempt + 1, now, policy) >= result   # never sooner for a later attempt


# ---- the message --------------------------------------------------------------------------------------

URL = "https://h.gov.cn/s/" + "A" * 22


def test_the_message_names_center_and_item_when_they_fit() -> None:
    assert message.text("浦东市民中心", "浦东市民中心", "居住证签注", URL) == \
        f"【浦东市民中心】您办理的居住证签注已办结，请评价：{URL}"
    assert message.text("浦东", "浦东新区市民中心", "户籍证明", URL) == \
        f"【浦东】您在浦东新区市民中心办理的户籍证明已办结，请评价：{URL}"   # 70: just fits
    assert message.text("浦东", "浦东新区市民中心", "居住证签注", URL) == \
        f"【浦东】您在浦东新区市民中心办理的居住证…已办结，请评价：{URL}"


def test_a_long_item_is_shortened_then_dropped_then_the_center() -> None:
    item = "上海市居住证积分申请（续办）及相关材料补正"
    url43 = "https://hcp.gov.cn/s/" + "A" * 22
    url51 = "https://hcp.example.gov.cn/s/" + "A" * 22
    cases = [
        ("浦东", "浦东新区市民中心", URL, "【浦东】您在浦东新区市民中心办理的上海市…已办结，请评价："),
        ("浦东", "浦东新区市民中心", url43, "【浦东】您在浦东新区市民中心办理的事项已办结，请评价："),
        ("浦东新区政务", "浦东新区市民服务中心", url43, "【浦东新区政务】您在浦东新…办理的事项已办结，请评价："),
        ("浦东新区政务服务", "浦东新区市民中心", url43, "【浦东新区政务服务】您的事项已办结，请评价："),
        ("浦东", "浦东新区市民中心", url51, "【浦东】您的事项已办结，请评价："),
        ("浦东新区政务服务", "浦东新区市民中心", url51, "【浦东新区政务服务】请评价："),
    ]
    for signature, center, url, head in cases:
        msg = message.text(signature, center, item, url)
        assert msg == head + url
        assert message.units(msg) <= 70


def test_a_link_that_cannot_fit_is_refused_not_cut() -> None:
    with pytest.raises(ValueError):
        message.text("浦东市民中心", "", "", "https://example.org/" + "x" * 60)
    for bad_signature in ("", "【假】", "a\nb"):
        with pytest.raises(ValueError):
            message.text(bad_signature, "中心", "事项", URL)
    with pytest.raises(ValueError):
        message.text("浦东", "中心", "事项", "https://h.gov.cn/s/a b")


urls = st.from_regex(r"https://[a-z0-9.]{1,30}/s/[A-Za-z0-9_-]{22}", fullmatch=True)


@settings(max_examples=500, deadline=None)
@given(st.text(min_size=1, max_size=20), st.text(max_size=80), st.text(max_size=80), urls)
def test_any_message_is_one_segment_with_the_link_whole(signature: str, center: str, item: str, url: str) -> None:
    try:
        msg = message.text(signature, center, item, url)
    except ValueError:   # only for a signature carriers would refuse, or one too long to leave room
        s = signature.strip()
        unusable = not s or " ".join(s.split()) != s or \
            any(unicodedata.category(c)[0] == "C" or c in "【】" for c in s)
        assert unusable or message.units(f"【{s}】{url}") > message.SEGMENT
        return
    assert message.units(msg) <= message.SEGMENT
    assert msg.endswith(url)
    assert msg.startswith(f"【{signature.strip()}】")
    assert "\n" not in msg and "\r" not in msg
