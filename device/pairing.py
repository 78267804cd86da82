"""Enrolment and binding as a pure step: `step(pairing, event, now) -> (pairing, effects)`.

Like `device.machine`: frozen dataclasses, no I/O, no clock. The network thread only decodes what
arrives (sealed answers, bindings, refusals) into the events below and queues them; the core thread
steps them in order and carries out the effects (`device.account` for files, `device.terminal` for
the link). One owner, so a rotated password can never overwrite a window change or the other way round.

    plain      [enrolment] not set: configured by hand; nothing here applies
    enrolling  no account of its own: announce, show the pairing code the center sealed to us
    paired     its own account; follows its retained binding (active, retired, unpaired, revoked)
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Union

from device.enrolment import BINDING_FILE, CREDENTIALS_FILE, Credentials, Pairing, pairing_qr_url

REFUSED_AFTER = 2   # consecutive refusals (each password tried) before the screen says "refused"
REFUSALS = (0x86, 0x87, 0x8C)  # bad credentials, not authorized, bad authentication method
FORGET_ACCOUNT = (CREDENTIALS_FILE, BINDING_FILE, "duty.json", "config.json")


@dataclass(frozen=True)
class PairingState:
    """Who this terminal is at the center, and what the Unpaired screen would show."""

    device: str
    center: str
    enrolled: bool                    # `[enrolment] username` is set
    announce_every_s: float = 30
    creds: Credentials | None = None
    binding: dict | None = None       # the retained binding, decoded and checked (never mutated)
    qr_key: bytes | None = None       # the binding's QR signing key, unsealed
    code: str = ""
    code_until: float = 0.0           # monotonic: when the shown code expires
    code_expires_at: float = 0.0      # the same as wall time, for the screen
    refusals: int = 0
    last_hello: float = -1e18

    @property
    def mode(self) -> str:
        if not self.enrolled:
            return "plain"
        return "paired" if self.creds is not None else "enrolling"

    @property
    def serving(self) -> bool:
        """Takes cases: configured by hand, enrolling (not yet bound), or bound and active."""
        return self.mode != "paired" or self.binding is None or self.binding["state"] == "active"

    @property
    def window_name(self) -> str:
        """The served window's name from an active binding ("" otherwise)."""
        b = self.binding or {}
        return b.get("window_name", "") if b.get("state") == "active" else ""


# ---- events (decoded on the network thread, or made on the core thread) ---------------------------

@dataclass(frozen=True)
class CodeGranted:
    code: str
    ttl_s: float
    expires_at: float  # wall time, for the screen


@dataclass(frozen=True)
class CredentialsGranted:
    """The center's sealed answer to our announcement: our own account."""

    creds: Credentials


@dataclass(frozen=True)
class RotationGranted:
    username: str
    password: str
    cred: int


@dataclass(frozen=True)
class BindingReceived:
    binding: dict
    qr_key: bytes | None


@dataclass(frozen=True)
class Refused:
    code: int  # the CONNACK reason


@dataclass(frozen=True)
class Connected:
    pass


@dataclass(frozen=True)
class ReEnrolAsked:
    pass


@dataclass(frozen=True)
class Tick:
    online: bool
    pending: int  # records still in the outbox


EVENTS = (CodeGranted, CredentialsGranted, RotationGranted, BindingReceived, Refused, Connected, ReEnrolAsked, Tick)
Event = Union[CodeGranted, CredentialsGranted, RotationGranted, BindingReceived, Refused, Connected, ReEnrolAsked,
              Tick]


# ---- effects (carried out on the core thread) ------------------------------------------------------

@dataclass(frozen=True)
class SaveCredentials:
    creds: Credentials


@dataclass(frozen=True)
class SaveBinding:
    binding: dict


@dataclass(frozen=True)
class Forget:
    names: tuple[str, ...]


@dataclass(frozen=True)
class Reconnect:
    """Reconnect as whoever we now are (enrolment account ↔ own account), at the window now served."""


@dataclass(frozen=True)
class UsePassword:
    username: str
    password: str


@dataclass(frozen=True)
class SwitchWindow:
    """Adopt the binding: window, roster, subscriptions, status."""


@dataclass(frozen=True)
class PublishStatus:
    pass


@dataclass(frozen=True)
class Announce:
    pass


Effect = Union[SaveCredentials, SaveBinding, Forget, Reconnect, UsePassword, SwitchWindow, PublishStatus, Announce]


def step(p: PairingState, e: Event, now: float) -> tuple[PairingState, list[Effect]]:
    """One event in, the new pairing state and what to do out. Events that do not apply change nothing."""
    if p.mode == "plain":
        return p, []
    if isinstance(e, Tick):
        return _tick(p, e, now)
    if isinstance(e, CodeGranted):
        if p.mode != "enrolling":
            return p, []
        return replace(p, code=e.code, code_until=now + e.ttl_s, code_expires_at=e.expires_at), []
    if isinstance(e, CredentialsGranted):
        c = e.creds
        if p.mode != "enrolling" or c.device != p.device or c.center != p.center:
            return p, []  # a retained answer delivered twice is taken once
        return replace(p, creds=c, code="", code_until=0.0, code_expires_at=0.0, refusals=0), \
            [SaveCredentials(c), Reconnect()]
    if isinstance(e, RotationGranted):
        c = p.creds
        if p.mode != "paired" or e.username != c.username or e.cred <= c.newest:
            return p, []
        c = replace(c, next_password=e.password, next_cred=e.cred)
        return replace(p, creds=c), [SaveCredentials(c), PublishStatus()]  # `cred` in the status: we hold them
    if isinstance(e, BindingReceived):
        return _rebind(p, e)
    if isinstance(e, Refused):
        if e.code not in REFUSALS:
            return p, []
        p = replace(p, refusals=p.refusals + 1)
        c = p.creds
        if p.mode == "paired" and c.next_password:  # rotation took effect while we were away: the other one
            c = c.swapped()
            return replace(p, creds=c), [SaveCredentials(c), UsePassword(c.username, c.password)]
        return p, []
    if isinstance(e, Connected):
        p = replace(p, refusals=0)
        if p.mode == "enrolling":
            return replace(p, last_hello=now), [Announce()]
        if p.creds.settled() != p.creds:  # connected with `password`: drop an older one
            return replace(p, creds=p.creds.settled()), [SaveCredentials(p.creds.settled())]
        return p, []
    if isinstance(e, ReEnrolAsked):
        forget = [Forget(FORGET_ACCOUNT)] if p.mode == "paired" else []
        return _fresh(p), forget + [Reconnect()]
    raise TypeError(f"not a pairing event: {e!r}")


def _rebind(p: PairingState, e: BindingReceived) -> tuple[PairingState, list[Effect]]:
    b = e.binding
    if p.mode != "paired" or b["device"] != p.device or b["center"] != p.center:
        return p, []
    effects: list[Effect] = [SaveBinding(b)]
    c = p.creds
    if b["state"] == "active" and c.window != b["window"]:
        c = replace(c, window=b["window"])
        effects.append(SaveCredentials(c))
    return replace(p, binding=b, qr_key=e.qr_key, creds=c), effects + [SwitchWindow(), PublishStatus()]


def _tick(p: PairingState, e: Tick, now: float) -> tuple[PairingState, list[Effect]]:
    """Announce again while unpaired; once unpaired at the center and drained, forget the account."""
    if p.mode == "enrolling":
        if e.online and now - p.last_hello >= p.announce_every_s:
            return replace(p, last_hello=now), [Announce()]
        return p, []
    if p.binding is not None and p.binding["state"] == "unpaired" and e.pending == 0:
        return _fresh(p), [Forget(FORGET_ACCOUNT), Reconnect()]
    return p, []


def _fresh(p: PairingState) -> PairingState:
    """No account, no binding, no code: announce at once."""
    return PairingState(p.device, p.center, p.enrolled, p.announce_every_s)


# ---- derived views (pure) ---------------------------------------------------------------------------

def window(p: PairingState, configured: str) -> str:
    """The window served now: the binding's, else the one granted with the account, else as configured."""
    if p.mode != "paired":
        return configured
    return (p.binding or {}).get("window") or p.creds.window or configured


def shown(p: PairingState, now: float, console_url: str) -> Pairing | None:
    """What the Unpaired screen shows; None while rating at a window as usual."""
    if p.mode == "plain":
        return None
    if p.mode == "enrolling":
        if p.code and now < p.code_until:
            return Pairing("code", p.device, p.code, pairing_qr_url(console_url, p.device, p.code), p.code_expires_at)
        if p.refusals >= REFUSED_AFTER:
            return Pairing("connecting", p.device, detail="the broker refuses the enrolment account")
        return Pairing("connecting", p.device)
    if p.refusals >= REFUSED_AFTER:
        return Pairing("refused", p.device, detail="the center does not accept this terminal's account")
    state = (p.binding or {}).get("state", "active")
    return None if state == "active" else Pairing(state, p.device)
