"""The center file: one TOML file from which the center broker, its accounts, the enrolment file and
the pairing console are configured (see provisioning/README.md and center/broker/center.example.toml).

Relative paths are taken relative to the center file's own folder. Every problem is reported at once.
"""
from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


class CenterConfigError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("invalid center file:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Staff:
    id: str
    name: str
    number: str = ""

    def message(self) -> dict:
        return {"id": self.id, "name": self.name, **({"number": self.number} if self.number else {})}


@dataclass(frozen=True)
class Window:
    id: str
    name: str
    staff: tuple[Staff, ...] = ()


@dataclass(frozen=True)
class CenterConfig:
    path: Path
    center: str
    name: str
    hall_qr_url: str
    staff_qr_template: str
    qr_key_id: str
    qr_key_file: Path
    qr_url_template: str
    qr_ttl_s: int
    broker_host: str
    broker_port: int
    broker_bind: str
    local_port: int
    cafile: Path
    certfile: Path
    keyfile: Path
    data_dir: Path
    dynsec_file: Path
    plugin: str
    user: str
    log_dest: str
    ratings_per_day: int
    outage_days: int
    autosave_interval_s: int
    session_expiry_days: int
    bridge: dict[str, Any]
    console: dict[str, Any]
    secrets_dir: Path
    windows: tuple[Window, ...] = field(default=())

    def window(self, wid: str) -> Window | None:
        return next((w for w in self.windows if w.id == wid), None)

    def secret_file(self, account: str) -> Path:
        return self.secrets_dir / f"{account}.password"

    def qr_key(self) -> bytes:
        key = bytes.fromhex(self.qr_key_file.read_text().strip())
        if len(key) < 32:
            raise CenterConfigError([f"qr.key_file: {self.qr_key_file} holds fewer than 32 bytes"])
        return key


class _Reader:
    def __init__(self, data: dict, base: Path):
        self.data, self.base, self.problems = data, base, []

    def get(self, section: str, key: str, default: Any = None, *, kind: type = str, pattern: str | None = None,
            lo: float | None = None, hi: float | None = None, required: bool = False) -> Any:
        table = self.data.get(section, {})
        if not isinstance(table, dict):
            self.problems.append(f"[{section}]: expected a table")
            return default
        if key not in table:
            if required:
                self.problems.append(f"{section}.{key}: required")
            return default
        value = table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            self.problems.append(f"{section}.{key}: expected {kind.__name__}, got {type(value).__name__}")
            return default
        if kind is str and pattern and not re.fullmatch(pattern, value):
            self.problems.append(f"{section}.{key}: {value!r} does not match {pattern}")
        if kind in (int, float) and ((lo is not None and value < lo) or (hi is not None and value > hi)
                                     or not math.isfinite(value)):
            self.problems.append(f"{section}.{key}: expected {lo} … {hi}, got {value}")
        return value

    def path(self, section: str, key: str, default: str = "", required: bool = False) -> Path:
        value = self.get(section, key, default, required=required)
        return (self.base / value) if value else Path()


def load(path: str | Path) -> CenterConfig:
    path = Path(path).resolve()
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CenterConfigError([f"{path}: {e}"]) from None
    r = _Reader(data, path.parent)
    known = {"center", "qr", "broker", "bridge", "console", "accounts", "window"}
    r.problems += [f"[{s}]: unknown section (known: {', '.join(sorted(known))})" for s in data if s not in known]
    windows = []
    for i, w in enumerate(data.get("window", [])):
        if not isinstance(w, dict) or not ID.fullmatch(str(w.get("id", ""))) or not isinstance(w.get("name"), str):
            r.problems.append(f"window[{i}]: needs id ([A-Za-z0-9_-]{{1,32}}) and name")
            continue
        staff = []
        for s in w.get("staff", []):
            if not isinstance(s, dict) or not ID.fullmatch(str(s.get("id", ""))) or not s.get("name"):
                r.problems.append(f"window {w['id']}: staff entries need id and name")
                continue
            staff.append(Staff(s["id"], str(s["name"])[:32], str(s.get("number", ""))[:16]))
        windows.append(Window(w["id"], w["name"][:32], tuple(staff)))
    if len({w.id for w in windows}) != len(windows):
        r.problems.append("window: ids must be unique")
    bridge = dict(data.get("bridge", {})) if isinstance(data.get("bridge", {}), dict) else {}
    for key in ("cafile", "certfile", "keyfile", "remote_password_file"):
        if bridge.get(key):
            bridge[key] = path.parent / bridge[key]
    if bridge.get("enabled", False):
        for key in ("address", "remote_prefix", "cafile"):
            if not bridge.get(key):
                r.problems.append(f"bridge.{key}: required when the bridge is enabled")
        if bridge.get("remote_prefix") and not str(bridge["remote_prefix"]).endswith("/"):
            r.problems.append("bridge.remote_prefix: must end with /")
        if bridge.get("protocol", "5") not in ("5", "3.1.1"):
            r.problems.append(f"bridge.protocol: expected \"5\" or \"3.1.1\" (a string), got {bridge['protocol']!r}")
        lo, hi = bridge.get("restart_timeout_min_s", 5), bridge.get("restart_timeout_max_s", 300)
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi <= 3600):
            r.problems.append("bridge.restart_timeout_min_s/max_s: integers, 1 ≤ min ≤ max ≤ 3600")
    console = dict(data.get("console", {})) if isinstance(data.get("console", {}), dict) else {}
    for key in ("db", "tls_cert", "tls_key"):
        if console.get(key):
            console[key] = path.parent / console[key]
    cfg = CenterConfig(
        path=path,
        center=r.get("center", "id", required=True, pattern=ID.pattern),
        name=r.get("center", "name", ""),
        hall_qr_url=r.get("center", "hall_qr_url", "", pattern=r"(https://\S+)?"),
        staff_qr_template=r.get("center", "staff_qr_template", "", pattern=r"(https://\S*\{staff\}\S*)?"),
        qr_key_id=r.get("qr", "key_id", "k1", pattern=r"[A-Za-z0-9_-]{1,16}"),
        qr_key_file=r.path("qr", "key_file", "secrets/qr.key"),
        qr_url_template=r.get("qr", "url_template", "https://hcp.example.gov.cn/r?t={token}",
                              pattern=r"https://\S*\{token\}\S*"),
        qr_ttl_s=r.get("qr", "ttl_s", 86400, kind=int, lo=60, hi=30 * 86400),
        broker_host=r.get("broker", "host", required=True),
        broker_port=r.get("broker", "port", 8883, kind=int, lo=1, hi=65535),
        broker_bind=r.get("broker", "bind", "0.0.0.0"),
        local_port=r.get("broker", "local_port", 1883, kind=int, lo=0, hi=65535),
        cafile=r.path("broker", "cafile", required=True),
        certfile=r.path("broker", "certfile", required=True),
        keyfile=r.path("broker", "keyfile", required=True),
        data_dir=r.path("broker", "data_dir", "/var/lib/mosquitto"),
        dynsec_file=r.path("broker", "dynsec_file", "/var/lib/mosquitto/dynamic-security.json"),
        plugin=r.get("broker", "plugin", ""),
        user=r.get("broker", "user", "mosquitto", pattern=r"[a-z_][a-z0-9_-]{0,31}"),
        log_dest=r.get("broker", "log_dest", "syslog"),
        ratings_per_day=r.get("broker", "ratings_per_day", 20000, kind=int, lo=1, hi=10_000_000),
        outage_days=r.get("broker", "outage_days", 7, kind=int, lo=1, hi=60),
        autosave_interval_s=r.get("broker", "autosave_interval_s", 30, kind=int, lo=1, hi=3600),
        session_expiry_days=r.get("broker", "session_expiry_days", 14, kind=int, lo=1, hi=365),
        bridge=bridge,
        console=console,
        secrets_dir=r.path("accounts", "secrets_dir", "secrets"),
        windows=tuple(windows),
    )
    if not windows:
        r.problems.append("window: at least one [[window]] is needed")
    if r.problems:
        raise CenterConfigError(r.problems)
    return cfg
