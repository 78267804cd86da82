"""The bridge to the city platform (a second Mosquitto stands in for it): MQTT v5 over TLS with topic
remapping; with the city down for the duration of 5,000 ratings and then back, all 5,000 arrive."""
from __future__ import annotations

import json
import secrets

import pytest

from protocol import ids
from devkit.broker import free_port
from devkit.waiting import wait_for
from provisioning import acl
from tests.provisioning.conftest import code_of, paired_idle, start_site, stop_site
from tests.provisioning.helpers import CENTER, Client, city_broker
from tests.provisioning.test_lifecycle import case, rate_open_case

READER = "city-reader"


def device_account(site, device: str) -> tuple[str, str]:
    """A terminal account made the way pairing makes it (own role, bound client id), for bulk publishing."""
    password, client_id = secrets.token_urlsafe(24), f"{device}-{secrets.token_hex(4)}"
    site.prov.dynsec.create_role(acl.device_role(device), acl.device_acls(CENTER, device, "W01"))
    site.prov.dynsec.create_client(device, password, client_id, [acl.device_role(device)])
    return password, client_id


def ratings(device: str, n: int) -> list[bytes]:
    return [json.dumps({"v": 1, "type": "rating", "id": ids.uuid7(), "device": device, "center": CENTER,
                        "window": "W01", "seq": i + 1, "ts": ids.wall_time(), "kind": "hall", "level": "satisfied",
                        "channel": "touch"}).encode() for i in range(n)]


def publish_all(c: Client, topic: str, payloads: list[bytes]) -> None:
    """Pipelined QoS 1 (paho keeps up to 200 in flight); returns once every PUBACK is in and a success."""
    infos = [c.c.publish(topic, p, qos=1) for p in payloads]
    wait_for(lambda: all(i.mid in c.acks for i in infos), 120, "every PUBACK")
    assert all(c.acks[i.mid] < 0x80 for i in infos)


def city_reader(port: int, pki: dict) -> Client:
    return Client(port, READER, "reader-password", ca=str(pki["city_ca"].cert), client_id="city-reader-1", clean=False)


@pytest.fixture
def city(tmp_path, pki):
    port = free_port()
    b = city_broker(tmp_path / "city", port, pki).start()
    yield b, port
    b.stop()


@pytest.fixture
def site(tmp_path, pki, city):
    """In this module the center site bridges to the city (the `enrol` fixture uses it too)."""
    s = start_site(tmp_path / "center", pki, bridge_port=city[1])
    yield s
    stop_site(s)


@pytest.fixture
def bridged(site):
    return site


def test_generated_bridge_settings(bridged):
    conf = (bridged.root / "generated" / "mosquitto.conf").read_text()
    for line in ("bridge_protocol_version mqttv50", "cleansession false", "local_cleansession false",
                 "restart_timeout 1 2", f"topic device/+/rating out 1 hcp/v1/{CENTER}/ city/v1/{CENTER}/",
                 "bridge_insecure false", "allow_anonymous false", "persistence true"):
        assert f"\n{line}\n" in conf, line
    assert "city-bridge-password" not in (bridged.root / "mosquitto.log").read_text()


def test_a_terminals_rating_crosses_the_bridge_remapped(bridged, city, pki, enrol):
    reader = city_reader(city[1], pki)
    assert reader.subscribe(f"city/v1/{CENTER}/device/+/rating") < 0x80
    t = enrol("b1")
    bridged.prov.pair(code_of(t), "W01", "tester")
    paired_idle(t, "W01")
    sys_ = bridged.service("centersys")
    sys_.publish(f"hcp/v1/{CENTER}/window/W01/case", case("W01", "CITY1"), retain=True)
    rate_open_case(t, "CITY1")
    topic, payload = wait_for(lambda: reader.messages("/rating"), 30, "rating at the city")[0]
    assert topic == f"city/v1/{CENTER}/device/b1/rating"
    assert json.loads(payload)["case"] == "CITY1" and json.loads(payload)["id"] == t.state.last_rating_id
    sys_.close()
    reader.close()


def test_city_down_for_5000_ratings_then_back_all_arrive(bridged, city, pki):
    broker, port = city
    reader = city_reader(port, pki)  # a persistent session at the city: it keeps what arrives while away
    assert reader.subscribe(f"city/v1/{CENTER}/device/+/rating") < 0x80
    reader.close()
    broker.stop()
    password, client_id = device_account(bridged, "bulk1")
    dev = bridged.client("bulk1", password, client_id=client_id)
    payloads = ratings("bulk1", 5000)
    publish_all(dev, f"hcp/v1/{CENTER}/device/bulk1/rating", payloads)  # the center broker took all 5,000
    dev.close()
    broker.start()
    reader = city_reader(port, pki)
    want = {json.loads(p)["id"] for p in payloads}
    wait_for(lambda: {json.loads(p)["id"] for _, p in reader.messages("/rating")} >= want, 180, "all 5,000 at the city")
    assert {t for t, _ in reader.messages("/rating")} == {f"city/v1/{CENTER}/device/bulk1/rating"}
    reader.close()


def test_an_undersized_queue_drops_silently_which_is_why_it_is_sized(tmp_path, pki, city):
    """The control: the same outage with a queue sized for one day of one rating (18 messages) loses
    ratings without any error to the publisher — the trap the generated sizing avoids."""
    site = start_site(tmp_path / "small", pki, bridge_port=city[1], ratings_per_day=1)
    try:
        assert "\nmax_queued_messages 18\n" in (site.root / "generated" / "mosquitto.conf").read_text()
        broker, port = city
        reader = city_reader(port, pki)
        assert reader.subscribe(f"city/v1/{CENTER}/device/+/rating") < 0x80
        reader.close()
        broker.stop()
        password, client_id = device_account(site, "bulk2")
        dev = site.client("bulk2", password, client_id=client_id)
        publish_all(dev, f"hcp/v1/{CENTER}/device/bulk2/rating", ratings("bulk2", 100))  # all acknowledged
        dev.close()
        broker.start()
        reader = city_reader(port, pki)
        wait_for(lambda: len(reader.messages("/rating")) >= 18, 60, "what the queue held")
        sentinel = ratings("bulk2", 1)
        dev = site.client("bulk2", password, client_id=client_id)
        publish_all(dev, f"hcp/v1/{CENTER}/device/bulk2/rating", sentinel)  # after the backlog, in order
        wait_for(lambda: any(p == sentinel[0] for _, p in reader.messages("/rating")), 60, "sentinel")
        assert len({p for _, p in reader.messages("/rating")}) < 101
        dev.close()
        reader.close()
    finally:
        stop_site(site)
