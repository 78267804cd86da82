"""What a terminal accepts from the center, through a real broker (issue 8 items 7, 8, 10b, 13)."""
from __future__ import annotations

import io
import unicodedata
from datetime import datetime, timedelta

import pytest

from device.config import DEMO_QR_KEY
from device.console import ConsoleView, printable
from device.machine import Phase
from devkit.terminals import TEST_QR_KEY
from devkit.waiting import wait_for
from protocol import qrtoken


def _ago(hours: float) -> str:
    return (datetime.now().astimezone() - timedelta(hours=hours)).isoformat(timespec="seconds")


def _shown(t, case_id: str):
    """Until the views' snapshot shows the case (the core publishes it right after stepping)."""
    def shown():
        s = t.snapshot.state
        return s.case is not None and s.case.id == case_id and s.phase == Phase.CASE
    return wait_for(shown, what=f"case {case_id} on the screen")


# ---- item 7: no key, no dynamic QR, never the demo key ----------------------------------------------

def test_without_a_qr_key_the_case_is_shown_without_a_dynamic_qr(make_terminal, center):
    t = make_terminal(HCP_QR_KEY="")  # key id "test" stays: only the key is missing
    wait_for(lambda: t.online, what="online")
    center.case("SH0001")
    _shown(t, "SH0001")
    assert t.state.qr is None
    view = ConsoleView(t, out=io.StringIO(), inp=io.StringIO())
    assert "请在屏幕上评价" in view.screen(t.snapshot) and "扫码评价" not in view.screen(t.snapshot)
    center.case("SH0002", rating_url="https://platform.example.gov.cn/r/SH0002")
    _shown(t, "SH0002")
    assert t.state.qr is not None and t.state.qr.url.endswith("/SH0002")  # the platform's own URL needs no key


def test_with_a_key_tokens_are_signed_with_it_and_not_with_the_demo_key(make_terminal, center):
    t = make_terminal()
    wait_for(lambda: t.online, what="online")
    center.case("SH0003")
    _shown(t, "SH0003")
    token = t.state.qr.url.split("t=", 1)[1]
    assert qrtoken.verify(token, {"test": bytes.fromhex(TEST_QR_KEY)}).case == "SH0003"
    with pytest.raises(qrtoken.TokenError):
        qrtoken.verify(token, {"test": DEMO_QR_KEY})


# ---- item 8: personal data in any digit form, in any text field --------------------------------------

@pytest.mark.parametrize("extra", [
    {"case": {"id": "P1", "item_code": "310115-001", "item_name": "居住证办理 一三八〇〇一三八〇〇〇"}},
    {"applicant": {"token": "tel_13800138000", "display": "张*"}},
    {"applicant": {"token": "id310101199001011234", "display": "张*"}},
    {"staff": {"id": "S0101", "name": "王芳 138 0013 8000"}},
])
def test_a_case_carrying_a_disguised_phone_or_id_number_is_refused(make_terminal, center, extra):
    t = make_terminal()
    wait_for(lambda: t.online, what="online")
    center.case("P1", **extra)
    wait_for(lambda: t.rejected["personal_data"] == 1, what="refused as personal data")
    assert t.state.case is None
    center.case("P2")
    _shown(t, "P2")


# ---- item 10b: the console view prints no center-supplied controls ------------------------------------

def test_the_console_view_strips_controls_and_bidi_overrides(make_terminal, center):
    t = make_terminal()
    wait_for(lambda: t.online, what="online")
    hostile = "\x1b[2J\x1b[31m办理\x00\u202e\n伪造\r\u2028"
    center.case("SH0004", case={"id": "SH0004", "item_code": "310115-001", "item_name": f"居住证{hostile}"},
                staff={"id": "S0101", "name": f"王{hostile}芳"}, applicant={"token": "ap_0123456789abcdef",
                                                                         "display": "张\x1b[2J\u202e\n*"})
    _shown(t, "SH0004")
    out = io.StringIO()
    view = ConsoleView(t, out=out, inp=io.StringIO())
    view.render(t.snapshot)
    text = out.getvalue()
    lines = text.split("\n")
    assert len(lines) == 6 and lines[-1] == ""  # head, item, staff, scan, levels: no injected line breaks
    assert not [ch for ch in text.replace("\n", "") if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")]
    assert "居住证[2J[31m办理伪造" in text  # the visible text is kept, only the controls go
    assert printable("a\x1b[0m\u202eb\u200bc") == "a[0mbc"


# ---- item 13: old cases stay away --------------------------------------------------------------------

def test_a_retained_case_older_than_the_limit_is_refused_at_boot(make_terminal, center):
    """A center on MQTT 3.1.1 cannot give a retained case an expiry: a two-day-old case came back at boot."""
    center.case("OLD", opened_at=_ago(48))
    t = make_terminal()
    wait_for(lambda: t.rejected["stale_case"] == 1, what="the old case refused")
    assert t.state.case is None and t.state.phase == Phase.IDLE
    center.case("RECENT", opened_at=_ago(11))  # within case.max_age_h = 12
    _shown(t, "RECENT")


def test_the_case_age_limit_is_configurable(make_terminal, center):
    center.case("OLD", opened_at=_ago(48))
    t = make_terminal(HCP_CASE_MAX_AGE_H="72")
    _shown(t, "OLD")


def test_an_empty_retained_case_clears_the_case_without_an_unrated_event(make_terminal, center):
    t = make_terminal()
    wait_for(lambda: t.online, what="online")
    center.case("SH0005")
    _shown(t, "SH0005")
    center.publish(center.topics.case, b"")  # the standard way to clear a retained message
    wait_for(lambda: t.state.case is None, what="case cleared")
    assert t.state.phase == Phase.IDLE and t.state.qr is None and t.rejected["bad_json"] == 0
    center.case("SH0006")  # the core has handled the clear before this case
    _shown(t, "SH0006")
    assert t.outbox.counts().pending == 0  # no `unrated` event (and no ledger here to take one away)


def test_a_case_older_than_one_already_seen_is_ignored_even_after_a_restart(make_terminal, center):
    """A broker restored from an older snapshot re-delivers an earlier retained case."""
    t = make_terminal()
    wait_for(lambda: t.online, what="online")
    center.case("NEWER", opened_at=_ago(1))
    _shown(t, "NEWER")
    center.case("NEWER", state="closed", opened_at=_ago(1))
    wait_for(lambda: t.state.case is None, what="closed")
    t.stop()
    center.case("EARLIER", opened_at=_ago(2))  # what the restored broker holds
    t = make_terminal()
    wait_for(lambda: t.rejected["older_case"] >= 1, what="the earlier case refused")  # queued + retained
    assert t.state.case is None
    center.case("LATEST", opened_at=_ago(0))
    _shown(t, "LATEST")
