"""The generated bridge at MQTT 3.1.1 (`[bridge] protocol = "3.1.1"` in the center file), to a city broker
that speaks only 3.1.1: a real nats-server with its MQTT gateway, TLS and a password, as the city."""
from __future__ import annotations

import json

import pytest

from devkit.broker import NATS, NatsServer
from devkit.waiting import wait_for
from provisioning import brokerconf
from provisioning import config as center_config
from provisioning.registry import Registry
from provisioning.service import Provisioner
from tests.provisioning.conftest import CenterSite, stop_site
from tests.provisioning.helpers import CENTER, center_broker, write_center_file
from tests.provisioning.test_bridge import device_account, publish_all, ratings
from tests.test_interop import Center311


def center_file_311(root, pki, city_port: int):
    path = write_center_file(root, pki, bridge_port=city_port)
    text = path.read_text("utf-8")
    path.write_text(text.replace("[bridge]\nenabled = true\n", '[bridge]\nenabled = true\nprotocol = "3.1.1"\n'),
                    "utf-8")
    return path


def test_bridge_protocol_is_a_center_file_setting(tmp_path, pki):
    cfg = center_config.load(center_file_311(tmp_path, pki, 18883))
    conf = brokerconf.mosquitto_conf(cfg, user="nobody")
    assert "\nbridge_protocol_version mqttv311\n" in conf and "mqttv50" not in conf
    path = write_center_file(tmp_path / "v5", pki, bridge_port=18883)
    assert "\nbridge_protocol_version mqttv50\n" in brokerconf.mosquitto_conf(center_config.load(path), user="nobody")
    bad = path.read_text("utf-8").replace("[bridge]\nenabled = true\n", '[bridge]\nenabled = true\nprotocol = 4\n')
    path.write_text(bad, "utf-8")
    with pytest.raises(center_config.CenterConfigError, match="bridge.protocol"):
        center_config.load(path)


def test_ratings_cross_a_3_1_1_bridge_to_nats(tmp_path, pki):
    from pathlib import Path
    if not Path(NATS).exists():
        pytest.fail("nats-server is missing: `make test` installs it (Debian package nats-server)")
    city = NatsServer(tmp_path / "city", tls=(pki["city"].cert, pki["city"].key),
                      users={"center-C1": "city-bridge-password", "city-reader": "reader-password"}).start()
    root = tmp_path / "center"
    cfg = center_config.load(center_file_311(root, pki, city.mqtt_port))
    broker = center_broker(cfg, root).start()
    reg = Registry(root / "registry.db")
    prov = Provisioner(cfg, reg, port=cfg.broker.local_port, password=brokerconf.account_password(cfg, "provisioning")).start()
    site = CenterSite(root, cfg, broker, reg, prov, pki)
    reader = None
    try:
        reader = Center311(city.mqtt_port, f"city/v1/{CENTER}/device/+/rating", user="city-reader",
                           password="reader-password", ca=str(pki["city_ca"].cert))
        password, client_id = device_account(site, "b311")
        dev = site.client("b311", password, client_id=client_id)
        payloads = ratings("b311", 20)
        publish_all(dev, f"hcp/v1/{CENTER}/device/b311/rating", payloads)
        dev.close()
        want = {json.loads(p)["id"] for p in payloads}
        wait_for(lambda: {r["id"] for r in reader.on("rating")} >= want, 60, "all 20 at the 3.1.1 city")
        with reader._lock:
            assert {t for t, _ in reader.seen} == {f"city/v1/{CENTER}/device/b311/rating"}
        # Mosquitto would fall back from v5 by itself, after a refused attempt each time: not here
        log = (root / "mosquitto.log").read_text()
        assert "Connecting bridge" in log and "does not support MQTT v5.0" not in log
    finally:
        if reader:
            reader.close()
        stop_site(site)
        city.stop()
