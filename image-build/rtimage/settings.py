"""The boot partition's settings file (`rating-terminal.toml`): made from the stamp's options, checked with
the terminal's own configuration loader, shown with its secrets masked.

Needs the repository on sys.path (device/, configuration/, drivers/).
"""
from __future__ import annotations

import re
import tempfile
import tomllib
from dataclasses import fields, is_dataclass
from pathlib import Path

from configuration.schema import declared, toml_name
from configuration.system import problems as system_problems


class SettingsError(Exception):
    """The settings or the enrolment file would not work on a terminal; one problem a line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and every control character (DEL included) escaped."""
    return '"' + "".join(_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7f else c)
                         for c in value) + '"'


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value")


def render(tables: dict[str, dict[str, object]]) -> str:
    """`{section: {key: value}}` as a TOML document (sections and keys in the given order)."""
    out = ["# Site settings of this terminal (image-build/README.md, docs/configuration.md); edit from any",
           "# laptop: the terminal reads this file at every boot."]
    for name, keys in tables.items():
        if keys:
            out += ["", f"[{name}]"] + [f"{k} = {toml_value(v)}" for k, v in keys.items()]
    return "\n".join(out) + "\n"


def parse_broker(text: str) -> tuple[str, int]:
    """`host:port` (`[v6]:port`) → (host, port)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([A-Za-z0-9.-]+):(\d{1,5})", text.strip())
    if not m:
        raise SettingsError([f"--broker: expected host:port (e.g. mqtt.center.example:8883), got {text!r}"])
    host, port = (m[1], m[2]) if m[1] else (m[3], m[4])
    if not 1 <= int(port) <= 65535:
        raise SettingsError([f"--broker: port {port} is not between 1 and 65535"])
    return host, int(port)


def from_options(*, broker: str | None = None, ca_pem: str | None = None, wifi_ssid: str | None = None,
                 wifi_psk: str | None = None, hardware: str | None = None, timezone: str | None = None,
                 hostname: str | None = None, ssh_keys: list[str] | None = None) -> str:
    """The settings file for the stamp's options (only what was given)."""
    mqtt: dict[str, object] = {}
    if broker:
        mqtt["host"], mqtt["port"] = parse_broker(broker)
    if ca_pem:
        mqtt["tls"], mqtt["ca_pem"] = True, ca_pem
    system: dict[str, object] = {}
    for key, value in (("hostname", hostname), ("timezone", timezone), ("wifi_ssid", wifi_ssid),
                       ("wifi_psk", wifi_psk)):
        if value is not None:
            system[key] = value
    if ssh_keys:
        system["ssh_authorized_keys"] = ssh_keys
    return render({"mqtt": mqtt, "hardware": {"profile": hardware} if hardware else {}, "system": system})


def validate(settings: str, enrolment: str | None) -> list[str]:
    """Every problem the terminal would report for these two boot-partition files, named by key
    (`--check-config` of the terminal, plus what the image's site-apply checks)."""
    from device.config import ConfigError, check, load

    with tempfile.TemporaryDirectory() as tmp:
        files = []
        if enrolment is not None:
            (Path(tmp) / "hcp-enrolment.toml").write_text(enrolment, "utf-8")
            files.append(Path(tmp) / "hcp-enrolment.toml")
        (Path(tmp) / "rating-terminal.toml").write_text(settings, "utf-8")
        files.append(Path(tmp) / "rating-terminal.toml")
        try:
            cfg = load(files, env={})
        except ConfigError as e:
            return [p.replace(tmp + "/", "") for p in e.problems] + profile_problems(settings)
    problems = check(cfg) + system_problems(cfg.system) + profile_problems(settings)
    if enrolment is not None and not cfg.enrolment.username:
        problems.append("hcp-enrolment.toml: not a center enrolment file (no [enrolment] username); "
                        "make it with `python -m provisioning … broker-config`")
    return problems


def profile_problems(settings: str) -> list[str]:
    """A shipped hardware profile named in the settings must exist (a path is on the card: not checked)."""
    from drivers.profile import ProfileError, load_profile

    try:
        hardware = tomllib.loads(settings).get("hardware", {})
    except tomllib.TOMLDecodeError:
        return []
    profile = hardware.get("profile") if isinstance(hardware, dict) else None
    if not isinstance(profile, str) or not profile or "/" in profile or profile.endswith(".toml"):
        return []
    try:
        load_profile(profile)
    except (ProfileError, OSError) as e:
        return [f"hardware.profile: {e}"]
    return []


def secret_keys() -> set[str]:
    """Dotted names (`mqtt.password`) of every secret key of the terminal's configuration."""
    from device.config import Config

    out = set()
    for f, typ in declared(Config):
        if is_dataclass(typ):
            out |= {f"{toml_name(f)}.{g.name}" for g in fields(typ) if g.metadata.get("secret")}
    return out


def masked(text: str) -> str:
    """A TOML file with the values of secret keys replaced by ***, for showing on a screen."""
    secrets, section, out = secret_keys(), "", []
    for line in text.splitlines():
        head = re.match(r"\s*\[([A-Za-z0-9_.-]+)\]\s*(#.*)?$", line)
        if head:
            section = head[1]
        key = re.match(r"\s*([A-Za-z0-9_-]+)\s*=", line)
        if key and f"{section}.{key[1]}" in secrets:
            line = f"{line[:key.end()]} \"***\""
        out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")
