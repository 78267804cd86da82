"""The center file: one TOML file from which the center broker, its accounts, the enrolment file, the
pairing console and the ledger are configured (see provisioning/README.md, center/broker/center.example.toml
and the generated reference docs/center-file.md).

Every key is declared below with the shared mechanism (configuration/), like the terminal's configuration: a
misspelt key or section is an error with a "did you mean", every problem is reported at once, each by its
dotted key. Relative paths are taken relative to the center file's own folder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from protocol.values import Channel
from configuration.schema import ConfigurationError, internal, merge, missing, opt, read_toml, resolve_paths, section

ID = r"^[A-Za-z0-9_-]{1,32}$"


class CenterConfigError(ConfigurationError):
    """All problems found in the center file, one per line, each naming the key."""

    title = "invalid center file"


@dataclass(frozen=True)
class CenterSection:
    id: str = opt("", "center id as used in every topic (`hcp/v1/<id>/…`)", pattern=ID, required=True)
    name: str = opt("", "the center's name, shown in the pairing console")
    hall_qr_url: str = opt("", "hall rating QR (大厅评价) URL the terminals show; empty = none",
                           pattern=r"^(https://\S+)?$")
    staff_qr_template: str = opt("", "staff rating QR (人员评价) URL with {staff} for the staff id; empty = none",
                                 pattern=r"^(https://\S*\{staff\}\S*)?$")


@dataclass(frozen=True)
class QrSection:
    key_id: str = opt("k1", "id of the QR signing key (docs/protocol.md §10)", pattern=r"^[A-Za-z0-9_-]{1,16}$")
    key_file: Path = opt(Path("secrets/qr.key"), "file holding the hex QR signing key (≥ 32 bytes), sent sealed "
                         "to every paired terminal")
    url_template: str = opt("https://hcp.example.gov.cn/r?t={token}", "rating URL of the dynamic QR; must "
                            "contain {token}", pattern=r"^https://\S*\{token\}\S*$")
    ttl_s: int = opt(86400, "how long a QR token stays valid", min=60, max=30 * 86400)
    retired: tuple[str, ...] = opt((), "keys replaced by key_id/key_file that the center service still accepts "
                                   "until the last token they signed has expired (ttl_s after the rotation): "
                                   "`\"<key id>=<key file>\"` each", check=lambda v: _retired(v))


@dataclass(frozen=True)
class BrokerSection:
    host: str = opt("", "the name terminals connect to (must be in the server certificate)", required=True)
    port: int = opt(8883, "TLS listener for terminals", min=1, max=65535)
    bind: str = opt("0.0.0.0", "address of the TLS listener")
    local_port: int = opt(1883, "loopback listener for the center's services (ledger, pairing service); 0 = none",
                          min=0, max=65535)
    cafile: Path = opt(Path(), "CA certificate (PEM) of the broker's server certificate", required=True)
    certfile: Path = opt(Path(), "the broker's server certificate (PEM)", required=True)
    keyfile: Path = opt(Path(), "the broker's server key (PEM)", required=True)
    data_dir: Path = opt(Path("/var/lib/mosquitto"), "the broker's persistence folder")
    dynsec_file: Path = opt(Path("/var/lib/mosquitto/dynamic-security.json"), "the Dynamic Security account "
                            "database (written once; the broker keeps it up to date)")
    plugin: str = opt("", "path of mosquitto_dynamic_security.so; empty = found in the usual places")
    user: str = opt("mosquitto", "system user the broker runs as (owns the generated files)",
                    pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    log_dest: str = opt("syslog", "Mosquitto log_dest")
    ratings_per_day: int = opt(20000, "ratings of the whole center on a busy day; sizes the queues …",
                               min=1, max=10_000_000)
    outage_days: int = opt(7, "… for an outage of the city platform this long", min=1, max=60)
    autosave_interval_s: int = opt(30, "the broker saves its state this often", min=1, max=3600)
    session_expiry_days: int = opt(14, "a terminal's session survives this long offline", min=1, max=365)


@dataclass(frozen=True)
class BridgeSection:
    enabled: bool = opt(False, "bridge to the city 好差评 platform")
    name: str = opt("city", "connection name", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    address: str = opt("", "host:port of the city's broker (required when enabled)")
    protocol: str = opt("5", "MQTT version towards the city: 5, or 3.1.1 for a broker without v5",
                        choices=("5", "3.1.1"))
    remote_prefix: str = opt("", "the city's topic prefix for this center, ending in / (required when enabled; "
                             "the local prefix is `hcp/v1/<id>/`)")
    remote_clientid: str = opt("", "client id at the city; empty = `<center id>-center`")
    cafile: Path | None = opt(None, "CA certificate (PEM) of the city's broker (required when enabled)")
    certfile: Path | None = opt(None, "client certificate (PEM), if the city wants one (then keyfile too)")
    keyfile: Path | None = opt(None, "client key (PEM)")
    remote_username: str = opt("", "user name at the city, if it wants one")
    remote_password_file: Path | None = opt(None, "file holding that user's password")
    restart_timeout_min_s: int = opt(5, "reconnect backoff, jittered: shortest", min=1, max=3600)
    restart_timeout_max_s: int = opt(300, "reconnect backoff: longest (≥ restart_timeout_min_s)", min=1, max=3600)
    keepalive_s: int = opt(60, "MQTT keepalive towards the city", min=5, max=3600)
    topics_out: tuple[str, ...] = opt(("device/+/event",), "topics (below `hcp/v1/<id>/`) the broker's bridge "
                                      "forwards to the city; ratings are not among them: the center service "
                                      "delivers them itself with receipts (docs/protocol.md §14)")
    topics_in: tuple[str, ...] = opt((), "topics taken from the city")


@dataclass(frozen=True)
class ConsoleSection:
    url: str = opt("", "what the terminals' pairing QR opens (the center service's `<[web] public_url>/console/pair`); "
                   "empty = no pairing QR. The console itself is served by the center service ([web] bind/port)",
                   pattern=r"^(https?://\S+)?$")
    db: Path = opt(Path("registry.db"), "the registry (terminals, staff accounts, audit log)")
    tls_cert: Path | None = opt(None, "server certificate (PEM) for the center service to serve https itself "
                                "(its console and phone pages); else put a TLS reverse proxy in front")
    tls_key: Path | None = opt(None, "its key (PEM)")
    code_ttl_s: int = opt(600, "a pairing code is valid this long", min=60, max=86400)
    max_pending: int = opt(256, "announcements waiting for pairing, at most", min=1, max=100_000)
    mqtt_host: str = opt("", "broker host of the pairing service; empty = 127.0.0.1 for the loopback listener, "
                         "[broker] host for the TLS one")
    mqtt_port: int = opt(0, "its broker port; 0 = [broker] local_port, or port (TLS) when that is 0",
                         min=0, max=65535)


@dataclass(frozen=True)
class LedgerSection:
    db: Path = opt(Path("ledger.db"), "the ledger's SQLite database (one hall)")
    url: str = opt("", "a database URL instead, e.g. postgresql+psycopg://hcp@db.example/hcp (a district); "
                   "empty = the SQLite file `db`", secret=True, pattern=r"^((sqlite|postgresql(\+psycopg)?)://\S+)?$")
    account: str = opt("ledger", "its broker account (the password is in [accounts] secrets_dir)",
                       pattern=r"^[A-Za-z0-9_-]{1,32}$")
    mqtt_host: str = opt("", "broker host; empty = 127.0.0.1 for the loopback listener, [broker] host for the "
                         "TLS one")
    mqtt_port: int = opt(0, "broker port; 0 = [broker] local_port, or port (TLS) when that is 0",
                         min=0, max=65535)
    mqtt_version: str = opt("5", "MQTT version: 5, or 3.1.1 (no reason codes; receipts are the only "
                            "acknowledgement)", choices=("5", "3.1.1"))
    share: str = opt("", "one of N ledger workers on Mosquitto: the shared-subscription group they share the "
                     "terminals' records in (docs/deployment.md); empty = one ledger", pattern=r"^([A-Za-z0-9_-]{1,32})?$")


@dataclass(frozen=True)
class WebSection:
    bind: str = opt("127.0.0.1", "address of the center service's web server (the phone pages); put a TLS "
                    "reverse proxy in front")
    port: int = opt(8090, "its port", min=1, max=65535)
    public_url: str = opt("https://hcp.example.gov.cn", "the address citizens' phones reach it at (SMS links, "
                          "printed staff and hall codes); the dynamic QR's is [qr] url_template",
                          pattern=r"^https?://[^\s/]+(/\S*)?$")
    https: bool = opt(True, "served over HTTPS (by the proxy): Secure cookies and HSTS")
    forwarded_allow_ips: str = opt("127.0.0.1", "addresses of the reverse proxies whose X-Forwarded-For is "
                                   "believed (the per-address limits of the staff and hall codes need the "
                                   "citizen's address, not the proxy's)")
    photo_dir: Path = opt(Path("photos"), "where phone photos are kept (re-encoded; never served)")
    cookie_secret_file: Path = opt(Path("secrets/web-cookie.key"), "hex key signing the phone cookie (made on "
                                   "first start when missing, mode 0600)")
    static_key_id: str = opt("s1", "id of the key signing the printed staff and hall codes",
                             pattern=r"^[A-Za-z0-9_-]{1,16}$")
    static_key_file: Path = opt(Path("secrets/static.key"), "hex key (≥ 32 bytes) signing the printed codes "
                                "(made on first start when missing; changing it voids every printed card)")
    feed_key_file: Path = opt(Path("secrets/feed.key"), "hex key the case system presents (Bearer) when it "
                              "hands over an applicant's phone number (made on first start when missing)")
    staff_per_phone_h: int = opt(12, "a phone may rate one staff member once in this many hours", min=0,
                                 max=24 * 30)
    staff_per_address_per_h: int = opt(20, "ratings of one staff member from one address per hour", min=1,
                                       max=100_000)
    hall_per_phone_h: int = opt(24, "a phone may rate the hall once in this many hours", min=0, max=24 * 30)
    hall_per_address_per_h: int = opt(60, "hall ratings from one address per hour", min=1, max=100_000)


@dataclass(frozen=True)
class SmsSection:
    enabled: bool = opt(True, "send the SMS follow-up (短信补评) for cases closed unrated")
    gateway: str = opt("file", "`file`: write each message to spool_dir (a provider adapter picks them up); "
                       "`webhook`: POST it, signed, to webhook_url", choices=("file", "webhook"))
    spool_dir: Path = opt(Path("sms-spool"), "the file gateway's folder")
    webhook_url: str = opt("", "the webhook gateway's address (required with gateway = webhook)",
                           pattern=r"^(https?://\S+)?$")
    webhook_secret_file: Path | None = opt(None, "file holding the webhook's HMAC secret (required with "
                                           "gateway = webhook)")
    signature: str = opt("政务服务", "the registered SMS signature, shown as 【…】", pattern=r"^[^【】]{1,12}$")
    delay_min: int = opt(10, "minutes after a case closed unrated before the SMS", min=0, max=7 * 24 * 60)
    hours: str = opt("08:00-20:00", "sending hours (center's local time); later messages wait for the next "
                     "morning", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$")
    timezone: str = opt("Asia/Shanghai", "the center's time zone")
    link_days: int = opt(7, "an SMS link stops working this many days after it is sent (and at once when the "
                         "case is rated)", min=1, max=90)


@dataclass(frozen=True)
class CodesSection:
    """How the center's records are numbered for the city platform (docs/protocol.md §5, §14)."""
    level_scheme: str = opt("gbt39046", "level numbering at export: gbt39046 (1 = 非常满意) or "
                            "provincial (1 = 非常不满意)", choices=("gbt39046", "provincial"))
    channels: dict[str, int] = opt(None, "channel name → platform channel code (pf), e.g. sms = 6", min=0, max=99,
                                   choices=tuple(c.value for c in Channel))
    area: str = opt("", "the center's administrative division code (行政区划, ≤ 9 digits)", pattern=r"^[0-9]{0,9}$")


@dataclass(frozen=True)
class FollowupSection:
    enabled: bool = opt(True, "every 差评 opens a follow-up (整改) with its clocks")
    contact_days: int = opt(1, "working days to contact the citizen and verify", min=1, max=60)
    answer_days: int = opt(5, "working days to answer", min=1, max=60)
    rectify_days: int = opt(15, "working days to rectify", min=1, max=120)
    holidays: tuple[str, ...] = opt((), "public holidays: ISO dates or `YYYY-MM-DD..YYYY-MM-DD` ranges")
    workdays: tuple[str, ...] = opt((), "make-up working days (调休) on weekends, same forms")
    alert_webhook_url: str = opt("", "alerts to the window's supervisors (a follow-up opened, a clock overdue) "
                                 "POSTed here, signed like the SMS webhook; empty = no alerts",
                                 pattern=r"^(https?://\S+)?$")
    alert_webhook_secret_file: Path | None = opt(None, "file holding that webhook's HMAC secret")


@dataclass(frozen=True)
class AccountsSection:
    secrets_dir: Path = opt(Path("secrets"), "service account passwords (`<account>.password`), made once, "
                            "mode 0600")


@dataclass(frozen=True)
class Staff:
    id: str = opt("", "staff id", pattern=ID, required=True)
    name: str = opt("", "name shown on the terminal (≤ 32 characters)", pattern=r"^.{1,32}$", required=True)
    number: str = opt("", "work number (工号, ≤ 16 characters)", pattern=r"^.{0,16}$")
    title: str = opt("", "title printed on the staff code card (e.g. 综合受理员, ≤ 32 characters)",
                     pattern=r"^.{0,32}$")

    def message(self) -> dict:
        return {"id": self.id, "name": self.name, **({"number": self.number} if self.number else {})}


@dataclass(frozen=True)
class Window:
    id: str = opt("", "window id as used in topics", pattern=ID, required=True)
    name: str = opt("", "window name shown on the terminal (≤ 32 characters)", pattern=r"^.{1,32}$",
                    required=True)
    staff: tuple[Staff, ...] = opt((), "staff on duty at this window (inline tables)")


@dataclass(frozen=True)
class CenterConfig:
    """The center file's sections, by their TOML names (`[broker]` → `cfg.broker`); `[[window]]` → `windows`."""

    center: CenterSection = section(CenterSection)
    qr: QrSection = section(QrSection)
    broker: BrokerSection = section(BrokerSection)
    bridge: BridgeSection = section(BridgeSection)
    console: ConsoleSection = section(ConsoleSection)
    ledger: LedgerSection = section(LedgerSection)
    accounts: AccountsSection = section(AccountsSection)
    web: WebSection = section(WebSection)
    sms: SmsSection = section(SmsSection)
    followup: FollowupSection = section(FollowupSection)
    codes: CodesSection = section(CodesSection)
    windows: tuple[Window, ...] = opt((), "the windows of the center", key="window")
    path: Path = internal(Path())  # the center file itself

    def window(self, wid: str) -> Window | None:
        return next((w for w in self.windows if w.id == wid), None)

    def secret_file(self, account: str) -> Path:
        return self.accounts.secrets_dir / f"{account}.password"

    def qr_key(self) -> bytes:
        return _hex_key(self.qr.key_file, "qr.key_file")

    def qr_keys(self) -> dict[str, bytes]:
        """Every key a dynamic QR token may be signed with, by key id: the current one and the retired ones."""
        keys = {}
        for entry in self.qr.retired:
            key_id, _, path = entry.partition("=")
            file = Path(path) if Path(path).is_absolute() else self.path.parent / path
            keys[key_id] = _hex_key(file, "qr.retired")
        keys[self.qr.key_id] = self.qr_key()
        return keys

    def service_broker(self, host: str, port: int) -> tuple[str, int, Path | None]:
        """(host, port, CA file or None) a center service connects to, from its `mqtt_host`/`mqtt_port`:
        by default the loopback listener, or the TLS listener (with its CA) when there is none."""
        port = port or self.broker.local_port or self.broker.port
        tls = port == self.broker.port
        return host or (self.broker.host if tls else "127.0.0.1"), port, self.broker.cafile if tls else None


def _hex_key(path: Path, key: str) -> bytes:
    try:
        value = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as e:
        raise CenterConfigError([f"{key}: {path}: not a readable hex key ({e})"]) from None
    if len(value) < 32:
        raise CenterConfigError([f"{key}: {path} holds fewer than 32 bytes"])
    return value


def _retired(entries: tuple[str, ...]) -> None:
    for entry in entries:
        key_id, sep, path = entry.partition("=")
        if not sep or not path or not re.fullmatch(r"[A-Za-z0-9_-]{1,16}", key_id):
            raise ValueError(f"{entry!r}: expected \"<key id>=<key file>\"")


def load(path: str | Path) -> CenterConfig:
    """The center file at `path`, checked; raises CenterConfigError naming every problem."""
    path = Path(path).resolve()
    problems: list[str] = []
    data = read_toml(path, problems)
    if data is None:
        raise CenterConfigError(problems)
    cfg = merge(CenterConfig(), data, str(path), problems)
    problems += missing(cfg, problems) + _whole(cfg)
    if problems:
        raise CenterConfigError(problems)
    return replace(resolve_paths(cfg, path.parent), path=path)


def _whole(cfg: CenterConfig) -> list[str]:
    """Problems of the file as a whole (keys that depend on each other)."""
    problems = []
    if not cfg.windows:
        problems.append("window: at least one [[window]] is needed")
    if len({w.id for w in cfg.windows}) != len(cfg.windows):
        problems.append("window: ids must be unique")
    b = cfg.bridge
    if b.enabled:
        for key in ("address", "remote_prefix", "cafile"):
            if not getattr(b, key):
                problems.append(f"bridge.{key}: required when the bridge is enabled")
        if b.remote_prefix and not b.remote_prefix.endswith("/"):
            problems.append("bridge.remote_prefix: must end with /")
        if b.restart_timeout_min_s > b.restart_timeout_max_s:
            problems.append("bridge.restart_timeout_min_s: must not exceed restart_timeout_max_s")
        if bool(b.certfile) != bool(b.keyfile):
            problems.append("bridge.keyfile: certfile and keyfile go together")
    if cfg.sms.enabled and cfg.sms.gateway == "webhook":
        for key in ("webhook_url", "webhook_secret_file"):
            if not getattr(cfg.sms, key):
                problems.append(f"sms.{key}: required with gateway = webhook")
    try:
        ZoneInfo(cfg.sms.timezone)
    except (ValueError, ZoneInfoNotFoundError):
        problems.append(f"sms.timezone: unknown time zone {cfg.sms.timezone!r} (e.g. Asia/Shanghai)")
    start, _, end = cfg.sms.hours.partition("-")
    if start >= end:
        problems.append(f"sms.hours: the start {start} must be before the end {end}")
    if cfg.followup.alert_webhook_url and not cfg.followup.alert_webhook_secret_file:
        problems.append("followup.alert_webhook_secret_file: required with alert_webhook_url")
    if bool(cfg.console.tls_cert) != bool(cfg.console.tls_key):
        problems.append("console.tls_key: tls_cert and tls_key go together")
    return problems
