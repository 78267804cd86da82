"""The center file is declarative (provisioning/config.py on the shared configuration/ mechanism): misspelt keys
are errors with a suggestion, relative paths are resolved, and the ledger runs from it on the generated
Dynamic Security broker with its own account."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from center.ledger import query
from devkit.waiting import wait_for
from protocol import codec, topics
from provisioning import config as center_config
from tests.provisioning.helpers import CENTER, write_center_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "center" / "broker" / "center.example.toml"


def _problems(path: Path) -> list[str]:
    with pytest.raises(center_config.CenterConfigError) as err:
        center_config.load(path)
    assert str(err.value).startswith("invalid center file:\n") and str(err.value).count("\n") == len(err.value.problems)
    return err.value.problems


def test_a_misspelt_key_is_an_error_naming_the_key_and_the_suggestion(tmp_path):
    """`prot = 8883` used to load silently (the broker then listened on the default port)."""
    text = EXAMPLE.read_text("utf-8").replace("port = 8883  ", "prot = 8883  ", 1)
    assert text != EXAMPLE.read_text("utf-8")
    (tmp_path / "c.toml").write_text(text, "utf-8")
    [problem] = _problems(tmp_path / "c.toml")
    assert problem.startswith(f"broker.prot ({tmp_path / 'c.toml'}): unknown key") and "did you mean 'port'" in problem


def test_a_key_outside_every_table_is_suggested_by_its_dotted_name(tmp_path):
    (tmp_path / "c.toml").write_text("prot = 8883\n" + EXAMPLE.read_text("utf-8"), "utf-8")
    [problem] = _problems(tmp_path / "c.toml")
    assert problem.startswith("prot (") and "did you mean 'broker.port'" in problem


def test_unknown_keys_in_every_kind_of_table_are_named(tmp_path):
    text = EXAMPLE.read_text("utf-8").replace('[console]\n', '[console]\ncod_ttl_s = 5\n').replace(
        '[[window]]\nid = "W01"\n', '[[window]]\nid = "W01"\nnmae = "x"\n').replace(
        '{id = "S0201", name = "赵敏", number = "0201"}', '{id = "S0201", name = "赵敏", numbre = "0201"}')
    (tmp_path / "c.toml").write_text(text + "\n[ledgr]\ndb = \"x\"\n", "utf-8")
    problems = _problems(tmp_path / "c.toml")
    assert [p.split(" ")[0] for p in problems] == ["console.cod_ttl_s", "window[0].nmae",
                                                    "window[1].staff[0].numbre", "[ledgr]"], problems
    assert ["'code_ttl_s'" in problems[0], "'name'" in problems[1], "'number'" in problems[2], "'ledger'" in problems[3]] \
        == [True] * 4


def test_values_are_checked_against_their_declaration(tmp_path):
    text = EXAMPLE.read_text("utf-8").replace('protocol = "5"', "protocol = 5").replace(
        "code_ttl_s = 600", "code_ttl_s = 5").replace('url = "https://hcp.pudong', 'url = "ftp://hcp.pudong')
    (tmp_path / "c.toml").write_text(text, "utf-8")
    problems = _problems(tmp_path / "c.toml")
    assert [p.split(" ")[0] for p in problems] == ["bridge.protocol", "console.url", "console.code_ttl_s"], problems


def test_relative_paths_are_taken_from_the_center_files_folder():
    cfg = center_config.load(EXAMPLE)
    here = EXAMPLE.parent
    assert cfg.path == EXAMPLE and cfg.broker.cafile == here / "tls" / "ca.pem"
    assert cfg.qr.key_file == here / "secrets" / "qr.key" and cfg.secret_file("ledger") == here / "secrets" / "ledger.password"
    assert cfg.bridge.cafile == here / "tls" / "city-ca.pem" and cfg.bridge.remote_password_file is None
    assert cfg.broker.dynsec_file == Path("/var/lib/mosquitto/dynamic-security.json")  # absolute stays
    assert cfg.ledger.db == Path("/var/lib/hcp-ledger/ledger.db")
    assert [w.id for w in cfg.windows] == ["W01", "W02", "Q01"] and cfg.window("W01").staff[1].name == "李强"


def test_the_example_shows_every_section():
    """(Its keys are all declared: it loads, and an unknown key would be an error.)"""
    import tomllib
    data = tomllib.loads(EXAMPLE.read_text("utf-8"))
    assert set(data) == {"center", "qr", "broker", "bridge", "console", "ledger", "accounts", "window"}


def _run_ledger(center_file: Path, *flags: str) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "center.ledger", "--center-file", str(center_file), *flags],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()
    return proc, lines


@pytest.mark.parametrize("listener", ["loopback", "tls"])
def test_the_ledger_runs_from_the_center_file_with_its_account(site, listener):
    """Database, broker, TLS, account, center and MQTT version all from the center file: the ledger's role
    admits it (a wrong account or center would be refused: SUBACK 0x87, exit 2) and what it is allowed
    to read reaches its database."""
    extra = "" if listener == "loopback" else f"mqtt_port = {site.tls_port}\n"
    with site.cfg.path.open("a", encoding="utf-8") as f:
        f.write(f'\n[ledger]\ndb = "ledger-from-file.db"\nmqtt_version = "5"\n{extra}')
    cfg = center_config.load(site.cfg.path)
    proc, lines = _run_ledger(site.cfg.path)
    try:
        wait_for(lambda: any("subscribed to" in ln for ln in lines) or proc.poll() is not None, 30, "subscribed")
        assert proc.poll() is None, "".join(lines)
        port = site.tls_port if listener == "tls" else site.local_port
        assert any(f"ledger for 127.0.0.1:{port}{' (TLS)' if listener == 'tls' else ''}" in ln for ln in lines), lines
        binding = {"v": 1, "type": "binding", "center": CENTER, "device": "t9", "state": "active", "window": "W07"}
        prov = site.service("provisioning")
        try:
            assert prov.publish(f"{topics.PREFIX}/{CENTER}/device/t9/binding", codec.encode(binding),
                                retain=True) == 0
        finally:
            prov.close()
        db = cfg.ledger.db
        assert db == site.cfg.path.parent / "ledger-from-file.db"
        wait_for(lambda: db.exists() and query(db, "SELECT window FROM bindings WHERE device='t9'") == [("W07",)],
                 what="the binding stored in the center file's database")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, "".join(lines)


def test_flags_override_the_center_file(site, tmp_path):
    """--db wins over [ledger] db; --center + (every center) is beyond the ledger account's role: refused."""
    proc, lines = _run_ledger(site.cfg.path, "--db", str(tmp_path / "flag.db"), "--center", "+")
    assert proc.wait(60) == 2
    text = "".join(lines)
    assert "refused the ledger's subscription to hcp/v1/+/device/+/rating" in text and "Traceback" not in text
    assert (tmp_path / "flag.db").exists() and not (site.cfg.path.parent / "ledger.db").exists()


def test_a_broken_center_file_stops_the_ledger_with_the_problems(tmp_path, pki):
    path = write_center_file(tmp_path, pki, extra="[ledger]\nacount = \"ledger\"\n")
    proc = subprocess.run([sys.executable, "-m", "center.ledger", "--center-file", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "ledger.acount" in proc.stderr and "did you mean 'account'" in proc.stderr
    assert "Traceback" not in proc.stderr
