"""Pairing, moving, replacing, unpairing and rotating through a real center broker (generated
configuration: TLS, Dynamic Security, no anonymous access), the pairing service and a ledger."""
from __future__ import annotations

import json
import logging
import stat
import threading

from center.ledger import Ledger, query
from device.machine import LevelPressed, Phase
from devkit import factories
from devkit.factories import CATALOG
from devkit.waiting import wait_for
from protocol import codec
from protocol.values import Channel, Level
from tests.provisioning.conftest import code_of, paired_idle
from tests.provisioning.helpers import CENTER

STAFF = factories.STAFF[0]


def case(window: str, case_id: str, state: str = "open") -> bytes:
    return codec.encode(factories.case(CENTER, window, case_id, state))


def seen_cases(term) -> list[str]:
    """Every case id the terminal's screen has shown, in order (recorded by a view)."""
    seen: list[str] = []

    def shown(snap) -> None:
        case = snap.state.case
        if case is not None and (not seen or seen[-1] != case.id):
            seen.append(case.id)

    term.watch(shown)
    return seen


def rate_open_case(term, case_id: str) -> None:
    wait_for(lambda: term.state.phase == Phase.CASE and term.state.case.id == case_id, 20, f"case {case_id} shown")
    term.submit(LevelPressed(Level.SATISFIED, Channel.TOUCH))
    wait_for(lambda: term.state.phase == Phase.THANKS, 10, "thank-you")


def test_pairing_gives_the_terminal_its_own_account_binding_and_catalog(site, enrol, caplog):
    caplog.set_level(logging.DEBUG)
    sys_ = site.service("centersys")
    sys_.publish(f"hcp/v1/{CENTER}/catalog", codec.encode({**CATALOG, "center": CENTER}), retain=True)
    t = enrol("t1")
    assert t.mode == "enrolling" and not (t.data_dir / "credentials.json").exists()
    code = code_of(t)
    assert t.pairing.qr_url == "http://127.0.0.1/pair?device=t1"  # the code is never in a URL
    site.prov.pair(code, "W01", "tester")
    paired_idle(t, "W01")
    creds = t.data_dir / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert stat.S_IMODE((t.data_dir / "enrolment.key").stat().st_mode) == 0o600
    password = json.loads(creds.read_text())["password"]
    b = t.binding
    assert b["window"] == "W01" and [s["id"] for s in b["staff"]] == ["S0101", "S0102"]
    assert t.cfg.ui.hall_qr_url.startswith("https://") and t.cfg.qr.key_id == "t1"
    assert t._qr_key == site.cfg.qr_key()  # the QR signing key, unsealed
    wait_for(lambda: t.state.catalog is not None, 10, "catalog from the center")
    sys_.publish(f"hcp/v1/{CENTER}/window/W01/duty", codec.encode(
        {"v": 1, "type": "duty", "center": CENTER, "window": "W01", "staff": STAFF}), retain=True)
    wait_for(lambda: t.state.staff is not None and t.state.phase == Phase.IDLE, 10, "idle with staff on duty")
    # The credentials answer was retained only until the terminal came online with its own account.
    wait_for(lambda: site.reg.device("t1").answer_topic is None, 10, "answer cleared")
    probe = site.client("enrolment", site.password("enrolment"))
    assert probe.retained(f"hcp/v1/{CENTER}/enrol/+/+/answer") == []  # nothing left for anyone to collect
    probe.close()
    sys_.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert password not in text and site.password("enrolment") not in text


def test_move_changes_window_and_nothing_is_attributed_to_the_wrong_one(site, enrol, center_ledger):
    sys_ = site.service("centersys")
    t = enrol("mv1")
    site.prov.pair(code_of(t), "W01", "tester")
    paired_idle(t, "W01")
    seen = seen_cases(t)
    sys_.publish(f"hcp/v1/{CENTER}/window/W01/case", case("W01", "K1"), retain=True)
    rate_open_case(t, "K1")
    site.prov.move("mv1", "W02", "tester")
    wait_for(lambda: t.cfg.center.window == "W02" and t.topics.case.endswith("/W02/case"), 20, "moved to W02")
    sys_.publish(f"hcp/v1/{CENTER}/window/W01/case", case("W01", "K2"), retain=True)  # old window: not ours now
    sys_.publish(f"hcp/v1/{CENTER}/window/W02/case", case("W02", "K3"), retain=True)
    rate_open_case(t, "K3")
    wait_for(lambda: t.outbox.counts().pending == 0, 30, "all receipted")
    rows = query(center_ledger.db_path, "SELECT case_id, window, device FROM ratings ORDER BY case_id")
    assert rows == [("K1", "W01", "mv1"), ("K3", "W02", "mv1")]
    assert "K2" not in seen
    sys_.close()


def test_replace_old_terminal_delivers_its_backlog_and_takes_no_more_cases(site, enrol, tmp_path):
    sys_ = site.service("centersys")
    old = enrol("old1")
    site.prov.pair(code_of(old), "W01", "tester")
    paired_idle(old, "W01")
    seen_old = seen_cases(old)
    for k in ("R1", "R2", "R3"):  # rated while the ledger is down: held, unreceipted, by the old terminal
        sys_.publish(f"hcp/v1/{CENTER}/window/W01/case", case("W01", k), retain=True)
        rate_open_case(old, k)
    wait_for(lambda: old.outbox.counts().pending == 3, 10, "three held")
    new = enrol("new1")
    site.prov.replace("old1", code_of(new), "tester")
    paired_idle(new, "W01")
    wait_for(lambda: old.pairing is not None and old.pairing.state == "retired", 20, "old terminal retired")
    assert site.reg.device("old1").state == "retired" and site.reg.device("old1").replaced_by == "new1"
    seen_new = seen_cases(new)
    sys_.publish(f"hcp/v1/{CENTER}/window/W01/case", case("W01", "R9"), retain=True)
    rate_open_case(new, "R9")
    led = Ledger(tmp_path / "ledger.db", port=site.local_port, center=CENTER, client_id="ledger-C1",
                 username="ledger", password=site.password("ledger")).start()
    try:
        wait_for(lambda: old.outbox.counts().pending == 0 and new.outbox.counts().pending == 0, 60,
                 "both outboxes receipted")
        rows = query(led.db_path, "SELECT case_id, window, device FROM ratings ORDER BY case_id")
    finally:
        led.stop()
    assert rows == [("R1", "W01", "old1"), ("R2", "W01", "old1"), ("R3", "W01", "old1"), ("R9", "W01", "new1")]
    assert "R9" not in seen_old and "R9" in seen_new
    assert old.state.case is None or old.state.case.id != "R9"
    sys_.close()


def test_unpaired_terminal_drains_then_enrols_again_and_can_pair_elsewhere(site, enrol, center_ledger):
    t = enrol("up1")
    site.prov.pair(code_of(t), "W01", "tester")
    paired_idle(t, "W01")
    site.prov.unpair("up1", "tester")
    code = code_of(t, 30)  # delivered what it held (nothing), forgot its account, announced again
    assert t.mode == "enrolling" and not (t.data_dir / "credentials.json").exists()
    wait_for(lambda: site.reg.device("up1") is None, 20, "its old account deleted at the center")
    site.prov.pair(code, "W02", "tester")
    paired_idle(t, "W02")
    actions = wait_for(lambda: [e.action for e in reversed(site.reg.audit_log())].count("paired-online") == 2
                       and [e.action for e in reversed(site.reg.audit_log())], 20, "online again")
    assert actions == ["pair", "paired-online", "unpair", "left", "pair", "paired-online"]


def test_rotation_takes_effect_once_the_terminal_holds_the_new_password(site, enrol, center_ledger):
    t = enrol("rot1")
    site.prov.pair(code_of(t), "W01", "tester")
    paired_idle(t, "W01")
    old_password = json.loads((t.data_dir / "credentials.json").read_text())["password"]
    assert site.prov.rotate("rot1", "tester") == 2
    wait_for(lambda: site.reg.device("rot1").cred == 2, 30, "rotation confirmed and set at the broker")
    def settled() -> bool:  # online with generation 2, and the old password forgotten (set just after connecting)
        c = json.loads((t.data_dir / "credentials.json").read_text())
        return t.online and c["cred"] == 2 and not c["next_password"]

    wait_for(settled, 30, "terminal back online with the new password, the old one dropped")
    creds = json.loads((t.data_dir / "credentials.json").read_text())
    assert creds["password"] != old_password and not creds["next_password"]
    c = site.client("rot1", old_password, client_id=creds["client_id"])
    assert c.refused == 0x86 or c.refused == 0x87
    c.close()
    # still delivering with the new account
    t.submit(LevelPressed(Level.SATISFIED))  # no staff on duty: ignored; use a case instead
    sys_ = site.service("centersys")
    sys_.publish(f"hcp/v1/{CENTER}/window/W01/case", case("W01", "ROT1"), retain=True)
    rate_open_case(t, "ROT1")
    wait_for(lambda: query(center_ledger.db_path, "SELECT device FROM ratings") == [("rot1",)], 30, "rating stored")
    sys_.close()
