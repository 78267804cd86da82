"""Fixtures: a generated center broker (TLS, Dynamic Security, no anonymous access) started from the
center file, the pairing service, a ledger with its own account, and terminals that enrol."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from center.ledger import Ledger
from device.terminal import Terminal
from devkit.terminals import terminal_config, terminals
from devkit.waiting import wait_for
from provisioning import brokerconf
from provisioning import config as center_config
from provisioning.registry import Registry
from provisioning.service import Provisioner
from tests.provisioning.helpers import CENTER, Client, Mosquitto, center_broker, make_pki, write_center_file


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class CenterSite:
    root: Path
    cfg: center_config.CenterConfig
    broker: Mosquitto
    reg: Registry
    prov: Provisioner
    pki: dict

    @property
    def tls_port(self) -> int:
        return self.cfg.broker.port

    @property
    def local_port(self) -> int:
        return self.cfg.broker.local_port

    def password(self, account: str) -> str:
        return brokerconf.account_password(self.cfg, account)

    def client(self, username: str, password: str, **kw) -> Client:
        """A client on the terminals' TLS listener."""
        return Client(self.tls_port, username, password, ca=str(self.pki["ca"].cert), **kw)

    def service(self, account: str, **kw) -> Client:
        """A center service on the loopback listener with its own account."""
        return Client(self.local_port, account, self.password(account), **kw)


def start_site(root: Path, pki: dict, **center_kw) -> CenterSite:
    cfg = center_config.load(write_center_file(root, pki, **center_kw))
    broker = center_broker(cfg, root).start()
    reg = Registry(root / "registry.db")
    prov = Provisioner(cfg, reg, port=cfg.broker.local_port, password=brokerconf.account_password(cfg, "provisioning")).start()
    return CenterSite(root, cfg, broker, reg, prov, pki)


def stop_site(site: CenterSite) -> None:
    site.prov.stop()
    site.reg.close()
    site.broker.stop()


@pytest.fixture
def site(tmp_path, pki):
    s = start_site(tmp_path / "center", pki)
    yield s
    stop_site(s)


@pytest.fixture
def center_ledger(site, tmp_path):
    led = Ledger(tmp_path / "ledger.db", port=site.local_port, center=CENTER, client_id="ledger-C1",
                 username="ledger", password=site.password("ledger")).start()
    yield led
    led.stop()


@pytest.fixture
def enrol(site, tmp_path):
    """`enrol("t1")` → a started Terminal with only the enrolment file's settings (and its core thread)."""
    def settings(name: str, env: dict) -> dict:
        return {**dict(HCP_DEVICE_ID=name, HCP_CENTER_ID=CENTER, HCP_MQTT_TLS="true",
                       HCP_MQTT_CA_PEM=site.pki["ca"].cert.read_text(), HCP_ENROLMENT_USERNAME="enrolment",
                       HCP_ENROLMENT_PASSWORD=site.password("enrolment"),
                       HCP_ENROLMENT_CONSOLE_URL="http://127.0.0.1/pair", HCP_ENROLMENT_ANNOUNCE_EVERY_S="5"),
                **env}

    with terminals() as start:
        yield lambda name="t1", **env: start(
            terminal_config(site.tls_port, tmp_path / "terminals" / name, **settings(name, env)), name)


STAFF_USER, STAFF_PASSWORD = "wangfang", "correct horse battery"


def code_of(term: Terminal, timeout: float = 20) -> str:
    p = wait_for(lambda: term.pairing if term.pairing and term.pairing.state == "code" else None, timeout,
                 f"pairing code on {term.device_id}")
    return p.code


def paired_idle(term: Terminal, window: str, timeout: float = 30) -> None:
    wait_for(lambda: term.pairing is None and term.mode == "paired" and term.online
             and term.cfg.center.window == window and term.binding is not None, timeout,
             f"{term.device_id} paired and idle at {window}")
