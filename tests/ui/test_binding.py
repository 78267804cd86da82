"""The kiosk on an enrolled terminal, through a real center broker (TLS, Dynamic Security) and the real
pairing service: what a pairing or a move brings shows without a restart; re-enrolment from the
maintenance screen."""
from __future__ import annotations

from device.machine import Phase
from devkit.waiting import wait_for
from protocol import codec
from tests.provisioning.conftest import code_of, enrol, paired_idle, pki, site  # noqa: F401 (fixtures)
from tests.provisioning.helpers import CENTER
from tests.ui.test_kiosk import enter, gesture
from ui.kiosk import static_matrix
from ui.present import Screen

KIOSK_ENV = {"HCP_UI_TOUCH_GUARD_MS": "0", "HCP_UI_MAINTENANCE_PIN": "2468"}


def title(d) -> str:
    return d.widget.bar.title.text if d.widget is not None and d.widget.bar is not None else ""


def test_pairing_and_a_move_show_the_new_window_and_its_qr_codes_without_a_restart(site, enrol, open_kiosk):
    t = enrol("kq1", **KIOSK_ENV)
    d = open_kiosk.on(t)  # an enrolled terminal: the pairing comes with the core's snapshot
    d.on(Screen.UNPAIRED)
    assert t.cfg.ui.hall_qr_url == ""  # the enrolment file has none: the binding brings it
    site.prov.pair(code_of(t), "W01", "tester")
    paired_idle(t, "W01")
    hall = static_matrix(site.cfg.center.hall_qr_url)
    idle = d.until(lambda: d.screen == Screen.IDLE and title(d) == "W01 综合受理" and d.widget,
                   what="idle screen of W01 with the binding's window name")
    d.until(lambda: idle.hall_qr.modules == hall and idle.hall_qr_card.parent is not None, what="hall QR")
    # W01's roster has two members and there is no duty feed: nobody is assumed to be at the counter
    assert t.state.staff is None and idle.staff_qr_card.parent is None
    site.prov.move("kq1", "W02", "tester")
    d.until(lambda: t.cfg.center.window == "W02" and title(d) == "W02 社保", what="title of the new window")
    # W02's roster is one person: without a duty message, she is the one on duty (staff QR, name)
    staff_url = site.cfg.center.staff_qr_template.replace("{staff}", "S0201")
    d.until(lambda: t.state.staff is not None and t.state.staff.id == "S0201"
            and idle.staff_qr.modules == static_matrix(staff_url) and idle.staff_qr_card.parent is not None,
            what="the roster's staff member and her QR")
    assert "赵敏" in d.texts() and idle.hall_qr.modules == hall
    # a duty message rules over the roster
    sys_ = site.service("centersys")
    try:
        sys_.publish(f"hcp/v1/{CENTER}/window/W02/duty", codec.encode(
            {"v": 1, "type": "duty", "center": CENTER, "window": "W02", "staff": None}), retain=True)
        d.until(lambda: t.state.staff is None and idle.staff_qr_card.parent is None, what="nobody on duty")
    finally:
        sys_.close()


def test_re_enrol_asks_first_then_forgets_the_pairing_and_keeps_what_is_queued(site, enrol, open_kiosk):
    t = enrol("re1", **KIOSK_ENV)
    d = open_kiosk.on(t)
    site.prov.pair(code_of(t), "W01", "tester")
    paired_idle(t, "W01")
    d.on(Screen.IDLE)
    sys_ = site.service("centersys")  # a rating no ledger receipts: it waits in the outbox
    try:
        from tests.provisioning.test_lifecycle import case, rate_open_case
        sys_.publish(f"hcp/v1/{CENTER}/window/W01/case", case("W01", "RE1"), retain=True)
        rate_open_case(t, "RE1")
        sys_.publish(f"hcp/v1/{CENTER}/window/W01/case", case("W01", "RE1", "closed"), retain=True)
    finally:
        sys_.close()
    wait_for(lambda: t.state.phase == Phase.IDLE and t.outbox.counts().pending == 1, what="one queued, idle")
    d.on(Screen.IDLE)
    gesture(d)
    d.on(Screen.PIN)
    enter(d, "2468")
    m = d.on(Screen.MAINTENANCE)
    b = m.actions["re_enrol"]
    assert not b.disabled and b.text == "重新注册"
    d.tap(b)
    assert "再按一次确认" in d.texts() and b.text == "确认重新注册？"
    d.frames(5)
    assert t.mode == "paired"  # nothing happens on the first press
    d.tap(b)
    assert "配对已删除，正在重新申请配对码" in d.texts()
    code = code_of(t, 30)  # it forgot its account and announced again: a new pairing code
    assert t.mode == "enrolling" and not (t.data_dir / "credentials.json").exists()
    assert t.outbox.counts().pending == 1  # the queued rating is kept for the next account
    d.tap(m.exit)
    s = d.on(Screen.UNPAIRED)
    d.until(lambda: s.code.text == f"{code[:3]} {code[3:]}", what="the new code on the screen")
