"""Issue 8 item 7 on the kiosk: without a QR signing key the case screen shows no QR and says
"请在屏幕上评价" (never a QR signed with the published demo key)."""
from __future__ import annotations

from protocol.values import Level
from tests.ui.test_kiosk import level_button, open_case, rate, ready
from ui.present import Screen


def test_without_a_signing_key_the_case_screen_asks_to_rate_on_the_screen(open_kiosk, center):
    d = open_kiosk(HCP_QR_KEY="")
    ready(d, center)
    case = open_case(d, center, "SH7001")
    assert d.t.state.qr is None and case.qr.module_px == 0
    assert "请在屏幕上评价" in d.texts() and "扫码评价，可留言、上传图片" not in d.texts()
    case = open_case(d, center, "SH7002", rating_url="https://platform.example.gov.cn/r/SH7002")
    assert case.qr.module_px >= 2 and "扫码评价，可留言、上传图片" in d.texts()
    d.tap(level_button(case, Level.SATISFIED))
    d.on(Screen.THANKS)


def test_a_full_outbox_without_a_qr_code_does_not_ask_to_scan(open_kiosk, center):
    d = open_kiosk(HCP_QR_KEY="", HCP_UI_STAFF_QR_TEMPLATE="",  # no case QR and no staff QR to fall back on
                   HCP_OUTBOX_CAPACITY="10", HCP_RATING_THANKS_S="1", HCP_RATING_REPEAT_GUARD_S="0")
    ready(d, center)  # no ledger: nothing is receipted, the outbox fills up
    for i in range(10):
        rate(d, center, f"SH71{i:02d}", Level.SATISFIED)
        d.on(Screen.IDLE)
    s = open_case(d, center, "SH7199")
    d.tap(level_button(s, Level.SATISFIED))
    d.on(Screen.UNAVAILABLE)
    assert "暂时无法记录评价" in d.texts() and "请稍后再试或联系工作人员" in d.texts()
    assert "请扫描二维码评价" not in d.texts() and d.widget.qr_card.opacity == 0
