"""Static code tokens (staff and hall cards): signed, keyed by id, never passable as a dynamic QR token, and
anything else is refused with TokenError only."""
from __future__ import annotations

import base64
import hashlib
import hmac
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from center.web import links
from center.web.links import StaticClaims
from protocol import qrtoken
from protocol.qrtoken import TokenError

KEYS = {"k1": b"center key one, 32 bytes long..!", "k2": b"the next key after a rotation..."}
ALPHABET = string.ascii_letters + string.digits + "_-"
ids = st.text(ALPHABET, min_size=1, max_size=32)
key_ids = st.sampled_from(sorted(KEYS))
gens = st.integers(0, 999_999)


def reason(token: str, keys=KEYS) -> str:
    with pytest.raises(TokenError) as caught:
        links.verify(token, keys)
    return caught.value.reason


def test_staff_and_hall_tokens_verify_to_their_claims() -> None:
    staff = links.sign_staff("k1", KEYS["k1"], "SH-PD-01", "staff_0042", 3)
    hall = links.sign_hall("k2", KEYS["k2"], "SH-PD-01", 1)
    assert staff.startswith("s1~k1~SH-PD-01~staff_0042~3~") and len(staff.rsplit("~", 1)[1]) == 22
    assert hall.startswith("h1~k2~SH-PD-01~1~")
    assert links.verify(staff, KEYS) == StaticClaims("staff", "k1", "SH-PD-01", "staff_0042", 3)
    assert links.verify(hall, KEYS) == StaticClaims("hall", "k2", "SH-PD-01", "", 1)
    assert links.sign_staff("k1", KEYS["k1"], "C", "S", 1) == links.sign_staff("k1", KEYS["k1"], "C", "S", 1)


def test_unknown_keys_wrong_keys_and_bad_grammar_are_refused() -> None:
    staff = links.sign_staff("k1", KEYS["k1"], "C1", "S1", 1)
    assert reason(staff, {"k2": KEYS["k2"]}) == "unknown_key"
    assert reason(staff, {"k1": KEYS["k2"]}) == "bad_signature"
    forged = links.sign_staff("k1", b"someone else's key", "C1", "S1", 1)
    assert reason(forged) == "bad_signature"
    for bad in ("", "s1", staff + "~", staff[:-1], "x" + staff, staff.replace("~1~", "~01~"),
                staff.replace("~1~", "~1234567~"), staff.replace("s1~", "h1~"), staff + "\n", " " + staff,
                "s1~k1~C1~S1~1~" + "é" * 22):
        assert reason(bad) == "malformed", bad


def test_the_static_tag_is_domain_separated() -> None:
    body = "h1~k1~C1~7"
    plain = base64.urlsafe_b64encode(hmac.new(KEYS["k1"], body.encode(), hashlib.sha256).digest()[:16])
    assert reason(f"{body}~{plain.rstrip(b'=').decode()}") == "bad_signature"
    assert links.verify(links.sign_hall("k1", KEYS["k1"], "C1", 7), KEYS).gen == 7


def test_a_dynamic_qr_token_is_never_a_static_one() -> None:
    dynamic = qrtoken.sign("k1", KEYS["k1"], center="C1", case="S1", window="W1", staff="S1", device="D1",
                           ttl_s=600)
    assert qrtoken.verify(dynamic, KEYS).center == "C1"
    assert reason(dynamic) == "malformed"
    # Nor a static token a dynamic one: each verifier refuses the other's grammar.
    with pytest.raises(TokenError):
        qrtoken.verify(links.sign_staff("k1", KEYS["k1"], "C1", "S1", 1), KEYS)


def test_signing_refuses_fields_outside_the_grammar() -> None:
    for call in (lambda: links.sign_staff("k1", b"k", "C1", "S 1", 1),
                 lambda: links.sign_staff("k1", b"k", "", "S1", 1),
                 lambda: links.sign_staff("k" * 17, b"k", "C1", "S1", 1),
                 lambda: links.sign_staff("k1", b"k", "C1", "员工", 1),
                 lambda: links.sign_hall("k1", b"k", "C1", -1),
                 lambda: links.sign_hall("k1", b"k", "C1", 1_000_000),
                 lambda: links.sign_hall("k1", b"k", "C~1", 1)):
        with pytest.raises(ValueError):
            call()


def test_urls() -> None:
    token = links.sign_hall("k1", KEYS["k1"], "C1", 1)
    assert links.hall_url("https://hcp.example.gov.cn/", token) == f"https://hcp.example.gov.cn/p/h/{token}"
    assert links.staff_url("http://127.0.0.1:8080", "t") == "http://127.0.0.1:8080/p/s/t"
    assert reason("Xq3_fW9-aB0cD1eF2gH3iJ") == "malformed"  # an SMS link token is no static code


# ---- hypothesis -------------------------------------------------------------------------------------------

@st.composite
def tokens(draw) -> tuple[str, StaticClaims]:
    key_id, center, gen = draw(key_ids), draw(ids), draw(gens)
    if draw(st.booleans()):
        staff = draw(ids)
        return links.sign_staff(key_id, KEYS[key_id], center, staff, gen), StaticClaims(
            "staff", key_id, center, staff, gen)
    return links.sign_hall(key_id, KEYS[key_id], center, gen), StaticClaims("hall", key_id, center, "", gen)


@settings(max_examples=300, deadline=None)
@given(tokens())
def test_round_trip(made: tuple[str, StaticClaims]) -> None:
    token, claims = made
    assert links.verify(token, KEYS) == claims


@settings(max_examples=500, deadline=None)
@given(tokens(), st.data())
def test_any_single_character_change_is_refused(made: tuple[str, StaticClaims], data) -> None:
    token, _ = made
    at = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters(codec="utf-8").filter(lambda c: c != token[at]) | st.just(""))
    changed = token[:at] + replacement + token[at + 1:]
    with pytest.raises(TokenError):
        links.verify(changed, KEYS)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(st.characters(exclude_categories=())), st.text(ALPHABET + "~.:é", max_size=120),
                 st.builds(lambda parts: "~".join(parts), st.lists(st.text(ALPHABET, max_size=24), max_size=8)),
                 st.builds(lambda p, t: p + t, st.sampled_from(["s1~k1~", "h1~k1~", "s1~k2~C~", "h1~zz~C~1~"]),
                           st.text(max_size=60))))
def test_arbitrary_text_raises_only_token_errors(text: str) -> None:
    try:
        claims = links.verify(text, KEYS)
    except TokenError as e:
        assert e.reason in {"malformed", "unknown_key", "bad_signature"}
    else:  # only a token we could have signed gets through
        again = (links.sign_staff(claims.key_id, KEYS[claims.key_id], claims.center, claims.target, claims.gen)
                 if claims.kind == "staff" else links.sign_hall(claims.key_id, KEYS[claims.key_id], claims.center,
                                                                  claims.gen))
        assert again == text


@settings(max_examples=200, deadline=None)
@given(ids, ids, ids, ids, key_ids)
def test_dynamic_tokens_never_verify_as_static(center: str, case: str, staff: str, device: str, key_id: str) -> None:
    dynamic = qrtoken.sign(key_id, KEYS[key_id], center=center, case=case, window="W1", staff=staff, device=device,
                           ttl_s=600)
    with pytest.raises(TokenError):
        links.verify(dynamic, KEYS)
