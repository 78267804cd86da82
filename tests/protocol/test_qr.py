"""Dynamic QR codes: signed, expiring rating tokens, and the module matrix drawn on screen.

The matrix is checked against qrcode's own output and, independently, by reading it back the way a
scanner would (format information, function patterns, data and error-correction codewords).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import qrcode
from hypothesis import given, settings
from hypothesis import strategies as st
from qrcode.constants import ERROR_CORRECT_M

from device import qr
from device.config import DEMO_QR_KEY
from protocol import qrtoken
from protocol.qrtoken import SEP, TokenError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
KEYS = {"k1": KEY, "k2": OTHER_KEY}
NOW = 1_772_400_000  # a fixed instant (2026-03-02); no test reads the clock
FIELDS = dict(center="pudong", case="SH20260302000017", window="W01", staff="S0101", device="rpi-1000000a3f9c2b7e")
URL_SAFE = re.compile(r"[A-Za-z0-9._~:-]+")  # RFC 3986 unreserved, plus ':' (case ids may carry it)


def _token(key_id: str = "k1", ttl_s: int = 600, **over) -> str:
    return qrtoken.sign(key_id, KEYS.get(key_id, KEY), **{**FIELDS, **over}, ttl_s=ttl_s, now=NOW)


# ---- tokens: the happy path --------------------------------------------------------------------

def test_sign_then_verify_returns_the_claims():
    token = _token()
    claims = qrtoken.verify(token, KEYS, now=NOW)
    assert (claims.key_id, claims.center, claims.case, claims.window, claims.staff, claims.device) == \
        ("k1", "pudong", "SH20260302000017", "W01", "S0101", "rpi-1000000a3f9c2b7e")
    assert claims.expires == NOW + 600
    parts = token.split(SEP)
    assert len(parts) == 10 and parts[0] == "1" and parts[7] == str(NOW + 600)
    assert claims.nonce == parts[8] and len(parts[8]) == 8      # 6 random bytes, base64url
    assert len(parts[9]) == 22                                   # 16-byte tag, base64url, unpadded
    assert URL_SAFE.fullmatch(token)


ids = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
case_ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,50}", fullmatch=True)
key_ids = st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(key_id=key_ids, key=st.binary(min_size=32, max_size=64), center=ids, case=case_ids, window=ids,
       staff=ids, device=ids, ttl=st.integers(1, 30 * 86400), now=st.integers(0, 2**32))
def test_sign_verify_round_trip(key_id, key, center, case, window, staff, device, ttl, now):
    token = qrtoken.sign(key_id, key, center=center, case=case, window=window, staff=staff, device=device,
                    ttl_s=ttl, now=now)
    assert URL_SAFE.fullmatch(token)
    c = qrtoken.verify(token, {key_id: key}, now=now + ttl - 1)
    assert (c.key_id, c.center, c.case, c.window, c.staff, c.device, c.expires) == \
        (key_id, center, case, window, staff, device, now + ttl)
    with pytest.raises(TokenError) as err:
        qrtoken.verify(token, {key_id: key}, now=now + ttl)
    assert err.value.reason == "expired"


def test_each_token_has_its_own_nonce():
    assert len({_token().split(SEP)[8] for _ in range(20)}) == 20


# ---- tokens: failures ----------------------------------------------------------------------------

def test_expired_token_fails():
    token = _token(ttl_s=600)
    assert qrtoken.verify(token, KEYS, now=NOW + 599)
    for later in (NOW + 600, NOW + 601, NOW + 10**9):
        with pytest.raises(TokenError) as err:
            qrtoken.verify(token, KEYS, now=later)
        assert err.value.reason == "expired"


FIELD_NAMES = ["version", "key id", "center", "case", "window", "staff", "device", "expiry", "nonce", "tag"]


@pytest.mark.parametrize("index", range(1, 10), ids=lambda i: FIELD_NAMES[i])
def test_altering_any_single_field_fails(index):
    token = _token()
    parts = token.split(SEP)
    old = parts[index]
    for pos in (0, len(old) - 1):
        new = old[:pos] + ("7" if old[pos] != "7" else "8") + old[pos + 1:]
        forged = SEP.join(parts[:index] + [new] + parts[index + 1:])
        with pytest.raises(TokenError) as err:
            qrtoken.verify(forged, KEYS, now=NOW)
        assert err.value.reason == ("unknown_key" if index == 1 else "bad_signature"), (index, forged)


def test_a_later_expiry_cannot_be_forged():
    parts = _token(ttl_s=60).split(SEP)
    parts[7] = str(int(parts[7]) + 86400)
    with pytest.raises(TokenError) as err:
        qrtoken.verify(SEP.join(parts), KEYS, now=NOW + 120)
    assert err.value.reason == "bad_signature"


def test_switching_to_another_known_key_id_fails():
    parts = _token("k1").split(SEP)
    parts[1] = "k2"
    with pytest.raises(TokenError) as err:
        qrtoken.verify(SEP.join(parts), KEYS, now=NOW)
    assert err.value.reason == "bad_signature"


def test_unknown_key_id_fails():
    with pytest.raises(TokenError) as err:
        qrtoken.verify(_token("k1"), {"k2": OTHER_KEY}, now=NOW)
    assert err.value.reason == "unknown_key"


def test_wrong_key_under_the_same_id_fails():
    with pytest.raises(TokenError) as err:
        qrtoken.verify(_token("k1"), {"k1": OTHER_KEY}, now=NOW)
    assert err.value.reason == "bad_signature"


@pytest.mark.parametrize("bad", [
    "", "1", "~" * 9, "2~k1~pudong~SH1~W01~S0101~d1~1772400600~AAAAAAAA~" + "A" * 22,
    "1~k1~pudong~SH1~W01~S0101~d1~1772400600~AAAAAAAA",                         # 9 parts
    "1~k1~pudong~SH1~W01~S0101~d1~1772400600~AAAAAAAA~" + "A" * 22 + "~x",     # 11 parts
    "1~k1~~SH1~W01~S0101~d1~1772400600~AAAAAAAA~" + "A" * 22,                  # an empty part
])
def test_malformed_tokens(bad):
    with pytest.raises(TokenError) as err:
        qrtoken.verify(bad, KEYS, now=NOW)
    assert err.value.reason == "malformed"


def test_non_ascii_tag_is_malformed_not_a_crash():
    """hmac.compare_digest raises TypeError on non-ASCII str: a scanned token must not reach it."""
    parts = _token().split(SEP)
    for tag in ("é" * 22, parts[9][:-1] + "é", "中"):
        with pytest.raises(TokenError) as err:
            qrtoken.verify(SEP.join(parts[:9] + [tag]), KEYS, now=NOW)
        assert err.value.reason in ("malformed", "bad_signature")


def test_non_ascii_body_is_malformed():
    parts = _token().split(SEP)
    parts[3] = "办件1"
    with pytest.raises(TokenError) as err:
        qrtoken.verify(SEP.join(parts), KEYS, now=NOW)
    assert err.value.reason == "malformed"


def _mutations(token: str):
    return st.one_of(
        st.text(max_size=200),
        st.tuples(st.integers(0, len(token)), st.integers(0, 5), st.text(max_size=5)).map(
            lambda t: token[:t[0]] + t[2] + token[t[0] + t[1]:]),
        st.lists(st.text(max_size=12), min_size=8, max_size=12).map(SEP.join),
        st.lists(st.text(max_size=12), min_size=8, max_size=8).map(lambda p: SEP.join(["1", "k1", *p]))
    )


@settings(max_examples=500, deadline=None)
@given(text=_mutations(_token()))
def test_malformed_tokens_raise_only_token_error(text):
    try:
        claims = qrtoken.verify(text, KEYS, now=NOW)
    except TokenError as e:
        assert e.reason in ("malformed", "unknown_key", "bad_signature", "expired")
    else:
        assert text == _token_for(claims)


def _token_for(claims: qrtoken.Claims) -> str:
    """Rebuild a token from its claims (the only way verify may succeed is on an unaltered token)."""
    body = SEP.join(["1", claims.key_id, claims.center, claims.case, claims.window, claims.staff, claims.device,
                     str(claims.expires), claims.nonce])
    return f"{body}{SEP}{qrtoken._tag(KEYS[claims.key_id], body)}"


@pytest.mark.parametrize("field,value", [
    ("case", "SH~1"), ("staff", ""), ("center", "浦东"), ("window", "W 01"), ("device", "d/1"), ("case", "x" * 51),
    ("window", "W01?"), ("device", "d" * 33), ("center", "c\n")])
def test_sign_refuses_fields_outside_the_token_grammar(field, value):
    """A token that could never verify, or would need URL escaping, is never put on screen."""
    with pytest.raises(ValueError):
        _token(**{field: value})


def test_sign_refuses_a_bad_key_id():
    for key_id in ("k~1", "", "k" * 17):
        with pytest.raises(ValueError):
            qrtoken.sign(key_id, KEY, **FIELDS, ttl_s=60, now=NOW)


@pytest.mark.parametrize("expiry", ["+1772400600", " 1772400600", "1_772_400_600", "١٧٧٢٤٠٠٦٠٠", "0x69a1e258",
                                    "1772400600.0", "-1"])
def test_expiry_must_be_plain_decimal_digits_even_when_signed(expiry):
    """int() would read all of these; a verifier in another language would not. The grammar settles it."""
    body = SEP.join(["1", "k1", *FIELDS.values(), expiry, "AAAAAAAA"])
    token = f"{body}{SEP}{qrtoken._tag(KEY, body) if body.isascii() else 'A' * 22}"
    with pytest.raises(TokenError) as err:
        qrtoken.verify(token, KEYS, now=NOW)
    assert err.value.reason == "malformed"


# ---- the rating URL --------------------------------------------------------------------------

def test_rating_url_substitutes_the_token():
    token = _token()
    assert qrtoken.rating_url("https://hcp.example.gov.cn/r?t={token}", token) == \
        "https://hcp.example.gov.cn/r?t=" + token
    assert qrtoken.rating_url("https://x.gov.cn/{token}/rate", token) == f"https://x.gov.cn/{token}/rate"


# ---- the matrix: an independent reader (ISO/IEC 18004, versions 1–9, error correction M) -------

# Blocks per version at level M: (count, data codewords, error-correction codewords per block).
BLOCKS_M = {1: [(1, 16, 10)], 2: [(1, 28, 16)], 3: [(1, 44, 26)], 4: [(2, 32, 18)], 5: [(2, 43, 24)],
            6: [(4, 27, 16)], 7: [(4, 31, 18)], 8: [(2, 38, 22), (2, 39, 22)], 9: [(3, 36, 22), (2, 37, 22)]}
ALIGNMENT = {1: [], 2: [6, 18], 3: [6, 22], 4: [6, 26], 5: [6, 30], 6: [6, 34], 7: [6, 22, 38],
             8: [6, 24, 42], 9: [6, 26, 46]}
FORMAT_MASK = 0b101010000010010


def _byte_capacity(version: int) -> int:
    data = sum(n * d for n, d, _ in BLOCKS_M[version])
    return (data * 8 - 4 - 8) // 8  # byte mode: 4-bit mode, 8-bit count (versions 1-9)


def _version_for(data: bytes) -> int:
    return next(v for v in BLOCKS_M if _byte_capacity(v) >= len(data))


def _function_modules(n: int, version: int) -> set[tuple[int, int]]:
    f = {(r, c) for r in range(n) for c in range(n)
         if (r < 9 and c < 9) or (r < 9 and c >= n - 8) or (r >= n - 8 and c < 9) or r == 6 or c == 6}
    centers = ALIGNMENT[version]
    for ar in centers:
        for ac in centers:
            if (ar, ac) in ((6, 6), (6, centers[-1]), (centers[-1], 6)):
                continue  # would overlap a finder pattern
            f |= {(r, c) for r in range(ar - 2, ar + 3) for c in range(ac - 2, ac + 3)}
    if version >= 7:  # version information, two 6×3 areas
        f |= {(r, c) for r in range(6) for c in range(n - 11, n - 8)}
        f |= {(r, c) for r in range(n - 11, n - 8) for c in range(6)}
    return f


def _format_bits(m: list[list[bool]]) -> tuple[int, int]:
    """The two copies of the 15-bit format information, most significant bit first."""
    n = len(m)
    first = [m[8][c] for c in (0, 1, 2, 3, 4, 5, 7)] + [m[8][8], m[7][8]] + [m[r][8] for r in (5, 4, 3, 2, 1, 0)]
    second = [m[r][8] for r in range(n - 1, n - 8, -1)] + [m[8][c] for c in range(n - 8, n)]
    return tuple(int("".join("1" if b else "0" for b in bits), 2) for bits in (first, second))


def _codewords(m: list[list[bool]], mask0: bool = True) -> list[int]:
    """Read the codewords in placement order (two-module columns, zig-zag, right to left), unmasked."""
    n = len(m)
    func = _function_modules(n, (n - 17) // 4)
    bits: list[int] = []
    col, upward = n - 1, True
    while col > 0:
        if col == 6:
            col -= 1  # the vertical timing pattern is skipped as a whole column
        for r in (range(n - 1, -1, -1) if upward else range(n)):
            for c in (col, col - 1):
                if (r, c) not in func:
                    bits.append(int(m[r][c]) ^ int(mask0 and (r + c) % 2 == 0))
        upward, col = not upward, col - 2
    return [int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits) - 7, 8)]


def _deinterleave(codewords: list[int], version: int) -> list[tuple[list[int], list[int]]]:
    sizes = [(d, e) for n, d, e in BLOCKS_M[version] for _ in range(n)]
    blocks: list[tuple[list[int], list[int]]] = [([], []) for _ in sizes]
    it = iter(codewords)
    for i in range(max(d for d, _ in sizes)):
        for b, (d, _) in enumerate(sizes):
            if i < d:
                blocks[b][0].append(next(it))
    for i in range(sizes[0][1]):
        for b in range(len(sizes)):
            blocks[b][1].append(next(it))
    return blocks


def _gf_tables() -> tuple[list[int], list[int]]:
    exp, log = [0] * 512, [0] * 256
    x = 1
    for i in range(255):
        exp[i], log[x] = x, i
        x <<= 1
        if x & 0x100:
            x ^= 0x11D
    for i in range(255, 512):
        exp[i] = exp[i - 255]
    return exp, log


EXP, LOG = _gf_tables()


def _gf_mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else EXP[LOG[a] + LOG[b]]


def _rs_remainder(data: list[int], n_ec: int) -> list[int]:
    gen = [1]
    for i in range(n_ec):  # generator polynomial: product of (x - α^i)
        gen = [a ^ _gf_mul(b, EXP[i]) for a, b in zip(gen + [0], [0] + gen)]
    rem = list(data) + [0] * n_ec
    for i in range(len(data)):
        coef = rem[i]
        if coef:
            for j, g in enumerate(gen):
                rem[i + j] ^= _gf_mul(g, coef)
    return rem[len(data):]


def _read_back(m: list[list[bool]]) -> bytes:
    """Decode a version 1–9, level M, mask 0, single byte-mode segment symbol; assert it is well formed."""
    n = len(m)
    version = (n - 17) // 4
    assert n == 17 + 4 * version and version in BLOCKS_M
    for r0, c0 in ((0, 0), (0, n - 7), (n - 7, 0)):  # finder patterns: 7×7 ring, 3×3 core
        for r in range(7):
            for c in range(7):
                ring = max(abs(r - 3), abs(c - 3))
                assert m[r0 + r][c0 + c] == (ring != 2), (r0 + r, c0 + c)
    assert [m[6][c] for c in range(8, n - 8)] == [c % 2 == 0 for c in range(8, n - 8)]  # timing
    assert [m[r][6] for r in range(8, n - 8)] == [r % 2 == 0 for r in range(8, n - 8)]
    assert m[n - 8][8]  # the dark module
    first, second = _format_bits(m)
    assert first == second == (0b00_000 << 10 | 0) ^ FORMAT_MASK  # level M (00), mask 0 (000): BCH of 0 is 0
    data: list[int] = []
    for block, ec in _deinterleave(_codewords(m), version):
        assert _rs_remainder(block, len(ec)) == ec
        data += block
    bits = "".join(f"{b:08b}" for b in data)
    assert bits[:4] == "0100"  # byte mode
    count = int(bits[4:12], 2)
    payload = bytes(int(bits[12 + 8 * i:20 + 8 * i], 2) for i in range(count))
    assert bits[12 + 8 * count:16 + 8 * count] == "0000"  # terminator
    return payload


def _qrcode_matrix(data: str, border: int) -> list[list[bool]]:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, mask_pattern=0, border=border)
    code.add_data(data)
    code.make(fit=True)
    full = code.get_matrix()
    return [row[border:len(row) - border] for row in full[border:len(full) - border]]


# Lower case and marks only: QR's numeric and alphanumeric modes never apply, so qrcode keeps one
# byte-mode segment (it splits off runs of 20+ digits or capitals) and capacities are the byte ones.
url_text = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz~_?=&é中"), min_size=1, max_size=58)


@settings(max_examples=60, deadline=None)
@given(text=url_text)
def test_matrix_is_a_square_bool_matrix_of_the_right_version(text):
    m = qr.matrix(text)
    n = len(m)
    assert all(len(row) == n for row in m) and all(type(v) is bool for row in m for v in row)
    assert n == 17 + 4 * _version_for(text.encode("utf-8"))


@settings(max_examples=60, deadline=None)
@given(text=url_text)
def test_matrix_equals_qrcodes_own_and_reads_back(text):
    m = qr.matrix(text)
    assert m == _qrcode_matrix(text, 0) == _qrcode_matrix(text, 4)
    assert _read_back(m) == text.encode("utf-8")


def test_matrix_of_a_real_rating_url_reads_back():
    url = qrtoken.rating_url("https://hcp.example.gov.cn/r?t={token}", _token())
    m = qr.matrix(url)
    assert len(url) <= _byte_capacity(9)
    assert len(m) == 17 + 4 * _version_for(url.encode())
    assert _read_back(m) == url.encode()
    img = qrcode.make(url, error_correction=ERROR_CORRECT_M, mask_pattern=0, border=0, box_size=1)
    pixels = img.get_image().convert("1")
    assert [[pixels.getpixel((c, r)) == 0 for c in range(len(m))] for r in range(len(m))] == m


def test_reader_rejects_a_damaged_symbol():
    """The reader is strict enough to notice one flipped data module (so the checks above can fail)."""
    m = [row[:] for row in qr.matrix("https://hcp.example.gov.cn/r?t=abc")]
    n = len(m)
    m[n - 1][n - 1] = not m[n - 1][n - 1]  # the first data module in placement order
    with pytest.raises(AssertionError):
        _read_back(m)


# ---- the worked example in docs/protocol.md ------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_worked_example_in_the_protocol_doc_verifies():
    text = DOC.read_text("utf-8")
    tokens = {t for t in re.findall(r"1~demo~[A-Za-z0-9_.:~-]+", text) if qrtoken.TOKEN.fullmatch(t)}
    assert len(tokens) == 1, tokens  # one complete token; the signed text alone is shown too
    token = tokens.pop()
    parts = token.split(SEP)
    expires = int(parts[7])
    claims = qrtoken.verify(token, {"demo": DEMO_QR_KEY}, now=expires - 1)
    assert claims.key_id == "demo"
    with pytest.raises(TokenError):
        qrtoken.verify(token, {"demo": DEMO_QR_KEY}, now=expires)
    body = token.rsplit(SEP, 1)[0]
    assert body in text and parts[9] in text  # the doc shows the signed text and the tag it yields
