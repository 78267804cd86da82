"""Authorization against the real center broker (generated configuration, Dynamic Security): what a
terminal, the enrolment account and strangers can and cannot do."""
from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from devkit.waiting import wait_for
from protocol import builders, codec, sealed
from provisioning.service import FAILED_CODES_PER_USER, Refused
from tests.provisioning.conftest import code_of, paired_idle
from tests.provisioning.helpers import CENTER, Client
from tests.provisioning.test_lifecycle import case

DENIED = 0x87
P = f"hcp/v1/{CENTER}"


def creds_of(term) -> dict:
    return json.loads((term.data_dir / "credentials.json").read_text())


def test_no_anonymous_access_on_either_listener(site):
    for port, ca in ((site.tls_port, str(site.pki["ca"].cert)), (site.local_port, None)):
        c = Client(port, "", "", ca=ca)
        assert c.refused in (0x86, 0x87), c.events
        c.close()
    c = site.client("ledger", "not-the-password")
    assert c.refused in (0x86, 0x87)
    c.close()


def test_enrolment_account_can_only_announce(site):
    e = site.client("enrolment", site.password("enrolment"))
    hello = builders.hello(CENTER, "x1", X25519PrivateKey.generate(), "m", "1")
    assert e.publish(f"{P}/enrol/x1/hello", hello) < 0x80
    for topic in (f"{P}/device/x1/rating", f"{P}/device/x1/status", f"{P}/device/x1/event",
                  f"{P}/enrol/x1/abc/answer", f"{P}/window/W01/case", f"{P}/catalog", f"{P}/device/x1/binding",
                  "$CONTROL/dynamic-security/v1"):
        assert e.publish(topic, b"{}") == DENIED, topic
    for topic in (f"{P}/window/W01/case", f"{P}/enrol/+/hello", f"{P}/device/+/status", f"{P}/device/+/rating",
                  f"{P}/#", "#", "$CONTROL/dynamic-security/v1/response"):
        assert e.subscribe(topic) == DENIED, topic
    assert e.subscribe(f"{P}/enrol/x1/+/answer") < 0x80  # readable by all, but sealed (see below)
    e.close()


def test_answers_are_readable_by_any_enrolment_client_but_open_only_with_the_terminals_key(site, enrol):
    t = enrol("t1")
    code = code_of(t)
    spy = site.client("enrolment", site.password("enrolment"))
    boxes = spy.retained(f"{P}/enrol/t1/+/answer")
    assert len(boxes) == 1
    topic, payload = boxes[0]
    assert code.encode() not in payload
    with pytest.raises(codec.MessageError) as err:
        sealed.open_grant(X25519PrivateKey.generate(), topic, payload, CENTER, "t1")
    assert err.value.reason == "unsealable"
    assert sealed.open_grant(t.account.key, topic, payload, CENTER, "t1")["code"] == code
    spy.close()


def test_an_impostor_announcing_the_same_device_id_gets_its_own_code_and_never_the_account(site, enrol):
    t = enrol("t1")
    real_code = code_of(t)
    key = X25519PrivateKey.generate()
    kid = sealed.key_id(sealed.public_bytes(key))
    imp = site.client("enrolment", site.password("enrolment"))
    assert imp.subscribe(f"{P}/enrol/t1/{kid}/answer") < 0x80
    imp.publish(f"{P}/enrol/t1/hello", builders.hello(CENTER, "t1", key, "fake", "9"))
    box = wait_for(lambda: [p for _, p in imp.messages("/answer") if p], 20, "impostor's code")[0]
    imp_code = sealed.open_grant(key, f"{P}/enrol/t1/{kid}/answer", box, CENTER, "t1")["code"]
    assert imp_code != real_code
    site.prov.pair(real_code, "W01", "tester")      # staff read the code off the real terminal
    paired_idle(t, "W01")
    wait_for(lambda: imp.messages("/answer")[-1][1] == b"", 20, "impostor's answer withdrawn")
    for _, p in imp.messages("/answer"):
        if p:
            assert sealed.open_grant(key, f"{P}/enrol/t1/{kid}/answer", p, CENTER, "t1")["grant"] == "code"
    with pytest.raises(Refused):
        site.prov.pair(imp_code, "W02", "tester")  # its code died with the pairing of that device id
    imp.close()


def test_terminal_cannot_publish_as_another_nor_read_another_window_or_terminal(site, enrol):
    t1, t2 = enrol("t1"), enrol("t2")
    site.prov.pair(code_of(t1), "W01", "tester")
    site.prov.pair(code_of(t2), "W02", "tester")
    paired_idle(t1, "W01")
    paired_idle(t2, "W02")
    c1 = creds_of(t1)
    t1.stop()  # the tests below speak with t1's account directly
    wrong_id = site.client(c1["username"], c1["password"], client_id="t1")
    assert wrong_id.refused == DENIED  # the account is bound to its own (unguessable) client id
    wrong_id.close()
    me = site.client(c1["username"], c1["password"], client_id=c1["client_id"])
    assert me.refused is None
    assert me.publish(f"{P}/device/t1/status", b'{"v":1,"type":"status","device":"t1","state":"online"}') < 0x80
    for topic in (f"{P}/device/t2/rating", f"{P}/device/t2/event", f"{P}/device/t2/status", f"{P}/window/W01/case",
                  f"{P}/device/t1/receipt", f"{P}/device/t2/binding", f"{P}/enrol/t1/hello"):
        assert me.publish(topic, b"{}") == DENIED, topic
    for topic in (f"{P}/window/W02/case", f"{P}/window/W02/duty", f"{P}/device/t2/config", f"{P}/device/t2/binding",
                  f"{P}/device/t2/credentials", f"{P}/device/t2/receipt", f"{P}/window/+/case", f"{P}/#",
                  f"{P}/enrol/+/+/answer"):
        assert me.subscribe(topic) == DENIED, topic
    sys_ = site.service("centersys")
    sys_.publish(f"{P}/window/W02/case", case("W02", "SECRET2"), retain=True)
    sys_.publish(f"{P}/window/W01/case", case("W01", "MINE1"), retain=True)
    got = me.retained(f"{P}/window/W01/case")
    assert [json.loads(p)["case"]["id"] for _, p in got] == ["MINE1"]
    wait_for(lambda: t2.state.case is not None and t2.state.case.id == "SECRET2", 20, "t2 has its case")
    assert not [p for _, p in me.messages() if b"SECRET2" in p]
    sys_.close()
    me.close()


def test_revoked_terminal_is_dropped_at_once_and_refused(site, enrol):
    t = enrol("rv1")
    site.prov.pair(code_of(t), "W01", "tester")
    paired_idle(t, "W01")
    c = creds_of(t)
    site.prov.revoke("rv1", "tester")
    wait_for(lambda: not t.online, 10, "live session dropped")
    wait_for(lambda: t.pairing is not None and t.pairing.state in ("refused", "revoked"), 20, "terminal shows it")
    raw = site.client(c["username"], c["password"], client_id=c["client_id"])
    assert raw.refused == DENIED  # no publish, no subscribe: no session at all
    raw.close()
    assert site.reg.device("rv1").state == "revoked"
    assert [e.action for e in site.reg.audit_log(1)] == ["revoke"]


def test_wrong_reused_expired_codes_are_refused_and_attempts_are_limited(site, enrol):
    t = enrol("c1")
    code = code_of(t)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    with pytest.raises(Refused, match="unknown, used or expired"):
        site.prov.pair(wrong, "W01", "alice")
    with pytest.raises(Refused, match="unknown, used or expired"):
        site.prov.pair("12345", "W01", "alice")      # not a code at all
    with pytest.raises(Refused, match="no window"):
        site.prov.pair(code, "W99", "alice")
    site.prov.pair(code, "W01", "alice")
    with pytest.raises(Refused, match="unknown, used or expired"):
        site.prov.pair(code, "W02", "alice")         # single use
    # expiry: the code's time is up (the registry's clock is the wall clock; move the announcement back)
    t2 = enrol("c2")
    code2 = code_of(t2)
    with site.reg.tx() as reg:
        reg.db.execute("UPDATE announcements SET code_expires = code_expires - 601 WHERE device='c2'")
    with pytest.raises(Refused, match="unknown, used or expired"):
        site.prov.pair(code2, "W02", "bob")
    # rate limit: after FAILED_CODES_PER_USER wrong codes even a right one is refused for a while
    t3 = enrol("c3")
    code3 = code_of(t3)
    for _ in range(FAILED_CODES_PER_USER - 2):      # alice already failed twice, bob once
        with pytest.raises(Refused):
            site.prov.pair("000000" if code3 != "000000" else "000001", "W03", "alice")
    with pytest.raises(Refused, match="too many"):
        site.prov.pair(code3, "W03", "alice")
    site.prov.pair(code3, "W03", "bob")              # per staff member
    paired_idle(t3, "W03")
