"""From checked inbound messages to machine events, and the retained inputs kept on disk.

Functions of the configuration in force: the network thread calls `check` and `event_for` (it renders
the dynamic QR there, off the core thread); the core thread saves and loads the retained files.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from device import machine, qr
from device.alarms import Alarms
from device.config import Config
from device.enrolment import write_private
from device.machine import (CaseClosed, CaseOpened, CaseRatedElsewhere, CatalogChanged, DutyChanged,
                            SettingsChanged)
from device.model import Case, Catalog, Staff
from protocol import codec, qrtoken
from protocol.codec import MessageError
from protocol.values import Channel

log = logging.getLogger("device.terminal")
RETAINED_FILES = ("catalog", "duty", "config")  # kept on the data partition so the terminal works offline


def check(kind: str, data: dict, cfg: Config, device_id: str, serving: bool) -> None:
    """MessageError when a decoded message is not for this terminal at the window it serves now."""
    if kind in ("case", "duty", "catalog") and data["center"] != cfg.center.id:
        raise MessageError("wrong_center", f"{data['center']} is not {cfg.center.id}")
    if kind in ("case", "duty") and data["window"] != cfg.center.window:
        raise MessageError("wrong_window", f"{data['window']} is not {cfg.center.window}")
    if kind == "config" and data["device"] != device_id:
        raise MessageError("wrong_device", data["device"])
    if kind in ("case", "duty") and not serving:
        raise MessageError("not_serving", "this terminal takes no cases (retired, unpaired or revoked)")


def event_for(kind: str, data: dict, cfg: Config, case_rated: Callable[[str], bool],
              dynamic_qr: Callable[[Case], qr.DynamicQr | None]) -> machine.Event:
    if kind == "case":
        if data["state"] == "closed":
            return CaseClosed(data["case"]["id"])
        if data["state"] == "rated":
            return CaseRatedElsewhere(data["case"]["id"], Channel(data.get("rated_channel", "qr")))
        case = Case.from_msg(data)
        rated = case_rated(case.id)
        return CaseOpened(case, already_rated=rated, qr=None if rated else dynamic_qr(case))
    if kind == "duty":
        staff = Staff.from_msg(data["staff"]) if data["staff"] else None
        return DutyChanged(staff, data.get("window_name", ""))
    if kind == "catalog":
        return CatalogChanged(Catalog.from_msg(data))
    return SettingsChanged(settings(cfg, data.get("rating", {})))


def settings(cfg: Config, over: dict | None = None) -> machine.Settings:
    """Local configuration, with the center's config message on top: a key it leaves out is local again."""
    r, over = cfg.rating, over or {}
    return machine.Settings(*(over.get(k, getattr(r, k)) for k in (
        "case_timeout_s", "reasons_timeout_s", "thanks_s", "staff_rating_when_idle", "repeat_guard_s")))


def dynamic_qr(case: Case, cfg: Config, key: bytes | None, device_id: str) -> qr.DynamicQr | None:
    """The platform's rating URL when the case brought one, else our signed, expiring token; None
    without a signing key (never the demo key unless `qr.demo`): the citizen rates on the screen."""
    if case.rating_url:
        return qr.DynamicQr(case.rating_url, tuple(map(tuple, qr.matrix(case.rating_url))), 0)
    if key is None:
        log.warning("case %s: no QR signing key (qr.key, or the binding's): no dynamic QR", case.id)
        return None
    token = qrtoken.sign(cfg.qr.key_id, key, center=cfg.center.id, case=case.id, window=cfg.center.window,
                         staff=case.staff.id, device=device_id, ttl_s=cfg.qr.ttl_s)
    url = qrtoken.rating_url(cfg.qr.url_template, token)
    return qr.DynamicQr(url, tuple(map(tuple, qr.matrix(url))), int(token.split(qrtoken.SEP)[7]))


def save_retained(data_dir: Path, kind: str, data: dict, alarms: Alarms) -> None:
    """Atomic write + fsync, 0600 (core thread); a failing disk raises `disk_write_failed`.

    The same message again (the broker hands every retained message over at each reconnect) is not
    written again: three fsyncs less on the card per file and reconnect."""
    path = data_dir / f"{kind}.json"
    body = codec.encode(data)
    try:
        if path.read_bytes() == body:
            return
    except OSError:
        pass  # not there yet (or unreadable: written anew)
    try:
        write_private(path, body)
    except OSError as e:
        alarms.raise_("disk_write_failed", f"{path}: {e}")


def load_retained(data_dir: Path, cfg: Config) -> list[tuple[str, dict]]:
    """The retained inputs saved before (a duty message only for the window served now)."""
    out = []
    for kind in RETAINED_FILES:
        path = data_dir / f"{kind}.json"
        if not path.exists():
            continue
        try:
            data = codec.decode(kind, path.read_bytes(), cfg.limits.max_message_bytes)
            if kind == "duty" and data["window"] != cfg.center.window:
                continue
            out.append((kind, data))
        except (MessageError, OSError) as e:
            log.warning("ignoring saved %s: %s", path, e)
    return out
