"""The wire contract: golden messages, the decoder, the schemas and the topic tree.

Two validators must agree on every message: the fast one the device runs (fastjsonschema, through
`protocol.codec`) and the reference implementation (`jsonschema`). The golden files in
protocol/golden/ are the shared test vectors (also for MicroPython keypads and center code).
"""
from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import validators
from jsonschema.exceptions import ValidationError

from device.machine import RatingDraft
from device.model import Case, Staff
from protocol import GOLDEN_DIR, SCHEMA_DIR, VERSION, builders, codec
from protocol.codec import KINDS, MAX_INBOUND_BYTES, MessageError
from protocol.topics import PREFIX, Topics, parse_device_topic
from protocol.values import LEVELS, Channel, Level

REASONS = {"oversized", "bad_json", "duplicate_key", "not_object", "wrong_version", "wrong_type", "schema",
           "personal_data", "unknown_kind"}
INBOUND = ("case", "duty", "catalog", "config", "receipt")   # center → device
OUTBOUND = ("rating", "event", "status")                      # device → center (decoded by the ledger)


# ---- golden files ------------------------------------------------------------------------------

def _load(path: Path) -> Any:
    return json.loads(path.read_text("utf-8"))


VALID = sorted((GOLDEN_DIR / "valid").glob("*.json"))
INVALID = sorted((GOLDEN_DIR / "invalid").glob("*.json"))


def _kind_of(path: Path) -> str:
    return path.stem.split("-", 1)[0]


def _payload(wrapper: dict) -> bytes:
    if "raw" in wrapper:
        return wrapper["raw"].encode("utf-8")
    return json.dumps(wrapper["message"], ensure_ascii=False).encode("utf-8")


# ---- the reference validator ------------------------------------------------------------------

# JSON Schema patterns are ECMA-262 regular expressions, where `$` (no multiline flag) is the end of
# the input. `jsonschema` runs them through Python's `re.search`, whose `$` also matches before a final
# "\n" — so it would accept the id "rpi-1\n". fastjsonschema gets this right; make the reference do too.
_DOLLAR = re.compile(r"(?<!\\)\$")


def _ecma_pattern(validator, pattern: str, instance: Any, schema: dict):
    if validator.is_type(instance, "string") and not re.search(_DOLLAR.sub(r"\\Z", pattern), instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


Reference = validators.extend(jsonschema.Draft7Validator, {"pattern": _ecma_pattern})
_REF = {kind: Reference(codec.schema(kind)) for kind in KINDS}


def fast_ok(kind: str, message: Any) -> bool:
    try:
        codec._validator(kind)(message)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def ref_ok(kind: str, message: Any) -> bool:
    return _REF[kind].is_valid(message)


# ---- the golden set itself ---------------------------------------------------------------------

def test_golden_set_covers_every_kind_twice():
    per_kind = {k: [p for p in VALID if _kind_of(p) == k] for k in KINDS}
    assert all(len(v) >= 2 for v in per_kind.values()), {k: len(v) for k, v in per_kind.items()}
    assert len(INVALID) >= 15
    assert {_load(p)["reason"] for p in INVALID} == REASONS  # every reason code has a vector


def test_golden_files_are_plain_utf8_json():
    for path in VALID + INVALID:
        text = path.read_bytes().decode("utf-8")          # strict: fails on anything but UTF-8
        assert not text.startswith("\ufeff"), path.name
        json.dumps(json.loads(text), ensure_ascii=False).encode("utf-8")  # no lone surrogates in the files


@pytest.mark.parametrize("kind", KINDS)
def test_schemas_are_valid_draft7(kind):
    jsonschema.Draft7Validator.check_schema(codec.schema(kind))
    assert (SCHEMA_DIR / f"{kind}.schema.json").exists()


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_golden_decodes_and_both_validators_accept(path):
    message = _load(path)
    kind = _kind_of(path)
    assert message["type"] == kind and message["v"] == VERSION
    raw = path.read_bytes()
    assert codec.decode(kind, raw) == message
    assert fast_ok(kind, message)
    errors = [e.message for e in _REF[kind].iter_errors(message)]
    assert errors == []
    # Encoding is stable: what we send decodes to what we meant.
    assert codec.decode(kind, codec.encode(message)) == message
    assert codec.validate(copy.deepcopy(message)) == message


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_golden_is_refused_with_its_reason(path):
    wrapper = _load(path)
    assert set(wrapper) - {"note"} in ({"kind", "reason", "message"}, {"kind", "reason", "raw"}), path.name
    assert wrapper["reason"] in REASONS
    assert path.stem.startswith(wrapper["kind"] + "-")
    with pytest.raises(MessageError) as err:
        codec.decode(wrapper["kind"], _payload(wrapper))
    assert err.value.reason == wrapper["reason"], err.value
    if wrapper["reason"] == "schema":
        # Refused for the schema's sake alone: the reference validator refuses it too.
        assert not ref_ok(wrapper["kind"], wrapper["message"])


def test_oversized_golden_fails_on_size_alone():
    oversized = [_load(p) for p in INVALID if _load(p)["reason"] == "oversized"]
    assert oversized
    for w in oversized:
        payload = _payload(w)
        assert len(payload) > MAX_INBOUND_BYTES
        assert codec.decode(w["kind"], payload, max_bytes=len(payload))["type"] == w["kind"]


def test_size_limit_counts_utf8_bytes_for_text_payloads():
    """A str payload is measured in UTF-8 bytes, as it would travel, not in characters."""
    msg = _load(GOLDEN_DIR / "valid" / "catalog-full.json")
    text = json.dumps(msg, ensure_ascii=False)
    size = len(text.encode("utf-8"))
    assert len(text) < size  # Chinese text: more bytes than characters
    with pytest.raises(MessageError) as err:
        codec.decode("catalog", text, max_bytes=size - 1)
    assert err.value.reason == "oversized"
    assert codec.decode("catalog", text, max_bytes=size) == msg


def test_lone_surrogate_is_refused_so_decoded_messages_reencode():
    """A `\\udXXX` escape without its pair is legal JSON syntax but not text: it can never be written
    back as UTF-8 (the terminal re-encodes retained inputs to keep them on disk)."""
    msg = _load(GOLDEN_DIR / "valid" / "catalog-minimal.json")
    msg["reasons"][0]["zh"] = "\udc00其他"
    payload = json.dumps(msg, ensure_ascii=True)
    for p in (payload, payload.encode("ascii")):
        with pytest.raises(MessageError) as err:
            codec.decode("catalog", p)
        assert err.value.reason == "bad_json"
    pair = json.dumps({**msg, "reasons": [{"code": "1", "zh": "\U0001f600"}]}, ensure_ascii=True)
    assert codec.decode("catalog", pair)["reasons"][0]["zh"] == "\U0001f600"  # a real pair is fine


def test_version_true_is_not_version_one():
    msg = _load(GOLDEN_DIR / "valid" / "status-online.json")
    with pytest.raises(MessageError) as err:
        codec.decode("status", json.dumps({**msg, "v": True}))
    assert err.value.reason == "wrong_version"


@pytest.mark.parametrize("token", ["13800138000", "11010519491231002X", "110105194912310021",
                                   "110105491231002", "19912345678"])
def test_bare_phone_or_id_numbers_are_not_applicant_tokens(token):
    case = _load(GOLDEN_DIR / "valid" / "case-open.json")
    case["applicant"]["token"] = token
    with pytest.raises(MessageError) as err:
        codec.decode("case", json.dumps(case))
    assert err.value.reason == "personal_data"
    for kind in ("rating-case-good", "event-unrated"):
        msg = _load(GOLDEN_DIR / "valid" / f"{kind}.json")
        with pytest.raises(MessageError) as err:
            codec.decode(_kind_of(Path(kind)), json.dumps({**msg, "applicant": token}))
        assert err.value.reason == "personal_data"


@pytest.mark.parametrize("token", ["id310101199001011234", "tel_13800138000", "ap_13800138000", "T110105194912310021",
                                   "13800138000x", "tel-138-0013-8000"])
def test_a_phone_or_id_number_behind_a_letter_prefix_is_not_a_token(token):
    """Issue 8 item 8: `id…`/`tel_…` tokens passed because only the bare number was refused."""
    case = _load(GOLDEN_DIR / "valid" / "case-open.json")
    case["applicant"]["token"] = token
    with pytest.raises(MessageError) as err:
        codec.decode("case", json.dumps(case))
    assert err.value.reason == "personal_data"


@pytest.mark.parametrize("token", ["00000001", "1380013800a", "a1b13800138000", "ap_5f0c2a9e71b3d846",
                                   "ap_0123456789abcdef"])
def test_tokens_that_merely_contain_digits_are_accepted(token):
    case = _load(GOLDEN_DIR / "valid" / "case-open.json")
    case["applicant"]["token"] = token
    assert codec.decode("case", json.dumps(case))["applicant"]["token"] == token


def test_unknown_kind_for_validate_and_decode():
    with pytest.raises(MessageError) as err:
        codec.validate({"v": 1, "type": "ping"})
    assert err.value.reason == "unknown_kind"
    with pytest.raises(MessageError) as err:
        codec.decode("ping", b"{}")
    assert err.value.reason == "unknown_kind"


def test_personal_data_checks_apply_to_staff_names_on_case_and_duty():
    case = _load(GOLDEN_DIR / "valid" / "case-open.json")
    case["staff"]["name"] = "王芳13800138000"
    with pytest.raises(MessageError) as err:
        codec.decode("case", json.dumps(case))
    assert err.value.reason == "personal_data"
    case["staff"]["name"] = "王芳12345"  # five digits: a work number, allowed
    assert codec.decode("case", json.dumps(case))


# ---- personal data in any digit form (issue 8 item 8) -------------------------------------------

DIGIT_FORMS = ["0123456789", "０１２３４５６７８９", "٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹", "०१२३४५६७८९", "〇一二三四五六七八九",
               "零壹贰叁肆伍陆柒捌玖", "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗", "০১২৩৪৫৬৭৮৯"]
SEPARATORS = ["", " ", "-", ".", "_", "\u3000", "\u200b", "－", "—", "·", "/", "\u00a0"]
ZH_NUMERALS = set("〇一二三四五六七八九零壹贰叁肆伍陆柒捌玖幺")
PLAIN_ZH = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF).filter(lambda c: c not in ZH_NUMERALS),
                   max_size=8)


def _text_fields(text: str) -> list[tuple[str, dict]]:
    """(kind, message) with `text` in each display field a terminal shows."""
    case = _load(GOLDEN_DIR / "valid" / "case-open.json")
    duty = _load(GOLDEN_DIR / "valid" / "duty-staffed.json")
    catalog = _load(GOLDEN_DIR / "valid" / "catalog-full.json")
    binding = _load(GOLDEN_DIR / "valid" / "binding-active.json")
    out = []
    for path in (("case", "item_name"), ("staff", "name"), ("applicant", "display")):
        m = copy.deepcopy(case)
        m[path[0]][path[1]] = text
        out.append(("case", m))
    out.append(("duty", {**duty, "window_name": text}))
    out.append(("duty", {**duty, "staff": {**duty["staff"], "name": text}}))
    for key in ("zh", "en", "group"):
        m = copy.deepcopy(catalog)
        m["reasons"][-1][key] = text
        out.append(("catalog", m))
    out.append(("binding", {**binding, "window_name": text}))
    out.append(("binding", {**binding, "staff": [{"id": "S1", "name": text}]}))
    limits = [64, 32, 16, 32, 32, 64, 64, 16, 32, 32]  # the schema's maxLength of each field above
    return [m for m, limit in zip(out, limits) if len(text) <= limit]


@st.composite
def disguised_numbers(draw, max_len: int = 16) -> str:
    """A phone or ID-card number in mixed digit forms with separators, inside ordinary Chinese text."""
    number = draw(st.one_of(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
                            st.from_regex(r"[1-6][0-9]{16}[0-9]", fullmatch=True)))
    parts = []
    for i, ch in enumerate(number):
        if i:
            parts.append(draw(st.sampled_from(SEPARATORS)))
        parts.append(draw(st.sampled_from(DIGIT_FORMS))[int(ch)])
    shown = "".join(parts)
    if len(shown) >= max_len:  # cut to the field: at least half of it is digits, so ≥ 8 digits remain
        return shown[:max_len]
    room = max_len - len(shown)  # the padding is cut, never the number
    before = draw(PLAIN_ZH)[:room]
    return before + shown + draw(PLAIN_ZH)[:room - len(before)]


def test_the_reported_disguises_are_refused_in_every_display_field():
    for text in ["138 0013 8000", "tel_13800138000", "id310101199001011234", "１３８００１３８０００",
                 "١٣٨٠٠١٣٨٠٠٠", "一三八〇〇一三八〇〇〇", "幺三八零零幺三八零零零", "138\u200b0013\u200b8000"]:
        for kind, msg in _text_fields(text):
            with pytest.raises(MessageError) as err:
                codec.decode(kind, json.dumps(msg))
            assert err.value.reason == "personal_data", (kind, text)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_disguised_phone_or_id_number_is_refused(data):
    text = data.draw(disguised_numbers(max_len=16))
    for kind, msg in _text_fields(text):
        with pytest.raises(MessageError) as err:
            codec.decode(kind, json.dumps(msg))
        assert err.value.reason == "personal_data", (kind, text)


@settings(max_examples=200, deadline=None)
@given(prefix=st.from_regex(r"[A-Za-z]{0,6}[_-]?", fullmatch=True),
       number=st.one_of(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
                        st.from_regex(r"[0-9]{17}[0-9Xx]", fullmatch=True)),
       seps=st.lists(st.sampled_from(["", "", "-", "_"]), min_size=18, max_size=18),
       suffix=st.from_regex(r"[A-Za-z]{0,4}", fullmatch=True))
def test_any_phone_or_id_number_token_is_refused(prefix, number, seps, suffix):
    token = prefix + "".join(s + d for s, d in zip(["", *seps], number)) + suffix
    case = _load(GOLDEN_DIR / "valid" / "case-open.json")
    case["applicant"]["token"] = token
    with pytest.raises(MessageError) as err:
        codec.decode("case", json.dumps(case))
    assert err.value.reason == "personal_data"


ITEM_NAMES = ["居住证办理", "一网通办", "营业执照变更", "社保卡补办", "不动产登记查询", "第一窗口", "二〇二六年度个税汇算",
              "出入境证件办理（一次办）", "12345热线转办", "三级医院挂号", "一件事一次办", "七日内办结"]


@settings(max_examples=200, deadline=None)
@given(name=st.one_of(st.sampled_from(ITEM_NAMES), PLAIN_ZH.filter(bool)),
       extra=st.one_of(st.just(""), st.integers(0, 99999).map(str), PLAIN_ZH))
def test_ordinary_item_names_and_texts_are_accepted(name, extra):
    text = (name + extra)[:16]
    for kind, msg in _text_fields(text):
        assert codec.decode(kind, json.dumps(msg))


# ---- hypothesis: strategies ---------------------------------------------------------------------

HOSTILE_TEXT = ["", "+", "#", "/", "a/b", "W01\n", "\x00", " ", "13800138000", "张*", "x" * 33, "x" * 600,
                "https://", "2026-03-02T09:12:05+08:00", "0195a7e2-3c4d-7a1b-8c2d-3e4f5a6b7c8d", "\udc00"]
NAMES = [lvl.value for lvl in Level] + [c.value for c in Channel] + [
    "case", "staff", "hall", "open", "closed", "rated", "stored", "duplicate", "rejected", "online", "offline",
    "unrated", "alarm", "alarm_cleared"]
FIELD_NAMES = ["v", "type", "id", "device", "center", "window", "seq", "ts", "kind", "level", "channel", "case",
               "staff", "applicant", "reasons", "catalog", "codes", "state", "items", "status", "reason",
               "version", "event", "alarm", "detail", "rating_url", "display", "token", "name", "outbox"]

# Text including lone surrogates (hypothesis leaves those out by default): they reach the decoder as
# `\udXXX` escapes when the message is dumped with ensure_ascii=True.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), any_text)
json_values = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=5), st.dictionaries(st.one_of(any_text, st.sampled_from(FIELD_NAMES)), kids,
                                                max_size=5)), max_leaves=20)
near_values = st.one_of(
    st.sampled_from(HOSTILE_TEXT + NAMES), st.sampled_from([0, 1, -1, 1.0, 1.5, 2, 10, 3600, 3601, 2**53, True,
                                                             False, None]),
    st.builds(list), st.builds(dict),  # fresh each time: a later edit may grow them (a shared [] would leak)
    scalars)

GOLDEN_BY_KIND: dict[str, list[dict]] = {k: [_load(p) for p in VALID if _kind_of(p) == k] for k in KINDS}


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, path + (i,))
    return out


def _get(value: Any, path: tuple) -> Any:
    for p in path:
        value = value[p]
    return value


@st.composite
def mutated(draw, message: dict) -> Any:
    """A valid message with one to three small edits: the shapes an attacker or a buggy center sends."""
    msg: Any = copy.deepcopy(message)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(msg)))
        node = _get(msg, path)
        op = draw(st.sampled_from(["replace", "delete", "add", "tweak"]))
        if not path:
            if op == "replace":
                msg = draw(json_values)
            elif isinstance(msg, dict) and op == "add":
                msg[draw(st.sampled_from(FIELD_NAMES))] = draw(near_values)
            continue
        parent = _get(msg, path[:-1])
        if op == "replace":
            parent[path[-1]] = draw(st.one_of(near_values, json_values))
        elif op == "delete":
            del parent[path[-1]]
        elif op == "add" and isinstance(node, dict):
            node[draw(st.one_of(st.sampled_from(FIELD_NAMES), any_text))] = draw(near_values)
        elif op == "add" and isinstance(node, list):
            node.append(copy.deepcopy(draw(st.sampled_from(list(node)))) if node and draw(st.booleans())
                        else draw(near_values))
        elif isinstance(node, str):
            i = draw(st.integers(0, len(node)))
            parent[path[-1]] = draw(st.sampled_from([
                node[:i] + draw(st.sampled_from(["\n", "+", "#", "/", "~", "9", "Z", "é", " ", "\udc00"])) + node[i:],
                node[:i], node.upper(), node * 20]))
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            parent[path[-1]] = draw(st.sampled_from([node + 1, node - 1, -node, float(node), node * 10**6]))
    return msg


def golden_and_mutant(kinds=KINDS):
    return st.sampled_from(kinds).flatmap(
        lambda k: st.sampled_from(GOLDEN_BY_KIND[k]).flatmap(lambda m: st.tuples(st.just(k), mutated(m))))


def _decode_or_reason(kind: str, payload: bytes | str) -> dict | str:
    try:
        return codec.decode(kind, payload)
    except MessageError as e:
        assert e.reason in REASONS, e.reason
        return e.reason


# ---- hypothesis (a): the decoder raises MessageError and nothing else ------------------------

@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(KINDS), payload=st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_message_error(kind, payload):
    _decode_or_reason(kind, payload)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(KINDS), value=json_values, ascii_only=st.booleans())
def test_arbitrary_json_raises_only_message_error(kind, value, ascii_only):
    text = json.dumps(value, ensure_ascii=True)
    result = _decode_or_reason(kind, text.encode("ascii") if ascii_only else text)
    if isinstance(result, dict):
        assert fast_ok(kind, result) and ref_ok(kind, result)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(km=golden_and_mutant(), as_text=st.booleans())
def test_mutated_goldens_raise_only_message_error_and_what_passes_reencodes(km, as_text):
    kind, msg = km
    text = json.dumps(msg, ensure_ascii=True)
    result = _decode_or_reason(kind, text if as_text else text.encode("ascii"))
    if isinstance(result, dict):
        # Whatever the decoder lets through is schema-valid by the reference, and can be sent on again.
        assert ref_ok(kind, result)
        assert codec.decode(kind, codec.encode(result)) == result


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_truncated_and_padded_goldens_raise_only_message_error(kind, data):
    raw = codec.encode(data.draw(st.sampled_from(GOLDEN_BY_KIND[kind])))
    cut = data.draw(st.integers(0, len(raw)))
    junk = data.draw(st.binary(max_size=8))
    assert isinstance(_decode_or_reason(kind, raw[:cut] + junk), (dict, str))


# ---- hypothesis (b): fast validator and reference agree -------------------------------------

@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(km=golden_and_mutant())
def test_fastjsonschema_and_reference_agree_on_mutated_messages(km):
    kind, msg = km
    assert fast_ok(kind, msg) == ref_ok(kind, msg), json.dumps(msg, ensure_ascii=True)[:500]


def test_reference_pattern_is_ecma_not_python():
    """Both validators refuse a trailing newline in an id (Python's `$` alone would accept it)."""
    msg = {**GOLDEN_BY_KIND["status"][0], "device": "rpi-1\n"}
    assert not fast_ok("status", msg) and not ref_ok("status", msg)
    assert jsonschema.Draft7Validator(codec.schema("status")).is_valid(msg)  # the trap being avoided


# ---- hypothesis (c): ratings built from the domain round-trip ------------------------------

ids = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
case_ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,50}", fullmatch=True)
item_codes = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)
# An all-digit token could be a phone or ID-card number; tokens the center issues carry a letter or mark.
tokens = st.from_regex(r"[A-Za-z0-9_-]{8,128}", fullmatch=True).filter(lambda t: not t.isdigit())
uuids = st.uuids().map(str)
catalog_versions = st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True)
reason_codes = st.lists(st.from_regex(r"[0-9A-Za-z]{1,8}", fullmatch=True), min_size=1, max_size=32, unique=True)


@st.composite
def timestamps(draw) -> str:
    offset = timezone(timedelta(minutes=draw(st.integers(-14 * 60, 14 * 60))))
    dt = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))).replace(tzinfo=offset)
    text = dt.isoformat(timespec=draw(st.sampled_from(["seconds", "milliseconds", "microseconds"])))
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


@st.composite
def ratings(draw) -> dict:
    kind = draw(st.sampled_from(["case", "staff", "hall"]))
    level = draw(st.sampled_from(LEVELS))
    msg = {"v": 1, "type": "rating", "id": draw(uuids), "device": draw(ids), "center": draw(ids),
           "window": draw(ids), "seq": draw(st.integers(1, 2**53 - 1)), "ts": draw(timestamps()), "kind": kind,
           "level": level.value, "channel": draw(st.sampled_from(list(Channel))).value}
    if kind == "case":
        msg.update(case=draw(case_ids), staff=draw(ids), applicant=draw(tokens))
        if draw(st.booleans()):
            msg["item_code"] = draw(item_codes)
    elif kind == "staff":
        msg["staff"] = draw(ids)
    if level.is_bad or draw(st.booleans()):
        msg["reasons"] = {"catalog": draw(catalog_versions), "codes": draw(reason_codes)}
    return msg


@settings(max_examples=300, deadline=None)
@given(msg=ratings())
def test_generated_ratings_round_trip(msg):
    assert codec.validate(msg) is msg
    wire = codec.encode(msg)
    assert codec.decode("rating", wire) == msg
    assert fast_ok("rating", msg) and ref_ok("rating", msg)
    assert len(wire) <= MAX_INBOUND_BYTES


@settings(max_examples=200, deadline=None)
@given(msg=ratings(), data=st.data())
def test_generated_ratings_break_when_a_correspondence_rule_is_broken(msg, data):
    broken = copy.deepcopy(msg)
    if msg["kind"] == "case":
        del broken[data.draw(st.sampled_from(["case", "staff", "applicant"]))]
    elif msg["kind"] == "staff":
        broken[data.draw(st.sampled_from(["case", "applicant"]))] = "SH20260302000017"
    else:
        broken["staff"] = "S0101"
    if Level(msg["level"]).is_bad and data.draw(st.booleans()):
        broken = {**msg}
        del broken["reasons"]
    with pytest.raises(MessageError) as err:
        codec.decode("rating", codec.encode(broken))
    assert err.value.reason == "schema"
    assert not ref_ok("rating", broken)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["case", "staff"]), level=st.sampled_from(LEVELS),
       channel=st.sampled_from(list(Channel)), case_id=case_ids, staff_id=ids, token=tokens,
       item=item_codes, version=catalog_versions, codes=reason_codes, rid=uuids, seq=st.integers(1, 2**40),
       ts=timestamps(), where=st.tuples(ids, ids, ids))
def test_records_builder_output_decodes(kind, level, channel, case_id, staff_id, token, item, version, codes,
                                        rid, seq, ts, where):
    staff = Staff(staff_id, "王芳")
    case = Case(case_id, item, "居住证办理", staff, token, "张*") if kind == "case" else None
    reasons = tuple(codes) if level.is_bad else ()
    draft = RatingDraft(kind, level, channel, staff, case, reasons, version if reasons else "")
    msg = builders.rating(draft, builders.Origin(*where), rid, seq, ts)
    assert codec.decode("rating", codec.encode(msg)) == msg


def test_bad_rating_without_catalog_version_cannot_be_validated():
    draft = RatingDraft("staff", Level.DISSATISFIED, Channel.TOUCH, Staff("S0101", "王芳"), None, ("501",), "")
    msg = builders.rating(draft, builders.Origin("pudong", "W01", "d1"), "0195a7e2-3c4d-7a1b-8c2d-3e4f5a6b7c8d",
                         1, "2026-03-02T09:19:33+08:00")
    with pytest.raises(MessageError) as err:
        codec.validate(msg)
    assert err.value.reason == "schema"


# ---- topics ----------------------------------------------------------------------------------

def test_topic_tree():
    t = Topics("pudong", "W01", "rpi-1")
    assert PREFIX == f"hcp/v{VERSION}" == "hcp/v1"
    assert (t.case, t.duty) == ("hcp/v1/pudong/window/W01/case", "hcp/v1/pudong/window/W01/duty")
    assert t.catalog == "hcp/v1/pudong/catalog"
    assert [getattr(t, leaf) for leaf in ("config", "receipt", "rating", "event", "status")] == [
        f"hcp/v1/pudong/device/rpi-1/{leaf}" for leaf in ("config", "receipt", "rating", "event", "status")]
    assert t.inbound() == {t.case: "case", t.duty: "duty", t.catalog: "catalog", t.config: "config",
                           t.receipt: "receipt"}
    assert set(t.inbound().values()) == set(INBOUND)


@settings(max_examples=200, deadline=None)
@given(center=ids, window=ids, device=ids)
def test_device_topics_parse_back(center, window, device):
    t = Topics(center, window, device)
    for leaf in ("config", "receipt", "rating", "event", "status"):
        assert parse_device_topic(getattr(t, leaf)) == (center, device, leaf)
    for topic in (t.case, t.duty, t.catalog):
        assert parse_device_topic(topic) is None
    assert not any(ch in topic for topic in t.inbound() for ch in "+#")


@pytest.mark.parametrize("topic", [
    "hcp/v1/+/device/d1/rating", "hcp/v1/c1/device/+/rating", "hcp/v1/c1/device/#", "hcp/v1/#",
    "hcp/v1/c1/device/d1/rating/extra", "hcp/v1/c1/device/a/b/rating", "hcp/v1//device/d1/rating",
    "hcp/v1/c1/device//rating", "hcp/v2/c1/device/d1/rating", "/hcp/v1/c1/device/d1/rating",
    "hcp/v1/c1/device/d1/rating\n", "hcp/v1/c1\n/device/d1/rating", "hcp/v1/c1/device/d1/Rating",
    "hcp/v1/c1/device/d1/", "hcp/v1/c1/window/W01/case", "hcp/v1/c1/device/" + "d" * 33 + "/rating",
    "hcp/v1/c1/device/d1/rating\x00", "hcp/v1/c１/device/d1/rating", ""])
def test_hostile_topics_do_not_parse(topic):
    assert parse_device_topic(topic) is None


@settings(max_examples=400, deadline=None)
@given(topic=st.one_of(
    st.text(max_size=80),
    st.lists(st.one_of(st.sampled_from(["hcp", "v1", "c1", "device", "d1", "rating", "+", "#", "", "\n"]),
                       st.text(max_size=6)), max_size=8).map("/".join),
    st.tuples(ids, ids, st.text(max_size=10)).map(lambda p: f"hcp/v1/{p[0]}/device/{p[1]}/{p[2]}")))
def test_parse_device_topic_is_exact(topic):
    """A topic parses only if it is rebuilt exactly from its parts, and no part is a wildcard."""
    parsed = parse_device_topic(topic)
    if parsed is not None:
        center, device, leaf = parsed
        assert f"{PREFIX}/{center}/device/{device}/{leaf}" == topic
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,32}", center) and re.fullmatch(r"[A-Za-z0-9_-]{1,32}", device)
        assert re.fullmatch(r"[a-z]+", leaf)


# ---- config messages at the terminal -------------------------------------------------------

def test_a_key_left_out_of_a_config_message_means_the_local_value(tmp_path):
    from device import config as config_mod
    from device.terminal import Terminal

    cfg = config_mod.load([], env={"HCP_DEVICE_DATA_DIR": str(tmp_path), "HCP_RATING_THANKS_S": "5"})
    term = Terminal(cfg, "t1")
    try:
        def deliver(body: dict) -> None:
            term._inbound(term.topics.config, codec.encode({"v": 1, "type": "config", "device": "t1", **body}),
                          True)
            term.handle(term._events.get_nowait())

        deliver({"rating": {"thanks_s": 4}})
        assert term.state.settings.thanks_s == 4
        deliver({})  # the center withdrew its override
        assert term.state.settings.thanks_s == 5
    finally:
        term.outbox.close()


def test_protocol_doc_links_every_schema_and_existing_goldens():
    doc = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
    links = re.findall(r"\]\((\.\./[^)#]+)\)", doc.read_text("utf-8"))
    for link in links:
        assert (doc.parent / link).resolve().exists(), link
    linked = {Path(link).name for link in links}
    for kind in KINDS:
        assert f"{kind}.schema.json" in linked
        assert any(name.startswith(f"{kind}-") for name in linked), kind
