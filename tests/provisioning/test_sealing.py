"""Sealed boxes, grants and the other decoders of enrolment: golden vectors, round trips, and
hypothesis throwing arbitrary input at every decoder (each may only refuse with its own error)."""
from __future__ import annotations

import hashlib
import json
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings, strategies as st

from device import enrolment
from device.enrolment import Credentials
from devkit.terminals import terminal_config
from protocol import GOLDEN_DIR, codec, sealed, topics
from protocol.sealed import SealError
from provisioning.service import normalise_code

GOLDEN_KEY = X25519PrivateKey.from_private_bytes(hashlib.sha256(b"hcp golden device key").digest())
DEV, CENTER = "rpi-1000000a3f9c2b7e", "pudong"
T = topics.Topics(CENTER, "W01", DEV)


def _golden(name: str) -> bytes:
    return (GOLDEN_DIR / "valid" / name).read_bytes()


def test_golden_sealed_boxes_open_to_the_golden_grants():
    """The worked example of docs/protocol.md §11: anyone can check an implementation against it."""
    kid = sealed.key_id(sealed.public_bytes(GOLDEN_KEY))
    assert kid == "9doSSrtjpHbOQ1Mp"
    assert json.loads(_golden("hello-full.json"))["key"] == sealed.b64(sealed.public_bytes(GOLDEN_KEY))
    code = sealed.open_grant(GOLDEN_KEY, T.answer(kid), _golden("sealed-code.json"), CENTER, DEV)
    assert code == json.loads(_golden("grant-code.json"))
    rot = sealed.open_grant(GOLDEN_KEY, T.credentials, _golden("sealed-credentials.json"), CENTER, DEV)
    assert rot["cred"] == 2 and rot["grant"] == "credentials"
    binding = json.loads(_golden("binding-active.json"))
    assert sealed.unseal(GOLDEN_KEY, binding["qr"]["key"], T.binding).startswith(b"demo-only")


def test_a_box_opens_only_with_its_key_and_its_topic():
    other = X25519PrivateKey.generate()
    box = sealed.seal(sealed.public_bytes(GOLDEN_KEY), b"secret", T.credentials)
    assert sealed.unseal(GOLDEN_KEY, box, T.credentials) == b"secret"
    for key, ctx in ((other, T.credentials), (GOLDEN_KEY, T.binding), (GOLDEN_KEY, T.answer("x"))):
        with pytest.raises(SealError):
            sealed.unseal(key, box, ctx)
    with pytest.raises(codec.MessageError) as err:  # a good box replayed on another topic
        sealed.open_grant(GOLDEN_KEY, T.answer("x"), _golden("sealed-credentials.json"), CENTER, DEV)
    assert err.value.reason == "unsealable"
    with pytest.raises(codec.MessageError) as err:  # addressed to another device
        sealed.open_grant(GOLDEN_KEY, T.credentials, _golden("sealed-credentials.json"), CENTER, "rpi-2")
    assert err.value.reason == "wrong_device"


@settings(max_examples=300, deadline=None)
@given(plain=st.binary(max_size=600), ctx=st.text(max_size=80), flip=st.integers(0, 10_000))
def test_round_trip_and_any_single_change_is_refused(plain, ctx, flip):
    box = sealed.seal(sealed.public_bytes(GOLDEN_KEY), plain, ctx)
    assert sealed.unseal(GOLDEN_KEY, box, ctx) == plain
    i = 2 + flip % (len(box) - 2)  # any character after "1."
    if box[i] == ".":
        return
    changed = box[:i] + ("A" if box[i] != "A" else "B") + box[i + 1:]
    with pytest.raises(SealError):
        sealed.unseal(GOLDEN_KEY, changed, ctx)


BOXY = st.one_of(
    st.text(max_size=300),
    st.from_regex(r"1\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{0,120}", fullmatch=True),
    st.binary(max_size=64).map(lambda b: "1." + sealed.b64(b) + "." + sealed.b64(b[:12]) + "." + sealed.b64(b)),
    st.sampled_from(["", "1", "1...", "1." + "A" * 43 + "." + "A" * 16 + "." + "A" * 22, "2" + "." * 3]),
)


@settings(max_examples=500, deadline=None)
@given(box=BOXY, ctx=st.text(max_size=20))
def test_unseal_of_anything_raises_only_seal_error(box, ctx):
    try:
        sealed.unseal(GOLDEN_KEY, box, ctx)
    except SealError:
        pass


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60))
def test_unb64_is_strict_and_canonical(text):
    try:
        raw = sealed.unb64(text)
    except SealError:
        return
    assert sealed.b64(raw) == text


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=60), st.binary(min_size=28, max_size=36).map(sealed.b64),
                      st.sampled_from([bytes(32), b"\x01" + bytes(31), b"\xff" * 32]).map(sealed.b64)))
def test_an_announced_key_is_a_usable_x25519_key_or_seal_error(text):
    try:
        raw = sealed.usable_public_key(text)
    except SealError:
        return
    assert len(raw) == 32
    sealed.seal(raw, b"x", "t")  # whatever it accepts can be sealed to


@settings(max_examples=300, deadline=None)
@given(payload=st.one_of(st.binary(max_size=400), st.builds(lambda b: json.dumps(
    {"v": 1, "type": "sealed", "device": DEV, "box": b}).encode(), BOXY)))
def test_open_grant_of_anything_raises_only_message_error(payload):
    try:
        grant = sealed.open_grant(GOLDEN_KEY, T.credentials, payload, CENTER, DEV)
    except codec.MessageError as e:
        assert e.reason in ("oversized", "bad_json", "duplicate_key", "not_object", "wrong_version", "wrong_type",
                            "schema", "personal_data", "unsealable", "wrong_device", "wrong_center")
    else:
        assert grant["device"] == DEV


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=40), st.from_regex(r"[0-9０-９ \-]{4,12}", fullmatch=True)))
def test_normalise_code_gives_six_ascii_digits_or_none(text):
    code = normalise_code(text)
    assert code is None or (len(code) == 6 and code.isascii() and code.isdigit())


@pytest.mark.parametrize("typed, code", [("482915", "482915"), ("482 915", "482915"), ("48-29-15", "482915"),
                                         ("４８２９１５", "482915"), (" 482915\n", "482915"), ("48291", None),
                                         ("4829150", None), ("48291x", None), ("٤٨٢٩١٥", None)])
def test_normalise_code_examples(typed, code):
    assert normalise_code(typed) == code


def test_credentials_never_show_their_password(tmp_path):
    c = Credentials(CENTER, DEV, "W01", DEV, "q3Vd9xZ2mKp7LwR4tYb8NcF6hJs1GeA5uXo0iTzWvQ", DEV + "-x", 1)
    assert "q3Vd9x" not in repr(c) and "q3Vd9x" not in str(c)
    enrolment.save_credentials(tmp_path, c)
    assert stat.S_IMODE((tmp_path / "credentials.json").stat().st_mode) == 0o600
    assert enrolment.load_credentials(tmp_path) == c
    swapped = c.__class__(**{**c.__dict__, "next_password": "n" * 32, "next_cred": 2}).swapped()
    assert (swapped.password, swapped.cred, swapped.next_cred) == ("n" * 32, 2, 1)
    assert swapped.settled().next_password == ""
    (tmp_path / "credentials.json").write_text("{not json")
    assert enrolment.load_credentials(tmp_path) is None


@pytest.fixture
def enrolling(tmp_path):
    from device.terminal import Terminal
    cfg = terminal_config(1, tmp_path / "t", HCP_CENTER_ID=CENTER, HCP_ENROLMENT_USERNAME="enrolment")
    t = Terminal(cfg, DEV)  # never started: no network needed
    yield t
    t.outbox.close()


HOSTILE = st.one_of(st.binary(max_size=300), st.sampled_from(
    [_golden(n) for n in ("sealed-code.json", "sealed-credentials.json", "binding-active.json", "hello-full.json")]),
    st.builds(lambda b: json.dumps({"v": 1, "type": "sealed", "device": DEV, "box": b}).encode(), BOXY))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=HOSTILE, where=st.sampled_from(["answer", "other"]))
def test_an_enrolling_terminal_counts_or_takes_any_input_and_never_raises(enrolling, payload, where):
    t = enrolling
    topic = t.topics.answer(t.account.key_id) if where == "answer" else T.case
    before = sum(t.rejected.values())
    t._inbound(topic, payload, True)
    assert sum(t.rejected.values()) == before + 1 or (where == "answer" and not payload)
    assert t.mode == "enrolling"  # nothing sealed to another key can pair it
