"""The terminal runtime: wires config, outbox, MQTT link and courier around the pure state machine.

Threads (all started by `start()` and joined by `stop()`):
- core: the only thread that steps the state machine and the pairing step, commits ratings, writes
  the retained inputs and the credentials, and publishes the views' `Snapshot` (device.port);
- paho's network thread: decodes inbound messages, renders the dynamic QR, queues events;
- courier: delivery and receipts (device.courier);
- views (console, Kivy, GPIO keys) only `submit()` events and `watch()` snapshots.

Enrolment and binding: `device.account` (the shell) around `device.pairing` (the pure step).
"""
from __future__ import annotations

import logging
import os
import queue
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from device import __version__, identity, inputs, machine, pairing, qr
from device.account import NOT_OURS, Account
from device.alarms import Alarms
from device.case_age import CaseAge
from device.config import Config, qr_key
from device.courier import Courier
from device.enrolment import Pairing
from device.link import Link
from device.machine import CaseCleared, CommitFailed, Committed, CommitRating, EmitUnrated, Ignored, Phase, State, Tick
from device.model import Case
from device.outbox import Outbox, OutboxError, Record
from device.port import Snapshot, Watcher
from protocol import builders, codec, ids
from protocol.codec import MessageError
from protocol.topics import Topics

if TYPE_CHECKING:
    from device.driver import Driver

log = logging.getLogger(__name__)
STATUS_EVERY_S = 300
REFRESH = object()  # not an event: only asks for a new snapshot (connectivity or alarms changed)


@dataclass(frozen=True)
class _Inbound:
    """A decoded input for the core thread: dropped if the terminal was moved to another window before it
    was stepped; a retained input (catalog, duty, config) is saved to disk first."""

    event: Any
    window: str | None = None
    retained: tuple[str, dict] | None = None


class Terminal:
    def __init__(self, cfg: Config, device_id: str, clock: Callable[[], float] = time.monotonic):
        self.base_cfg = cfg
        self.device_id = device_id
        self.clock = clock
        self.data_dir = Path(cfg.device.data_dir)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            # Ratings, credentials and keys: for the terminal's account only. On the image the data
            # partition's top is root's (1770 root:rating, so the updater's files stay root's): leave it.
            if self.data_dir.stat().st_uid == os.geteuid():
                os.chmod(self.data_dir, 0o700)
        except OSError as e:
            log.warning("cannot make %s private (0700): %s", self.data_dir, e)
        self.account = Account(cfg, device_id, self.data_dir)
        self.cfg = cfg = self.account.effective_config()
        self.binding: dict | None = self.account.state.binding  # the binding `cfg` is made of
        self.origin = builders.Origin(cfg.center.id, cfg.center.window, device_id)
        self.topics = Topics(cfg.center.id, cfg.center.window, device_id)
        self.rejected: Counter[str] = Counter()
        self.alarms = Alarms(self._alarm_changed)
        self.case_age = CaseAge(self.data_dir, cfg.case.max_age_h)
        self.outbox = Outbox(self.data_dir / "outbox.db", cfg.outbox.capacity, on_alarm=self.alarms.raise_,
                             on_clear=self.alarms.clear)
        self._qr_key = self.account.state.qr_key or qr_key(cfg)
        if self._qr_key is None and not self.enrolled:
            log.error("no QR signing key (qr.key or qr.key_file): cases show no dynamic QR, only the screen")
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._watchers: list[Watcher] = []
        self._stop = threading.Event()
        self._core: threading.Thread | None = None
        self._driver: Driver | None = None           # stepping this core and courier, if any
        self._notify: Callable[[], None] = lambda: None
        self._last_status = self._wake_at = 0.0
        self.state = State(settings=inputs.settings(cfg))
        self.link = self._make_link()
        self.courier = Courier(self.outbox, cfg.outbox, publish=self._publish_record, on_alarm=self.alarms.raise_,
                               on_clear=self.alarms.clear, clock=clock, max_unacked=cfg.mqtt.max_inflight)
        for kind, data in inputs.load_retained(self.data_dir, cfg):
            event = inputs.event_for(kind, data, cfg, self.outbox.case_rated, self.dynamic_qr)
            self.state, _ = machine.step(self.state, event, self.clock())
        roster = self.account.roster_duty(cfg.center.window)
        if roster is not None:  # no duty feed (yet): the binding's roster
            self.state, _ = machine.step(self.state, roster, self.clock())
        self.snapshot = self._snapshot()

    # ---- the port for views (device.port.TerminalPort) ------------------------------------------

    def submit(self, event: machine.Event) -> None:
        """Hand an input to the core thread (safe from any thread: UI, GPIO callbacks, console)."""
        self._events.put(event)
        self._notify()

    def watch(self, fn: Watcher) -> None:
        """`fn(snapshot)` now, then on the core thread after every change; keep it short."""
        self._watchers.append(fn)
        fn(self.snapshot)

    @property
    def alive(self) -> bool:
        if self._driver is not None:
            return not self._stop.is_set() and self._driver.alive
        return self._core is not None and self._core.is_alive()

    def requeue(self) -> int:
        """Offer the quarantined records again (after the center fixed the cause: protocol §7)."""
        n = self.snapshot.quarantined
        self.courier.requeue()
        return n

    def re_enrol(self) -> str:
        """Maintenance (any thread): forget this terminal's account and binding, announce again for a code.

        Ratings not delivered yet stay in the outbox and go out under the next account. A terminal
        configured by hand has nothing to enrol with: ValueError."""
        if self.mode == "plain":
            raise ValueError("configured by hand ([enrolment] not set): nothing to re-enrol")
        self.submit(pairing.ReEnrolAsked())
        return "announcing again for a pairing code"

    def raise_alarm(self, code: str, detail: str) -> None:
        self.alarms.raise_(code, detail)

    def clear_alarm(self, code: str) -> None:
        self.alarms.clear(code)

    # ---- what the core serves now (read on the core thread, or by tests) -------------------------

    @property
    def enrolled(self) -> bool:
        return self.account.state.enrolled

    @property
    def mode(self) -> str:
        """`plain` (configured by hand), `enrolling` (no account of its own yet) or `paired`."""
        return self.account.state.mode

    @property
    def pairing(self) -> Pairing | None:
        """What the Unpaired screen shows (code, QR URL, state); None while rating at a window as usual."""
        return self.snapshot.pairing  # as published: after the binding's effects were carried out

    @property
    def online(self) -> bool:
        return self.link.connected.is_set()

    @property
    def connection_problem(self) -> str | None:
        """Why the terminal is not connected, in words with host:port (maintenance screen); None when connected."""
        return self.link.last_error

    # ---- lifecycle --------------------------------------------------------------------------------

    def start(self, driver: Driver | None = None) -> None:
        """Start the courier, the network thread and the core thread; or, with a `device.driver.Driver`
        (a simulator hosting hundreds of terminals per process), only the network thread, the driver
        stepping the core and the courier on its own thread."""
        self._last_status = self.clock()
        if driver is None:
            self.courier.start()
        else:
            self._driver = driver
            self._notify = self.courier.notify = driver.wake
            driver.add(self)
        self.link.start()
        if driver is None:
            self._core = threading.Thread(target=self._run, name=f"core-{self.device_id}", daemon=True)
            self._core.start()

    def stop(self) -> None:
        """Join the core first (it may be switching the link), then the link and courier; close the outbox last."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._events.put(REFRESH)
        if self._driver is not None:
            self._driver.remove(self)  # returns once the driver is not stepping this terminal
        if self._core is not None and self._core is not threading.current_thread():
            self._core.join()
        final = None if self.mode == "enrolling" else (self.topics.status, codec.encode(self._status("offline")))
        self.link.stop(final=final)
        self.courier.stop()
        self.outbox.close()

    def _next_timeout(self) -> float:
        deadline = self.state.deadline
        return 1.0 if deadline is None else min(1.0, max(0.0, deadline - self.clock()))

    def _run(self) -> None:
        """The core loop: step the machine on each event, or on each deadline; publish a snapshot on change."""
        while not self._stop.is_set():
            try:
                event = self._events.get(timeout=self._next_timeout())
            except queue.Empty:
                event = Tick()
            self._cycle(event)

    def pump(self) -> None:
        """A driver's turn: step the core on everything queued (else on a Tick when its deadline or a
        second has passed), then the courier."""
        stepped = False
        while not self._stop.is_set():
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            self._cycle(event)
            stepped = True
        if not stepped and not self._stop.is_set() and self.clock() >= self._wake_at:
            self._cycle(Tick())
        self.courier.pump()

    def _cycle(self, event: Any) -> None:
        try:
            if isinstance(event, pairing.EVENTS):
                self._pairing_step(event)
            elif event is not REFRESH:
                self.handle(event)
            if self.enrolled:
                self._pairing_step(pairing.Tick(self.online, self.outbox.counts().pending))
            if self.clock() - self._last_status >= STATUS_EVERY_S:
                self._last_status = self.clock()
                self.publish_status()
            self._publish()
        except Exception:  # noqa: BLE001 - the core must outlive one bad event
            log.exception("core: failed on %r", event)
        self._wake_at = self.clock() + self._next_timeout()

    def handle(self, event: machine.Event) -> None:
        """Step once and carry out the effects (core thread).

        A rating is committed before anything is rendered (the machine only reaches "thank you" after
        `Committed`); other effects (an unrated event for the SMS follow-up) wait until the screen shows.
        """
        if isinstance(event, _Inbound):
            if event.window is not None and event.window != self.cfg.center.window:
                log.info("dropped input for window %s: this terminal now serves %s", event.window,
                         self.cfg.center.window)
                return
            if event.retained is not None:
                inputs.save_retained(self.data_dir, *event.retained, self.alarms)
            event = event.event
        self.state, effects = machine.step(self.state, event, self.clock())
        later: list[machine.Effect] = []
        while effects:
            effect = effects.pop(0)
            if not isinstance(effect, CommitRating):
                later.append(effect)
                continue
            self.state, more = machine.step(self.state, self._commit(effect), self.clock())
            effects.extend(more)
        self._publish()
        for effect in later:
            self._carry_out(effect)

    # ---- the views' snapshot -----------------------------------------------------------------------

    def _snapshot(self) -> Snapshot:
        c, cfg = self.outbox.counts(), self.cfg
        return Snapshot(state=self.state, device_id=self.device_id, center=cfg.center.id, window=cfg.center.window,
                        window_name=self.account.state.window_name, ui=cfg.ui, hardware=cfg.hardware,
                        online=self.online, problem=self.connection_problem, pending=c.pending,
                        quarantined=c.quarantined, capacity=c.capacity, alarms=tuple(sorted(self.alarms.active())),
                        last_error=self.alarms.last_error, mode=self.mode,
                        pairing=pairing.shown(self.account.state, self.clock(), self.base_cfg.enrolment.console_url),
                        broker=self.link.broker, firmware=__version__, data_dir=str(cfg.device.data_dir),
                        ca_file=cfg.mqtt.ca_file)

    def _publish(self) -> None:
        """Core thread: a new snapshot for the views when anything they show changed."""
        snap = self._snapshot()
        if snap == self.snapshot:
            return
        drained = snap.pending == 0 < self.snapshot.pending
        self.snapshot = snap
        if drained and snap.online and self.mode != "enrolling":
            self.publish_status()  # the center's fleet view sees an emptied outbox now, not at the next status
        for fn in self._watchers:
            try:
                fn(snap)
            except Exception:  # noqa: BLE001 - a broken view must not stop the core
                log.exception("view failed to render")

    # ---- effects ---------------------------------------------------------------------------------

    def _commit(self, effect: CommitRating) -> machine.Event:
        d = effect.draft
        try:
            rec = self.outbox.add("rating", lambda rid, seq, ts: builders.rating(d, self.origin, rid, seq, ts),
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
                rec = self.outbox.add("event", lambda rid, seq, ts: builders.unrated(effect.case, self.origin,
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

    # ---- enrolment and binding (core thread) ---------------------------------------------------------

    def _pairing_step(self, event: pairing.Event) -> None:
        try:
            effects = self.account.step(event, self.clock())
        except OSError as e:
            self.alarms.raise_("disk_write_failed", f"credentials: {e}")
            return
        for effect in effects:
            if isinstance(effect, pairing.Reconnect):
                self.link.stop()
                self._switch_window(self.account.effective_config())
                self.link = self._make_link()
                if not self._stop.is_set():
                    self.link.start()
            elif isinstance(effect, pairing.UsePassword):
                self.link.set_credentials(effect.username, effect.password)
            elif isinstance(effect, pairing.SwitchWindow):
                self._switch_window(self.account.effective_config())
                roster = self.account.roster_duty(self.cfg.center.window)
                if roster is not None:
                    self.handle(roster)
                self.link.set_subscriptions(self.account.subscriptions(self.topics))
            elif isinstance(effect, pairing.PublishStatus):
                self.publish_status()
            elif isinstance(effect, pairing.Announce):
                payload = builders.hello(self.cfg.center.id, self.device_id, self.account.key, identity.model(),
                                         __version__)
                self.link.publish(self.topics.hello, payload, qos=1)

    def _make_link(self) -> Link:
        common = dict(on_message=self._inbound, on_puback=lambda mid, code, name: self.courier.puback(mid, code, name),
                      on_connection=self._connection, on_refused=lambda code: self.submit(pairing.Refused(code)))
        if self.mode == "enrolling":
            # A random client id (128 bits) in the enrol- namespace: nobody holding the shared enrolment
            # account can knock this one off, and it never names a paired terminal's session.
            return Link(self.cfg.mqtt, f"enrol-{self.device_id}-{secrets.token_urlsafe(16)}", will_topic=None,
                        will_payload=b"", subscriptions=[self.topics.answer(self.account.key_id)],
                        on_connected_publish=lambda: None, persistent=False, **common)
        client_id = self.account.state.creds.client_id if self.mode == "paired" else self.device_id
        return Link(self.cfg.mqtt, client_id, will_topic=self.topics.status,
                    will_payload=codec.encode(self._status("offline")),
                    subscriptions=self.account.subscriptions(self.topics), on_connected_publish=self.publish_status,
                    **common)

    def _switch_window(self, cfg: Config) -> None:
        """Core thread: adopt `cfg`; moving to another window (or ceasing to serve) clears its inputs."""
        moved = cfg.center.window != self.cfg.center.window or not self.account.state.serving
        self.cfg, self.binding = cfg, self.account.state.binding
        self.topics = Topics(cfg.center.id, cfg.center.window, self.device_id)
        self.origin = builders.Origin(cfg.center.id, cfg.center.window, self.device_id)
        self._qr_key = self.account.state.qr_key or qr_key(cfg)
        if moved and (self.state.case is not None or self.state.staff is not None or self.state.phase != Phase.IDLE):
            log.info("now serving %s: the previous window's case and duty are cleared", cfg.center.window)
            self.state = replace(State(settings=self.state.settings), catalog=self.state.catalog,
                                 recently_rated=self.state.recently_rated)
            try:
                (self.data_dir / "duty.json").unlink()
            except FileNotFoundError:
                pass

    # ---- inbound (paho network thread: decode and queue, nothing else) -------------------------------

    def _inbound(self, topic: str, payload: bytes, retained: bool) -> None:
        max_bytes = self.cfg.limits.max_message_bytes
        try:
            if self.enrolled:
                event = self.account.decode(topic, payload, self.topics, max_bytes)
                if event is not NOT_OURS:
                    if event is not None:
                        self.submit(event)
                    return
            kind = self.topics.inbound().get(topic)
            if kind is None:
                raise MessageError("unexpected_topic", topic[:80])
            if kind == "case" and not payload:  # an empty retained message: the center cleared the case
                log.info("case cleared at %s (empty retained message)", self.cfg.center.window)
                return self.submit(_Inbound(CaseCleared(), window=self.cfg.center.window))
            self._apply(kind, codec.decode(kind, payload, max_bytes))
        except MessageError as e:
            self._reject(topic, e)

    def _reject(self, topic: str, e: MessageError) -> None:
        self.rejected[e.reason] += 1
        log.warning("rejected message on %s: %s (%d rejected so far)", topic, e, sum(self.rejected.values()))

    def _apply(self, kind: str, data: dict) -> None:
        if kind == "receipt":
            self.courier.receipts(data["items"])
            return
        inputs.check(kind, data, self.cfg, self.device_id, self.account.state.serving)
        if kind == "case":
            self.case_age.check(data)  # too old, or older than a case already seen here: refused
        event = inputs.event_for(kind, data, self.cfg, self.outbox.case_rated, self.dynamic_qr)
        self.submit(_Inbound(event, window=data["window"] if kind in ("case", "duty") else None,
                             retained=(kind, data) if kind in inputs.RETAINED_FILES else None))

    def dynamic_qr(self, case: Case) -> qr.DynamicQr | None:
        return inputs.dynamic_qr(case, self.cfg, self._qr_key, self.device_id)

    # ---- status and alarms ---------------------------------------------------------------------------

    def _status(self, state: str) -> dict:
        msg = {"v": 1, "type": "status", "device": self.device_id, "state": state, "ts": ids.wall_time(),
               "fw": __version__, "window": self.cfg.center.window}
        if state == "online":
            c = self.outbox.counts()
            msg["outbox"] = {"pending": c.pending, "quarantined": c.quarantined, "capacity": c.capacity}
            msg["alarms"] = sorted(self.alarms.active())
            msg["rejected_inputs"] = sum(self.rejected.values())
        creds = self.account.state.creds
        if creds is not None:
            msg["cred"] = creds.newest  # confirms a rotated password reached us (the center then switches)
        return msg

    def publish_status(self) -> None:
        if self.mode == "enrolling":
            return  # the enrolment account may only announce
        self.link.publish(self.topics.status, codec.encode(self._status("online")), qos=1, retain=True)

    def _alarm_changed(self, code: str, detail: str, state: str) -> None:
        if hasattr(self, "_events"):
            self.submit(REFRESH)  # the views' snapshot lists the active alarms
        if not hasattr(self, "link") or not self.online or self.mode == "enrolling":
            return  # sent on (re)connect: the retained status and an event for each change meanwhile
        self._send_alarm_events()
        self.publish_status()  # the retained status always shows the current counts

    def _send_alarm_events(self) -> None:
        """An event for each alarm raised or cleared and not yet sent (e.g. raised at start, offline)."""
        for code, detail, state in self.alarms.take_unsent():
            msg = builders.alarm(code, detail, self.origin, ids.uuid7(), ids.wall_time(), cleared=state == "cleared")
            self.link.publish(self.topics.event, codec.encode(msg), qos=1)

    def _connection(self, up: bool, reason: str) -> None:
        # An unpaired terminal delivers nothing: the enrolment account would be refused and the
        # records quarantined. They wait in the outbox for the terminal's own account.
        self.courier.connection(up and self.mode != "enrolling")
        if up and self.mode != "enrolling":
            self._send_alarm_events()
        self.submit(pairing.Connected() if up else REFRESH)  # (either way the views' online indicator changes)
