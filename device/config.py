"""The terminal's configuration: embedded defaults ← main TOML file ← enrolment file ← boot-partition
override ← environment (`HCP_<SECTION>_<KEY>`, e.g. `HCP_MQTT_PORT=8883`).

The core's sections are declared here, `[ui]` in ui/config.py and `[hardware]` in drivers/config.py,
all with the shared mechanism (configuration/): a wrong key or value is reported by its full name, where
it came from and what was expected — all problems at once, not one per restart.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from drivers.config import HardwareSection
from protocol import qrtoken
from protocol.values import Channel
from configuration.schema import LOCAL_HTTP, ConfigurationError, opt, section
from configuration.schema import load as load_layers
from configuration.system import SystemSection
from ui.config import UiSection

MAIN_FILE = Path("/etc/rating-terminal/terminal.toml")
BOOT_OVERRIDE = Path("/boot/firmware/rating-terminal.toml")  # a technician edits this from any laptop
ENROLMENT_FILE = Path("/boot/firmware/hcp-enrolment.toml")    # the center's enrolment file, copied as it is
_ID = r"^[A-Za-z0-9_-]{1,32}$"


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
    hosts: str = opt("", "several brokers (a cluster) as \"host:port, host:port, …\": the terminal connects to the "
                     "first, moves to the next when a connection fails or is lost and stays on one that works; "
                     "empty = host and port", check=lambda v: parse_hosts(v) and None)
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

    def brokers(self) -> list[tuple[str, int]]:
        """The brokers in failover order: `hosts` when set, else `host`:`port`."""
        return parse_hosts(self.hosts) or [(self.host, self.port)]


def parse_hosts(text: str) -> list[tuple[str, int]]:
    """"host:port, host:port" → [(host, port), …]; ValueError naming the entry that is wrong."""
    out: list[tuple[str, int]] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry and not text.strip():
            continue
        host, sep, port = entry.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]  # [::1]:1883
        if not sep or not host or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,253}", host):
            raise ValueError(f"{entry!r} is not host:port (e.g. broker1.example:1883)")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
        out.append((host, int(port)))
    return out


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
    window_target_s: float = opt(10.0, "while draining a backlog, keep as many records in flight as got their "
                                 "receipts over the last N seconds, N being this (at least 8, at most `window`)", min=0.5, max=600)
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
                            "rating URL for the dynamic QR when the case has none; must contain {token}; http:// "
                            "only to a loopback or private address (the demo, a trial on a LAN)",
                            pattern=rf"^(https://|{LOCAL_HTTP})\S*\{{token\}}\S*$")
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
class Config:
    """The terminal's sections, by their TOML names (`[mqtt]` → `cfg.mqtt`)."""

    device: DeviceSection = section(DeviceSection)
    center: CenterSection = section(CenterSection)
    mqtt: MqttSection = section(MqttSection)
    enrolment: EnrolmentSection = section(EnrolmentSection)
    outbox: OutboxSection = section(OutboxSection)
    rating: RatingSection = section(RatingSection)
    case: CaseSection = section(CaseSection)
    qr: QrSection = section(QrSection)
    codes: CodesSection = section(CodesSection)
    limits: LimitsSection = section(LimitsSection)
    ui: UiSection = section(UiSection)
    hardware: HardwareSection = section(HardwareSection)
    system: SystemSection = section(SystemSection)


class ConfigError(ConfigurationError):
    """All problems found in the terminal's configuration, one per line, each naming the key."""

    title = "invalid configuration"


def load(files: list[Path | str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Merge the layers in order; missing files are skipped, a broken one is an error."""
    files = [MAIN_FILE, ENROLMENT_FILE, BOOT_OVERRIDE] if files is None else files
    return load_layers(Config, [Path(f) for f in files], os.environ if env is None else env, env_prefix="HCP_",
                       error=ConfigError)


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


DEMO_QR_KEY = qrtoken.DEMO_KEY  # "demo-only-…", published in docs/protocol.md §10
