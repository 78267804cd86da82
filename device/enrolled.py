"""The terminal under enrolment: a mixin of `device.terminal.Terminal`.

Enrolment (only with `[enrolment] username` set; without it the terminal is configured by hand and
nothing below applies): an unpaired terminal connects with the center-wide enrolment account,
announces itself and shows the pairing code the center seals to it (`pairing`); once paired it
reconnects with its own account and follows its retained `binding` (window, roster, QR key; moved,
retired, unpaired, revoked). Window changes are applied on the core thread, between two events, so a
rating always carries the window its case came from. The cryptography and the credential files are in
device/enrolment.py.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

from device import __version__, identity, messages, records
from device.config import Config, qr_key
from device.link import Link
from device.machine import DutyChanged, Phase, State
from device.messages import MessageError, Topics
from device.model import Staff

if TYPE_CHECKING:
    from device.enrolment import Pairing

log = logging.getLogger("device.terminal")

REFRESH = object()  # not a machine event: only asks the views to render again (core thread)
REWIRE = object()   # core thread: credentials arrived or were forgotten; reconnect as who we now are
RE_ENROL = object()  # core thread: the technician asked to enrol again (maintenance screen)
REFUSED_AFTER = 2   # consecutive refusals (each password tried) before the screen says "refused"
PairingWatcher = Callable[["Pairing | None"], None]


@dataclass(frozen=True)
class _Rebind:
    """A binding message for the core thread (window, roster, QR key, state)."""

    binding: dict
    qr_key: bytes | None


class Enrolled:
    """What `Terminal` does when its account and window come from the center (`[enrolment]` set)."""

    @property
    def pairing(self) -> "Pairing | None":
        """What the Unpaired screen shows (code, QR URL, state); None while rating at a window as usual."""
        return self._pairing

    @property
    def mode(self) -> str:
        """`plain` (configured by hand), `enrolling` (no account of its own yet) or `paired`."""
        if not self.enrolled:
            return "plain"
        return "paired" if self._creds is not None else "enrolling"

    @property
    def window_name(self) -> str:
        """The served window's name from the binding ("" when configured by hand or not bound)."""
        b = self.binding or {}
        return b.get("window_name", "") if b.get("state") == "active" else ""

    def roster_duty(self) -> "DutyChanged | None":
        """Without a duty feed, the binding's roster: its only member is the one on duty (with several,
        nobody can be assumed to be at the counter); the window's name either way. None when a duty
        message for this window was received (it rules) or there is no active binding."""
        b = self.binding or {}
        if b.get("state") != "active" or self._duty_received():
            return None
        staff = b.get("staff") or []
        return DutyChanged(Staff.from_msg(staff[0]) if len(staff) == 1 else None, b.get("window_name", ""))

    def _duty_received(self) -> bool:
        """A duty message for the window served now is kept on disk (device.terminal RETAINED_FILES)."""
        try:
            return json.loads((self.data_dir / "duty.json").read_bytes()).get("window") == self.cfg.center.window
        except (OSError, ValueError, AttributeError):
            return False

    def re_enrol(self) -> str:
        """Maintenance (any thread): forget this terminal's account and binding, announce again for a code.

        Ratings not delivered yet stay in the outbox and go out under the next account. A terminal
        configured by hand has nothing to enrol with: ValueError."""
        if self.mode == "plain":
            raise ValueError("configured by hand ([enrolment] not set): nothing to re-enrol")
        self.submit(RE_ENROL)
        return "announcing again for a pairing code"

    def watch_pairing(self, fn: PairingWatcher) -> None:
        """`fn(pairing)` now and on the core thread after every change (also re-renders `watch` views)."""
        self._pairing_watchers.append(fn)
        fn(self._pairing)

    def _init_enrolment(self) -> None:
        from device import enrolment
        self._key = enrolment.load_or_create_key(self.data_dir)
        self._key_id = enrolment.key_id(enrolment.public_bytes(self._key))
        creds = enrolment.load_credentials(self.data_dir)
        if creds is not None and (creds.device != self.device_id or creds.center != self.base_cfg.center.id):
            log.warning("stored credentials are for %s/%s, not %s/%s: enrolling again", creds.center, creds.device,
                        self.base_cfg.center.id, self.device_id)
            enrolment.forget(self.data_dir, enrolment.CREDENTIALS_FILE, enrolment.BINDING_FILE)
            creds = None
        self._creds = creds
        if creds is not None:
            self._load_binding()

    def _load_binding(self) -> None:
        from device import enrolment
        path = self.data_dir / enrolment.BINDING_FILE
        if not path.exists():
            return
        try:
            data = messages.decode("binding", path.read_bytes(), self.base_cfg.limits.max_message_bytes)
            self.binding, self._binding_qr_key = data, self._open_qr_key(data)
        except (MessageError, OSError) as e:
            log.warning("ignoring saved binding: %s", e)

    def _open_qr_key(self, binding: dict) -> bytes | None:
        from device import enrolment
        if "qr" not in binding:
            return None
        topic = Topics(binding["center"], "-", self.device_id).binding
        try:
            key = enrolment.unseal(self._key, binding["qr"]["key"], topic)
        except enrolment.SealError as e:
            raise MessageError("unsealable", f"QR key: {e}") from None
        if len(key) < 32:
            raise MessageError("schema", "QR key shorter than 32 bytes")
        return key

    def _effective_cfg(self) -> Config:
        """The configuration as set by hand, with the account and binding from the center on top."""
        cfg = self.base_cfg
        if self.mode == "enrolling":
            return replace(cfg, mqtt=replace(cfg.mqtt, username=cfg.enrolment.username,
                                             password=cfg.enrolment.password))
        if self.mode == "plain":
            return cfg
        c, b = self._creds, self.binding or {}
        window = b.get("window") or c.window or cfg.center.window
        cfg = replace(cfg, center=replace(cfg.center, window=window),
                      mqtt=replace(cfg.mqtt, username=c.username, password=c.password))
        ui = {k: b[k] for k in ("hall_qr_url", "staff_qr_template") if k in b}
        if ui:
            cfg = replace(cfg, ui=replace(cfg.ui, **ui))
        if "qr" in b:
            qr_over = {"key_id": b["qr"]["key_id"], "key": "", "key_file": ""}
            qr_over.update({k: b["qr"][k] for k in ("url_template", "ttl_s") if k in b["qr"]})
            cfg = replace(cfg, qr=replace(cfg.qr, **qr_over))
        return cfg

    def _make_link(self) -> Link:
        common = dict(on_message=self._inbound, on_puback=lambda mid, code, name: self.courier.puback(mid, code, name),
                      on_connection=self._connection)
        if self.mode == "enrolling":
            import secrets
            # A random client id (128 bits) in the enrol- namespace: nobody holding the shared enrolment
            # account can knock this one off, and it never names a paired terminal's session.
            return Link(self.cfg.mqtt, f"enrol-{self.device_id}-{secrets.token_urlsafe(16)}", will_topic=None,
                        will_payload=b"", subscriptions=[self.topics.answer(self._key_id)],
                        on_connected_publish=self._announce, on_refused=self._refused, persistent=False, **common)
        client_id = self._creds.client_id if self.mode == "paired" else self.device_id
        return Link(self.cfg.mqtt, client_id, will_topic=self.topics.status,
                    will_payload=messages.encode(self._status("offline")), subscriptions=self._subscriptions(),
                    on_connected_publish=self.publish_status, on_refused=self._refused, **common)

    def _serving(self) -> bool:
        return self.mode != "paired" or self.binding is None or self.binding["state"] == "active"

    def _subscriptions(self) -> list[str]:
        if self.mode == "plain":
            return list(self.topics.inbound())
        own = [self.topics.binding, self.topics.credentials]
        if self._serving():
            return list(self.topics.inbound()) + own
        return [self.topics.receipt, self.topics.config] + own  # still delivers; takes no cases

    def _current_pairing(self) -> "Pairing | None":
        if not self.enrolled:
            return None
        from device.enrolment import Pairing, pairing_qr_url
        if self.mode == "enrolling":
            code, until = self._code
            if code and self.clock() < self._code_until:
                return Pairing("code", self.device_id, code,
                               pairing_qr_url(self.base_cfg.enrolment.console_url, self.device_id, code), until)
            if self._refusals >= REFUSED_AFTER:
                return Pairing("connecting", self.device_id, detail="the broker refuses the enrolment account")
            return Pairing("connecting", self.device_id)
        if self._refusals >= REFUSED_AFTER:
            return Pairing("refused", self.device_id, detail="the center does not accept this terminal's account")
        state = (self.binding or {}).get("state", "active")
        return None if state == "active" else Pairing(state, self.device_id)

    def _pairing_changed(self) -> None:
        """Core thread: recompute what the Unpaired screen shows; tell its watchers when it changed."""
        p = self._current_pairing()
        if p == self._pairing:
            return
        self._pairing = p
        for fn in self._pairing_watchers:
            try:
                fn(p)
            except Exception:  # noqa: BLE001 - a broken view must not stop the core
                log.exception("pairing view failed")
        self._notify()

    def _enrolment_inbound(self, topic: str, payload: bytes) -> bool:
        """Network thread: answers, binding and rotated credentials. True when the message was ours."""
        from device import enrolment
        own = {self.topics.binding, self.topics.credentials} if self.mode == "paired" else set()
        if self.mode == "enrolling":
            own = {self.topics.answer(self._key_id)}
        if topic not in own:
            if self.mode == "enrolling":
                self._reject(topic, MessageError("unexpected_topic", topic[:80]))
                return True
            return False
        if not payload:
            return True  # a retained message cleared by the center
        max_bytes = self.cfg.limits.max_message_bytes
        try:
            if topic == self.topics.binding:
                data = messages.decode("binding", payload, max_bytes)
                if data["device"] != self.device_id:
                    raise MessageError("wrong_device", data["device"])
                if data["center"] != self.cfg.center.id:
                    raise MessageError("wrong_center", data["center"])
                self.submit(_Rebind(data, self._open_qr_key(data)))
                return True
            grant = enrolment.open_grant(self._key, topic, payload, self.cfg.center.id, self.device_id, max_bytes)
            if grant["grant"] == "code" and self.mode == "enrolling":
                self._code_until = self.clock() + grant["ttl_s"]
                self._code = (grant["code"], time.time() + grant["ttl_s"])
                log.info("pairing code received (valid %d s)", grant["ttl_s"])
                self.submit(REFRESH)
            elif grant["grant"] == "credentials" and self.mode == "enrolling":
                creds = enrolment.credentials_from_grant(grant)
                enrolment.save_credentials(self.data_dir, creds)
                log.info("paired: own account received for window %s; reconnecting with it", creds.window)
                self._creds_pending = creds
                self.submit(REWIRE)
            elif grant["grant"] == "credentials" and topic == self.topics.credentials:
                self._rotated(grant)
            else:
                raise MessageError("unexpected_grant", grant["grant"])
        except MessageError as e:
            self._reject(topic, e)
        except OSError as e:
            self.alarms.raise_("disk_write_failed", f"credentials: {e}")
        return True

    def _rotated(self, grant: dict) -> None:
        """A new password for our account: keep it beside the current one until the center switches."""
        from device import enrolment
        c = self._creds
        if c is None or grant["username"] != c.username or grant["cred"] <= c.newest:
            return
        c = replace(c, next_password=grant["password"], next_cred=grant["cred"])
        enrolment.save_credentials(self.data_dir, c)
        self._creds = c
        log.info("rotated credentials (generation %d) received", grant["cred"])
        self.publish_status()  # `cred` tells the center we hold them; then it switches at the broker

    def _refused(self, code: int) -> None:
        """Network thread: the broker refused our account. Try the other password if we hold one."""
        from device import enrolment
        if code not in (0x86, 0x87, 0x8C):
            return
        self._refusals += 1
        c = self._creds
        if self.mode == "paired" and c is not None and c.next_password:
            c = c.swapped()
            self._creds = c
            enrolment.save_credentials(self.data_dir, c)
            self.link.set_credentials(c.username, c.password)
        self.submit(REFRESH)
        if self._refusals == REFUSED_AFTER:
            log.error("the broker refuses this terminal's account (revoked or deleted at the center)")

    def _accepted(self) -> None:
        """Network thread: connected with our own account; drop an older password we no longer need."""
        from device import enrolment
        self._refusals = 0
        c = self._creds  # (connected with c.password)
        if c is not None and c.settled() != c:
            self._creds = c.settled()
            enrolment.save_credentials(self.data_dir, self._creds)

    def _announce(self) -> None:
        from device import enrolment
        payload = enrolment.hello(self.cfg.center.id, self.device_id, self._key, identity.model(), __version__)
        if self.link.publish(self.topics.hello, payload, qos=1) is not None:
            self._last_hello = self.clock()

    def _enrolment_tick(self) -> None:
        """Core thread, once per loop: announce while unpaired; leave once unpaired and drained."""
        now = self.clock()
        if self.mode == "enrolling":
            if self.online and now - self._last_hello >= self.base_cfg.enrolment.announce_every_s:
                self._announce()
        elif self.binding is not None and self.binding["state"] == "unpaired" and now - self._last_hello >= 2:
            self._last_hello = now  # (reused as a 2 s throttle for the outbox check)
            if self.outbox.counts().pending == 0:
                self._leave()
        self._pairing_changed()

    def _re_enrol(self) -> None:
        """Core thread: what `re_enrol` asked for."""
        from device import enrolment
        log.warning("re-enrolment asked on the maintenance screen: forgetting this terminal's account")
        if self.mode == "paired":
            enrolment.forget(self.data_dir, enrolment.CREDENTIALS_FILE, enrolment.BINDING_FILE, "duty.json",
                             "config.json")
            self._creds, self.binding, self._binding_qr_key, self._creds_pending = None, None, None, None
        self._code, self._code_until, self._last_hello, self._refusals = ("", 0.0), 0.0, -1e18, 0
        self._rewire()

    def _leave(self) -> None:
        """Unpaired at the center and nothing left to deliver: forget the account, enrol again."""
        from device import enrolment
        log.info("unpaired and drained: forgetting this terminal's account; enrolling again")
        enrolment.forget(self.data_dir, enrolment.CREDENTIALS_FILE, enrolment.BINDING_FILE, "duty.json", "config.json")
        self._creds, self.binding, self._binding_qr_key = None, None, None
        self._creds_pending = None
        self._rewire()

    def _rewire(self) -> None:
        """Core thread: reconnect as whoever we now are (enrolment account ↔ our own account)."""
        pending = self._creds_pending
        if pending is not None:
            self._creds, self._creds_pending = pending, None
            self._code, self._code_until, self._refusals = ("", 0.0), 0.0, 0
        self.link.stop()
        self._switch_window(self._effective_cfg())
        self.link = self._make_link()
        if not self._stop.is_set():
            self.link.start()
        self._pairing_changed()

    def _rebind(self, e: _Rebind) -> None:
        """Core thread: a binding arrived (paired, moved, retired, unpaired, revoked, new roster or key)."""
        from device import enrolment
        if self.mode != "paired":
            return
        enrolment.write_private(self.data_dir / enrolment.BINDING_FILE, messages.encode(e.binding))
        self.binding, self._binding_qr_key = e.binding, e.qr_key
        if e.binding["state"] == "active" and self._creds is not None and self._creds.window != e.binding["window"]:
            self._creds = replace(self._creds, window=e.binding["window"])
            enrolment.save_credentials(self.data_dir, self._creds)
        self._switch_window(self._effective_cfg())
        roster = self.roster_duty()
        if roster is not None:
            self.handle(roster)
        self.link.set_subscriptions(self._subscriptions())
        self.publish_status()
        self._pairing_changed()
        self._notify()  # views re-read what the binding brings (window name, hall and staff QR codes)

    def _switch_window(self, cfg: Config) -> None:
        """Core thread: adopt `cfg`; moving to another window (or ceasing to serve) clears its inputs."""
        moved = cfg.center.window != self.cfg.center.window or not self._serving()
        self.cfg = cfg
        self.topics = Topics(cfg.center.id, cfg.center.window, self.device_id)
        self.origin = records.Origin(cfg.center.id, cfg.center.window, self.device_id)
        self._qr_key = self._binding_qr_key or qr_key(cfg)
        if moved and (self.state.case is not None or self.state.staff is not None or self.state.phase != Phase.IDLE):
            log.info("now serving %s: the previous window's case and duty are cleared", cfg.center.window)
            self.state = replace(State(settings=self.state.settings), catalog=self.state.catalog,
                                 recently_rated=self.state.recently_rated)
            try:
                (self.data_dir / "duty.json").unlink()
            except FileNotFoundError:
                pass
            self._notify()
