"""Configuration: defaults ← main TOML ← boot override ← HCP_* environment, every mistake reported at once."""
from __future__ import annotations

import json
import math
import re
import typing
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device import config
from device.config import DEMO_QR_KEY, Config, ConfigError, load, qr_key


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


def _problems(files: list[Path], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(files, env=env or {})
    assert str(err.value).count("\n") == len(err.value.problems)  # one line per problem
    return err.value.problems


def _one(problems: list[str], key: str) -> str:
    hits = [p for p in problems if key in p]
    assert len(hits) == 1, (key, problems)
    return hits[0]


# ---- layering ---------------------------------------------------------------------------------

def test_defaults_load_with_no_files(tmp_path):
    assert load([], env={}) == Config()
    assert load([tmp_path / "absent.toml", tmp_path / "also-absent.toml"], env={"PATH": "/bin"}) == Config()
    cfg = Config()
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.center.id, cfg.codes.level_scheme) == \
        ("127.0.0.1", 1883, "demo", "gbt39046")


def test_files_layer_in_order(tmp_path):
    main = _write(tmp_path, "terminal.toml", '[mqtt]\nhost = "broker.pudong"\nport = 8883\ntls = true\n'
                                             '[center]\nid = "pudong"\nwindow = "W01"\n')
    override = _write(tmp_path, "boot.toml", '[center]\nwindow = "W07"\n[mqtt]\nport = 1884\n')
    cfg = load([main, override], env={})
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("broker.pudong", 1884, True)
    assert (cfg.center.id, cfg.center.window) == ("pudong", "W07")
    assert cfg.mqtt.keepalive_s == Config().mqtt.keepalive_s          # untouched keys keep their defaults
    assert load([override, main], env={}).mqtt.port == 8883           # the later file wins
    assert load([override, main], env={}).center.window == "W01"


def test_environment_overrides_files_and_is_coerced(tmp_path):
    main = _write(tmp_path, "terminal.toml", '[mqtt]\nport = 8883\ntls = true\n')
    env = {"HCP_MQTT_PORT": "8884", "HCP_MQTT_TLS": "off", "HCP_MQTT_RECONNECT_MIN_S": "0.5",
           "HCP_MQTT_SESSION_EXPIRY_S": "86400", "HCP_CENTER_WINDOW": "W09",
           "HCP_RATING_STAFF_RATING_WHEN_IDLE": "no", "HCP_QR_KEY_ID": "k2026", "PATH": "/usr/bin",
           "HOME": "/root"}
    cfg = load([main], env=env)
    assert cfg.mqtt.port == 8884 and type(cfg.mqtt.port) is int
    assert cfg.mqtt.tls is False
    assert cfg.mqtt.reconnect_min_s == 0.5 and type(cfg.mqtt.reconnect_min_s) is float
    assert cfg.mqtt.session_expiry_s == 86400
    assert cfg.center.window == "W09"
    assert cfg.rating.staff_rating_when_idle is False
    assert cfg.qr.key_id == "k2026"


@pytest.mark.parametrize("text,value", [("1", True), ("true", True), ("YES", True), ("on", True),
                                        ("0", False), ("False", False), ("no", False), ("OFF", False)])
def test_environment_booleans(text, value):
    assert load([], env={"HCP_MQTT_TLS": text}).mqtt.tls is value


def test_a_float_key_takes_a_toml_integer(tmp_path):
    cfg = load([_write(tmp_path, "t.toml", "[outbox]\nreceipt_timeout_s = 45\n")], env={})
    assert cfg.outbox.receipt_timeout_s == 45.0 and type(cfg.outbox.receipt_timeout_s) is float


def test_channel_codes_table(tmp_path):
    cfg = load([_write(tmp_path, "t.toml", '[codes]\nlevel_scheme = "provincial"\n[codes.channels]\nsms = 6\n')],
               env={})
    assert cfg.codes.level_scheme == "provincial" and cfg.codes.channels == {"sms": 6}


# ---- mistakes, each reported by its key ------------------------------------------------------

def test_unknown_section_with_suggestion(tmp_path):
    problems = _problems([_write(tmp_path, "t.toml", "[mqqt]\nport = 1\n[zzzz]\nx = 1\n")])
    assert "did you mean 'mqtt'" in _one(problems, "[mqqt]")
    assert "known: device, center, mqtt" in _one(problems, "[zzzz]")


def test_unknown_section_in_the_environment():
    problem = _one(_problems([], {"HCP_MQQT_PORT": "1"}), "HCP_MQQT_PORT")
    assert "no such section" in problem and "mqtt" in problem


def test_unknown_key_with_did_you_mean(tmp_path):
    problems = _problems([_write(tmp_path, "t.toml", "[mqtt]\nprot = 1883\nzzzzzz = 1\n")],
                         {"HCP_MQTT_KEEPALIVE": "30"})
    assert "did you mean 'port'" in _one(problems, "mqtt.prot")
    assert "known:" in _one(problems, "mqtt.zzzzzz")
    env = _one(problems, "mqtt.keepalive ")
    assert "environment" in env and "did you mean 'keepalive_s'" in env


@pytest.mark.parametrize("line,key,expected", [
    ('[mqtt]\nport = "1883"', "mqtt.port", "expected an integer"),
    ("[mqtt]\nport = 1883.0", "mqtt.port", "expected an integer"),
    ("[mqtt]\nport = true", "mqtt.port", "expected an integer"),
    ('[mqtt]\ntls = "yes"', "mqtt.tls", "expected true or false"),   # only the environment is text
    ("[mqtt]\nhost = 10", "mqtt.host", "expected a string"),
    ('[mqtt]\nreconnect_min_s = "1"', "mqtt.reconnect_min_s", "expected a number"),
    ("[codes]\nchannels = 6", "codes.channels", "expected a table"),
    ('[codes.channels]\nsms = "6"', "codes.channels", "expected a table"),
    ("[codes.channels]\nsms = true", "codes.channels", "expected a table"),
    ("mqtt = 5", "[mqtt]", "expected a table"),
])
def test_wrong_type(tmp_path, line, key, expected):
    problem = _one(_problems([_write(tmp_path, "t.toml", line + "\n")]), key)
    assert expected in problem and str(tmp_path / "t.toml") in problem


@pytest.mark.parametrize("section,key,value", [
    ("mqtt", "port", "0"), ("mqtt", "port", "65536"), ("mqtt", "keepalive_s", "4"),
    ("outbox", "alarm_percent", "101"), ("outbox", "capacity", "9"), ("rating", "thanks_s", "31"),
    ("mqtt", "reconnect_min_s", "0.01"), ("limits", "max_message_bytes", "1023"),
    ("mqtt", "reconnect_min_s", "nan"), ("mqtt", "reconnect_max_s", "inf"), ("outbox", "retry_max_s", "-inf"),
])
def test_out_of_range(tmp_path, section, key, value):
    problems = _problems([_write(tmp_path, "t.toml", f"[{section}]\n{key} = {value}\n")])
    assert "expected a value between" in _one(problems, f"{section}.{key}")


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_non_finite_numbers_from_the_environment(value):
    problem = _one(_problems([], {"HCP_MQTT_RECONNECT_MAX_S": value}), "mqtt.reconnect_max_s")
    assert "environment" in problem


def test_bad_choice(tmp_path):
    problems = _problems([_write(tmp_path, "t.toml", '[device]\nlog_level = "LOUD"\n[codes]\n'
                                                     'level_scheme = "zhejiang"\n')])
    assert "expected one of DEBUG, INFO, WARNING, ERROR" in _one(problems, "device.log_level")
    assert "gbt39046, provincial" in _one(problems, "codes.level_scheme")


@pytest.mark.parametrize("section,key,value", [
    ("center", "id", "a/b"), ("center", "id", "+"), ("center", "window", "#"), ("center", "id", ""),
    ("center", "id", "x" * 33), ("center", "window", "W01\\n"), ("device", "id", "rpi 1"),
    ("device", "id", "rpi-1\\n"), ("qr", "url_template", "https://hcp.example.gov.cn/r"),
    ("qr", "url_template", "http://hcp.example.gov.cn/r?t={token}"), ("qr", "key_id", "demo\\n"),
])
def test_bad_pattern(tmp_path, section, key, value):
    """Ids become MQTT topic levels: wildcards, separators and a trailing newline are all refused."""
    problems = _problems([_write(tmp_path, "t.toml", f'[{section}]\n{key} = "{value}"\n')])
    assert "expected" in _one(problems, f"{section}.{key}")


def test_bad_pattern_from_the_environment():
    problems = _problems([], {"HCP_CENTER_ID": "demo\n", "HCP_CENTER_WINDOW": "W/01"})
    _one(problems, "center.id")
    _one(problems, "center.window")


def test_channel_table_names_and_codes_are_checked(tmp_path):
    problems = _problems([_write(tmp_path, "t.toml", "[codes.channels]\nsmss = 6\n")])
    assert "did you mean 'sms'" in _one(problems, "codes.channels")
    problems = _problems([_write(tmp_path, "t.toml", "[codes.channels]\nsms = -6\n")])
    assert "codes.channels" in problems[0]
    problems = _problems([], {"HCP_CODES_CHANNELS": "sms=6"})
    assert "TOML file" in _one(problems, "codes.channels")


def test_invalid_toml_names_the_file_and_other_layers_are_still_checked(tmp_path):
    broken = _write(tmp_path, "broken.toml", "[mqtt\nport = \n")
    other = _write(tmp_path, "other.toml", "[mqtt]\nport = 0\n")
    problems = _problems([broken, other], {"HCP_MQTT_KEEPALIVE_S": "x"})
    assert "not valid TOML" in _one(problems, str(broken))
    _one(problems, "mqtt.port")
    _one(problems, "mqtt.keepalive_s")


def test_a_file_that_is_not_utf8_is_reported(tmp_path):
    path = tmp_path / "t.toml"
    path.write_bytes(b'[center]\nid = "\xff"\n')
    assert "not UTF-8" in _one(_problems([path]), str(path))


SECRETS = ["hunter2-s3cret", "abcdefXYZ123", "98ab"]


def test_secret_values_are_never_echoed(tmp_path):
    text = (f'[mqtt]\npassword = 4242\n[qr]\nkey = "{SECRETS[1]}"\n[ui]\nmaintenance_pin = "{SECRETS[2]}"\n'
            f'[device]\npasword = "{SECRETS[0]}"\n')
    env = {"HCP_QR_KEY": "zz" + SECRETS[0], "HCP_UI_MAINTENANCE_PIN": SECRETS[0]}
    with pytest.raises(ConfigError) as err:
        load([_write(tmp_path, "t.toml", text)], env=env)
    shown = str(err.value)
    for secret in SECRETS + ["4242"]:
        assert secret not in shown
    for key in ("mqtt.password", "device.pasword"):
        _one(err.value.problems, key)
    for key in ("qr.key ", "ui.maintenance_pin"):  # once from the file, once from the environment
        assert len([p for p in err.value.problems if key in p]) == 2
    assert "***" in shown


def test_broken_toml_holding_a_secret_does_not_echo_it(tmp_path):
    problems = _problems([_write(tmp_path, "t.toml", f'[mqtt]\npassword = "{SECRETS[0]}\n')])
    assert SECRETS[0] not in "\n".join(problems)


def test_plain_values_are_echoed_so_the_technician_sees_them(tmp_path):
    problem = _one(_problems([_write(tmp_path, "t.toml", "[mqtt]\nport = 70000\n")]), "mqtt.port")
    assert "70000" in problem


def test_many_problems_are_reported_together(tmp_path):
    main = _write(tmp_path, "terminal.toml",
                  '[mqtt]\nport = 0\nprot = 1\n[device]\nlog_level = "LOUD"\n[center]\nid = "a/b"\n[mqqt]\nx = 1\n')
    override = _write(tmp_path, "boot.toml", '[rating]\nthanks_s = "5"\n')
    problems = _problems([main, override], {"HCP_MQTT_TLS": "maybe", "HCP_NOPE_X": "1"})
    for key in ("mqtt.port", "mqtt.prot", "device.log_level", "center.id", "[mqqt]", "rating.thanks_s",
                "mqtt.tls", "HCP_NOPE_X"):
        _one(problems, key)
    assert len(problems) == 8


# ---- the QR key -------------------------------------------------------------------------------

def test_qr_key_sources(tmp_path):
    assert qr_key(Config()) is None  # issue 8 item 7: never the published demo key by default
    assert qr_key(load([], env={"HCP_QR_DEMO": "true"})) == DEMO_QR_KEY  # only when asked for
    key_hex = "ab" * 32
    assert qr_key(load([], env={"HCP_QR_KEY": key_hex})) == bytes.fromhex(key_hex)
    assert qr_key(load([], env={"HCP_QR_KEY": key_hex, "HCP_QR_DEMO": "true"})) == bytes.fromhex(key_hex)
    with pytest.raises(ConfigError, match="cannot read"):
        qr_key(load([], env={"HCP_QR_KEY_FILE": str(tmp_path / "missing.key")}))
    path = _write(tmp_path, "qr.key", key_hex.upper() + "\n")
    assert qr_key(load([], env={"HCP_QR_KEY_FILE": str(path)})) == bytes.fromhex(key_hex)
    short = _write(tmp_path, "short.key", "ab" * 16)
    with pytest.raises(ConfigError, match="shorter than 32 bytes"):
        qr_key(load([], env={"HCP_QR_KEY_FILE": str(short)}))
    junk = _write(tmp_path, "junk.key", "not hex at all")
    with pytest.raises(ConfigError, match="does not hold a hex key") as err:
        qr_key(load([], env={"HCP_QR_KEY_FILE": str(junk)}))
    assert "not hex at all" not in str(err.value)
    with pytest.raises(ConfigError):
        load([], env={"HCP_QR_KEY": "ab" * 31})  # 31 bytes: too short


def _check_config(tmp_path: Path, toml: str) -> "subprocess.CompletedProcess[str]":
    import os
    import subprocess
    import sys
    path = _write(tmp_path, "terminal.toml", f'[device]\nid = "t1"\ndata_dir = "{tmp_path / "data"}"\n' + toml)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HCP_")}
    return subprocess.run([sys.executable, "-m", "device", "--config", str(path), "--check-config"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])


def test_check_config_fails_loudly_without_a_qr_key(tmp_path):
    """Issue 8 item 7: it said "configuration ok" and the terminal signed with the published demo key."""
    r = _check_config(tmp_path, "")
    assert r.returncode == 2 and "configuration ok" not in r.stdout
    assert "qr.key: no QR signing key" in r.stderr
    assert config.check(Config()) and not config.check(load([], env={"HCP_QR_DEMO": "true"}))


@pytest.mark.parametrize("toml", [f'[qr]\nkey = "{"ab" * 32}"\n', "[qr]\ndemo = true\n",
                                  '[enrolment]\nusername = "enrol-c1"\npassword = "x"\n'])
def test_check_config_passes_with_a_key_the_demo_switch_or_enrolment(tmp_path, toml):
    r = _check_config(tmp_path, toml)
    assert r.returncode == 0 and "configuration ok" in r.stdout, r.stderr


def test_check_config_names_an_unreadable_key_file(tmp_path):
    r = _check_config(tmp_path, f'[qr]\nkey_file = "{tmp_path / "nope.key"}"\n')
    assert r.returncode == 2 and "qr.key_file: cannot read" in r.stderr


def test_case_age_and_idle_staff_rating_defaults():
    """Issue 8 items 13 and 16: a 12 h limit on open cases; idle staff ratings off unless configured."""
    cfg = Config()
    assert cfg.case.max_age_h == 12 and cfg.rating.staff_rating_when_idle is False
    assert load([], env={"HCP_CASE_MAX_AGE_H": "48"}).case.max_age_h == 48
    assert _problems([], {"HCP_CASE_MAX_AGE_H": "0"})


# ---- hypothesis: whatever arrives, the result is a valid Config or a ConfigError -------------

def _declared() -> list[tuple[str, str, type, dict]]:
    """(section, key, type, metadata) for every declared key."""
    out = []
    for section, cls in typing.get_type_hints(Config).items():
        hints = typing.get_type_hints(cls)
        out += [(section, f.name, hints[f.name], dict(f.metadata)) for f in fields(cls)]
    return out


DECLARED = _declared()


def _assert_within_declared_limits(cfg: Config) -> None:
    for section, key, typ, meta in DECLARED:
        value = getattr(getattr(cfg, section), key)
        if typ in (int, float):
            assert type(value) is typ and math.isfinite(value), (section, key, value)
            if meta["min"] is not None:
                assert meta["min"] <= value <= meta["max"], (section, key, value)
        elif typ is bool:
            assert type(value) is bool
        elif typ is str:
            assert type(value) is str
            if meta["choices"]:
                assert value in meta["choices"]
            if meta["pattern"]:
                assert re.fullmatch(meta["pattern"].removeprefix("^").removesuffix("$"), value), (section, key,
                                                                                                  value)


keys = st.sampled_from(DECLARED)
toml_values = st.one_of(
    st.integers(-2**63, 2**63 - 1).map(str), st.floats().map(repr),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=40).map(lambda s: json.dumps(s)),  # a JSON string is a TOML basic string
    st.sampled_from(['"W01\\n"', '"a/b"', '"+"', '""', '"DEBUG"', '"provincial"', "nan", "-nan", "inf",
                     '"https://x.gov.cn/?t={token}"', '"' + "ab" * 32 + '"', "{sms = 6}", "{smss = 6}", "[1, 2]"]))
env_values = st.one_of(st.text(max_size=20), st.sampled_from(["nan", "inf", "1e3", " 42", "4_2", "0x10", "yes",
                                                              "W01\n", "DEBUG", "1883", "0.5"]))


def _env_name(section: str, key: str) -> str:
    return f"HCP_{section}_{key}".upper()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.tuples(keys, toml_values), max_size=6))
def test_any_toml_values_give_a_valid_config_or_config_error(tmp_path, entries):
    by_section: dict[str, dict[str, str]] = {}
    for (section, key, _, _), value in entries:
        by_section.setdefault(section, {})[key] = value
    text = "".join(f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items()) for s, kv in by_section.items())
    path = _write(tmp_path, "h.toml", text)
    try:
        cfg = load([path], env={})
    except ConfigError as e:
        assert e.problems
        for p in e.problems:
            assert p.startswith("[") or "." in p.split(" ")[0] or str(path) in p
        return
    _assert_within_declared_limits(cfg)


@settings(max_examples=300, deadline=None)
@given(env=st.dictionaries(keys.map(lambda d: _env_name(d[0], d[1])), env_values, max_size=5))
def test_any_environment_gives_a_valid_config_or_config_error(env):
    try:
        cfg = load([], env=env)
    except ConfigError as e:
        named = {name.lower().removeprefix("hcp_") for name in env}
        for p in e.problems:  # each problem names the variable's key
            assert any(p.startswith(n.replace("_", ".", 1)) or n.replace("_", ".", 1) in p
                       for n in named), (p, env)
        return
    _assert_within_declared_limits(cfg)


# ---- one mechanism, sections in their rooms (issue 9 item 4) ----------------------------------

def test_ui_and_hardware_sections_are_validated_and_named_by_key(tmp_path):
    text = '[ui]\nbrightness_idle = 30\nrotation = 360\n[hardware]\ndim_after_s = 1\nsimulaet = true\n'
    problems = _problems([_write(tmp_path, "t.toml", text)], {"HCP_UI_LANGUAGE": "fr"})
    assert "known:" in _one(problems, "ui.brightness_idle")
    assert "between 0 and 270" in _one(problems, "ui.rotation")
    assert "between 10 and 86400" in _one(problems, "hardware.dim_after_s")
    assert "did you mean 'simulate'" in _one(problems, "hardware.simulaet")
    assert "environment" in _one(problems, "ui.language")
    assert len(problems) == 5


def test_opening_hours_are_checked_by_their_parser_when_loading():
    """A copy of the grammar as a regex let 'mon 17:00-08:00' through; only attaching the drivers failed."""
    problem = _one(_problems([], {"HCP_HARDWARE_OPENING_HOURS": "mon 17:00-08:00"}), "hardware.opening_hours")
    assert "ends before it starts" in problem
    assert load([], {"HCP_HARDWARE_OPENING_HOURS": "mon-fri 08:30-12:00,13:00-17:30"}).hardware.opening_hours


def test_sections_are_declared_in_their_rooms():
    from drivers.config import HardwareSection
    from ui.config import UiSection
    hints = typing.get_type_hints(Config)
    assert hints["ui"] is UiSection and hints["hardware"] is HardwareSection
    assert Config().ui.language == "zh" and Config().hardware.dim_after_s == 120


def _imports(path: Path) -> set[str]:
    import ast
    tree = ast.parse(path.read_text("utf-8"))
    out = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return out | {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


def test_the_configuration_package_imports_nothing_of_ours_and_section_modules_stay_light():
    import sys
    root = Path(__file__).resolve().parents[2]
    files = list((root / "configuration").glob("*.py"))
    assert files
    for path in files:
        assert _imports(path) <= set(sys.stdlib_module_names) | {"configuration"}, path
    assert _imports(root / "ui" / "config.py") <= {"__future__", "dataclasses", "configuration"}  # no Kivy
    assert _imports(root / "drivers" / "config.py") <= {"__future__", "dataclasses", "configuration", "drivers"}


def test_a_boot_file_saved_by_windows_notepad_is_read_or_named(tmp_path):
    """Notepad's "UTF-8 with BOM" loads; an ANSI (GBK) file is refused with the file and the fix named."""
    bom = tmp_path / "bom.toml"
    bom.write_bytes("\ufeff# 综合窗口\r\n[center]\r\nwindow = \"W07\"\r\n".encode("utf-8"))
    assert load([bom], env={}).center.window == "W07"
    gbk = tmp_path / "gbk.toml"
    gbk.write_bytes("# 综合窗口\r\n[center]\r\nwindow = \"W07\"\r\n".encode("gbk"))
    with pytest.raises(ConfigError) as e:
        load([gbk], env={})
    assert str(gbk) in str(e.value) and "not UTF-8" in str(e.value)
