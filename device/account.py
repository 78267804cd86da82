"""The terminal's account and binding: the thin shell around the pure pairing step (`device.pairing`).

Enrolment applies only with `[enrolment] username` set; without it the terminal runs as configured by
hand and `mode` is "plain". An unpaired terminal connects with the center-wide enrolment account,
announces itself and shows the pairing code the center seals to it; once paired it reconnects with its
own account and follows its retained binding (window, roster, QR key; moved, retired, unpaired, revoked).

Threads: the network thread only calls `decode` (reads the key and the current state, writes nothing);
the core thread calls `step`, which writes `state` and the files (credentials, binding). The effects
on the link and the window are returned to `device.terminal` to carry out.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

from device import enrolment, pairing
from device.config import Config
from device.machine import DutyChanged
from device.model import Staff
from device.pairing import PairingState
from protocol import codec
from protocol.codec import MessageError
from protocol.topics import Topics

log = logging.getLogger("device.terminal")
NOT_OURS = object()  # `decode`: the message is for the rating inputs, not for enrolment


class Account:
    def __init__(self, base_cfg: Config, device_id: str, data_dir: Path):
        self.base_cfg = base_cfg
        self.device_id = device_id
        self.data_dir = data_dir
        e = base_cfg.enrolment
        state = PairingState(device_id, base_cfg.center.id, bool(e.username), e.announce_every_s)
        if state.enrolled:
            # The cryptography is loaded only here: a terminal configured by hand never needs it (≈ 8 MB of
            # RSS on a 512 MB board; bench headless_rss_mb).
            from protocol import sealed
            self.key = enrolment.load_or_create_key(data_dir)
            self.key_id = sealed.key_id(sealed.public_bytes(self.key))
            state = self._load(state)
        self.state: PairingState = state  # written on the core thread only (`step`)

    @property
    def mode(self) -> str:
        return self.state.mode

    # ---- core thread ---------------------------------------------------------------------------

    def step(self, event: pairing.Event, now: float) -> list[pairing.Effect]:
        """Step the pairing state; write the files it asks for; return the effects for the link and window."""
        before = self.state
        self.state, effects = pairing.step(before, event, now)
        if self.state.refusals == pairing.REFUSED_AFTER and before.refusals < pairing.REFUSED_AFTER:
            log.error("the broker refuses this terminal's account (revoked or deleted at the center)")
        rest = []
        for effect in effects:
            if isinstance(effect, pairing.SaveCredentials):
                enrolment.save_credentials(self.data_dir, effect.creds)
            elif isinstance(effect, pairing.SaveBinding):
                enrolment.write_private(self.data_dir / enrolment.BINDING_FILE, codec.encode(effect.binding))
            elif isinstance(effect, pairing.Forget):
                log.info("forgetting this terminal's account (%s)", ", ".join(effect.names))
                enrolment.forget(self.data_dir, *effect.names)
            else:
                rest.append(effect)
        return rest

    def effective_config(self) -> Config:
        """The configuration as set by hand, with the account and binding from the center on top."""
        cfg, p = self.base_cfg, self.state
        if p.mode == "enrolling":
            return replace(cfg, mqtt=replace(cfg.mqtt, username=cfg.enrolment.username,
                                             password=cfg.enrolment.password))
        if p.mode == "plain":
            return cfg
        b = p.binding or {}
        cfg = replace(cfg, center=replace(cfg.center, window=pairing.window(p, cfg.center.window)),
                      mqtt=replace(cfg.mqtt, username=p.creds.username, password=p.creds.password))
        ui = {k: b[k] for k in ("hall_qr_url", "staff_qr_template") if k in b}
        if ui:
            cfg = replace(cfg, ui=replace(cfg.ui, **ui))
        if "qr" in b:
            qr_over = {"key_id": b["qr"]["key_id"], "key": "", "key_file": ""}
            qr_over.update({k: b["qr"][k] for k in ("url_template", "ttl_s") if k in b["qr"]})
            cfg = replace(cfg, qr=replace(cfg.qr, **qr_over))
        return cfg

    def subscriptions(self, topics: Topics) -> list[str]:
        p = self.state
        if p.mode == "plain":
            return list(topics.inbound())
        own = [topics.binding, topics.credentials]
        if p.serving:
            return list(topics.inbound()) + own
        return [topics.receipt, topics.config] + own  # still delivers; takes no cases

    def roster_duty(self, window: str) -> DutyChanged | None:
        """Without a duty feed, the binding's roster: its only member is the one on duty (with several,
        nobody can be assumed to be at the counter); the window's name either way. None when a duty
        message for this window was received (it rules) or there is no active binding."""
        b = self.state.binding or {}
        if b.get("state") != "active" or self._duty_received(window):
            return None
        staff = b.get("staff") or []
        return DutyChanged(Staff.from_msg(staff[0]) if len(staff) == 1 else None, b.get("window_name", ""))

    def _duty_received(self, window: str) -> bool:
        """A duty message for the window served now is kept on disk (device.inputs RETAINED_FILES)."""
        try:
            return json.loads((self.data_dir / "duty.json").read_bytes()).get("window") == window
        except (OSError, ValueError, AttributeError):
            return False

    # ---- network thread: decode only -------------------------------------------------------------

    def decode(self, topic: str, payload: bytes, topics: Topics, max_bytes: int) -> object:
        """An enrolment message → a pairing event, None (ours, nothing to do), or NOT_OURS.
        MessageError for a message on our topics that fails a check."""
        p = self.state
        if p.mode == "enrolling":
            if topic != topics.answer(self.key_id):
                raise MessageError("unexpected_topic", topic[:80])
        elif p.mode != "paired" or topic not in (topics.binding, topics.credentials):
            return NOT_OURS
        if not payload:
            return None  # a retained message cleared by the center
        if topic == topics.binding:
            data = codec.decode("binding", payload, max_bytes)
            if data["device"] != self.device_id:
                raise MessageError("wrong_device", data["device"])
            if data["center"] != p.center:
                raise MessageError("wrong_center", data["center"])
            return pairing.BindingReceived(data, self.open_qr_key(data))
        from protocol import sealed  # loaded already: only an enrolled terminal gets here
        grant = sealed.open_grant(self.key, topic, payload, p.center, self.device_id, max_bytes)
        if grant["grant"] == "code" and p.mode == "enrolling":
            log.info("pairing code received (valid %d s)", grant["ttl_s"])
            return pairing.CodeGranted(grant["code"], grant["ttl_s"], time.time() + grant["ttl_s"])
        if grant["grant"] == "credentials" and p.mode == "enrolling":
            log.info("paired: own account received for window %s; reconnecting with it", grant.get("window", ""))
            return pairing.CredentialsGranted(enrolment.credentials_from_grant(grant))
        if grant["grant"] == "credentials" and topic == topics.credentials:
            log.info("rotated credentials (generation %d) received", grant["cred"])
            return pairing.RotationGranted(grant["username"], grant["password"], grant["cred"])
        raise MessageError("unexpected_grant", grant["grant"])

    def open_qr_key(self, binding: dict) -> bytes | None:
        if "qr" not in binding:
            return None
        topic = Topics(binding["center"], "-", self.device_id).binding
        from protocol import sealed
        try:
            key = sealed.unseal(self.key, binding["qr"]["key"], topic)
        except sealed.SealError as e:
            raise MessageError("unsealable", f"QR key: {e}") from None
        if len(key) < 32:
            raise MessageError("schema", "QR key shorter than 32 bytes")
        return key

    # ---- start ------------------------------------------------------------------------------------

    def _load(self, p: PairingState) -> PairingState:
        creds = enrolment.load_credentials(self.data_dir)
        if creds is not None and (creds.device != self.device_id or creds.center != p.center):
            log.warning("stored credentials are for %s/%s, not %s/%s: enrolling again", creds.center, creds.device,
                        p.center, self.device_id)
            enrolment.forget(self.data_dir, enrolment.CREDENTIALS_FILE, enrolment.BINDING_FILE)
            return p
        if creds is None:
            return p
        p = replace(p, creds=creds)
        path = self.data_dir / enrolment.BINDING_FILE
        if path.exists():
            try:
                data = codec.decode("binding", path.read_bytes(), self.base_cfg.limits.max_message_bytes)
                p = replace(p, binding=data, qr_key=self.open_qr_key(data))
            except (MessageError, OSError) as e:
                log.warning("ignoring saved binding: %s", e)
        return p
