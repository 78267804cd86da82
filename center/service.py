"""The center service, assembled: the record (SQLite or PostgreSQL), the MQTT intake and its receipts, the
notices sender, the phone pages (uvicorn), the SMS worker. `python -m center serve --center-file center.toml`
on a center; `python -m center serve --demo …` for `make run` and the tests.

This is the only place that knows all the parts; each part knows only the ones it is given.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from center import accounts
from center.city.delivery import CityDelivery, CityLink
from center.desk import Desk, StaticLimits
from center.followup.alerts import WebhookAlerts
from center.followup.calendar import parse_calendar
from center.followup.clocks import FollowupPolicy
from center.followup.worker import AlertWorker
from center.ledger.intake import Ledger
from center.ledger.record import Record, upsert
from center.notices import NoticeSender
from center.sms.gateway import FileGateway, Gateway, WebhookGateway
from center.sms.schedule import SmsPolicy
from center.sms.worker import SmsWorker
from center.store import Store
from center.store.tables import centers, staff
from center.web.app import create_app
from center.queries import Queries
from center.web.console.ratings import ratings_router
from center.web.data import data_router
from center.web.feed import feed_router, republish
from center.web.console import SERVER_LIMITS, followups, install
from center.web.server import WebServer, free_port
from center.web.settings import WebSettings
from protocol import qrtoken
from protocol.codes import CodeMap

log = logging.getLogger("center")


@dataclass(frozen=True)
class StaffEntry:
    id: str
    name: str
    number: str = ""
    window: str = ""
    title: str = ""


@dataclass(frozen=True)
class ServiceOptions:
    """Everything the service runs with (from the center file, or the demo's flags)."""
    center: str
    center_name: str
    db: str                                  # SQLite path or database URL
    data_dir: Path                           # the demo's generated secrets; photos and the spool by default
    photo_dir: Path | None = None            # default: data_dir/photos
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str = ""
    mqtt_password: str = ""
    mqtt_ca: str | None = None
    mqtt_version: str = "5"
    share: str = ""  # [ledger] share: the service is then one of N ledger workers (docs/deployment.md)
    client_id: str = "center-service"
    web_bind: str = "127.0.0.1"
    web_port: int = 8090
    public_url: str = "http://127.0.0.1:8090"
    https: bool = False
    forwarded_allow_ips: str = "127.0.0.1"
    qr_keys: dict[str, bytes] = field(default_factory=dict)
    static_key_id: str = "s1"
    static_key: bytes = b""
    cookie_secret: bytes = b""
    feed_key: bytes = b""                    # the case system's key for the contact feed; empty: no feed
    limits: StaticLimits = StaticLimits()
    sms: SmsPolicy | None = SmsPolicy()      # None: no SMS follow-up
    gateway: Gateway | None = None           # default: the file gateway in data_dir/sms-spool
    sms_signature: str = "政务服务"
    roster: tuple[StaffEntry, ...] = ()      # staff known before anyone was on duty (titles for the cards)
    windows: frozenset[str] | None = None    # the center's windows (the feed refuses others); None: any
    followup: object = None                  # center.followup.FollowupPolicy; None: no 差评 follow-ups
    alerts: object = None                    # the follow-up alerts' gateway (center.followup.alerts); None: none
    city: object = None                      # center.city.delivery.CityLink; None: no delivery to the city
    codes: object = None                     # protocol.codes.CodeMap for the city's records
    area: str = ""                           # 行政区划 of the center
    center_config: object = None             # the loaded center file: the console and its pairing service
    demo_users: tuple[tuple[str, str, str, str], ...] = ()  # (name, password, role, windows): the demo's console
    tls_cert: str = ""                       # serve https itself (else behind a TLS proxy)
    tls_key: str = ""


class CenterService:
    def __init__(self, o: ServiceOptions):
        self.options = o
        o.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(o.db)
        self.record = Record(self.store, sms_policy=o.sms, tz=o.sms.tz if o.sms else "Asia/Shanghai",
                             followup_policy=o.followup)
        seed(self.store, o)
        mqtt = dict(username=o.mqtt_username, password=o.mqtt_password, mqtt_version=o.mqtt_version)
        self.ledger = Ledger(self.record, o.mqtt_host, o.mqtt_port, o.center, client_id=o.client_id,
                             share=o.share, **mqtt)
        if o.mqtt_ca:
            self.ledger.client.tls_set(ca_certs=o.mqtt_ca)
        # On every (re)connect the center publishes each window's current case and duty again (protocol §4:
        # a broker restored from an older snapshot may hold older retained ones).
        self.notices = NoticeSender(self.store, o.mqtt_host, o.mqtt_port, ca=o.mqtt_ca,
                                    client_id=f"{o.client_id}-notices",
                                    on_connect=lambda: republish(self.store, o.center), **mqtt)
        self.desk = Desk(self.record, limits=o.limits, on_stored=self.notices.wake)
        self.settings = WebSettings(
            centers=frozenset({o.center}), qr_keys=dict(o.qr_keys), static_keys={o.static_key_id: o.static_key},
            photo_dir=o.photo_dir or o.data_dir / "photos", cookie_secret=o.cookie_secret, public_base=o.public_url,
            https=o.https)
        self.app = create_app(self.desk, self.settings)
        self.app.include_router(feed_router(self.record, o.feed_key, center=o.center, windows=o.windows,
                                            wake=self.notices.wake))
        self.app.state.followup_policy = o.followup
        self.registry = self.prov = None
        if o.center_config is not None:
            self._console(o.center_config)
        elif o.demo_users:  # the demo: the console without pairing (no Dynamic Security broker)
            install(self.app, None, self.store, self.settings, center_name=o.center_name,
                    windows=tuple((w, w) for w in sorted(o.windows or ())))
            self.app.include_router(followups.router)
            for name, password, role, wins in o.demo_users:
                if accounts.user(self.store, name) is None:
                    accounts.create_user(self.store, name, password, role, frozenset(wins.split(",")) if wins else None)
        self._data_pages()
        self.alerts = AlertWorker(self.store, o.alerts) if o.alerts is not None else None
        self.city = (CityDelivery(self.store, o.city, o.center, o.codes, area=o.area) if o.city is not None
                     else None)
        tls = dict(ssl_certfile=o.tls_cert, ssl_keyfile=o.tls_key) if o.tls_cert else {}
        self.web = WebServer(self.app, host=o.web_bind, port=o.web_port, proxy_headers=True,
                             forwarded_allow_ips=o.forwarded_allow_ips, server_header=False, **SERVER_LIMITS,
                             **tls)
        self.sms = None
        if o.sms is not None:
            gateway = o.gateway or FileGateway(o.data_dir / "sms-spool")
            self.sms = SmsWorker(self.store, gateway, o.sms, o.public_url, o.sms_signature)

    def _data_pages(self) -> None:
        """The center's own data: the JSON/CSV API (keys or a session) and, with the console, its pages."""
        o = self.options
        queries = Queries(self.store, o.sms.tz if o.sms else "Asia/Shanghai")
        self.app.include_router(data_router(queries, centers=frozenset({o.center})))
        if self.prov is not None or o.demo_users:
            self.app.include_router(ratings_router(queries, o.center))

    def _console(self, cfg) -> None:
        """The staff console and the pairing service it drives (provisioning/), from the center file."""
        from provisioning import brokerconf
        from provisioning.registry import Registry
        from provisioning.service import Provisioner
        self.registry = Registry(cfg.console.db)
        host, port, ca = cfg.service_broker(cfg.console.mqtt_host, cfg.console.mqtt_port)
        self.prov = Provisioner(cfg, self.registry, host=host, port=port, tls_ca=str(ca or ""),
                                password=brokerconf.account_password(cfg, "provisioning"))
        install(self.app, self.prov, self.store, self.settings, center_name=self.options.center_name)
        self.app.include_router(followups.router)  # after install: its pages need the sign-in redirect

    def start(self) -> "CenterService":
        if self.prov:
            self.prov.start()
        self.ledger.start()
        self.notices.start()
        if self.sms:
            self.sms.start()
        if self.alerts:
            self.alerts.start()
        if self.city:
            self.city.start()
        self.web.start()
        log.info("center service for %s: phone pages on http://%s:%d (public %s)", self.options.center,
                 self.options.web_bind, self.web.port, self.options.public_url)
        return self

    def health(self) -> str | None:
        return self.ledger.health() or (self.city.health() if self.city else None)

    def stop(self) -> None:
        self.web.stop()
        if self.sms:
            self.sms.stop()
        if self.alerts:
            self.alerts.stop()
        if self.city:
            self.city.stop()
        self.notices.stop()
        self.ledger.stop()
        if self.prov:
            self.prov.stop()
            self.registry.close()
        self.store.close()


def seed(store: Store, o: ServiceOptions) -> None:
    """The center's own row (the hall code) and its roster; what duty and cases publish adds to it."""
    import time
    now = time.time()
    with store.write() as conn:
        upsert(conn, centers, dict(center=o.center, name=o.center_name, updated=now), ("center",))
        for s in o.roster:
            row = dict(center=o.center, staff_id=s.id, name=s.name, updated=now)
            row.update({k: v for k, v in (("number", s.number), ("window", s.window), ("title", s.title)) if v})
            upsert(conn, staff, row, ("center", "staff_id"))


def secret_file(path: Path, nbytes: int = 32) -> bytes:
    """A hex key from `path`, made (0600, in a 0700 folder) when it is not there yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "x", opener=lambda p, f: __import__("os").open(p, f, 0o600)) as fh:
            fh.write(secrets.token_hex(nbytes) + "\n")
        tmp.replace(path)
        log.info("made a new key in %s", path)
    key = bytes.fromhex(path.read_text().strip())
    if len(key) < 32:
        raise ValueError(f"{path}: a key needs at least 32 bytes (64 hex digits)")
    return key


# The demo's console accounts (printed by `make run`; never in a center file).
DEMO_USERS = (("demo", "demo-password", "admin", ""), ("zhangwei", "demo-password", "supervisor", "W01"))


def demo_options(data_dir: Path, mqtt_port: int, web_port: int = 0, center: str = "demo", bind: str = "127.0.0.1",
                 public_url: str = "") -> ServiceOptions:
    """`make run` and the tests: the published demo QR key, keys made in data_dir, SMS any time of day
    after 30 s (so the demo shows one), a loopback broker without accounts."""
    data_dir.mkdir(parents=True, exist_ok=True)
    web_port = web_port or free_port(bind)
    return ServiceOptions(
        center=center, center_name="演示政务服务中心", db=str(data_dir / "ledger.db"), data_dir=data_dir,
        mqtt_port=mqtt_port, web_bind=bind, web_port=web_port,
        public_url=public_url or f"http://127.0.0.1:{web_port}",
        qr_keys={qrtoken.DEMO_KEY_ID: qrtoken.DEMO_KEY},
        static_key=secret_file(data_dir / "secrets" / "static.key"),
        cookie_secret=secret_file(data_dir / "secrets" / "web-cookie.key"),
        feed_key=secret_file(data_dir / "secrets" / "feed.key"),
        sms=SmsPolicy(delay_s=30, start="00:00", end="23:59"), followup=FollowupPolicy(),
        windows=frozenset({"W01"}), demo_users=DEMO_USERS)


def options_from_center_file(path: str | Path) -> ServiceOptions:
    """The service as the center file says (docs/center-file.md); raises CenterConfigError / OSError."""
    from provisioning import config as center_config
    cfg = center_config.load(path)
    host, port, ca = cfg.service_broker(cfg.ledger.mqtt_host, cfg.ledger.mqtt_port)
    secret = cfg.secret_file(cfg.ledger.account)
    if not secret.exists():
        raise OSError(f"{secret}: no password for the {cfg.ledger.account} account (made by "
                      "`python -m provisioning --center ... broker-config`)")
    w, s = cfg.web, cfg.sms
    start, _, end = s.hours.partition("-")
    policy = SmsPolicy(delay_s=s.delay_min * 60, start=start, end=end, tz=s.timezone,
                       link_ttl_s=s.link_days * 86400) if s.enabled else None
    gateway: Gateway | None = None
    if s.enabled and s.gateway == "webhook":
        gateway = WebhookGateway(s.webhook_url, s.webhook_secret_file.read_bytes().strip())
    elif s.enabled:
        gateway = FileGateway(s.spool_dir)
    roster = tuple(StaffEntry(st.id, st.name, st.number, win.id, st.title) for win in cfg.windows for st in win.staff)
    f = cfg.followup
    followup_policy = FollowupPolicy(contact_days=f.contact_days, answer_days=f.answer_days,
                                     rectify_days=f.rectify_days, tz=s.timezone,
                                     calendar=parse_calendar(f.holidays, f.workdays)) if f.enabled else None
    alert_gateway = (WebhookAlerts(f.alert_webhook_url, f.alert_webhook_secret_file.read_bytes().strip())
                     if f.enabled and f.alert_webhook_url else None)
    return ServiceOptions(
        center=cfg.center.id, center_name=cfg.center.name or cfg.center.id,
        db=cfg.ledger.url or str(cfg.ledger.db), data_dir=w.photo_dir.parent, photo_dir=w.photo_dir, mqtt_host=host, mqtt_port=port,
        mqtt_username=cfg.ledger.account, mqtt_password=secret.read_text().strip(),
        mqtt_ca=str(ca) if ca else None, mqtt_version=cfg.ledger.mqtt_version, share=cfg.ledger.share, web_bind=w.bind, web_port=w.port,
        public_url=w.public_url.rstrip("/"), https=w.https, forwarded_allow_ips=w.forwarded_allow_ips,
        qr_keys=cfg.qr_keys(), static_key_id=w.static_key_id,
        static_key=secret_file(w.static_key_file), cookie_secret=secret_file(w.cookie_secret_file),
        feed_key=secret_file(w.feed_key_file),
        limits=StaticLimits(staff_per_client_s=w.staff_per_phone_h * 3600,
                            staff_per_addr_hour=w.staff_per_address_per_h,
                            hall_per_client_s=w.hall_per_phone_h * 3600, hall_per_addr_hour=w.hall_per_address_per_h),
        sms=policy, gateway=gateway, sms_signature=s.signature, roster=roster, center_config=cfg,
        windows=frozenset(w.id for w in cfg.windows),
        city=CityLink.from_center_file(cfg) if cfg.bridge.enabled else None,
        codes=CodeMap.create(cfg.codes.level_scheme, cfg.codes.channels), area=cfg.codes.area,
        followup=followup_policy, alerts=alert_gateway,
        tls_cert=str(cfg.console.tls_cert or ""), tls_key=str(cfg.console.tls_key or ""))


def staff_rows(store: Store, center: str) -> list:
    with store.read() as conn:
        return conn.execute(select(staff).where(staff.c.center == center).order_by(staff.c.staff_id)).all()
