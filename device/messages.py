"""Topics and message codecs: every byte from the network goes through `decode` first.

The JSON Schemas in `protocol/schemas/` are the single definition of each message; this module
adds the checks a schema cannot express (topic/payload agreement, personal data in clear).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import fastjsonschema

from protocol import SCHEMA_DIR, VERSION

PREFIX = f"hcp/v{VERSION}"
MAX_INBOUND_BYTES = 16 * 1024
KINDS = ("case", "duty", "catalog", "config", "receipt", "rating", "event", "status",
         "hello", "sealed", "grant", "binding")  # the last four: enrolment and pairing (docs/protocol.md §11)

# Runs of six or more digits look like ID-card, phone or bank numbers: never allowed in display text.
_DIGIT_RUN = re.compile(r"[0-9０-９]{6,}")
# An applicant token made of nothing but a mainland mobile number or a 15/18-digit ID-card number is
# not opaque. Only whole tokens are judged: random tokens may contain digit runs by chance.
_BARE_NUMBER = re.compile(r"1[3-9][0-9]{9}|[0-9]{15}|[0-9]{17}[0-9Xx]")


class MessageError(ValueError):
    """A message was refused. `reason` is a short stable code for counters and logs."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# ---- topics ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Topics:
    """The topic tree for one device at one window of one center."""

    center: str
    window: str
    device: str

    def window_topic(self, leaf: str) -> str:
        return f"{PREFIX}/{self.center}/window/{self.window}/{leaf}"

    def device_topic(self, leaf: str) -> str:
        return f"{PREFIX}/{self.center}/device/{self.device}/{leaf}"

    @property
    def case(self) -> str:
        return self.window_topic("case")

    @property
    def duty(self) -> str:
        return self.window_topic("duty")

    @property
    def catalog(self) -> str:
        return f"{PREFIX}/{self.center}/catalog"

    @property
    def config(self) -> str:
        return self.device_topic("config")

    @property
    def receipt(self) -> str:
        return self.device_topic("receipt")

    @property
    def rating(self) -> str:
        return self.device_topic("rating")

    @property
    def event(self) -> str:
        return self.device_topic("event")

    @property
    def status(self) -> str:
        return self.device_topic("status")

    @property
    def binding(self) -> str:
        return self.device_topic("binding")

    @property
    def credentials(self) -> str:
        return self.device_topic("credentials")

    @property
    def hello(self) -> str:
        return f"{PREFIX}/{self.center}/enrol/{self.device}/hello"

    def answer(self, key_id: str) -> str:
        """Where the center answers an announcement made with the key whose id is `key_id`."""
        return f"{PREFIX}/{self.center}/enrol/{self.device}/{key_id}/answer"

    def inbound(self) -> dict[str, str]:
        """Topic → message kind, for everything a device subscribes to."""
        return {self.case: "case", self.duty: "duty", self.catalog: "catalog",
                self.config: "config", self.receipt: "receipt"}


DEVICE_TOPIC = re.compile(rf"^{re.escape(PREFIX)}/([A-Za-z0-9_-]{{1,32}})/device/([A-Za-z0-9_-]{{1,32}})/([a-z]+)$")


def parse_device_topic(topic: str) -> tuple[str, str, str] | None:
    """(center, device, leaf) for a device topic, else None."""
    m = DEVICE_TOPIC.fullmatch(topic)  # not .match: its `$` would accept a trailing "\n"
    return (m.group(1), m.group(2), m.group(3)) if m else None


# ---- decoding -------------------------------------------------------------------------------

@cache
def _validator(kind: str):
    return fastjsonschema.compile(schema(kind))


def schema(kind: str) -> dict:
    """The JSON Schema of a message kind with its shared definitions inlined."""
    defs = json.loads((SCHEMA_DIR / "defs.json").read_text("utf-8"))
    defs.pop("$comment", None)
    s = json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text("utf-8"))
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
    if isinstance(token, str) and _BARE_NUMBER.fullmatch(token):
        raise MessageError("personal_data", "the applicant token is a phone or ID-card number")
    texts: list[str] = []
    if kind == "case":
        texts += [data.get("applicant", {}).get("display", "")]
        texts += [data.get("staff", {}).get("name", "")]
    elif kind == "duty" and data.get("staff"):
        texts.append(data["staff"]["name"])
    elif kind == "binding":
        texts += [s["name"] for s in data.get("staff", [])]
    for t in texts:
        if _DIGIT_RUN.search(t):
            raise MessageError("personal_data", "display text contains a long digit run")


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
