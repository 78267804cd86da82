"""A rating as the city platform stores it: GB/T 39046-2020 Table 9 field names, with the center's
configured level and channel codes (`protocol.codes`, docs/protocol.md §5), and the batch message that
carries such records to the city (docs/protocol.md, "Delivery to the city").

Pure functions, no I/O: `city_record` (center → city), `encode_batch`, and `parse_batch`, the city side's
decoder of outside input (every problem is a `CityError` with a reason code, never another exception).
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Mapping

from protocol.codes import CodeMap
from protocol.values import Channel, Level

VERSION = 1
BATCH_TYPE = "city_records"
MAX_BATCH = 500                 # records in one message, at most
MAX_BATCH_BYTES = 256 * 1024    # the devkit broker's max_packet_size; a city broker may allow less

# GB/T 39046-2020 Table 9, in its order, with what each holds here.
CASE_NO = "办件编号"        # an..50: the case id ("" for a rating without a case: hall, staff code)
CHANNEL = "评价渠道"        # the channel code (pf), from [codes] channels
RATER = "评价人"            # a..30: the opaque applicant token when there is one (never a name or number)
TIME = "评价时间"           # YYYYMMDDThhmmss, the rating's own local time
COUNT = "评价次数"          # n..2: 1 for a case's first rating, 2 for a later one (kept, flagged)
LEVEL = "满意度"            # an..20: the level in words (非常满意 …)
LEVEL_CODE = "满意度代码"   # n1: the level's code in the configured scheme
TEXT = "文字评价"           # free text; the center keeps phone notes to itself: always ""
AREA = "行政区划"           # n..9: the center's administrative division code ("" when not configured)
TABLE9 = (CASE_NO, CHANNEL, RATER, TIME, COUNT, LEVEL, LEVEL_CODE, TEXT, AREA)
# Not in Table 9, needed to receipt, reconcile and follow up: the record id, its origin, the reasons.
ID = "id"
DEVICE = "设备"             # the terminal (or `center-web`): the reconciliation is per day and device
WINDOW = "窗口"
ITEM = "事项编码"           # the service item code, when the case system gave one
STAFF = "经办人"            # the staff id, when the rating names one
REASONS = "评价内容"        # the bad rating's reason codes, comma-separated ("" when none)
CATALOG = "评价内容版本"    # the version of the reason list they come from
EXTRA = (ID, DEVICE, WINDOW, ITEM, STAFF, REASONS, CATALOG)

_ID = re.compile(r"[0-9a-f-]{36}")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
_TIME = re.compile(r"\d{8}T\d{6}")
_AREA = re.compile(r"\d{0,9}")
_CODES = re.compile(r"[A-Za-z0-9_.-]{1,32}(,[A-Za-z0-9_.-]{1,32}){0,31}")
_LEVEL_WORDS = frozenset(level.zh for level in Level)


class CityError(ValueError):
    """A city message or record that cannot be taken; `reason` is a stable code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def city_record(row: Mapping[str, Any], codes: CodeMap, area: str = "") -> dict:
    """The city's record of one stored rating (a `ratings` row, or the dict written to it)."""
    level = Level(row["level"])
    applicant = row.get("applicant") or ""
    return {
        ID: row["id"],
        CASE_NO: row.get("case_id") or "",
        CHANNEL: codes.channel_code(Channel(row["channel"])),
        RATER: applicant if len(applicant) <= 30 else "",  # a longer token does not fit a..30: left out, not cut
        TIME: platform_time(row["ts"]),
        COUNT: 1 if row.get("first") else 2,
        LEVEL: level.zh,
        LEVEL_CODE: codes.level_code(level),
        TEXT: "",
        AREA: area,
        DEVICE: row["device"],
        WINDOW: row["window"],
        ITEM: row.get("item_code") or "",
        STAFF: row.get("staff") or "",
        REASONS: row.get("reasons") or "",
        CATALOG: row.get("catalog") or "",
    }


def platform_time(ts: str) -> str:
    """ISO 8601 with offset (the record's `ts`) → YYYYMMDDThhmmss in the same local time."""
    return datetime.fromisoformat(ts).strftime("%Y%m%dT%H%M%S")


def day_of(ts: str) -> str:
    """The calendar day of a record's own ts, as written (its local time): YYYY-MM-DD."""
    return ts[:10]


def encode_batch(center: str, records: list[dict]) -> bytes:
    return json.dumps({"v": VERSION, "type": BATCH_TYPE, "center": center, "records": records},
                      ensure_ascii=False, separators=(",", ":")).encode()


def parse_batch(payload: bytes) -> tuple[str, list[tuple[str, dict | str]]]:
    """(center, [(id, record) or (id, refusal reason)]) of a batch message. A message that cannot be
    read as a whole raises CityError; a record that is wrong alone is refused alone (when it has an id)."""
    if len(payload) > MAX_BATCH_BYTES:
        raise CityError("oversized", f"{len(payload)} bytes > {MAX_BATCH_BYTES}")
    try:
        msg = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeError, ValueError, RecursionError) as e:
        raise CityError("bad_json", str(e)[:120]) from None
    if not isinstance(msg, dict):
        raise CityError("not_object", type(msg).__name__)
    if type(msg.get("v")) is not int or msg["v"] != VERSION:
        raise CityError("wrong_version", repr(msg.get("v"))[:32])
    if msg.get("type") != BATCH_TYPE:
        raise CityError("wrong_type", repr(msg.get("type"))[:32])
    center = msg.get("center")
    if not isinstance(center, str) or not _NAME.fullmatch(center):
        raise CityError("bad_center", repr(center)[:40])
    records = msg.get("records")
    if not isinstance(records, list) or not 1 <= len(records) <= MAX_BATCH:
        raise CityError("bad_records", f"1 to {MAX_BATCH} records expected")
    out: list[tuple[str, dict | str]] = []
    for r in records:
        rid = r.get(ID) if isinstance(r, dict) else None
        if not isinstance(rid, str) or not _ID.fullmatch(rid):
            continue  # nothing to answer to: the sender offers it again and finds its error in its own log
        try:
            out.append((rid, check_record(r)))
        except CityError as e:
            out.append((rid, str(e)[:200]))
    return center, out


def check_record(r: dict) -> dict:
    """The record itself if every field is present and well-formed; CityError naming the first that is not."""
    unknown = set(r) - set(TABLE9) - set(EXTRA)
    if unknown:
        raise CityError("unknown_field", sorted(unknown)[0][:32])
    for key in TABLE9 + EXTRA:
        if key not in r:
            raise CityError("missing_field", key)
    _text(r, CASE_NO, 50)
    _text(r, RATER, 30)
    _text(r, TEXT, 500)
    _text(r, ITEM, 64)
    _text(r, STAFF, 32)
    _text(r, CATALOG, 32)
    _int(r, CHANNEL, 0, 99)
    _int(r, COUNT, 1, 99)
    _int(r, LEVEL_CODE, 1, 5)
    if not isinstance(r[TIME], str) or not _TIME.fullmatch(r[TIME]):
        raise CityError("bad_field", TIME)
    try:
        datetime.strptime(r[TIME], "%Y%m%dT%H%M%S")
    except ValueError:
        raise CityError("bad_field", TIME) from None
    if not isinstance(r[LEVEL], str) or r[LEVEL] not in _LEVEL_WORDS:
        raise CityError("bad_field", LEVEL)
    if not isinstance(r[AREA], str) or not _AREA.fullmatch(r[AREA]):
        raise CityError("bad_field", AREA)
    for key in (DEVICE, WINDOW):
        if not isinstance(r[key], str) or not _NAME.fullmatch(r[key]):
            raise CityError("bad_field", key)
    if not isinstance(r[REASONS], str) or (r[REASONS] and not _CODES.fullmatch(r[REASONS])):
        raise CityError("bad_field", REASONS)
    return r


def record_day(r: dict) -> str:
    """YYYY-MM-DD of a checked city record (from 评价时间)."""
    t = r[TIME]
    return f"{t[0:4]}-{t[4:6]}-{t[6:8]}"


def _text(r: dict, key: str, most: int) -> None:
    if not isinstance(r[key], str) or len(r[key]) > most or any(ord(c) < 32 for c in r[key]):
        raise CityError("bad_field", key)


def _int(r: dict, key: str, lo: int, hi: int) -> None:
    if type(r[key]) is not int or not lo <= r[key] <= hi:
        raise CityError("bad_field", key)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


__all__ = ["CityError", "city_record", "platform_time", "day_of", "encode_batch", "parse_batch", "check_record",
           "record_day", "TABLE9", "EXTRA", "MAX_BATCH"]
