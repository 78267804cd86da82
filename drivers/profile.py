"""Hardware profiles: one TOML file describes a board's keys, lights, buzzer, backlight, printer and display.

`load_profile("buttons-only-box")` reads a profile shipped in drivers/profiles; a path reads that file.
Every problem is reported at once, each by its dotted key (``keys.pins.satisfied: …``), with a
suggestion for a misspelt key. Pins are BCM GPIO numbers (``17`` or ``"GPIO17"``).
"""
from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from protocol.values import LEVELS

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
LEVEL_KEYS: tuple[str, ...] = tuple(level.value for level in LEVELS)
EXTRA_KEYS: tuple[str, ...] = ("print_slip", "call_staff")  # optional keys beside the five levels
FB_SIZES = ((240, 240), (320, 240), (240, 320))
GPIO_MAX = 27  # BCM GPIO 0–27 on the 40-pin header


class ProfileError(ValueError):
    """All problems found in a profile, one per line, each naming the key."""

    def __init__(self, problems: list[str], origin: str = "profile"):
        super().__init__(f"invalid hardware profile {origin}:\n  " + "\n  ".join(problems))
        self.problems = problems
        self.origin = origin


def _opt(default: Any, doc: str, *, kind: str | None = None, min: float | None = None,
         max: float | None = None, choices: tuple | None = None) -> Any:
    return field(default=default, metadata=dict(doc=doc, kind=kind, min=min, max=max, choices=choices))


# ---- the sections ------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeysProfile:
    pins: dict = _opt(None, "key name → BCM pin: the five levels, optionally print_slip and call_staff",
                      kind="pins")
    pull_up: bool = _opt(True, "keys switch to ground with the internal pull-up (false: to 3V3, pull-down)")
    debounce_ms: int = _opt(30, "contact bounce settles within this; shorter blips are ignored", min=5, max=200)
    hold_max_ms: int = _opt(3000, "a press held longer is rejected as 'held'", min=500, max=30000)
    burst_max: int = _opt(4, "more presses than this within burst_window_ms are rejected as 'burst'",
                          min=2, max=50)
    burst_window_ms: int = _opt(2000, "window for burst_max", min=200, max=60000)
    stuck_s: int = _opt(60, "a key down this long raises the key_stuck alarm", min=5, max=3600)


@dataclass(frozen=True)
class StatusLedProfile:
    kind: str = _opt("none", "status LED: none, mono (one LED, blink patterns) or rgb",
                     choices=("none", "mono", "rgb"))
    pin: int | None = _opt(None, "pin of the mono LED", kind="pin")
    red: int | None = _opt(None, "red pin of the rgb LED", kind="pin")
    green: int | None = _opt(None, "green pin of the rgb LED", kind="pin")
    blue: int | None = _opt(None, "blue pin of the rgb LED", kind="pin")
    active_high: bool = _opt(True, "true: pin high lights the LED")


@dataclass(frozen=True)
class FeedbackProfile:
    led: int | None = _opt(None, "key-feedback LED pin (same flash for every key)", kind="pin")
    buzzer: int | None = _opt(None, "active buzzer pin (same beep for every key)", kind="pin")
    active_high: bool = _opt(True, "true: pin high drives the LED/buzzer")
    beep_ms: int = _opt(60, "beep length", min=10, max=1000)
    flash_ms: int = _opt(150, "flash length", min=10, max=2000)


@dataclass(frozen=True)
class BacklightProfile:
    driver: str = _opt("sysfs", "sysfs (/sys/class/backlight) or none", choices=("sysfs", "none"))
    node: str = _opt("", "node under /sys/class/backlight; empty = discover")
    bright_percent: int = _opt(100, "brightness while in use", min=1, max=100)
    dim_percent: int = _opt(20, "brightness when idle during opening hours", min=0, max=100)


@dataclass(frozen=True)
class PrinterProfile:
    connection: str = _opt("none", "none, usb, file (/dev/usb/lp0), network or serial",
                           choices=("none", "usb", "file", "network", "serial"))
    devfile: str = _opt("", "device file for file and serial connections")
    host: str = _opt("", "printer host for network")
    port: int = _opt(9100, "printer TCP port for network", min=1, max=65535)
    usb_vendor: int = _opt(0, "USB vendor id for usb (e.g. 0x0416)", min=0, max=0xFFFF)
    usb_product: int = _opt(0, "USB product id for usb", min=0, max=0xFFFF)
    baudrate: int = _opt(9600, "serial speed", choices=(2400, 4800, 9600, 19200, 38400, 57600, 115200))
    width_px: int = _opt(384, "printable width in dots: 384 (58 mm) or 576 (80 mm)", choices=(384, 576))
    timeout_s: float = _opt(5.0, "connect/read timeout", min=0.2, max=60)
    query_status: bool = _opt(True, "ask the printer for paper/cover/online status before printing")
    cut: str = _opt("full", "cut after the slip: full, part or none", choices=("full", "part", "none"))


@dataclass(frozen=True)
class DisplayProfile:
    kind: str = _opt("panel", "panel (the UI's screen), fb (small framebuffer LCD drawn by drivers) or none",
                     choices=("panel", "fb", "none"))
    touch: bool = _opt(True, "the screen takes touches (then bad-rating reasons are chosen on it)")
    device: str = _opt("/dev/fb1", "framebuffer device for kind = fb")
    width: int = _opt(240, "framebuffer width in pixels (fb: 240 or 320)", min=1, max=8192)
    height: int = _opt(240, "framebuffer height in pixels (fb: 240 or 320)", min=1, max=8192)
    rotation: int = _opt(0, "rotate the drawing by this many degrees", choices=(0, 90, 180, 270))


_SECTIONS = {"keys": KeysProfile, "status_led": StatusLedProfile, "feedback": FeedbackProfile,
             "backlight": BacklightProfile, "printer": PrinterProfile, "display": DisplayProfile}


@dataclass(frozen=True)
class Profile:
    name: str = _opt("", "profile name")
    description: str = _opt("", "what board this is")
    simulate: bool = _opt(False, "use the simulated twin of every driver (no hardware touched)")
    reason_flow: str = _opt("", "how a bad rating from keys gets its reasons: screen (touch), keys (soft keys "
                            "on the small display); empty = screen with touch, else keys",
                            choices=("", "screen", "keys"))
    keys: KeysProfile | None = None  # None: no rating keys on this board
    status_led: StatusLedProfile = field(default_factory=StatusLedProfile)
    feedback: FeedbackProfile = field(default_factory=FeedbackProfile)
    backlight: BacklightProfile = field(default_factory=BacklightProfile)
    printer: PrinterProfile = field(default_factory=PrinterProfile)
    display: DisplayProfile = field(default_factory=DisplayProfile)

    @property
    def flow(self) -> str:
        """The reason flow in force: ``screen`` or ``keys``."""
        return self.reason_flow or ("screen" if self.display.touch else "keys")

    def pins(self) -> dict[str, int]:
        """Every pin in use, by dotted key."""
        used: dict[str, int] = {}
        if self.keys is not None:
            used.update({f"keys.pins.{k}": v for k, v in self.keys.pins.items()})
        for section in ("status_led", "feedback"):
            sec = getattr(self, section)
            for f in fields(sec):
                if f.metadata.get("kind") == "pin" and getattr(sec, f.name) is not None:
                    used[f"{section}.{f.name}"] = getattr(sec, f.name)
        return used


# ---- loading -----------------------------------------------------------------------------------

def shipped() -> list[str]:
    """Names of the profiles shipped in drivers/profiles."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name, or a TOML file by path."""
    text = str(name_or_path)
    path = Path(text)
    if "/" not in text and not text.endswith(".toml"):
        path = PROFILES_DIR / f"{text}.toml"
        if not path.exists():
            raise ProfileError([f"no shipped profile {text!r}{_suggest(text, shipped())}"], text)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as e:
        raise ProfileError([f"not a readable TOML file: {e}"], str(path)) from None
    return parse_profile(data, str(path))


def parse_profile(data: Mapping[str, Any], origin: str = "profile") -> Profile:
    """Validate a decoded TOML table; raise ProfileError naming every wrong key."""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise ProfileError(["expected a table"], origin)
    top: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    known = [f.name for f in fields(Profile)]
    for key, value in data.items():
        if key in _SECTIONS:
            if not isinstance(value, Mapping):
                problems.append(f"{key}: expected a table [{key}]")
                continue
            sections[key] = _section(_SECTIONS[key], value, key, problems)
        elif key in known:
            top[key] = value
        else:
            problems.append(f"{key}: unknown key{_suggest(str(key), known)}")
    values = _values(Profile, top, "", problems, skip=set(_SECTIONS))
    if "keys" in sections and sections["keys"] is not None:
        values["keys"] = sections.pop("keys")
    else:
        sections.pop("keys", None)
    values.update({k: v for k, v in sections.items() if v is not None})
    if problems:
        raise ProfileError(problems, origin)
    profile = Profile(**values)
    _cross_checks(profile, problems)
    if problems:
        raise ProfileError(problems, origin)
    return profile


def _section(cls: type, data: Mapping[str, Any], name: str, problems: list[str]) -> Any:
    known = [f.name for f in fields(cls)]
    for key in data:
        if key not in known:
            problems.append(f"{name}.{key}: unknown key{_suggest(str(key), known)}")
    values = _values(cls, {k: v for k, v in data.items() if k in known}, name + ".", problems)
    if cls is KeysProfile and "pins" not in values:
        problems.append(f"{name}.pins: missing (a [keys.pins] table: {', '.join(LEVEL_KEYS)} = pin)")
        return None
    try:
        return cls(**values)
    except TypeError:  # pragma: no cover - every field has a default
        return None


def _values(cls: type, data: Mapping[str, Any], prefix: str, problems: list[str],
            skip: set[str] = frozenset()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    meta = {f.name: f for f in fields(cls)}
    for key, raw in data.items():
        if key in skip:
            continue
        f = meta[key]
        try:
            out[key] = _coerce(raw, f, prefix + key, problems)
        except ValueError as e:
            problems.append(f"{prefix}{key}: {e}")
    return out


def _coerce(raw: Any, f: Any, where: str, problems: list[str]) -> Any:
    m = f.metadata
    kind = m.get("kind")
    if kind == "pin":
        return pin_number(raw)
    if kind == "pins":
        return _pins(raw, where, problems)
    default = f.default
    if isinstance(default, bool):
        if not isinstance(raw, bool):
            raise ValueError(f"expected true or false, got {raw!r}")
        return raw
    if isinstance(default, (int, float)):
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (isinstance(default, int) and
                                                                       not isinstance(default, bool) and
                                                                       not isinstance(raw, int)):
            raise ValueError(f"expected {'an integer' if isinstance(default, int) else 'a number'}, got {raw!r}")
        value = type(default)(raw)
        if m.get("choices") and value not in m["choices"]:
            raise ValueError(f"expected one of {', '.join(map(str, m['choices']))}, got {raw!r}")
        lo, hi = m.get("min"), m.get("max")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"expected a value from {lo} to {hi}, got {raw!r}")
        return value
    if isinstance(default, str):
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {raw!r}")
        if m.get("choices") and raw not in m["choices"]:
            shown = ", ".join(repr(c) if c == "" else c for c in m["choices"])
            raise ValueError(f"expected one of {shown}, got {raw!r}")
        return raw
    raise ValueError(f"unsupported value {raw!r}")  # pragma: no cover - a programming error


def pin_number(raw: Any) -> int:
    """A BCM GPIO number from ``17`` or ``"GPIO17"``; ValueError otherwise."""
    value = raw
    if isinstance(raw, str) and raw.upper().startswith("GPIO") and raw[4:].isdigit() and raw[4:].isascii():
        value = int(raw[4:])
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= GPIO_MAX:
        raise ValueError(f"expected a BCM GPIO number 0–{GPIO_MAX} (or \"GPIO<n>\"), got {raw!r}")
    return value


def _pins(raw: Any, where: str, problems: list[str]) -> dict[str, int]:
    if not isinstance(raw, Mapping):
        raise ValueError("expected a table of key name = pin")
    known = LEVEL_KEYS + EXTRA_KEYS
    out: dict[str, int] = {}
    for key, value in raw.items():
        if key not in known:
            problems.append(f"{where}.{key}: unknown key{_suggest(str(key), known)}")
            continue
        try:
            out[key] = pin_number(value)
        except ValueError as e:
            problems.append(f"{where}.{key}: {e}")
    for level in LEVEL_KEYS:
        if level not in raw:
            problems.append(f"{where}.{level}: missing (every one of the five levels needs a key)")
    return out


def _cross_checks(p: Profile, problems: list[str]) -> None:
    seen: dict[int, str] = {}
    for key, pin in p.pins().items():
        if pin in seen:
            problems.append(f"{key}: pin {pin} is already used by {seen[pin]}")
        else:
            seen[pin] = key
    led = p.status_led
    if led.kind == "mono" and led.pin is None:
        problems.append("status_led.pin: missing (kind = \"mono\" needs a pin)")
    if led.kind == "rgb":
        for colour in ("red", "green", "blue"):
            if getattr(led, colour) is None:
                problems.append(f"status_led.{colour}: missing (kind = \"rgb\" needs red, green and blue)")
    pr = p.printer
    if pr.connection == "network" and not pr.host:
        problems.append("printer.host: missing (connection = \"network\" needs a host)")
    if pr.connection in ("file", "serial") and not pr.devfile:
        problems.append(f"printer.devfile: missing (connection = \"{pr.connection}\" needs a device file)")
    if pr.connection == "usb" and not (pr.usb_vendor and pr.usb_product):
        problems.append("printer.usb_vendor: missing (connection = \"usb\" needs usb_vendor and usb_product)")
    d = p.display
    if d.kind == "fb" and (d.width, d.height) not in FB_SIZES:
        problems.append(f"display.width: {d.width}×{d.height} is not a supported small panel "
                        f"({', '.join(f'{w}×{h}' for w, h in FB_SIZES)})")
    if not d.touch and p.keys is None:
        problems.append("keys: missing (a box without a touch screen needs rating keys)")
    if p.flow == "keys":
        if p.keys is None:
            problems.append("reason_flow: \"keys\" needs a [keys] section")
        if d.kind != "fb":
            problems.append("display.kind: the keys reason flow shows reasons on a small display: "
                            "set kind = \"fb\" (or give the box a touch screen)")
    if d.touch and d.kind != "panel":
        problems.append("display.touch: touch is only supported on the UI's panel (kind = \"panel\")")


def _suggest(word: str, known: Any) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
