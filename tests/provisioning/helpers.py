"""Helpers for the provisioning tests: a PKI, a center file, a center broker from the generated
configuration, a city broker, enrolled terminals and raw MQTT clients with any account."""
from __future__ import annotations

import getpass
import json
import secrets
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devkit import factories
from devkit.broker import Mosquitto, free_port
from devkit.waiting import wait_for
from protocol.transport import no_delay
from provisioning import brokerconf, certs, config as center_config

CENTER = "C1"
W01_STAFF = ", ".join(f'{{id = "{s["id"]}", name = "{s["name"]}", number = "{s["number"]}"}}' for s in factories.STAFF)
WINDOWS = f"""
[[window]]
id = "W01"
name = "W01 综合受理"
staff = [{W01_STAFF}]

[[window]]
id = "W02"
name = "W02 社保"
staff = [{{id = "S0201", name = "赵敏", number = "0201"}}]

[[window]]
id = "W03"
name = "W03 咨询"
"""


def make_pki(root: Path) -> dict[str, certs.Issued]:
    ca = certs.make_ca(root, "Test center CA")
    server = certs.issue(ca, root, "center", hosts=("127.0.0.1", "localhost"))
    city_ca = certs.make_ca(root / "city", "Test city CA")
    city = certs.issue(city_ca, root / "city", "city", hosts=("127.0.0.1", "localhost"))
    return {"ca": ca, "server": server, "city_ca": city_ca, "city": city}


def write_center_file(root: Path, pki: dict, *, bridge_port: int | None = None, ratings_per_day: int = 2000,
                      extra: str = "") -> Path:
    (root / "secrets").mkdir(parents=True, exist_ok=True)
    (root / "secrets" / "qr.key").write_text(secrets.token_hex(32))
    bridge = "[bridge]\nenabled = false\n"
    if bridge_port:
        (root / "secrets" / "city.password").write_text("city-bridge-password\n")
        bridge = (f"[bridge]\nenabled = true\nname = \"city\"\naddress = \"127.0.0.1:{bridge_port}\"\n"
                  f"remote_prefix = \"city/v1/{CENTER}/\"\ncafile = \"{pki['city_ca'].cert}\"\n"
                  "remote_username = \"center-C1\"\nremote_password_file = \"secrets/city.password\"\n"
                  "restart_timeout_min_s = 1\nrestart_timeout_max_s = 2\n"
                  # The bridge mechanism itself is what these tests check (a center delivers ratings with its
                  # city delivery instead: docs/protocol.md §14).
                  'topics_out = ["device/+/rating", "device/+/event"]\n')
    text = f"""
[center]
id = "{CENTER}"
name = "测试中心"
hall_qr_url = "https://hcp.example.gov.cn/hall?c={CENTER}"
staff_qr_template = "https://hcp.example.gov.cn/s?staff={{staff}}"

[qr]
key_id = "t1"
key_file = "secrets/qr.key"

[broker]
host = "127.0.0.1"
port = {free_port()}
bind = "127.0.0.1"
local_port = {free_port()}
cafile = "{pki['ca'].cert}"
certfile = "{pki['server'].cert}"
keyfile = "{pki['server'].key}"
data_dir = "broker-data"
dynsec_file = "broker-data/dynamic-security.json"
log_dest = "file {root}/mosquitto.log"
ratings_per_day = {ratings_per_day}
autosave_interval_s = 5

{bridge}
[console]
url = "http://127.0.0.1/pair"
db = "registry.db"
code_ttl_s = 600
{extra}
{WINDOWS}
"""
    path = root / "center.toml"
    path.write_text(text, "utf-8")
    return path


def center_broker(cfg: center_config.CenterConfig, root: Path) -> Mosquitto:
    brokerconf.generate(cfg, root / "generated", user=getpass.getuser())
    return Mosquitto(root / "generated" / "mosquitto.conf", (cfg.broker.port, cfg.broker.local_port), root / "mosquitto.out")


def city_broker(root: Path, port: int, pki: dict) -> Mosquitto:
    """The stand-in for the city platform: TLS, a password for the center's bridge, persistence."""
    root.mkdir(parents=True, exist_ok=True)
    pw = root / "passwd"
    pw.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "center-C1", "city-bridge-password"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "city-reader", "reader-password"], check=True)
    conf = root / "city.conf"
    conf.write_text(f"""per_listener_settings false
user {getpass.getuser()}
allow_anonymous false
password_file {pw}
listener {port} 127.0.0.1
cafile {pki['city_ca'].cert}
certfile {pki['city'].cert}
keyfile {pki['city'].key}
persistence true
persistence_location {root}/
autosave_interval 1
max_queued_messages 100000
max_queued_bytes 0
max_inflight_messages 1000
log_dest file {root}/city.log
log_type error
log_type warning
log_type notice
""")
    return Mosquitto(conf, (port,), root / "city.out")


class Client:
    """A raw MQTT v5 client with any account, recording what happens to it."""

    def __init__(self, port: int, username: str, password: str, *, ca: str | None = None, client_id: str = "",
                 clean: bool = True):
        self.events: list[tuple] = []
        self.got: list[tuple[str, bytes]] = []
        self.acks: dict[int, int] = {}
        self.subacks: list[list[int]] = []
        self.session_present: bool | None = None  # from the last CONNACK
        self.connected = threading.Event()
        self.done = threading.Event()
        self._lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{secrets.token_hex(4)}",
                        protocol=mqtt.MQTTv5)
        c.username_pw_set(username, password)
        if ca:
            c.tls_set(ca_certs=ca)
        c.on_socket_open = no_delay
        c.max_inflight_messages_set(200)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda cl, ud, fl, rc, pr: (self.events.append(("disconnect", rc.value)), self.connected.clear())
        c.on_message = lambda cl, ud, m: self._got(m)
        c.on_publish = lambda cl, ud, mid, rc, pr: self.acks.__setitem__(mid, rc.value)
        c.on_subscribe = lambda cl, ud, mid, rcs, pr: self.subacks.append([r.value for r in rcs])
        self.c = c
        props = Properties(PacketTypes.CONNECT)
        if not clean:
            props.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", port, clean_start=clean, properties=props)
        c.loop_start()
        wait_for(lambda: self.events, 10, "CONNACK")

    def _on_connect(self, cl, ud, fl, rc, pr) -> None:
        self.session_present = bool(fl.session_present)
        self.events.append(("connack", rc.value))
        if not rc.is_failure:
            self.connected.set()

    def _got(self, m) -> None:
        with self._lock:
            self.got.append((m.topic, m.payload))

    @property
    def refused(self) -> int | None:
        codes = [e[1] for e in self.events if e[0] == "connack"]
        return codes[-1] if codes and codes[-1] >= 0x80 else None

    def subscribe(self, topic: str) -> int:
        """The SUBACK reason code (≥ 0x80: refused)."""
        n = len(self.subacks)
        self.c.subscribe(topic, qos=1)
        wait_for(lambda: len(self.subacks) > n, 10, "SUBACK")
        return self.subacks[n][0]

    def retained(self, topic: str) -> list[tuple[str, bytes]]:
        """The retained messages under `topic` (a filter). A second SUBSCRIBE is answered only after the
        broker has sent the first one's retained messages on the same connection: no guessing a delay."""
        n = len(self.got)
        assert self.subscribe(topic) < 0x80 and self.subscribe(topic) < 0x80
        with self._lock:
            latest = dict(self.got[n:])  # each retained message arrives once per SUBSCRIBE
        return sorted((t, p) for t, p in latest.items() if p)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """The PUBACK reason code (0x87: not authorized)."""
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        wait_for(lambda: info.mid in self.acks, 10, "PUBACK")
        return self.acks[info.mid]

    def messages(self, topic_part: str = "") -> list[tuple[str, bytes]]:
        with self._lock:
            return [(t, p) for t, p in self.got if topic_part in t]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def status_json(payload: bytes) -> dict:
    return json.loads(payload)
