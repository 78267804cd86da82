"""The message codec: every byte from the network goes through `decode` first.

The JSON Schemas in `protocol/schemas/` are the single definition of each message; this module
adds the checks a schema cannot express (topic/payload agreement, personal data in clear).
"""
from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from typing import Any

import fastjsonschema

from protocol import SCHEMA_DIR, VERSION

MAX_INBOUND_BYTES = 16 * 1024
KINDS = ("case", "duty", "catalog", "config", "receipt", "rating", "event", "status",
         "hello", "sealed", "grant", "binding")  # the last four: enrolment and pairing (docs/protocol.md §11)

# Runs of six or more digits look like ID-card, phone or bank numbers: never allowed in display text.
# Judged on `digit_view(text)`, so full-width, Arabic-Indic, Chinese-numeral digits and separators
# ("138 0013 8000", "138-0013-8000") do not hide one.
_DIGIT_RUN = re.compile(r"[0-9]{6,}")
# A token or work number made of nothing but a mainland mobile number or a 15/18-digit ID-card number
# (with at most a letter prefix or suffix: "tel_13800138000", "id310101199001011234") is not opaque.
# Only whole values are judged: random tokens may contain digit runs by chance.
_BARE_NUMBER = re.compile(r"[A-Za-z]*(?:1[3-9][0-9]{9}|[0-9]{15}|[0-9]{17}[0-9Xx])[A-Za-z]*")
_ZH_DIGITS = {ord(c): str(i) for i, c in enumerate("〇一二三四五六七八九")}
_ZH_DIGITS |= {ord(c): str(i) for i, c in enumerate("零壹贰叁肆伍陆柒捌玖")}
_ZH_DIGITS |= {ord("幺"): "1"}  # "one" as read out in phone numbers
# Whatever people (or an evasive center system) put between the digits of a number.
_SEPARATORS = re.compile(r"(?<=[0-9])[\s\-_.,:/\\|()\[\]·•‐‑‒–—―−~*#+]+(?=[0-9])")


def digit_view(text: str) -> str:
    """`text` as a digit checker must see it: NFKC, every Unicode decimal digit and Chinese numeral
    as an ASCII digit, invisible format characters dropped, separators between digits dropped."""
    out = []
    for ch in unicodedata.normalize("NFKC", text).translate(_ZH_DIGITS):
        if ch.isascii():
            out.append(ch)
        elif unicodedata.category(ch) in ("Cf", "Cc", "Mn"):
            continue  # zero-width spaces, bidi marks, combining marks between digits
        else:
            d = unicodedata.digit(ch, None)
            out.append(str(d) if d is not None else ch)
    return _SEPARATORS.sub("", "".join(out))


def looks_like_personal_number(text: str) -> bool:
    """Display text with a long digit run (ID card, phone, bank account) in any digit form."""
    return bool(_DIGIT_RUN.search(digit_view(text)))


def is_bare_number(value: str) -> bool:
    """A token or work number that is just a phone or ID-card number (any digit form, separators)."""
    return bool(_BARE_NUMBER.fullmatch(digit_view(value).replace("-", "").replace("_", "").replace(" ", "")))


class MessageError(ValueError):
    """A message was refused. `reason` is a short stable code for counters and logs."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@cache
def _validator(kind: str):
    return fastjsonschema.compile(schema(kind))


def schema(kind: str) -> dict:
    """The JSON Schema of a message kind with its shared definitions inlined (`defs.json#/definitions/x`
    becomes `#/definitions/x`: one self-contained document, no external references to resolve)."""
    defs = json.loads((SCHEMA_DIR / "defs.json").read_text("utf-8"))["definitions"]
    text = (SCHEMA_DIR / f"{kind}.schema.json").read_text("utf-8")
    s = json.loads(text.replace('"defs.json#/definitions/', '"#/definitions/'))
    s["definitions"] = defs
    return s


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise MessageError("duplicate_key", "a JSON object repeats a key")
    return d


def _no_constants(name: str) -> Any:
    raise MessageError("bad_json", f"{name} is not JSON")


def decode(kind: str, payload: bytes | str, max_bytes: int = MAX_INBOUND_BYTES) -> dict:
    """Parse and validate one message of `kind`; raise MessageError with a reason code."""
    if kind not in KINDS:
        raise MessageError("unknown_kind", kind)
    if isinstance(payload, str):  # the limit is in bytes as they travel, not in characters
        try:
            payload = payload.encode("utf-8")
        except UnicodeEncodeError:
            raise MessageError("bad_json", "text is not valid Unicode") from None
    if len(payload) > max_bytes:
        raise MessageError("oversized", f"{len(payload)} bytes > {max_bytes}")
    try:
        data = json.loads(payload.decode("utf-8"), object_pairs_hook=_no_duplicate_keys,
                          parse_constant=_no_constants)
        # A lone "\udXXX" escape parses, but is not text: it could never be written back as UTF-8.
        # Only a \u escape can make one (UTF-8 itself cannot carry surrogates).
        if b"\\u" in payload:
            encode(data)
    except MessageError:
        raise
    except (UnicodeError, ValueError, RecursionError) as e:
        raise MessageError("bad_json", str(e)[:120]) from None
    if not isinstance(data, dict):
        raise MessageError("not_object", type(data).__name__)
    if isinstance(data.get("v"), bool) or data.get("v") != VERSION:  # True == 1 in Python, not in JSON
        raise MessageError("wrong_version", f"v={data.get('v')!r}, this device speaks v={VERSION}")
    if data.get("type") != kind:
        raise MessageError("wrong_type", f"expected {kind!r}, got {str(data.get('type'))[:32]!r}")
    try:
        _validator(kind)(data)
    except fastjsonschema.JsonSchemaValueException as e:
        raise MessageError("schema", e.message[:200]) from None
    _check_personal_data(kind, data)
    return data


def _check_personal_data(kind: str, data: dict) -> None:
    """Refuse display text that carries what looks like an ID or phone number, and bare-number tokens."""
    token = data.get("applicant", {}).get("token") if kind == "case" else data.get("applicant")
    if isinstance(token, str) and is_bare_number(token):
        raise MessageError("personal_data", "the applicant token is a phone or ID-card number")
    texts, numbers = _display_texts(kind, data)
    for field, text in texts:
        if looks_like_personal_number(text):
            raise MessageError("personal_data", f"{field} contains a long digit run")
    for field, number in numbers:  # work numbers may be long: only a bare phone/ID number is refused
        if is_bare_number(number):
            raise MessageError("personal_data", f"{field} is a phone or ID-card number")


def _display_texts(kind: str, data: dict) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(texts, work numbers) a terminal shows, by field; ids, codes, tokens and URLs are not text."""
    texts: list[tuple[str, str]] = []
    numbers: list[tuple[str, str]] = []
    staff: list[tuple[str, dict]] = []
    if kind == "case":
        texts += [("case.item_name", data["case"].get("item_name", ""))]
        texts += [("applicant.display", data.get("applicant", {}).get("display", ""))]
        staff += [("staff", data["staff"])] if data.get("staff") else []
    elif kind == "duty":
        texts += [("window_name", data.get("window_name", ""))]
        staff += [("staff", data["staff"])] if data.get("staff") else []
    elif kind == "binding":
        texts += [("window_name", data.get("window_name", ""))]
        staff += [(f"staff[{i}]", st) for i, st in enumerate(data.get("staff", []))]
    elif kind == "catalog":
        texts += [(f"reasons[{i}].{k}", r.get(k, "")) for i, r in enumerate(data["reasons"]) for k in ("zh", "en", "group")]
    for where, st in staff:
        texts.append((f"{where}.name", st["name"]))
        numbers.append((f"{where}.number", st.get("number", "")))
    return texts, numbers


def encode(message: dict) -> bytes:
    """Compact UTF-8 JSON (Chinese kept as UTF-8, not escaped)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def validate(message: dict) -> dict:
    """Check an outbound message against its schema (used before anything is committed)."""
    kind = message.get("type")
    if kind not in KINDS:
        raise MessageError("unknown_kind", str(kind))
    try:
        _validator(kind)(message)
    except fastjsonschema.JsonSchemaValueException as e:
        raise MessageError("schema", e.message[:200]) from None
    return message
