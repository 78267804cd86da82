"""The enrolment edge, against the real center broker and pairing service: announcements with unusable
keys are refused cleanly, and a paired terminal's client id cannot be guessed by the enrolment account
(which every SD card holds)."""
from __future__ import annotations

import json
import logging
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from devkit.waiting import wait_for
from protocol import builders, codec, sealed
from tests.provisioning.conftest import code_of, paired_idle
from tests.provisioning.helpers import CENTER

P = f"hcp/v1/{CENTER}"
_GOOD = sealed.b64(sealed.public_bytes(X25519PrivateKey.generate()))
BAD_KEYS = {  # device id → (announced key, the reason the service counts)
    "zero": (sealed.b64(bytes(32)), "bad_key"),                    # all-zero point
    "one": (sealed.b64(b"\x01" + bytes(31)), "bad_key"),           # order-4 point
    "order8": (sealed.b64(bytes.fromhex(                            # a point of order 8
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")), "bad_key"),
    "noncanon": (_GOOD[:-1] + ("B" if _GOOD[-1] in "AEIMQUYcgkosw048" else "A"), "bad_key"),  # stray low bits
    "short": (sealed.b64(bytes(31)), "schema"),                    # 31 bytes: 42 characters
    "long": (sealed.b64(bytes(33)), "schema"),                     # 33 bytes: 44 characters
    "notb64": ("!" * 43, "schema"),
}


def raw_hello(device: str, key: str) -> bytes:
    """A hello as a hostile enrolment-account holder writes it (no validation on the way out)."""
    return json.dumps({"v": 1, "type": "hello", "center": CENTER, "device": device, "key": key}).encode()


def test_a_hello_with_an_unusable_key_is_refused_cleanly_logged_once_and_counted(site, caplog):
    caplog.set_level(logging.INFO, logger="provisioning")
    spy = site.client("enrolment", site.password("enrolment"))
    assert spy.subscribe(f"{P}/enrol/+/+/answer") < 0x80
    for _ in range(2):  # a terminal repeats its announcement every 30 s: one log line, two counts
        for device, (key, _reason) in BAD_KEYS.items():
            assert spy.publish(f"{P}/enrol/{device}/hello", raw_hello(device, key)) < 0x80
    good = X25519PrivateKey.generate()
    spy.publish(f"{P}/enrol/ok1/hello", builders.hello(CENTER, "ok1", good, "m", "1"))
    # The service handles announcements in order: once ok1 has its code, every bad one was handled.
    ann = wait_for(lambda: site.reg.announcement("ok1", sealed.b64(sealed.public_bytes(good))), 20,
                   "the good announcement answered")
    assert re.fullmatch(r"[0-9]{6}", ann.code)

    records = [r for r in caplog.records if r.name == "provisioning"]
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR], "no traceback, no error"
    expected: dict[str, int] = {}
    for _key, reason in BAD_KEYS.values():
        expected[reason] = expected.get(reason, 0) + 2
    assert dict(site.prov.refused_hellos) == expected
    for device in BAD_KEYS:
        lines = [r.getMessage() for r in records if f"announcement from {device} " in r.getMessage()]
        assert len(lines) == 1 and lines[0].startswith(f"refused an announcement from {device} "), lines
        assert [a for a in site.reg.announcements(0) if a.device == device] == []  # no code, nothing pending
    answered = {t.split("/")[4] for t, p in wait_for(lambda: spy.messages("/answer"), 10, "ok1's answer") if p}
    assert answered == {"ok1"}
    spy.close()


def test_paired_client_ids_are_unguessable_and_outside_the_enrolment_namespace(site, enrol):
    ids = []
    for name in ("g1", "g2"):
        t = enrol(name)
        site.prov.pair(code_of(t), "W01", "tester")
        paired_idle(t, "W01")
        cid = json.loads((t.data_dir / "credentials.json").read_text())["client_id"]
        m = re.fullmatch(rf"{name}-([A-Za-z0-9_-]{{22}})", cid)
        assert m, cid
        assert len(sealed.unb64(m.group(1))) == 16          # 128 random bits
        assert not cid.startswith("enrol-")
        assert codec.validate({"v": 1, "type": "grant", "grant": "credentials", "center": CENTER, "device": name,
                                  "username": name, "password": "p" * 32, "client_id": cid, "cred": 1})
        ids.append(cid)
    assert ids[0].split("-")[-1] != ids[1].split("-")[-1]


@pytest.mark.parametrize("guess", ["g1", "g1-00000000", "enrol-g1"])
def test_the_enrolment_account_cannot_reach_a_paired_terminals_session_by_guessing(site, enrol, guess):
    """Client ids are not reserved per account in Mosquitto 2.0.11 (see provisioning/README.md): what
    protects a paired terminal's session is that its id is a 128-bit secret sealed to it."""
    t = enrol("g1")
    site.prov.pair(code_of(t), "W01", "tester")
    paired_idle(t, "W01")
    e = site.client("enrolment", site.password("enrolment"), client_id=guess, clean=False)
    assert e.refused is None and e.session_present is False  # no session by that name: no oracle either
    assert e.subscribe(f"{P}/device/g1/receipt") >= 0x80
    e.close()
    assert t.online
