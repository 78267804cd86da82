"""Configuration: embedded defaults ← main TOML file ← boot-partition override ← environment.

Every key is declared below with its type and limits, so a wrong key or value is reported by its
full name, where it came from and what was expected — all problems at once, not one per restart.
Environment variables are `HCP_<SECTION>_<KEY>`, e.g. `HCP_MQTT_PORT=8883`.
"""
from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from device.model import Channel

MAIN_FILE = Path("/etc/rating-terminal/terminal.toml")
BOOT_OVERRIDE = Path("/boot/firmware/rating-terminal.toml")  # a technician edits this from any laptop
ENROLMENT_FILE = Path("/boot/firmware/hcp-enrolment.toml")    # the center's enrolment file, copied as it is
_ID = r"^[A-Za-z0-9_-]{1,32}$"


def opt(default: Any, doc: str, *, min: float | None = None, max: float | None = None,
        choices: tuple | None = None, pattern: str | None = None, secret: bool = False) -> Any:
    return field(default=default, metadata=dict(doc=doc, min=min, max=max, choices=choices,
                                                pattern=pattern, secret=secret))


@dataclass(frozen=True)
class DeviceSection:
    id: str = opt("", "device id; empty = derived from the board serial or /etc/machine-id",
                  pattern=r"^([A-Za-z0-9_-]{1,32})?$")
    data_dir: str = opt("/var/lib/rating-terminal", "where the outbox lives (the ext4 data partition)")
    log_level: str = opt("INFO", "logging level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


@dataclass(frozen=True)
class CenterSection:
    id: str = opt("demo", "center id as used in topics", pattern=_ID)
    window: str = opt("W01", "window this terminal serves", pattern=_ID)


@dataclass(frozen=True)
class MqttSection:
    host: str = opt("127.0.0.1", "center broker host")
    port: int = opt(1883, "center broker port", min=1, max=65535)
    tls: bool = opt(False, "use TLS (then set ca_file)")
    ca_file: str = opt("", "CA certificate (PEM) of the center broker")
    ca_pem: str = opt("", "the same CA certificate as PEM text (the center's enrolment file carries it inline)")
    cert_file: str = opt("", "client certificate (PEM), if the broker wants one")
    key_file: str = opt("", "client key (PEM)")
    username: str = opt("", "MQTT user name")
    password: str = opt("", "MQTT password", secret=True)
    keepalive_s: int = opt(30, "MQTT keepalive", min=5, max=600)
    session_expiry_s: int = opt(7 * 86400, "how long the broker keeps this session while offline",
                                min=60, max=4_294_967_295)
    reconnect_min_s: float = opt(1.0, "first reconnect delay (jittered)", min=0.1, max=60)
    reconnect_max_s: float = opt(60.0, "longest reconnect delay (jittered)", min=1, max=3600)
    max_inflight: int = opt(100, "QoS 1 messages awaiting PUBACK at once", min=1, max=1000)
    protocol: str = opt("5", "MQTT version: 5, or 3.1.1 for brokers without v5 (NATS, RabbitMQ 3.x); under "
                        "3.1.1 a refused publish is only seen as a missing receipt (docs/protocol.md §12)",
                        choices=("5", "3.1.1"))


@dataclass(frozen=True)
class EnrolmentSection:
    # From the center's enrolment file (provisioning/): empty username = no enrolment, [mqtt] is used as it is.
    username: str = opt("", "the center-wide enrolment account; empty = this terminal is configured by hand",
                        pattern=r"^([A-Za-z0-9_-]{1,32})?$")
    password: str = opt("", "password of the enrolment account", secret=True)
    console_url: str = opt("", "pairing console URL for the pairing QR code (staff scan it with a phone)",
                           pattern=r"^(https?://\S+)?$")
    announce_every_s: int = opt(30, "while unpaired, announce again this often", min=5, max=3600)


@dataclass(frozen=True)
class OutboxSection:
    capacity: int = opt(100_000, "undelivered records kept at most; past this new ratings are refused",
                        min=10, max=10_000_000)
    alarm_percent: int = opt(80, "raise an alarm when the outbox is this full", min=1, max=100)
    window: int = opt(1000, "records offered but not yet receipted, at most", min=1, max=20_000)
    receipt_timeout_s: float = opt(30.0, "re-offer a record with no receipt after this (then backoff)",
                                   min=1, max=3600)
    retry_max_s: float = opt(600.0, "longest re-offer backoff", min=1, max=86400)
    alarm_after_offers: int = opt(10, "raise `no_receipt` when a record was offered this often without a "
                                  "receipt (it stays in the outbox)", min=2, max=10_000)


@dataclass(frozen=True)
class RatingSection:
    case_timeout_s: int = opt(120, "case screen returns to idle after this", min=10, max=3600)
    reasons_timeout_s: int = opt(60, "reasons screen returns after this", min=10, max=600)
    thanks_s: int = opt(5, "thank-you screen shows this long", min=1, max=30)
    staff_rating_when_idle: bool = opt(False, "a level pressed with no open case rates the staff on duty; off by "
                                       "default: at a window with a case feed anyone could add one every "
                                       "repeat_guard_s — turn on only at staff-only windows (no case feed)")
    repeat_guard_s: int = opt(10, "idle presses right after a rating are ignored this long", min=0, max=600)


@dataclass(frozen=True)
class CaseSection:
    max_age_h: float = opt(12.0, "an open case whose opened_at is older than this by the terminal's clock is refused "
                           "(a retained case a center on MQTT 3.1.1 could not give an expiry)", min=0.1, max=24 * 30)


@dataclass(frozen=True)
class QrSection:
    url_template: str = opt("https://hcp.example.gov.cn/r?t={token}",
                            "rating URL for the dynamic QR when the case has none; must contain {token}",
                            pattern=r"^https://\S*\{token\}\S*$")
    key_id: str = opt("demo", "id of the center's QR signing key", pattern=r"^[A-Za-z0-9_-]{1,16}$")
    key: str = opt("", "QR signing key, hex (≥ 32 bytes); empty = key_file", secret=True,
                   pattern=r"^([0-9a-fA-F]{64,})?$")
    key_file: str = opt("", "file holding the hex QR signing key")
    demo: bool = opt(False, "no key: sign with the published demo key of docs/protocol.md §10 (for `make run`; "
                     "anyone can forge those tokens). Without a key and without this, the case screen shows no "
                     "dynamic QR and --check-config fails")
    ttl_s: int = opt(86400, "how long a QR token stays valid", min=60, max=30 * 86400)


@dataclass(frozen=True)
class CodesSection:
    level_scheme: str = opt("gbt39046", "level numbering at export: gbt39046 (1 = 非常满意) or "
                            "provincial (1 = 非常不满意)", choices=("gbt39046", "provincial"))
    channels: dict[str, int] = opt(None, "channel name → platform channel code (pf)", min=0, max=99,
                                   choices=tuple(c.value for c in Channel))


@dataclass(frozen=True)
class LimitsSection:
    max_message_bytes: int = opt(16384, "inbound messages larger than this are refused", min=1024,
                                 max=262144)


@dataclass(frozen=True)
class UiSection:
    # Owned by ui/ (issue 3): add keys here as the UI needs them.
    language: str = opt("zh", "UI language", choices=("zh", "en"))
    maintenance_pin: str = opt("", "PIN for the maintenance screen; empty = maintenance disabled", secret=True,
                               pattern=r"^([0-9]{4,12})?$")
    maintenance_timeout_s: int = opt(120, "the maintenance screen closes after this long untouched", min=15,
                                     max=3600)
    hall_qr_url: str = opt("", "hall rating QR (大厅评价) URL; empty = not shown", pattern=r"^(https://\S+)?$")
    staff_qr_template: str = opt("", "staff rating QR (人员评价) URL with {staff} for the staff id; empty = "
                                 "not shown", pattern=r"^(https://\S*\{staff\}\S*)?$")
    panel_dpi: float = opt(0.0, "panel pixels per inch; 0 = from the window size and panel_diagonal_in",
                           min=0, max=600)
    panel_diagonal_in: float = opt(7.0, "panel diagonal in inches (7 = the 800×480 DSI touchscreen)", min=2,
                                   max=40)
    fullscreen: str = opt("auto", "auto = full screen on the kiosk (KMSDRM), a window on a desktop; yes; no",
                          choices=("auto", "yes", "no"))
    rotation: int = opt(0, "screen rotation in degrees: 0, 90, 180 or 270", min=0, max=270)
    window_size: str = opt("800x480", "window size on a desktop", pattern=r"^[0-9]{3,4}x[0-9]{3,4}$")
    idle_fps: int = opt(10, "frame-rate cap while idle and untouched for idle_after_s (0 = never lower)",
                        min=0, max=60)
    idle_after_s: int = opt(10, "seconds without activity before idle_fps applies", min=1, max=3600)
    touch_guard_ms: int = opt(300, "touches this soon after a screen change are ignored (double taps)",
                              min=0, max=2000)
    voice: str = opt("builtin", "voice prompts: builtin = the shipped ones (ui/voice/); a folder of "
                     "<language>/<prompt>.wav files (a center's own; missing ones come from ui/voice/); "
                     "empty = silent")
    voice_player: str = opt("aplay -q", "command that plays one WAV file (its path is appended)")


@dataclass(frozen=True)
class HardwareSection:
    # Owned by drivers/ (issue 4): add keys here as the drivers need them.
    profile: str = opt("", "hardware profile: a name shipped in drivers/profiles or a path to a TOML file; "
                       "empty = no hardware (touch screen or console only)")
    simulate: bool = opt(False, "drive the simulated twin of every driver (demo, bench, self-test without hardware)")
    sysfs_root: str = opt("/sys", "sysfs root for the backlight node (tests point it at a temp tree)")
    opening_hours: str = opt("", "opening hours; the backlight is off outside them, e.g. "
                             "'mon-fri 08:30-12:00,13:00-17:30; sat 09:00-12:00' (empty = always open)",
                             pattern=r"^(?:\s*(?:mon|tue|wed|thu|fri|sat|sun)(?:-(?:mon|tue|wed|thu|fri|sat|sun))?"
                             r"(?:,(?:mon|tue|wed|thu|fri|sat|sun)(?:-(?:mon|tue|wed|thu|fri|sat|sun))?)*\s+"
                             r"(?:[01]\d|2[0-3]):[0-5]\d-(?:(?:[01]\d|2[0-3]):[0-5]\d|24:00)"
                             r"(?:,(?:[01]\d|2[0-3]):[0-5]\d-(?:(?:[01]\d|2[0-3]):[0-5]\d|24:00))*\s*"
                             r"(?:;\s*(?:mon|tue|wed|thu|fri|sat|sun)(?:-(?:mon|tue|wed|thu|fri|sat|sun))?"
                             r"(?:,(?:mon|tue|wed|thu|fri|sat|sun)(?:-(?:mon|tue|wed|thu|fri|sat|sun))?)*\s+"
                             r"(?:[01]\d|2[0-3]):[0-5]\d-(?:(?:[01]\d|2[0-3]):[0-5]\d|24:00)"
                             r"(?:,(?:[01]\d|2[0-3]):[0-5]\d-(?:(?:[01]\d|2[0-3]):[0-5]\d|24:00))*\s*)*)?$")
    dim_after_s: int = opt(120, "dim the backlight after this long with no case, touch or key", min=10, max=86400)
    backlog_records: int = opt(20, "status LED shows 'backlog' when this many records wait for delivery",
                               min=1, max=10_000_000)
    center_name: str = opt("", "centre name printed on the rate-later slip; empty = the center id")


@dataclass(frozen=True)
class Config:
    device: DeviceSection = field(default_factory=DeviceSection)
    center: CenterSection = field(default_factory=CenterSection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    enrolment: EnrolmentSection = field(default_factory=EnrolmentSection)
    outbox: OutboxSection = field(default_factory=OutboxSection)
    rating: RatingSection = field(default_factory=RatingSection)
    case: CaseSection = field(default_factory=CaseSection)
    qr: QrSection = field(default_factory=QrSection)
    codes: CodesSection = field(default_factory=CodesSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    ui: UiSection = field(default_factory=UiSection)
    hardware: HardwareSection = field(default_factory=HardwareSection)


class ConfigError(Exception):
    """All problems found, one per line, each naming the key."""

    def __init__(self, problems: list[str]):
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


# ---- loading ----------------------------------------------------------------------------------

def load(files: list[Path | str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Merge the layers in order; missing files are skipped, a broken one is an error."""
    files = [MAIN_FILE, ENROLMENT_FILE, BOOT_OVERRIDE] if files is None else files
    env = os.environ if env is None else env
    problems: list[str] = []
    cfg = Config()
    for path in map(Path, files):
        if not path.exists():
            continue
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as e:
            problems.append(f"{path}: not valid TOML: {e}")
            continue
        cfg = _merge(cfg, data, str(path), problems, from_text=False)
    cfg = _merge(cfg, _env_layer(env, problems), "environment", problems, from_text=True)
    if problems:
        raise ConfigError(problems)
    return cfg


def _env_layer(env: Mapping[str, str], problems: list[str]) -> dict:
    layer: dict[str, dict[str, str]] = {}
    sections = {f.name: f.type for f in fields(Config)}
    for name, value in env.items():
        if not name.startswith("HCP_"):
            continue
        rest = name[4:].lower()
        section = next((s for s in sections if rest.startswith(s + "_")), None)
        if section is None:
            problems.append(f"{name}: no such section (sections: {', '.join(sections)})")
            continue
        layer.setdefault(section, {})[rest[len(section) + 1:]] = value
    return layer


def _merge(cfg: Config, data: dict, origin: str, problems: list[str], from_text: bool) -> Config:
    hints = typing.get_type_hints(Config)
    updates = {}
    for section, values in data.items():
        if section not in hints:
            problems.append(f"[{section}] ({origin}): unknown section{_suggest(section, hints)}")
            continue
        if not isinstance(values, dict):
            problems.append(f"[{section}] ({origin}): expected a table of keys")
            continue
        current = getattr(cfg, section)
        known = {f.name: f for f in fields(current)}
        types = typing.get_type_hints(type(current))
        changes = {}
        for key, raw in values.items():
            where = f"{section}.{key} ({origin})"
            if key not in known:
                problems.append(f"{where}: unknown key{_suggest(key, known)}")
                continue
            try:
                changes[key] = _coerce(raw, types[key], known[key].metadata, from_text)
            except ValueError as e:
                problems.append(f"{where}: {e}")
        updates[section] = replace(current, **changes)
    return replace(cfg, **updates)


def _coerce(raw: Any, typ: Any, meta: Mapping, from_text: bool) -> Any:
    shown = "***" if meta.get("secret") else repr(raw)
    if typ is bool:
        if from_text and isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return raw.lower() in ("1", "true", "yes", "on")
        if not isinstance(raw, bool):
            raise ValueError(f"expected true or false, got {shown}")
        return raw
    if typ in (int, float):
        value = raw
        if from_text and isinstance(raw, str):
            try:
                value = typ(raw)
            except ValueError:
                raise ValueError(f"expected {'an integer' if typ is int else 'a number'}, got {shown}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (typ is int and not isinstance(value, int)):
            raise ValueError(f"expected {'an integer' if typ is int else 'a number'}, got {shown}")
        lo, hi = meta.get("min"), meta.get("max")
        if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"expected a value between {lo} and {hi}, got {shown}")
        return typ(value)
    if typ is str:
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {shown}")
        if meta.get("choices") and raw not in meta["choices"]:
            raise ValueError(f"expected one of {', '.join(meta['choices'])}, got {shown}")
        if meta.get("pattern") and not re.fullmatch(meta["pattern"], raw):  # re.match's `$` allows a final "\n"
            raise ValueError(f"expected {meta['doc']}, got {shown}")
        return raw
    if typing.get_origin(typ) is dict or typ == (dict[str, int] | None):
        if from_text:
            raise ValueError("set this in a TOML file, not the environment")
        if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                                for k, v in raw.items()):
            raise ValueError(f"expected a table of name = integer, got {shown}")
        for name, value in raw.items():
            if meta.get("choices") and name not in meta["choices"]:
                raise ValueError(f"unknown name {name!r}{_suggest(name, dict.fromkeys(meta['choices']))}")
            if not meta["min"] <= value <= meta["max"]:
                raise ValueError(f"{name}: expected a value between {meta['min']} and {meta['max']}, got {value}")
        return dict(raw)
    raise ValueError(f"unsupported type {typ}")  # pragma: no cover - a programming error


def _suggest(word: str, known: Mapping) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"


def qr_key(cfg: Config) -> bytes | None:
    """The QR signing key as bytes (from `qr.key` or `qr.key_file`); the demo key only when `qr.demo`
    asks for it; else None (no dynamic QR: the citizen rates on the screen)."""
    if cfg.qr.key:
        return bytes.fromhex(cfg.qr.key)
    if cfg.qr.key_file:
        try:
            text = Path(cfg.qr.key_file).read_text().strip()
        except OSError as e:
            raise ConfigError([f"qr.key_file: cannot read {cfg.qr.key_file}: {e.strerror or e}"]) from None
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise ConfigError([f"qr.key_file: {cfg.qr.key_file} does not hold a hex key"]) from None
        if len(key) < 32:
            raise ConfigError([f"qr.key_file: key in {cfg.qr.key_file} is shorter than 32 bytes"])
        return key
    return DEMO_QR_KEY if cfg.qr.demo else None


def check(cfg: Config) -> list[str]:
    """Problems a loaded configuration still has as a whole (`--check-config`), one per line."""
    problems = []
    try:
        key = qr_key(cfg)
    except ConfigError as e:
        problems += e.problems
        key = b""
    if key is None and not cfg.enrolment.username:  # an enrolled terminal gets its key with the binding
        problems.append("qr.key: no QR signing key (set qr.key or qr.key_file; qr.demo = true only for a demo): "
                        "the case screen would show no dynamic QR code")
    return problems


DEMO_QR_KEY = bytes.fromhex("64656d6f2d6f6e6c792d6e6f742d666f722d70726f64756374696f6e2d757365")  # "demo-only-…"
