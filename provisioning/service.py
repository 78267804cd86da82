"""The pairing service: hears announcements and status, hands out pairing codes, and carries out what
staff decide (pair, unpair, move, replace, revoke, rotate) at the broker (Dynamic Security), in the
retained bindings, and in the registry — each action written to the audit log.

Used by the console (provisioning.web) and by the CLI; both call the same methods.
"""
from __future__ import annotations

import logging
import queue
import re
import secrets
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol import codec, sealed
from protocol.codec import MessageError
from protocol.topics import PREFIX, Topics
from provisioning import acl
from provisioning.brokerconf import new_password
from provisioning.config import CenterConfig
from provisioning.dynsec import DynSec
from provisioning.registry import Announcement, Device, Registry, Status

log = logging.getLogger("provisioning")

ONLINE_WITHIN_S = 90          # an unpaired terminal announces every 30 s
FAILED_CODES_PER_USER = 5     # wrong pairing codes per staff member in FAILED_WINDOW_S …
FAILED_CODES_TOTAL = 30       # … and for the whole center
FAILED_WINDOW_S = 600
_HELLO = re.compile(rf"{re.escape(PREFIX)}/([A-Za-z0-9_-]{{1,32}})/enrol/([A-Za-z0-9_-]{{1,32}})/hello")
_STATUS = re.compile(rf"{re.escape(PREFIX)}/([A-Za-z0-9_-]{{1,32}})/device/([A-Za-z0-9_-]{{1,32}})/status")


class Refused(Exception):
    """An operation staff asked for cannot be done; the message is shown to them as it is."""


@dataclass(frozen=True)
class RegisteredTerminal:
    """One row of the console's lists."""

    device: str
    state: str                 # pending | active | retired | unpaired | revoked
    window: str | None
    online: bool
    seen: float | None
    model: str | None
    fw: str | None
    pending: int | None = None
    alarms: str = ""
    code_expires: float | None = None
    rotating: bool = False


def normalise_code(text: str) -> str | None:
    """What staff typed (spaces, dashes, full-width digits) → the 6-digit code, or None."""
    if not isinstance(text, str) or len(text) > 32:
        return None
    digits = re.sub(r"[\s-]", "", text.translate(_FULLWIDTH))
    return digits if re.fullmatch(r"[0-9]{6}", digits) else None


_FULLWIDTH = {0xFF10 + i: ord("0") + i for i in range(10)}


def paired_client_id(device: str) -> str:
    """`{device}-{128 random bits}`: the only thing that keeps the enrolment account (on every SD card) off
    a paired terminal's session. Mosquitto 2.0.11 reserves client ids for no account and cannot confine
    an account to a client-id prefix, so whoever knows the id can take the session over (and learn from
    `session_present` that it exists). The id travels only sealed to the terminal. At most 55 characters
    (grant schema: 64)."""
    return f"{device}-{secrets.token_urlsafe(16)}"


class Provisioner:
    def __init__(self, cfg: CenterConfig, registry: Registry, *, host: str = "127.0.0.1", port: int | None = None,
                 password: str, username: str = "provisioning", tls_ca: str = "", listen: bool = True,
                 code_ttl_s: int | None = None, max_pending: int | None = None):
        self.cfg = cfg
        self.reg = registry
        self.center = cfg.center.id
        self.listen = listen
        self.code_ttl_s = code_ttl_s or cfg.console.code_ttl_s
        self.max_pending = max_pending or cfg.console.max_pending
        self._ops = threading.RLock()
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._host, self._port = host, port or cfg.broker.local_port
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"provisioning-{secrets.token_hex(4)}",
                        protocol=mqtt.MQTTv5)
        c.username_pw_set(username, password)
        if tls_ca:
            c.tls_set_context(ssl.create_default_context(cafile=tls_ca))
        c.suppress_exceptions = True
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a: self._connected.clear()
        c.on_message = lambda cl, ud, m: self._work.put((m.topic, m.payload, m.retain))
        self.client = c
        self.dynsec = DynSec(c)
        self._worker = threading.Thread(target=self._run, name="provisioning", daemon=True)
        self.refused_hellos: Counter[str] = Counter()  # reason → announcements refused (no code, no answer)
        self._hellos_logged: set[tuple[str, str]] = set()

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 15) -> "Provisioner":
        self.client.connect(self._host, self._port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.client.loop_stop()
            raise RuntimeError(f"provisioning: could not connect to the broker at {self._host}:{self._port}")
        self._worker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._work.put(None)
        if self._worker.is_alive():
            self._worker.join(5)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.error("broker refused the provisioning account: %s", reason)
            return
        self.dynsec.subscribe()
        if self.listen:
            client.subscribe(f"{PREFIX}/{self.center}/enrol/+/hello", qos=1)
            client.subscribe(f"{PREFIX}/{self.center}/device/+/status", qos=1)
        # Wait for the SUBACKs implicitly: the first dynsec call answers only after its subscription.
        self._connected.set()

    def _run(self) -> None:
        last_sweep = 0.0
        while not self._stop.is_set():
            try:
                item = self._work.get(timeout=1)
            except queue.Empty:
                item = None
            try:
                if item is not None:
                    self._handle(*item)
                if time.time() - last_sweep >= 2:
                    last_sweep = time.time()
                    self._sweep()
            except Exception:  # noqa: BLE001 - one bad message must not stop the service
                log.exception("provisioning worker: failed to handle a message")

    def _handle(self, topic: str, payload: bytes, retained: bool) -> None:
        m = _HELLO.fullmatch(topic)
        if m and m.group(1) == self.center:
            if retained and payload:
                self._publish(topic, b"", retain=True)  # announcements are not kept; nobody may park data here
            if payload:
                self._on_hello(m.group(2), payload)
            return
        m = _STATUS.fullmatch(topic)
        if m and m.group(1) == self.center and payload:
            self._on_status(m.group(2), payload)

    # ---- MQTT helpers ---------------------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes, retain: bool = True) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if threading.current_thread() is not getattr(self.client, "_thread", None):
            info.wait_for_publish(10)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")

    def _topics(self, device: str, window: str = "-") -> Topics:
        return Topics(self.center, window, device)

    # ---- announcements and codes ----------------------------------------------------------------

    def _refuse_hello(self, device: str, reason: str, detail: str) -> None:
        """Count a refused announcement; log it once per device and reason (a terminal repeats it every 30 s)."""
        self.refused_hellos[reason] += 1
        if (device, reason) in self._hellos_logged:
            return
        if len(self._hellos_logged) >= 4096:  # bounded: a flood of made-up device ids cannot grow it
            self._hellos_logged.clear()
        self._hellos_logged.add((device, reason))
        log.warning("refused an announcement from %s (%s): %s", device, reason, detail)

    def _on_hello(self, device: str, payload: bytes) -> None:
        try:
            msg = codec.decode("hello", payload)
            if msg["device"] != device or msg["center"] != self.center:
                raise MessageError("impersonation", "hello for another device or center than its topic")
        except MessageError as e:
            return self._refuse_hello(device, e.reason, str(e))
        try:
            pub = sealed.usable_public_key(msg["key"])
        except sealed.SealError as e:
            return self._refuse_hello(device, "bad_key", str(e))
        now = time.time()
        with self._ops, self.reg.tx() as reg:
            known = reg.device(device)
            if known is not None and known.state == "unpaired" and known.key == msg["key"]:
                self._forget_account(device)   # it delivered what it held and enrols again
                reg.delete_device(device)
                reg.audit("system", "left", device, "unpaired terminal enrols again; its account is deleted")
            ann = reg.announcement(device, msg["key"])
            if ann is not None and ann.code_expires > now + 30:
                reg.touch_announcement(device, msg["key"], now)
                return
            if ann is None and reg.pending_count() >= self.max_pending:
                log.warning("announcement from %s refused: %d announcements pending", device, self.max_pending)
                return
            code = self._new_code(reg)
            ann = Announcement(device, msg["key"], msg.get("model"), msg.get("fw"), code, now + self.code_ttl_s,
                               ann.first_seen if ann else now, now)
            reg.put_announcement(ann)
        grant = {"v": 1, "type": "grant", "grant": "code", "center": self.center, "device": device, "code": code,
                 "ttl_s": self.code_ttl_s}
        self._answer(device, pub, grant)
        log.info("announcement from %s: pairing code issued (valid %d s)", device, self.code_ttl_s)

    def _new_code(self, reg: Registry) -> str:
        while True:
            code = f"{secrets.randbelow(10 ** 6):06d}"
            if reg.announcement_by_code(code) is None:
                return code

    def _answer(self, device: str, pub: bytes, grant: dict) -> str:
        topic = self._topics(device).answer(sealed.key_id(pub))
        box = sealed.seal(pub, codec.encode(codec.validate(grant)), topic)
        self._publish(topic, codec.encode({"v": 1, "type": "sealed", "device": device, "box": box}))
        return topic

    def _clear_answer(self, device: str, key: str) -> None:
        self._publish(self._topics(device).answer(sealed.key_id(sealed.unb64(key))), b"")

    def _sweep(self) -> None:
        """Expired codes: forget the announcement and clear its retained answer."""
        now = time.time()
        gone = self.reg.expired_announcements(now)
        if not gone:
            return
        with self._ops, self.reg.tx() as reg:
            for a in gone:
                reg.drop_announcement(a.device, a.key)
        for a in gone:
            self._clear_answer(a.device, a.key)

    # ---- status from the terminals --------------------------------------------------------------

    def _on_status(self, device: str, payload: bytes) -> None:
        try:
            s = codec.decode("status", payload)
            if s["device"] != device:
                raise MessageError("impersonation", "status for another device than its topic")
        except MessageError as e:
            log.warning("refused a status from %s: %s", device, e)
            return
        out = s.get("outbox", {})
        with self._ops, self.reg.tx() as reg:
            reg.put_status(Status(device, s["state"], s.get("window"), out.get("pending"), out.get("quarantined"),
                                  ",".join(s.get("alarms", [])), s.get("cred"), s.get("fw"), time.time()))
            d = reg.device(device)
            if d is None or s["state"] != "online":
                return
            if d.answer_topic:
                # Online with its own account: the credentials answer has done its work.
                self._publish(d.answer_topic, b"")
                reg.update_device(device, answer_topic=None)
                reg.audit("system", "paired-online", device, f"online with its own account at {s.get('window')}")
            if d.rotating_cred and (s.get("cred") or 0) >= d.rotating_cred and d.rotating_password:
                self.dynsec.set_password(device, d.rotating_password)   # disconnects it; it retries with the new one
                self._publish(self._topics(device).credentials, b"")
                reg.update_device(device, cred=d.rotating_cred, rotating_cred=None, rotating_password=None)
                reg.audit("system", "rotate-done", device, f"credentials generation {d.rotating_cred} in force")

    # ---- what staff can do ----------------------------------------------------------------------

    def _check_window(self, window: str) -> None:
        if self.cfg.window(window) is None:
            raise Refused(f"no window {window!r} in the center file")

    def _check_rate(self, who: str) -> None:
        since = time.time() - FAILED_WINDOW_S
        if self.reg.attempts_since("code", who, since) >= FAILED_CODES_PER_USER:
            raise Refused("too many wrong pairing codes: wait ten minutes")
        if self.reg.attempts_since("code", None, since) >= FAILED_CODES_TOTAL:
            raise Refused("too many wrong pairing codes at this center: wait ten minutes")

    def _claim(self, code_text: str, who: str) -> Announcement:
        """The announcement a code was issued for; the code is used up. Failures count against `who`."""
        self._check_rate(who)
        code = normalise_code(code_text)
        now = time.time()
        ann = self.reg.announcement_by_code(code) if code else None
        if ann is None or ann.code_expires <= now:
            with self.reg.tx() as reg:
                reg.attempt("code", who, now)
                reg.audit(who, "pair-refused", "-", "unknown, used or expired pairing code")
            raise Refused("unknown, used or expired pairing code")
        return ann

    def pair(self, code: str, window: str, who: str) -> Device:
        """Pair the terminal showing `code` to `window`: its own account, role and binding."""
        with self._ops:
            self._check_window(window)
            ann = self._claim(code, who)
            return self._grant(ann, window, [(who, "pair", ann.device, f"window {window}; model {ann.model or '?'}")])

    def _grant(self, ann: Announcement, window: str, audit: list[tuple[str, str, str, str]]) -> Device:
        """Account, role, binding, registry row and audit entries; the sealed account is sent last."""
        device = ann.device
        if self.reg.device(device) is not None:
            self._forget_account(device)  # paired before (e.g. its data partition was replaced): new account
        password = new_password()
        client_id = paired_client_id(device)
        self.dynsec.create_role(acl.device_role(device), acl.device_acls(self.center, device, window))
        self.dynsec.create_client(device, password, client_id, [acl.device_role(device)])
        now = time.time()
        d = Device(device, "active", window, ann.key, client_id, 1, None, None, None, ann.model, ann.fw, None, now, now)
        self._publish(self._topics(device).binding, self._binding(d))
        grant = {"v": 1, "type": "grant", "grant": "credentials", "center": self.center, "device": device,
                 "window": window, "username": device, "password": password, "client_id": client_id, "cred": 1}
        topic = self._topics(device).answer(sealed.key_id(sealed.unb64(ann.key)))
        d = Device(**{**d.__dict__, "answer_topic": topic})
        with self.reg.tx() as reg:  # recorded before the terminal can come online with it
            others = [a for a in reg.drop_announcements(device) if a.key != ann.key]
            reg.put_device(d)
            for entry in audit:
                reg.audit(*entry)
        self._answer(device, sealed.unb64(ann.key), grant)
        for a in others:  # the same device id announced with other keys: not the terminal staff saw
            self._clear_answer(a.device, a.key)
        return d

    def _binding(self, d: Device) -> bytes:
        topic = self._topics(d.device).binding
        msg: dict = {"v": 1, "type": "binding", "center": self.center, "device": d.device, "state": d.state,
                     "issued": datetime.now().astimezone().isoformat(timespec="seconds")}
        if d.state == "active":
            w = self.cfg.window(d.window)
            msg.update(window=d.window, window_name=w.name, staff=[s.message() for s in w.staff])
            if self.cfg.center.hall_qr_url:
                msg["hall_qr_url"] = self.cfg.center.hall_qr_url
            if self.cfg.center.staff_qr_template:
                msg["staff_qr_template"] = self.cfg.center.staff_qr_template
            msg["qr"] = {"key_id": self.cfg.qr.key_id,
                         "key": sealed.seal(sealed.unb64(d.key), self.cfg.qr_key(), topic),
                         "url_template": self.cfg.qr.url_template, "ttl_s": self.cfg.qr.ttl_s}
        return codec.encode(codec.validate(msg))

    def _device(self, device: str, *states: str) -> Device:
        d = self.reg.device(device)
        if d is None:
            raise Refused(f"no paired terminal {device!r}")
        if states and d.state not in states:
            raise Refused(f"terminal {device} is {d.state}")
        return d

    def _take_window(self, d: Device) -> None:
        """Its role keeps delivery (records, status, receipts) and loses the window's case and duty."""
        if d.window:
            for a in acl.window_acls(self.center, d.window):
                self.dynsec.remove_acl(acl.device_role(d.device), a)

    def _forget_account(self, device: str) -> None:
        self.dynsec.delete_client(device)
        self.dynsec.delete_role(acl.device_role(device))

    def unpair(self, device: str, who: str) -> None:
        """The terminal leaves its window; it delivers what it holds, then shows a new pairing code."""
        with self._ops:
            d = self._device(device)
            if d.state == "revoked":
                self._forget_account(device)
                self._publish(self._topics(device).binding, b"")
                with self.reg.tx() as reg:
                    reg.delete_device(device)
                    reg.audit(who, "unpair", device, "revoked terminal forgotten; its account is deleted")
                return
            self._take_window(d)
            d = Device(**{**d.__dict__, "state": "unpaired", "rotating_cred": None, "rotating_password": None})
            with self.reg.tx() as reg:  # recorded before the terminal hears of it (it may come back at once)
                reg.update_device(device, state="unpaired", rotating_cred=None, rotating_password=None)
                reg.audit(who, "unpair", device, f"was at {d.window}")
            self._publish(self._topics(device).binding, self._binding(d))

    def move(self, device: str, window: str, who: str) -> None:
        """Serve another window: the role swaps the window's topics, then the binding tells the terminal."""
        with self._ops:
            self._check_window(window)
            d = self._device(device, "active")
            if d.window == window:
                raise Refused(f"{device} already serves {window}")
            role = acl.device_role(device)
            for a in acl.window_acls(self.center, window):
                self.dynsec.add_acl(role, a)
            for a in acl.window_acls(self.center, d.window):
                if "catalog" not in a["topic"]:
                    self.dynsec.remove_acl(role, a)
            old_window = d.window
            d = Device(**{**d.__dict__, "window": window})
            self._publish(self._topics(device).binding, self._binding(d))
            with self.reg.tx() as reg:
                reg.update_device(device, window=window)
                reg.audit(who, "move", device, f"from {old_window} to {window}")

    def replace(self, old: str, code: str, who: str) -> Device:
        """The terminal showing `code` takes over `old`'s window; `old` is retired (delivers, takes no cases)."""
        with self._ops:
            d = self._device(old, "active")
            ann = self._claim(code, who)
            if ann.device == old:
                raise Refused("a terminal cannot replace itself")
            self._take_window(d)
            retired = Device(**{**d.__dict__, "state": "retired", "replaced_by": ann.device})
            self._publish(self._topics(old).binding, self._binding(retired))
            with self.reg.tx() as reg:
                reg.update_device(old, state="retired", replaced_by=ann.device)
            return self._grant(ann, d.window, [(who, "replace", old, f"by {ann.device} at {d.window}; {old} retired")])

    def revoke(self, device: str, who: str) -> None:
        """Disable the account at once: connection dropped, no publish, no subscribe, no reconnect."""
        with self._ops:
            d = self._device(device, "active", "retired", "unpaired")
            revoked = Device(**{**d.__dict__, "state": "revoked"})
            self._publish(self._topics(device).binding, self._binding(revoked))
            self.dynsec.disable_client(device)  # kicks the live session too
            with self.reg.tx() as reg:
                reg.update_device(device, state="revoked", rotating_cred=None, rotating_password=None)
                reg.audit(who, "revoke", device, f"was {d.state} at {d.window}")

    def rotate(self, device: str, who: str) -> int:
        """Send new credentials sealed to the terminal; they take effect once it confirms holding them."""
        with self._ops:
            d = self._device(device, "active", "retired", "unpaired")
            gen = max(d.cred, d.rotating_cred or 0) + 1
            password = new_password()
            grant = {"v": 1, "type": "grant", "grant": "credentials", "center": self.center, "device": device,
                     "window": d.window or "-", "username": device, "password": password,
                     "client_id": d.client_id, "cred": gen}
            topic = self._topics(device).credentials
            box = sealed.seal(sealed.unb64(d.key), codec.encode(codec.validate(grant)), topic)
            with self.reg.tx() as reg:
                reg.update_device(device, rotating_cred=gen, rotating_password=password)
                reg.audit(who, "rotate", device, f"credentials generation {gen} sent; in force once confirmed")
            self._publish(topic, codec.encode({"v": 1, "type": "sealed", "device": device, "box": box}))
            return gen

    # ---- for the console ------------------------------------------------------------------------

    def terminals(self) -> tuple[list[RegisteredTerminal], list[RegisteredTerminal]]:
        """(unpaired announcements, paired terminals) with their online state."""
        now = time.time()
        pending = [RegisteredTerminal(a.device, "pending", None, now - a.last_seen <= ONLINE_WITHIN_S, a.last_seen,
                                      a.model, a.fw, code_expires=a.code_expires) for a in self.reg.announcements(now)]
        paired = []
        for d in self.reg.devices():
            s = self.reg.status(d.device)
            paired.append(RegisteredTerminal(d.device, d.state, d.window, bool(s and s.state == "online"),
                                             s.seen if s else None, d.model, s.fw if s and s.fw else d.fw,
                                             s.pending if s else None, s.alarms if s else "", None,
                                             bool(d.rotating_cred)))
        return pending, paired

    def announcement_for(self, code_text: str) -> Announcement | None:
        code = normalise_code(code_text)
        ann = self.reg.announcement_by_code(code) if code else None
        return ann if ann and ann.code_expires > time.time() else None
