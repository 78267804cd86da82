"""The center file, the generated broker configuration and enrolment file, and the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from device import config as terminal_config_mod
from devkit.waiting import wait_for
from provisioning import brokerconf
from provisioning import config as center_config
from tests.provisioning.conftest import code_of, paired_idle
from tests.provisioning.helpers import write_center_file

ROOT = Path(__file__).resolve().parents[2]


def test_center_file_problems_are_all_reported_at_once(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text('[center]\nid = "a/b"\n[broker]\nport = 0\n[bridge]\nenabled = true\n[nonsense]\n')
    with pytest.raises(center_config.CenterConfigError) as err:
        center_config.load(bad)
    text = str(err.value)
    for part in ("center.id", "broker.host", "broker.port", "bridge.address", "bridge.cafile", "[nonsense]",
                 "window:"):
        assert part in text, part


def test_example_center_file_is_valid():
    cfg = center_config.load(ROOT / "center" / "broker" / "center.example.toml")
    assert cfg.center.id == "pudong" and len(cfg.windows) >= 2 and cfg.bridge.enabled


def test_generated_configuration(tmp_path, pki):
    cfg = center_config.load(write_center_file(tmp_path, pki, bridge_port=18883, ratings_per_day=20000))
    written = brokerconf.generate(cfg, tmp_path / "out", user="mosquitto")
    conf = (tmp_path / "out" / "mosquitto.conf").read_text()
    lines = set(conf.splitlines())
    assert {"allow_anonymous false", "per_listener_settings false", "persistence true", "autosave_on_changes false",
            f"listener {cfg.broker.port} 127.0.0.1", f"cafile {cfg.broker.cafile}", "tls_version tlsv1.2",
            "user mosquitto", "max_queued_messages 350000", "max_queued_bytes 0",  # 20,000/day × 7 × 2 × 1.25
            "cleansession false", "local_cleansession false", "bridge_protocol_version mqttv50",
            "restart_timeout 1 2", "bridge_insecure false", f"bridge_cafile {pki['city_ca'].cert}"} <= lines
    assert any(x.startswith("plugin /") and x.endswith("mosquitto_dynamic_security.so") for x in lines)
    db = json.loads(cfg.broker.dynsec_file.read_text())
    assert db["defaultACLAccess"] == {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                                      "unsubscribe": True}
    assert {c["username"] for c in db["clients"]} == {"provisioning", "ledger", "centersys", "enrolment"}
    assert all(brokerconf.account_password(cfg, c["username"]) not in json.dumps(db) for c in db["clients"])
    for f in [cfg.broker.dynsec_file, *written, *(cfg.secret_file(a) for a in brokerconf.ACCOUNTS)]:
        assert f.stat().st_mode & 0o077 == 0, f  # secrets: owner only
    # Generating again keeps the broker's live account database (device accounts live there).
    cfg.broker.dynsec_file.write_text(json.dumps({**db, "clients": db["clients"] + [{"username": "rpi-1"}]}))
    brokerconf.generate(cfg, tmp_path / "out", user="mosquitto")
    assert "rpi-1" in cfg.broker.dynsec_file.read_text()


def test_enrolment_file_is_a_terminal_configuration_layer(tmp_path, pki):
    cfg = center_config.load(write_center_file(tmp_path, pki))
    brokerconf.generate(cfg, tmp_path / "out")
    tcfg = terminal_config_mod.load([tmp_path / "out" / "enrolment.toml"], env={})
    assert tcfg.center.id == "C1" and tcfg.mqtt.tls and tcfg.mqtt.port == cfg.broker.port
    assert tcfg.mqtt.ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert tcfg.enrolment.username == "enrolment" and tcfg.enrolment.password == brokerconf.account_password(cfg, "enrolment")
    assert tcfg.enrolment.console_url == "http://127.0.0.1/pair"


def cli(center: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "provisioning", "--center", str(center), "--as", "cli:ops", *args],
                          input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_cli_pairs_lists_and_audits_like_the_console(site, enrol):
    t = enrol("cli1")
    code = code_of(t)
    r = cli(site.cfg.path, "list")
    assert r.returncode == 0 and "unpaired  cli1" in r.stdout
    assert cli(site.cfg.path, "pair", "000000" if code != "000000" else "000001", "W01").returncode == 1
    r = cli(site.cfg.path, "pair", code, "W02")
    assert r.returncode == 0, r.stderr
    paired_idle(t, "W02")
    r = cli(site.cfg.path, "move", "cli1", "W03")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: t.cfg.center.window == "W03", 20, "moved by the CLI")
    r = cli(site.cfg.path, "audit")
    assert "cli:ops" in r.stdout and "pair" in r.stdout and "move" in r.stdout
    password = json.loads((t.data_dir / "credentials.json").read_text())["password"]
    assert password not in r.stdout + r.stderr


def test_a_multi_line_extra_starts_a_working_dev_broker(tmp_path):
    """devkit.broker.Broker fills devkit/mosquitto.conf: only its placeholders, and the extra text only where it
    belongs (it used to land in the header comment too, where its last line broke the configuration)."""
    from devkit.broker import Broker
    from tests.provisioning.helpers import Client
    extra = "# extra lines from a test, with {braces}\nmax_keepalive 300\nlog_type information"
    with Broker(extra=extra, workdir=str(tmp_path)) as b:
        conf = b.conf.read_text()
        assert conf.count("max_keepalive 300") == 1 and "{braces}" in conf
        c = Client(b.port, "", "")
        assert c.refused is None and c.subscribe("t/x") < 0x80
        assert c.publish("t/x", b"hello") == 0
        wait_for(lambda: c.messages("t/x"), 10, "the message back")
        c.close()


def test_fill_substitutes_only_named_placeholders_and_refuses_lines_in_a_comment():
    from provisioning.brokerconf import fill
    text = "# from {source}; not a placeholder: {other} {0} {}\nlistener {port}\n{extra}\n"
    assert fill(text, source="c.toml", port=1883, extra="a {port}\nb") == \
        "# from c.toml; not a placeholder: {other} {0} {}\nlistener 1883\na {port}\nb\n"
    with pytest.raises(ValueError, match="comment"):
        fill("# made from {source}\n", source="one\ntwo")
