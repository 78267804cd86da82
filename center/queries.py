"""The center's own data, read-only: the one query layer under the data API (JSON, CSV, JSON export) and the
supervisors' pages, so a figure on a page, in the API and in an export is computed by the same SQL.

`Queries(store, tz)`:
- `ratings(filters, cursor, limit)` → a `Page` of rating rows in (received, id) order and the opaque cursor
  of the next page (keyset pagination: stable under inserts, no row skipped or repeated);
- `export(filters)` → the same rows, streamed in batches (server-side cursor on PostgreSQL);
- `summary(by, filters)` → per staff member / window / item / day: counts per level, satisfaction rate,
  bad-rating rate, top reasons;
- `today(center)`, `monthly_staff_report(center, month)` → what the supervisor pages show.

Filters come from outside (query strings): `parse_filters` and `decode_cursor` are the only parsers and
raise `QueryError` (→ 400) for anything else. Dates are calendar days in the center's time zone and select
by `received` (when the center stored the rating). A `Filters.scope` (the reader's windows; None: all)
is applied to every query: a supervisor's figures never include another window's ratings.

Rows carry no applicant data: the applicant token (`ratings.applicant`) is never selected, and the
phone numbers (`contacts`) are never joined.

Counting (summaries): a rating counts unless it is a later rating of an already-rated case (一事一评:
`case_id` set and `first` = 0 — kept in the record, and in the rows, but not counted again). Rates are
shares of the counted ratings: 满意率 = (非常满意 + 满意 + 基本满意) / all, 差评率 = (不满意 + 非常不满意) / all.
"""
from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time as dtime, timedelta
from typing import Iterator, Mapping
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, Select, case, cast, false, func, literal, or_, select, tuple_

from center.store import Store
from center.store.tables import catalogs, notes, ratings, staff as staff_table, windows as windows_table
from protocol.values import LEVELS, Channel, Level

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_VALUES = 50           # values of one filter (window=a,b,...)
MAX_VALUE_LEN = 64
TOP_REASONS = 3
BUCKET_S = 900            # `by=day` groups quarter hours in SQL, then days in the center's zone (DST-proof)
SUMMARY_KEYS = ("staff", "window", "item", "day")
GOOD = frozenset({Level.VERY_SATISFIED.value, Level.SATISFIED.value, Level.BASICALLY_SATISFIED.value})
BAD = frozenset({Level.DISSATISFIED.value, Level.VERY_DISSATISFIED.value})
LEVEL_NAMES = tuple(lv.value for lv in LEVELS)
CHANNEL_NAMES = tuple(c.value for c in Channel)

# The columns of a row, in export order, with their Chinese headers (CSV `headers=zh`).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "评价编号"), ("center", "中心"), ("window", "窗口"), ("device", "设备"), ("seq", "序号"),
    ("ts", "评价时间"), ("received", "接收时间"), ("kind", "类型"), ("level", "评价等级"), ("channel", "渠道"),
    ("case_id", "办件编号"), ("item_code", "事项编码"), ("staff", "工作人员"), ("reasons", "差评原因"),
    ("catalog", "原因目录版本"), ("first", "首次评价"), ("flags", "核验标记"), ("note", "评价内容"),
)
_SELECTED = [ratings.c.id, ratings.c.center, ratings.c.window, ratings.c.device, ratings.c.seq, ratings.c.ts,
             ratings.c.received, ratings.c.kind, ratings.c.level, ratings.c.channel, ratings.c.case_id,
             ratings.c.item_code, ratings.c.staff, ratings.c.reasons, ratings.c.catalog, ratings.c.first,
             ratings.c.flags, notes.c.text.label("note")]
ZH_LEVELS = {lv.value: lv.zh for lv in LEVELS}
_VALUE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_MONTH = re.compile(r"(\d{4})-(\d{2})")


class QueryError(ValueError):
    """A filter, cursor or grouping that is not acceptable (the API answers 400 with this text)."""


@dataclass(frozen=True)
class Filters:
    start: date | None = None            # first day, inclusive (center time zone)
    end: date | None = None              # last day, inclusive
    center: str | None = None
    windows: frozenset[str] | None = None
    staff: frozenset[str] | None = None
    items: frozenset[str] | None = None
    levels: frozenset[str] | None = None
    channels: frozenset[str] | None = None
    scope: frozenset[str] | None = None  # the windows the reader may see; None: every window
    centers: frozenset[str] | None = None  # the centers this service answers for; None: all in the store

    def within(self, scope: frozenset[str] | None) -> "Filters":
        """These filters for a reader limited to `scope` (None: unlimited)."""
        if scope is None:
            return self
        return replace(self, scope=scope if self.scope is None else self.scope & scope)


@dataclass
class Page:
    rows: list[dict]
    next: str | None                     # the cursor of the next page; None: this was the last


@dataclass
class Group:
    key: str
    name: str = ""                       # the staff member's or window's name, when known
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LEVEL_NAMES, 0))
    reasons: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self, reason_names: Mapping[str, str] | None = None) -> dict:
        total = self.total
        good = sum(self.counts[lv] for lv in GOOD)
        bad = sum(self.counts[lv] for lv in BAD)
        names = reason_names or {}
        top = sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_REASONS]
        return {"key": self.key, "name": self.name, "total": total, "counts": dict(self.counts),
                "satisfaction_rate": round(good / total, 4) if total else None,
                "bad_rate": round(bad / total, 4) if total else None,
                "top_reasons": [{"code": c, "zh": names.get(c, ""), "count": n} for c, n in top]}


# ---- parsers of outside input -------------------------------------------------------------------------

def _values(raw: str | None, what: str, allowed: tuple[str, ...] | None = None) -> frozenset[str] | None:
    if raw is None or raw == "":
        return None
    parts = raw.split(",")
    if len(parts) > MAX_VALUES:
        raise QueryError(f"{what}: at most {MAX_VALUES} values")
    for p in parts:
        if allowed is not None:
            if p not in allowed:
                raise QueryError(f"{what}: one of {', '.join(allowed)}")
        elif not _VALUE.fullmatch(p):
            raise QueryError(f"{what}: 1–64 of A–Z a–z 0–9 _ . : -")
    return frozenset(parts)


def _day(raw: str | None, what: str) -> date | None:
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        raise QueryError(f"{what}: a date YYYY-MM-DD")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise QueryError(f"{what}: not a calendar date") from None


def parse_filters(params: Mapping[str, str]) -> Filters:
    """Filters from query parameters: `from`, `to` (YYYY-MM-DD), `center`, and comma-separated lists of
    `window`, `staff`, `item`, `level` (level names), `channel` (channel names)."""
    start, end = _day(params.get("from"), "from"), _day(params.get("to"), "to")
    if start and end and end < start:
        raise QueryError("to: not before from")
    center = _values(params.get("center"), "center")
    if center is not None and len(center) != 1:
        raise QueryError("center: one center")
    return Filters(start=start, end=end, center=next(iter(center)) if center else None,
                   windows=_values(params.get("window"), "window"), staff=_values(params.get("staff"), "staff"),
                   items=_values(params.get("item"), "item"),
                   levels=_values(params.get("level"), "level", LEVEL_NAMES),
                   channels=_values(params.get("channel"), "channel", CHANNEL_NAMES))


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6 or not 1 <= int(raw) <= MAX_LIMIT:
        raise QueryError(f"limit: 1–{MAX_LIMIT}")
    return int(raw)


def encode_cursor(received: float, rating_id: str) -> str:
    raw = json.dumps([received, rating_id], separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    """(received, id) of the last row of the previous page; QueryError for anything not made by encode_cursor."""
    bad = QueryError("cursor: not one this service gave")
    if not cursor or len(cursor) > 400 or not re.fullmatch(r"[A-Za-z0-9_\-]+", cursor):
        raise bad
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if (not isinstance(value, list) or len(value) != 2 or isinstance(value[0], bool)
            or not isinstance(value[0], (int, float)) or not math.isfinite(value[0])
            or not isinstance(value[1], str) or not 0 < len(value[1]) <= 36):
        raise bad
    return float(value[0]), value[1]


def parse_month(raw: str | None) -> tuple[int, int]:
    m = _MONTH.fullmatch(raw or "")
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1970:
        raise QueryError("month: YYYY-MM")
    return int(m.group(1)), int(m.group(2))


# ---- the queries ------------------------------------------------------------------------------------------

class Queries:
    def __init__(self, store: Store, tz: str = "Asia/Shanghai"):
        self.store = store
        self.tz = ZoneInfo(tz)

    # time ------------------------------------------------------------------------------------------
    def midnight(self, day: date) -> float:
        """The epoch time at which `day` begins in the center's time zone."""
        return datetime.combine(day, dtime(0), self.tz).timestamp()

    def local(self, epoch: float) -> str:
        return datetime.fromtimestamp(epoch, self.tz).isoformat(timespec="milliseconds")

    def day_of(self, epoch: float) -> date:
        return datetime.fromtimestamp(epoch, self.tz).date()

    # where -----------------------------------------------------------------------------------------
    def _where(self, f: Filters) -> list:
        c = ratings.c
        where = []
        if f.center is not None:
            where.append(c.center == f.center)
        if f.start is not None:
            where.append(c.received >= self.midnight(f.start))
        if f.end is not None:
            where.append(c.received < self.midnight(f.end + timedelta(days=1)))
        for column, values in ((c.center, f.centers), (c.window, f.windows), (c.window, f.scope), (c.staff, f.staff),
                               (c.item_code, f.items), (c.level, f.levels), (c.channel, f.channels)):
            if values is not None:
                where.append(column.in_(sorted(values)) if values else false())
        return where

    def _rows_query(self, f: Filters) -> Select:
        return (select(*_SELECTED).select_from(ratings.outerjoin(notes, notes.c.rating_id == ratings.c.id))
                .where(*self._where(f)).order_by(ratings.c.received, ratings.c.id))

    # rows ------------------------------------------------------------------------------------------
    def ratings(self, filters: Filters, cursor: str | None = None, limit: int = DEFAULT_LIMIT) -> Page:
        """One page of rows after `cursor` (None: from the start), oldest first."""
        limit = max(1, min(limit, MAX_LIMIT))
        q = self._rows_query(filters)
        if cursor:
            received, rid = decode_cursor(cursor)
            q = q.where(tuple_(ratings.c.received, ratings.c.id) > tuple_(received, rid))
        with self.store.read() as conn:
            found = conn.execute(q.limit(limit + 1)).all()
        more = len(found) > limit
        found = found[:limit]
        rows = [self.row(r) for r in found]
        last = found[-1] if found else None
        return Page(rows, encode_cursor(last.received, last.id) if more and last is not None else None)

    def row(self, r) -> dict:
        d = dict(r._mapping)
        d["received"] = self.local(d["received"])
        d["reasons"] = d["reasons"].split(",") if d["reasons"] else []
        d["flags"] = d["flags"].split(",") if d["flags"] else []
        d["first"] = bool(d["first"])
        return d

    def export(self, filters: Filters, batch: int = 5000) -> Iterator[list[dict]]:
        """Every row matching `filters`, oldest first, as `row()` dicts, `batch` at a time (one snapshot,
        read through a server-side cursor on PostgreSQL)."""
        with self.store.read() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(self._rows_query(filters))
            for part in result.partitions(batch):
                yield [self.row(r) for r in part]

    def csv_query(self, f: Filters, zh: bool, sql_time: bool) -> Select:
        """The rows query with the CSV's values: reasons and flags as sent (comma-separated), `first` 1/0,
        levels in Chinese when `zh`, `received` as local ISO 8601 text when `sql_time` (PostgreSQL)."""
        cols = list(_SELECTED)
        if sql_time:  # the session's TimeZone is the center's (set_config in export_csv)
            cols[6] = func.to_char(func.to_timestamp(ratings.c.received),
                                   literal('YYYY-MM-DD"T"HH24:MI:SS.MSTZH:TZM')).label("received")
        if zh:
            cols[8] = case(ZH_LEVELS, value=ratings.c.level, else_=ratings.c.level).label("level")
        return self._rows_query(f).with_only_columns(*cols)

    def export_csv(self, filters: Filters, zh: bool = False, chunk: int = 1 << 16) -> Iterator[bytes]:
        """The rows as CSV for Excel: UTF-8 with a BOM, LF line ends (as COPY writes them), a header row
        (Chinese when `zh`), in chunks of about `chunk` bytes. PostgreSQL writes the CSV itself (COPY of the
        same SELECT); SQLite's rows go through Python's csv module — the same values either way."""
        head = io.StringIO()
        csv.writer(head, lineterminator="\n").writerow([zh_name if zh else name for name, zh_name in COLUMNS])
        yield b"\xef\xbb\xbf" + head.getvalue().encode()
        if not self.store.is_sqlite:
            yield from self._copy_csv(filters, zh, chunk)
            return
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        local = self.local
        with self.store.read() as conn:
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(
                self.csv_query(filters, zh, sql_time=False))
            for part in result.partitions(5000):
                out.writerows([(*r[:6], local(r[6]), *r[7:]) for r in part])
                if buf.tell() >= chunk:
                    yield buf.getvalue().encode()
                    buf.seek(0)
                    buf.truncate()
        if buf.tell():
            yield buf.getvalue().encode()

    def _copy_csv(self, filters: Filters, zh: bool, chunk: int) -> Iterator[bytes]:
        q = self.csv_query(filters, zh, sql_time=True)
        # Every bound value was checked by the parsers (names of [A-Za-z0-9_.:-], known levels, floats).
        sql = str(q.compile(dialect=self.store.engine.dialect, compile_kwargs={"literal_binds": True}))
        with self.store.read() as conn:
            conn.exec_driver_sql("SELECT set_config('TimeZone', %(tz)s, true)", {"tz": self.tz.key})
            raw = conn.connection.driver_connection
            parts: list[bytes] = []
            size = 0
            with raw.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy:
                for data in copy:
                    parts.append(bytes(data))
                    size += len(data)
                    if size >= chunk:
                        yield b"".join(parts)
                        parts, size = [], 0
            if parts:
                yield b"".join(parts)

    # summaries -------------------------------------------------------------------------------------
    def summary(self, by: str, filters: Filters) -> list[dict]:
        """Per `by` (staff | window | item | day): counts per level, satisfaction rate, bad rate, top reasons."""
        if by not in SUMMARY_KEYS:
            raise QueryError(f"by: one of {', '.join(SUMMARY_KEYS)}")
        c = ratings.c
        # PostgreSQL rounds a cast to integer; SQLite truncates (and may lack floor()): both floor here.
        bucket = (cast(c.received / BUCKET_S, Integer) if self.store.is_sqlite
                  else func.floor(c.received / BUCKET_S))
        key = {"staff": c.staff, "window": c.window, "item": c.item_code, "day": bucket}[by].label("k")
        where = [*self._where(filters), or_(c.case_id.is_(None), c.first == 1)]
        # One pass over the ratings: per key, level and reason list (few distinct lists: reasons are set
        # only on bad ratings); the reason lists are split and counted here.
        q = select(key, c.level, c.reasons, func.count()).where(*where).group_by(key, c.level, c.reasons)
        with self.store.read() as conn:
            found = conn.execute(q).all()
            names = self._names(conn, by, filters.center)
            reason_names = self._reason_names(conn, filters.center)
        groups: dict[str, Group] = {}
        for k, level, reasons, n in found:
            k = self._key(by, k)
            g = groups.get(k)
            if g is None:
                g = groups[k] = Group(k, names.get(k, ""))
            if level in g.counts:
                g.counts[level] += n
            if reasons:
                for code in reasons.split(","):
                    if code:
                        g.reasons[code] += n
        return [groups[k].as_dict(reason_names) for k in sorted(groups)]

    def _key(self, by: str, k) -> str:
        if by == "day":
            return self.day_of(float(k) * BUCKET_S).isoformat()
        return "" if k is None else str(k)

    def _names(self, conn, by: str, center: str | None) -> dict[str, str]:
        if by == "staff":
            q = select(staff_table.c.staff_id, staff_table.c.name)
            if center:
                q = q.where(staff_table.c.center == center)
        elif by == "window":
            q = select(windows_table.c.window, windows_table.c.name)
            if center:
                q = q.where(windows_table.c.center == center)
        else:
            return {}
        return {k: v or "" for k, v in conn.execute(q)}

    def _reason_names(self, conn, center: str | None) -> dict[str, str]:
        """Reason code → Chinese text, from the catalogs (the newest wording wins)."""
        q = select(catalogs.c.reasons).order_by(catalogs.c.updated)
        if center:
            q = q.where(catalogs.c.center == center)
        names: dict[str, str] = {}
        for (text,) in conn.execute(q):
            try:
                for entry in json.loads(text):
                    if isinstance(entry, dict) and isinstance(entry.get("code"), str):
                        names[entry["code"]] = str(entry.get("zh", ""))
            except ValueError:
                continue
        return names

    def reason_names(self, center: str | None = None) -> dict[str, str]:
        with self.store.read() as conn:
            return self._reason_names(conn, center)

    # the supervisor pages --------------------------------------------------------------------------
    def today(self, center: str, scope: frozenset[str] | None = None, now: float | None = None,
              latest: int = 50) -> dict:
        """Today's ratings of `center` (in the reader's `scope`): per window, per staff, and the latest rows."""
        day = self.day_of(datetime.now(self.tz).timestamp() if now is None else now)
        f = Filters(start=day, end=day, center=center).within(scope)
        q = self._rows_query(f).order_by(None).order_by(ratings.c.received.desc(), ratings.c.id.desc()).limit(latest)
        with self.store.read() as conn:
            rows = [self.row(r) for r in conn.execute(q)]
        return {"day": day.isoformat(), "windows": self.summary("window", f), "staff": self.summary("staff", f),
                "latest": rows}

    def month_filters(self, center: str, month: str, scope: frozenset[str] | None = None) -> Filters:
        year, mon = parse_month(month)
        first = date(year, mon, 1)
        last = (date(year + mon // 12, mon % 12 + 1, 1)) - timedelta(days=1)
        return Filters(start=first, end=last, center=center).within(scope)

    def monthly_staff_report(self, center: str, month: str, scope: frozenset[str] | None = None) -> list[dict]:
        """Per staff member, the month `YYYY-MM` (center time zone): counts per level, rates, top reasons."""
        return self.summary("staff", self.month_filters(center, month, scope))
