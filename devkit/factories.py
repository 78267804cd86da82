"""Messages and values the kit's fakes publish: the one staff fixture, the demo catalog and items, and
factories for catalog, duty, case, binding and rating messages (the shapes of `protocol/schemas/`).

Factories return plain dicts so a test can still break one on purpose; `protocol.codec.validate` checks
them. A rating is built by `protocol.builders.rating`, as the terminal builds its own."""
from __future__ import annotations

import random
from datetime import datetime
from typing import Sequence

from protocol import ids
from device.machine import RatingDraft
from device.model import Case, Catalog, Reason, Staff
from protocol import VERSION, builders
from protocol.values import Channel, Level

# The one staff fixture: who works at window W01 in the demo, the tests and the benchmarks.
STAFF: list[dict] = [{"id": "S0101", "name": "王芳", "number": "0101"},
                     {"id": "S0102", "name": "李强", "number": "0102"}]
# The demo center's reason catalog (docs/protocol.md): code, group, Chinese and English text.
REASONS: list[dict] = [
    {"code": "501", "group": "服务效率", "zh": "等候时间长", "en": "Long wait"},
    {"code": "502", "group": "服务效率", "zh": "办理时间长", "en": "Slow handling"},
    {"code": "503", "group": "服务水平", "zh": "业务不熟练", "en": "Not competent"},
    {"code": "504", "group": "服务水平", "zh": "一次告知不清", "en": "Unclear guidance"},
    {"code": "505", "group": "服务态度", "zh": "态度不好", "en": "Impolite"},
    {"code": "506", "group": "服务态度", "zh": "推诿扯皮", "en": "Passed the buck"},
]
CATALOG_VERSION = "2026.1"
CATALOG: dict = {"v": VERSION, "type": "catalog", "version": CATALOG_VERSION, "reasons": REASONS}
ITEMS: list[tuple[str, str]] = [("310115-001", "居住证办理"), ("310115-014", "营业执照变更"),
                                ("310115-027", "社保卡补办"), ("310115-033", "不动产登记查询")]
APPLICANT: dict = {"token": "ap_0123456789abcdef", "display": "张*"}
SURNAMES = "张王李赵刘陈杨黄周吴"


def staff(i: int = 0) -> Staff:
    """The core's value for `STAFF[i]`."""
    return Staff.from_msg(STAFF[i])


def catalog_model() -> Catalog:
    """The core's value for the demo catalog."""
    return Catalog(CATALOG_VERSION, tuple(Reason(r["code"], r["zh"]) for r in REASONS))


def catalog(center: str, version: str = CATALOG_VERSION) -> dict:
    return {**CATALOG, "center": center, "version": version}


def duty(center: str, window: str, staff: dict | None = STAFF[0], window_name: str = "一号窗口") -> dict:
    return {"v": VERSION, "type": "duty", "center": center, "window": window, "window_name": window_name,
            "staff": staff}


def case(center: str, window: str, case_id: str, state: str = "open", *, item: tuple[str, str] = ITEMS[0],
         staff: dict = STAFF[0], applicant: dict = APPLICANT, opened_at: str | None = None, **extra) -> dict:
    """A case message; `opened_at` is now by default (the terminal refuses cases older than case.max_age_h)."""
    return {"v": VERSION, "type": "case", "center": center, "window": window, "state": state,
            "case": {"id": case_id, "item_code": item[0], "item_name": item[1]}, "staff": staff,
            "applicant": applicant, "opened_at": opened_at or ids.wall_time(), **extra}


def random_case(center: str, window: str, n: int) -> dict:
    """The simulator's next case: a dated id, a random item and applicant."""
    return case(center, window, f"SH{datetime.now():%Y%m%d}{n:06d}", item=random.choice(ITEMS),
                applicant={"token": f"ap_{random.getrandbits(64):016x}", "display": random.choice(SURNAMES) + "*"})


def binding(center: str, device: str, state: str = "active", window: str | None = None, **extra) -> dict:
    """What provisioning publishes (retained) for a paired terminal (docs/protocol.md §11)."""
    body = {"v": VERSION, "type": "binding", "center": center, "device": device, "state": state}
    if window is not None:
        body["window"] = window
    return {**body, **extra}


def case_model(case_id: str, i: int = 0) -> Case:
    """The core's value for a case at W01 served by `STAFF[i]`."""
    return Case(case_id, ITEMS[0][0], ITEMS[0][1], staff(i), APPLICANT["token"], APPLICANT["display"])


def rating(device: str, center: str = "C1", window: str = "W01", *, kind: str = "hall",
           level: Level = Level.SATISFIED, channel: Channel = Channel.TOUCH, case: Case | None = None,
           staff: Staff | None = None, reasons: Sequence[str] = (), seq: int = 1, rid: str | None = None,
           ts: str | None = None) -> dict:
    """A rating message as a terminal sends it (built by `protocol.builders.rating`)."""
    draft = RatingDraft(kind, level, channel, staff, case, tuple(reasons), CATALOG_VERSION if reasons else "")
    return builders.rating(draft, builders.Origin(center, window, device), rid or ids.uuid7(), seq,
                           ts or ids.wall_time())
