"""Issue 8 item 7 on the kiosk: without a QR signing key the case screen shows no QR and says
"请在屏幕上评价" (never a QR signed with the published demo key)."""
from __future__ import annotations

from protocol.values import Level
from tests.ui.test_kiosk import FULL_OUTBOX, level_button, open_case, press_with_a_full_outbox, ready
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
    d = open_kiosk(HCP_QR_KEY="", HCP_UI_STAFF_QR_TEMPLATE="", **FULL_OUTBOX)  # no case QR, no staff QR either
    press_with_a_full_outbox(d, center, "SH71")
    assert "暂时无法记录评价" in d.texts() and "请稍后再试或联系工作人员" in d.texts()
    assert "请扫描二维码评价" not in d.texts() and d.widget.qr_card.opacity == 0
