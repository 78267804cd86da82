"""Defences that used to be tested only through each other, each tested directly here:
- after a move the broker itself refuses the old window's case and duty to the terminal's account;
- every state-changing console action refuses a form without the CSRF token or from a foreign Origin;
- a retired, unpaired or revoked terminal that receives a case anyway (the broker's rule bypassed) does
  not take it."""
from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from device.machine import Phase
from devkit.waiting import wait_for
from protocol import sealed
from provisioning import acl
from tests.provisioning.conftest import code_of, paired_idle
from tests.provisioning.helpers import CENTER
from tests.provisioning.test_console import Http, console_app  # noqa: F401 - the fixture
from tests.provisioning.test_lifecycle import case, rate_open_case

P = f"hcp/v1/{CENTER}"


def creds_of(term) -> dict:
    return json.loads((term.data_dir / "credentials.json").read_text())


# ---- the broker refuses the old window after a move ---------------------------------------------

def test_after_a_move_the_broker_refuses_the_old_windows_case_and_duty_to_the_terminals_account(site, enrol):
    t = enrol("mv1")
    site.prov.pair(code_of(t), "W01", "tester")
    paired_idle(t, "W01")
    site.prov.move("mv1", "W02", "tester")
    wait_for(lambda: t.cfg.center.window == "W02", 20, "moved to W02")
    c = creds_of(t)
    t.stop()  # from here on its account speaks directly, without the terminal's own window check
    sys_ = site.service("centersys")
    sys_.publish(f"{P}/window/W01/case", case("W01", "OLD1"), retain=True)
    sys_.publish(f"{P}/window/W01/duty", json.dumps({"v": 1, "type": "duty", "center": CENTER, "window": "W01",
                                                      "staff": None}).encode(), retain=True)
    me = site.client(c["username"], c["password"], client_id=c["client_id"])
    assert me.refused is None
    for leaf in ("case", "duty"):
        assert me.subscribe(f"{P}/window/W01/{leaf}") >= 0x80, leaf   # the old window: refused
        assert me.subscribe(f"{P}/window/W02/{leaf}") < 0x80, leaf    # the new one: granted
    sys_.publish(f"{P}/window/W01/case", case("W01", "OLD2"), retain=True)
    assert me.retained(f"{P}/window/W02/case") == []  # a round trip after OLD2: anything of W01 is here by now
    assert [t for t, _ in me.messages("/W01/")] == []
    me.close()
    sys_.close()


# ---- every state-changing console action checks the CSRF token and the Origin --------------------

def announce(site, device: str) -> str:
    """A terminal's announcement (real broker, real service); returns the pairing code it was given."""
    key = sealed.b64(sealed.public_bytes(X25519PrivateKey.generate()))
    e = site.client("enrolment", site.password("enrolment"))
    e.publish(f"{P}/enrol/{device}/hello",
              json.dumps({"v": 1, "type": "hello", "center": CENTER, "device": device, "key": key}).encode())
    e.close()
    return wait_for(lambda: site.reg.announcement(device, key), 20, f"{device}'s code").code


ACTIONS = {  # op → (extra form fields, the change it makes in the registry)
    "unpair": ({}, lambda d: d.state == "unpaired"),
    "move": ({"window": "W02"}, lambda d: d.window == "W02"),
    "replace": ({"code": None}, lambda d: d.state == "retired"),
    "revoke": ({"confirm": "yes"}, lambda d: d.state == "revoked"),
    "rotate": ({}, lambda d: d.rotating_cred is not None),
}


@pytest.mark.parametrize("forgery", ["no-token", "foreign-origin"])
@pytest.mark.parametrize("op", list(ACTIONS))
def test_console_actions_refuse_forged_forms(console_app, site, op, forgery):
    site.prov.pair(announce(site, "f1"), "W01", "tester")
    extra, changed = ACTIONS[op]
    form = {"op": op, "device": "f1", **{k: v or announce(site, "f2") for k, v in extra.items()}}
    h = Http(console_app.port)
    assert h.login() == 303
    csrf = h.csrf()
    own = {"Origin": f"http://127.0.0.1:{console_app.port}"}
    before = site.reg.device("f1")
    audit = len(site.reg.audit_log())
    if forgery == "no-token":
        status = h.request("POST", "/console/action", form, headers=own)[0]
    else:
        status = h.request("POST", "/console/action", {**form, "csrf": csrf},
                           headers={"Origin": "http://evil.example"})[0]
    assert status == 403
    assert site.reg.device("f1") == before and len(site.reg.audit_log()) == audit  # nothing done, nothing logged
    # The same form with the token and this console's Origin is carried out: the refusal above was the check.
    assert h.request("POST", "/console/action", {**form, "csrf": csrf}, headers=own)[0] == 303
    assert changed(site.reg.device("f1")), op


# ---- a terminal that takes no cases does not take one that reaches it anyway ---------------------

def deliver_anyway(site, term, window: str, case_id: str) -> None:
    """Bypass the broker's rule: give the terminal's role its window's case back, and subscribe its own
    connection to that window's case topic, as an old subscription or a broker without the ACL would."""
    if not term.online:  # revoked: the account is disabled; a broker without the rule lets it in
        site.prov.dynsec.call("enableClient", username=term.device_id)
        wait_for(lambda: term.online, 20, f"{term.device_id} connected again")
    for a in acl.window_acls(CENTER, window):
        site.prov.dynsec.add_acl(acl.device_role(term.device_id), a)
    sys_ = site.service("centersys")
    sys_.publish(f"{P}/window/{window}/case", case(window, case_id), retain=True)
    sys_.close()
    term.link.client.subscribe(f"{P}/window/{window}/case", qos=1)  # the retained case arrives with the SUBACK


@pytest.mark.parametrize("how", ["retired", "unpaired", "revoked"])
def test_a_terminal_that_takes_no_cases_ignores_a_case_that_reaches_it(site, enrol, how):
    t = enrol("nc1")
    site.prov.pair(code_of(t), "W01", "tester")
    paired_idle(t, "W01")
    if how == "retired":
        new = enrol("nc2")
        site.prov.replace("nc1", code_of(new), "tester")
    elif how == "unpaired":  # it keeps its account while it holds an undelivered rating (no ledger here)
        sys_ = site.service("centersys")
        sys_.publish(f"{P}/window/W01/case", case("W01", "HELD1"), retain=True)
        sys_.close()
        rate_open_case(t, "HELD1")
        wait_for(lambda: t.state.phase == Phase.IDLE, 20, "back to idle")
        site.prov.unpair("nc1", "tester")
    else:
        site.prov.revoke("nc1", "tester")
    wait_for(lambda: t.pairing is not None and t.pairing.state in (how, "refused"), 20, f"terminal {how}")
    assert t.state.case is None and t.state.phase == Phase.IDLE
    deliver_anyway(site, t, "W01", "LEAK1")
    wait_for(lambda: t.rejected["not_serving"] or t.state.case is not None, 20, "the case reached the terminal")
    assert t.state.case is None and t.state.phase == Phase.IDLE
    assert t.rejected["not_serving"] >= 1
