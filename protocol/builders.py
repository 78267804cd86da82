"""Builds the outbound messages (ratings, unrated and alarm events, the enrolment hello).

Pure message construction: the terminal, the simulator and the tests build records here and the codec
validates them. The arguments are described structurally (`RatingLike`, `CaseLike`) so that the core's
own values (`device.machine.RatingDraft`, `device.model.Case`) fit without `protocol` importing them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from protocol import VERSION, codec
from protocol.values import Channel, Level

if TYPE_CHECKING:  # only `hello` needs the cryptography, loaded then (a terminal configured by hand never does)
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey


@dataclass(frozen=True)
class Origin:
    """Who is speaking: the device and the window it serves."""

    center: str
    window: str
    device: str


class StaffLike(Protocol):
    @property
    def id(self) -> str: ...


class CaseLike(Protocol):
    """What a record says about a case: its id, item code, the applicant's token, and who served it."""

    @property
    def id(self) -> str: ...
    @property
    def item_code(self) -> str: ...
    @property
    def applicant_token(self) -> str: ...
    @property
    def staff(self) -> StaffLike: ...


class RatingLike(Protocol):
    """Everything the citizen decided; the outbox adds id, sequence and wall time."""

    @property
    def kind(self) -> str: ...
    @property
    def level(self) -> Level: ...
    @property
    def channel(self) -> Channel: ...
    @property
    def staff(self) -> StaffLike | None: ...
    @property
    def case(self) -> CaseLike | None: ...
    @property
    def reasons(self) -> Sequence[str]: ...
    @property
    def catalog_version(self) -> str: ...


def _envelope(kind: str, origin: Origin, rid: str, ts: str, seq: int | None = None) -> dict:
    """The fields every outbound record opens with (an alarm carries no sequence number)."""
    msg = {"v": VERSION, "type": kind, "id": rid, "device": origin.device, "center": origin.center,
           "window": origin.window}
    if seq is not None:
        msg["seq"] = seq
    msg["ts"] = ts
    return msg


def rating(draft: RatingLike, origin: Origin, rid: str, seq: int, ts: str) -> dict:
    """The rating message: level by name, the three correspondences, reasons with their catalog."""
    msg = _envelope("rating", origin, rid, ts, seq)
    msg.update(kind=draft.kind, level=draft.level.value, channel=draft.channel.value)
    if draft.case is not None:
        msg.update(case=draft.case.id, item_code=draft.case.item_code, applicant=draft.case.applicant_token)
    if draft.staff is not None:
        msg["staff"] = draft.staff.id
    if draft.reasons:
        msg["reasons"] = {"catalog": draft.catalog_version, "codes": list(draft.reasons)}
    return msg


def unrated(case: CaseLike, origin: Origin, rid: str, seq: int, ts: str) -> dict:
    """A case closed at the center without a rating: the cue for an SMS follow-up."""
    return {**_envelope("event", origin, rid, ts, seq), "event": "unrated", "case": case.id,
            "staff": case.staff.id, "applicant": case.applicant_token}


def alarm(code: str, detail: str, origin: Origin, rid: str, ts: str, cleared: bool = False) -> dict:
    """A device alarm raised or cleared (`detail` cut to what the schema allows)."""
    return {**_envelope("event", origin, rid, ts), "event": "alarm_cleared" if cleared else "alarm",
            "alarm": code, "detail": detail[:500]}


def hello(center: str, device: str, key: X25519PrivateKey, model: str, fw: str) -> bytes:
    """The announcement a terminal makes with the enrolment account: who it is and the key to seal to."""
    from protocol import sealed
    msg: dict[str, Any] = {"v": VERSION, "type": "hello", "center": center, "device": device,
                           "key": sealed.b64(sealed.public_bytes(key))}
    if model:
        msg["model"] = model[:64]
    if fw:
        msg["fw"] = fw[:32]
    return codec.encode(codec.validate(msg))
