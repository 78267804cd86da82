"""The terminal runtime: wires config, outbox, MQTT link and courier around the pure state machine.

Threads:
- core (`run`): the only thread that steps the state machine and commits ratings;
- paho's network thread: decodes inbound messages, renders the dynamic QR, queues events;
- courier: delivery and receipts (device.courier);
- views (console, Kivy, GPIO keys) only `submit()` events and `watch()` states.

Enrolment and binding (window, account, pairing screen) live in the mixin `device.enrolled`.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from device import __version__, ids, machine, messages, qr, records
from device.alarms import Alarms
from device.case_age import CaseAge
from device.config import Config, qr_key
from device.courier import Courier
from device.enrolled import RE_ENROL, REFRESH, REWIRE, Enrolled, PairingWatcher, _Rebind
from device.machine import (CaseCleared, CaseClosed, CaseOpened, CaseRatedElsewhere, CatalogChanged, CommitFailed,
                            Committed, CommitRating, DutyChanged, EmitUnrated, Ignored, SettingsChanged,
                            State, Tick)
from device.messages import MessageError, Topics
from device.model import Case, Catalog, Channel, Staff
from device.outbox import Outbox, OutboxError, Record

if TYPE_CHECKING:
    from device.enrolment import Credentials, Pairing

log = logging.getLogger(__name__)
STATUS_EVERY_S = 300
RETAINED_FILES = ("catalog", "duty", "config")  # kept on the data partition so the terminal works offline

Watcher = Callable[[State], None]
@dataclass(frozen=True)
class _Windowed:
    """An input that belongs to one window: dropped if the terminal was moved before it was stepped."""

    window: str
    event: Any


class Terminal(Enrolled):
    def __init__(self, cfg: Config, device_id: str, clock: Callable[[], float] = time.monotonic):
        self.base_cfg = cfg
        self.device_id = device_id
        self.clock = clock
        self.data_dir = Path(cfg.device.data_dir)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.chmod(self.data_dir, 0o700)  # ratings, credentials and keys: for the terminal's account only
        except OSError as e:
            log.warning("cannot make %s private (0700): %s", self.data_dir, e)
        self.enrolled = bool(cfg.enrolment.username)
        self.binding: dict | None = None
        self._creds: Credentials | None = None
        self._pairing: Pairing | None = None
        self._pairing_watchers: list[PairingWatcher] = []
        self._code_until = 0.0                      # monotonic: when the shown pairing code expires
        self._code: tuple[str, float] = ("", 0.0)   # (code, the same expiry as wall time for the screen)
        self._creds_pending: Credentials | None = None
        self._last_hello = -1e18
        self._refusals = 0
        self._binding_qr_key: bytes | None = None
        if self.enrolled:
            self._init_enrolment()
        self.cfg = cfg = self._effective_cfg()
        self.origin = records.Origin(cfg.center.id, cfg.center.window, device_id)
        self.topics = Topics(cfg.center.id, cfg.center.window, device_id)
        self.rejected: Counter[str] = Counter()
        self.alarms = Alarms(self._alarm_changed)
        self.case_age = CaseAge(self.data_dir, cfg.case.max_age_h)
        self.outbox = Outbox(self.data_dir / "outbox.db", cfg.outbox.capacity, on_alarm=self.alarms.raise_,
                             on_clear=self.alarms.clear)
        self._qr_key = self._binding_qr_key or qr_key(cfg)
        if self._qr_key is None and not self.enrolled:
            log.error("no QR signing key (qr.key or qr.key_file): cases show no dynamic QR, only the screen")
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._watchers: list[Watcher] = []
        self._stop = threading.Event()
        self.state = State(settings=self._settings())
        self.link = self._make_link()
        self.courier = Courier(self.outbox, cfg.outbox, publish=self._publish_record, on_alarm=self.alarms.raise_,
                               on_clear=self.alarms.clear, clock=clock, max_unacked=cfg.mqtt.max_inflight)
        self._load_retained()
        self._counts = self.outbox.counts()
        roster = self.roster_duty() if self.enrolled else None
        if roster is not None:  # no duty feed (yet): the binding's roster
            self.state, _ = machine.step(self.state, roster, self.clock())
        self._pairing = self._current_pairing()

    # ---- public API for views -------------------------------------------------------------------

    def submit(self, event: machine.Event) -> None:
        """Hand an input to the core thread (safe from any thread: UI, GPIO callbacks, console)."""
        self._events.put(event)

    def watch(self, fn: Watcher) -> None:
        """`fn(state)` is called on the core thread after every change; keep it short."""
        self._watchers.append(fn)
        fn(self.state)

    @property
    def online(self) -> bool:
        return self.link.connected.is_set()

    @property
    def connection_problem(self) -> str | None:
        """Why the terminal is not connected, in words with host:port (maintenance screen); None when connected."""
        return self.link.last_error

    def start(self) -> None:
        self.courier.start()
        self.link.start()

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._events.put(Tick())
        final = None if self.mode == "enrolling" else (self.topics.status, messages.encode(self._status("offline")))
        self.link.stop(final=final)
        self.courier.stop()
        self.outbox.close()

    def run(self) -> None:
        """The core loop: step the machine on each event, or on each deadline."""
        last_status = self.clock()
        while not self._stop.is_set():
            deadline = self.state.deadline
            timeout = 1.0 if deadline is None else min(1.0, max(0.0, deadline - self.clock()))
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                event = Tick()
            if event is REFRESH:
                self._notify()
            elif event is REWIRE:
                if self._creds_pending is not None:  # (a retained answer delivered twice rewires once)
                    self._rewire()
            elif isinstance(event, _Rebind):
                self._rebind(event)
            elif event is RE_ENROL:
                self._re_enrol()
            else:
                self.handle(event)
            if self.enrolled:
                self._enrolment_tick()
            self._check_counts()
            if self.clock() - last_status >= STATUS_EVERY_S:
                last_status = self.clock()
                self.publish_status()

    def handle(self, event: machine.Event) -> None:
        """Step once and carry out the effects (core thread).

        A rating is committed before anything is rendered (the machine only reaches "thank you" after
        `Committed`); other effects (an unrated event for the SMS follow-up) wait until the screen shows.
        """
        if isinstance(event, _Windowed):
            if event.window != self.cfg.center.window:
                log.info("dropped input for window %s: this terminal now serves %s", event.window,
                         self.cfg.center.window)
                return
            event = event.event
        before = self.state
        self.state, effects = machine.step(self.state, event, self.clock())
        later: list[machine.Effect] = []
        while effects:
            effect = effects.pop(0)
            if not isinstance(effect, CommitRating):
                later.append(effect)
                continue
            self.state, more = machine.step(self.state, self._commit(effect), self.clock())
            effects.extend(more)
        if self.state is not before:
            self._notify()
        for effect in later:
            self._carry_out(effect)

    def _check_counts(self) -> None:
        """Core thread, once per loop (at least every second): the views hear of changed outbox counts
        (receipts are taken on the courier's thread and change no state)."""
        counts = self.outbox.counts()
        if counts != self._counts:
            self._counts = counts
            self._notify()

    def _notify(self) -> None:
        for fn in self._watchers:
            try:
                fn(self.state)
            except Exception:  # noqa: BLE001 - a broken view must not stop the core
                log.exception("view failed to render")

    # ---- effects ---------------------------------------------------------------------------------

    def _commit(self, effect: CommitRating) -> machine.Event:
        d = effect.draft
        try:
            rec = self.outbox.add("rating", lambda rid, seq, ts: records.rating(d, self.origin, rid, seq, ts),
                                  case_id=d.case.id if d.case else None)
        except (OutboxError, MessageError) as e:
            self.alarms.raise_("rating_not_stored", str(e))
            return CommitFailed(getattr(e, "reason", "error"))
        self.courier.new_record(rec)
        self._check_fill()
        return Committed(rec.id)

    def _carry_out(self, effect: machine.Effect) -> None:
        if isinstance(effect, EmitUnrated):
            try:
                rec = self.outbox.add("event", lambda rid, seq, ts: records.unrated(effect.case, self.origin,
                                                                                    rid, seq, ts))
                self.courier.new_record(rec)
            except (OutboxError, MessageError) as e:
                self.alarms.raise_("event_not_stored", f"unrated case {effect.case.id}: {e}")
        elif isinstance(effect, Ignored):
            log.info("ignored %s: %s", effect.event, effect.reason)

    def _check_fill(self) -> None:
        c = self.outbox.counts()
        if c.level * 100 >= self.cfg.outbox.alarm_percent:
            self.alarms.raise_("outbox_high", f"{c.pending} pending + {c.quarantined} quarantined of {c.capacity}")
        else:
            self.alarms.clear("outbox_high")

    def _publish_record(self, rec: Record) -> int | None:
        return self.link.publish(self.topics.device_topic(rec.leaf), rec.payload, qos=1)

    # ---- inbound (paho network thread) -----------------------------------------------------------

    def _inbound(self, topic: str, payload: bytes, retained: bool) -> None:
        if self.enrolled and self._enrolment_inbound(topic, payload):
            return
        kind = self.topics.inbound().get(topic)
        if kind is None:
            return self._reject(topic, MessageError("unexpected_topic", topic[:80]))
        if kind == "case" and not payload:  # an empty retained message: the center cleared the case
            log.info("case cleared at %s (empty retained message)", self.cfg.center.window)
            return self.submit(_Windowed(self.cfg.center.window, CaseCleared()))
        try:
            data = messages.decode(kind, payload, self.cfg.limits.max_message_bytes)
            self._apply(kind, data)
        except MessageError as e:
            self._reject(topic, e)

    def _reject(self, topic: str, e: MessageError) -> None:
        self.rejected[e.reason] += 1
        log.warning("rejected message on %s: %s (%d rejected so far)", topic, e, sum(self.rejected.values()))

    def _apply(self, kind: str, data: dict) -> None:
        if kind == "receipt":
            self.courier.receipts(data["items"])
            return
        if kind in ("case", "duty", "catalog") and data["center"] != self.cfg.center.id:
            raise MessageError("wrong_center", f"{data['center']} is not {self.cfg.center.id}")
        if kind in ("case", "duty") and data["window"] != self.cfg.center.window:
            raise MessageError("wrong_window", f"{data['window']} is not {self.cfg.center.window}")
        if kind == "config" and data["device"] != self.device_id:
            raise MessageError("wrong_device", data["device"])
        if self.enrolled and kind in ("case", "duty") and not self._serving():
            raise MessageError("not_serving", "this terminal takes no cases (retired, unpaired or revoked)")
        if kind == "case":
            self.case_age.check(data)  # too old, or older than a case already seen here: refused
        event = self._event_for(kind, data)
        if kind in RETAINED_FILES:
            self._save_retained(kind, data)
        self.submit(_Windowed(data["window"], event) if kind in ("case", "duty") else event)

    def _event_for(self, kind: str, data: dict) -> machine.Event:
        if kind == "case":
            if data["state"] == "closed":
                return CaseClosed(data["case"]["id"])
            if data["state"] == "rated":
                return CaseRatedElsewhere(data["case"]["id"], Channel(data.get("rated_channel", "qr")))
            case = Case.from_msg(data)
            rated = self.outbox.case_rated(case.id)
            return CaseOpened(case, already_rated=rated, qr=None if rated else self.dynamic_qr(case))
        if kind == "duty":
            staff = Staff.from_msg(data["staff"]) if data["staff"] else None
            return DutyChanged(staff, data.get("window_name", ""))
        if kind == "catalog":
            return CatalogChanged(Catalog.from_msg(data))
        return SettingsChanged(self._settings(data.get("rating", {})))

    def _settings(self, over: dict | None = None) -> machine.Settings:
        """Local configuration, with the center's config message on top: a key it leaves out is local again."""
        r, over = self.cfg.rating, over or {}
        return machine.Settings(*(over.get(k, getattr(r, k)) for k in (
            "case_timeout_s", "reasons_timeout_s", "thanks_s", "staff_rating_when_idle", "repeat_guard_s")))

    def dynamic_qr(self, case: Case) -> qr.DynamicQr | None:
        """The platform's rating URL when the case brought one, else our signed, expiring token; None
        without a signing key (never the demo key unless `qr.demo`): the citizen rates on the screen."""
        if case.rating_url:
            return qr.DynamicQr(case.rating_url, tuple(map(tuple, qr.matrix(case.rating_url))), 0)
        if self._qr_key is None:
            log.warning("case %s: no QR signing key (qr.key, or the binding's): no dynamic QR", case.id)
            return None
        token = qr.sign(self.cfg.qr.key_id, self._qr_key, center=self.cfg.center.id, case=case.id,
                        window=self.cfg.center.window, staff=case.staff.id, device=self.device_id,
                        ttl_s=self.cfg.qr.ttl_s)
        url = qr.rating_url(self.cfg.qr.url_template, token)
        return qr.DynamicQr(url, tuple(map(tuple, qr.matrix(url))), int(token.split(qr.SEP)[7]))

    # ---- retained inputs kept on disk ------------------------------------------------------------

    def _save_retained(self, kind: str, data: dict) -> None:
        path = self.data_dir / f"{kind}.json"
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(messages.encode(data))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            self.alarms.raise_("disk_write_failed", f"{path}: {e}")

    def _load_retained(self) -> None:
        for kind in RETAINED_FILES:
            path = self.data_dir / f"{kind}.json"
            if not path.exists():
                continue
            try:
                data = messages.decode(kind, path.read_bytes(), self.cfg.limits.max_message_bytes)
                if kind == "duty" and data["window"] != self.cfg.center.window:
                    continue
                self.state, _ = machine.step(self.state, self._event_for(kind, data), self.clock())
            except (MessageError, OSError) as e:
                log.warning("ignoring saved %s: %s", path, e)

    # ---- status and alarms -----------------------------------------------------------------------

    def _status(self, state: str) -> dict:
        msg = {"v": 1, "type": "status", "device": self.device_id, "state": state, "ts": ids.wall_time(),
               "fw": __version__, "window": self.cfg.center.window}
        if state == "online":
            c = self.outbox.counts()
            msg["outbox"] = {"pending": c.pending, "quarantined": c.quarantined, "capacity": c.capacity}
            msg["alarms"] = sorted(self.alarms.active())
            msg["rejected_inputs"] = sum(self.rejected.values())
        if self._creds is not None:
            msg["cred"] = self._creds.newest  # confirms a rotated password reached us (the center then switches)
        return msg

    def publish_status(self) -> None:
        if self.mode == "enrolling":
            return  # the enrolment account may only announce
        self.link.publish(self.topics.status, messages.encode(self._status("online")), qos=1, retain=True)

    def _alarm_changed(self, code: str, detail: str, state: str) -> None:
        if not hasattr(self, "link") or not self.online or self.mode == "enrolling":
            return  # sent on (re)connect: the retained status and an event for each change meanwhile
        self._send_alarm_events()
        self.publish_status()  # the retained status always shows the current counts

    def _send_alarm_events(self) -> None:
        """An event for each alarm raised or cleared and not yet sent (e.g. raised at start, offline)."""
        for code, detail, state in self.alarms.take_unsent():
            msg = records.alarm(code, detail, self.origin, ids.uuid7(), ids.wall_time(), cleared=state == "cleared")
            self.link.publish(self.topics.event, messages.encode(msg), qos=1)

    def _connection(self, up: bool, reason: str) -> None:
        # An unpaired terminal delivers nothing: the enrolment account would be refused and the
        # records quarantined. They wait in the outbox for the terminal's own account.
        self.courier.connection(up and self.mode != "enrolling")
        if up and self.mode != "enrolling":
            self._send_alarm_events()
        if up:
            self._refusals = 0
            if self.mode == "paired":
                self._accepted()
        self.submit(REFRESH)  # views re-render the connectivity indicator
