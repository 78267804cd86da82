"""Hardware profiles and opening hours: the shipped profiles load; every wrong key is named."""
from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import fields

import pytest
from hypothesis import given, settings, strategies as st

from device import config
from drivers.config import HardwareSection
from drivers.hours import DAYS, PATTERN, HoursError, OpeningHours
from drivers.profile import (EXTRA_KEYS, LEVEL_KEYS, PROFILES_DIR, ProfileError, load_profile, parse_profile,
                             pin_number, shipped)
from tests.drivers.conftest import local


def shipped_data(name: str) -> dict:
    return tomllib.loads((PROFILES_DIR / f"{name}.toml").read_text("utf-8"))


def test_two_profiles_ship_and_load():
    assert shipped() == ["buttons-only-box", "official-7in-touch"]
    touch = load_profile("official-7in-touch")
    box = load_profile("buttons-only-box")
    assert touch.display.touch and touch.flow == "screen" and touch.display.kind == "panel"
    assert not box.display.touch and box.flow == "keys" and box.display.kind == "fb"
    for p in (touch, box):
        assert set(LEVEL_KEYS) <= set(p.keys.pins)
        assert len(set(p.pins().values())) == len(p.pins())  # no pin used twice
    assert touch.printer.connection == "file" and touch.printer.devfile == "/dev/usb/lp0"
    assert box.printer.connection == "serial" and (box.display.width, box.display.height) == (240, 240)


def test_load_by_path_and_unknown_name(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text((PROFILES_DIR / "buttons-only-box.toml").read_text("utf-8").replace('"buttons-only-box"', '"mine"'))
    assert load_profile(str(path)).name == "mine"
    with pytest.raises(ProfileError) as e:
        load_profile("buttons-only")
    assert "did you mean 'buttons-only-box'" in str(e.value)
    bad = tmp_path / "bad.toml"
    bad.write_text("[keys\n")
    with pytest.raises(ProfileError, match="not a readable TOML"):
        load_profile(str(bad))


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d["keys"]["pins"].__setitem__("satisfied", 40), "keys.pins.satisfied"),
    (lambda d: d["keys"]["pins"].__setitem__("satisfied", "GPIOx"), "keys.pins.satisfied"),
    (lambda d: d["keys"]["pins"].pop("dissatisfied"), "keys.pins.dissatisfied"),
    (lambda d: d["keys"]["pins"].__setitem__("call_stuff", 4), "keys.pins.call_stuff"),
    (lambda d: d["keys"].__setitem__("debounce", 30), "keys.debounce"),
    (lambda d: d["keys"].__setitem__("debounce_ms", 1), "keys.debounce_ms"),
    (lambda d: d["keys"].__setitem__("pull_up", "yes"), "keys.pull_up"),
    (lambda d: d["status_led"].__setitem__("kind", "rainbow"), "status_led.kind"),
    (lambda d: d["status_led"].pop("pin"), "status_led.pin"),
    (lambda d: d["feedback"].__setitem__("buzzer", 5), "feedback.buzzer"),  # 5 is a key already
    (lambda d: d["printer"].__setitem__("connection", "bluetooth"), "printer.connection"),
    (lambda d: d["printer"].update(connection="network"), "printer.host"),
    (lambda d: d["printer"].__setitem__("width_px", 500), "printer.width_px"),
    (lambda d: d["display"].__setitem__("width", 128), "display.width"),
    (lambda d: d["display"].__setitem__("kind", "panel"), "display.kind"),
    (lambda d: d.__setitem__("simulte", True), "simulte"),
    (lambda d: d.__setitem__("printer", 3), "printer"),
])
def test_a_wrong_profile_is_reported_by_key_name(mutate, key):
    data = shipped_data("buttons-only-box")
    mutate(data)
    with pytest.raises(ProfileError) as e:
        parse_profile(data, "box.toml")
    assert any(p.startswith(key + ":") or p.startswith(key + " ") for p in e.value.problems), e.value.problems
    assert "box.toml" in str(e.value)


def test_all_problems_of_a_section_at_once():
    data = shipped_data("official-7in-touch")
    data["keys"]["debounce_ms"] = "30"
    data["keys"]["hold_max_ms"] = 10
    data["printer"]["cut"] = "half"
    with pytest.raises(ProfileError) as e:
        parse_profile(data)
    assert [p.split(":")[0] for p in e.value.problems] == ["keys.debounce_ms", "keys.hold_max_ms", "printer.cut"]


def test_pin_numbers():
    assert pin_number(17) == 17 and pin_number("GPIO17") == 17 and pin_number("gpio4") == 4
    for bad in (True, -1, 28, "17", "GPIO", "GPIO٣", 1.0, None):
        with pytest.raises(ValueError):
            pin_number(bad)


# ---- hypothesis: the loader is a decoder of untrusted files ------------------------------------

toml_leaf = st.one_of(st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False), st.text(max_size=12))
toml_value = st.recursive(toml_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                          max_leaves=12)
known_names = st.sampled_from(["keys", "pins", "printer", "display", "status_led", "feedback", "backlight", "name",
                               "simulate", "reason_flow", "kind", "pin", "touch", "connection", "very_satisfied"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.one_of(known_names, st.text(max_size=8)), toml_value, max_size=6))
def test_any_table_either_loads_or_names_its_problems(data):
    try:
        parse_profile(data)
    except ProfileError as e:
        assert e.problems and all(isinstance(p, str) and ":" in p for p in e.problems)


pins = st.lists(st.integers(0, 27), min_size=12, max_size=12, unique=True)


@st.composite
def valid_profiles(draw):
    p = draw(pins)
    keys = {k: p[i] for i, k in enumerate(LEVEL_KEYS)}
    if draw(st.booleans()):
        keys["print_slip"] = p[5]
    touch = draw(st.booleans())
    data = {
        "name": draw(st.text(max_size=20)),
        "simulate": draw(st.booleans()),
        "keys": {"pins": {k: (f"GPIO{v}" if draw(st.booleans()) else v) for k, v in keys.items()},
                 "debounce_ms": draw(st.integers(5, 200)), "hold_max_ms": draw(st.integers(500, 30000)),
                 "burst_max": draw(st.integers(2, 50)), "pull_up": draw(st.booleans())},
        "status_led": draw(st.sampled_from([{"kind": "none"}, {"kind": "mono", "pin": p[6]},
                                            {"kind": "rgb", "red": p[7], "green": p[8], "blue": p[9]}])),
        "feedback": {"led": p[10], "buzzer": p[11], "beep_ms": draw(st.integers(10, 1000))},
        "backlight": {"dim_percent": draw(st.integers(0, 100)), "node": draw(st.sampled_from(["", "10-0045"]))},
        "printer": draw(st.sampled_from([{"connection": "none"}, {"connection": "file", "devfile": "/dev/usb/lp0"},
                                         {"connection": "network", "host": "10.0.0.9", "port": 9100},
                                         {"connection": "serial", "devfile": "/dev/serial0", "baudrate": 19200},
                                         {"connection": "usb", "usb_vendor": 0x0416, "usb_product": 0x5011}])),
        "display": ({"kind": "panel", "touch": True, "width": 800, "height": 480} if touch else
                    {"kind": "fb", "touch": False, "width": 320, "height": 240,
                     "rotation": draw(st.sampled_from([0, 90, 180, 270]))}),
    }
    return data, keys


@settings(max_examples=150, deadline=None)
@given(valid_profiles())
def test_valid_profiles_load_with_their_values(sample):
    data, keys = sample
    p = parse_profile(data)
    assert p.keys.pins == keys
    assert p.keys.debounce_ms == data["keys"]["debounce_ms"]
    assert p.flow == ("screen" if data["display"]["touch"] else "keys")
    assert p.printer.connection == data["printer"]["connection"]
    assert p.feedback.buzzer == data["feedback"]["buzzer"]


@settings(max_examples=150, deadline=None)
@given(valid_profiles(), st.data())
def test_one_broken_value_is_named(sample, data):
    profile, _ = sample
    profile = copy.deepcopy(profile)
    section = data.draw(st.sampled_from(["keys", "feedback", "printer", "display"]))
    table = profile[section]
    key = data.draw(st.sampled_from(sorted(table)))
    table[key] = {"not": "a value"}
    with pytest.raises(ProfileError) as e:
        parse_profile(profile)
    assert any(p.startswith(f"{section}.{key}") for p in e.value.problems), e.value.problems


# ---- opening hours ----------------------------------------------------------------------------

def test_opening_hours():
    h = OpeningHours.parse("mon-fri 08:30-12:00,13:00-17:30; sat 09:00-12:00")
    assert h.is_open(local(8, 30, 0)) and not h.is_open(local(8, 29, 0))
    assert not h.is_open(local(12, 30, 2)) and h.is_open(local(17, 29, 4)) and not h.is_open(local(17, 30, 4))
    assert h.is_open(local(9, 0, 5)) and not h.is_open(local(13, 0, 5)) and not h.is_open(local(10, 0, 6))
    assert OpeningHours.parse("").is_open(local(3, 0, 6))
    wrap = OpeningHours.parse("sat-mon 00:00-24:00")
    assert wrap.is_open(local(23, 59, 6)) and wrap.is_open(local(0, 0, 0)) and not wrap.is_open(local(12, 0, 1))
    for bad in ("mon 17:00-08:00", "monday 08:00-17:00", "mon 8:00-17:00", "mon 08:00-24:01", "mon-fri",
                "mon 24:00-24:00", "mon 08:00"):
        with pytest.raises(HoursError):
            OpeningHours.parse(bad)


hm = st.integers(0, 23 * 60 + 59)


@st.composite
def hours_text(draw):
    rules = []
    for _ in range(draw(st.integers(1, 3))):
        days = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=3))
        items = [d if draw(st.booleans()) else f"{d}-{draw(st.sampled_from(DAYS))}" for d in days]
        spans = []
        for _ in range(draw(st.integers(1, 3))):
            a = draw(hm)
            b = draw(st.integers(a + 1, 24 * 60))
            spans.append(f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}")
        rules.append(",".join(items) + " " + ",".join(spans))
    return "; ".join(rules)


@settings(max_examples=200, deadline=None)
@given(hours_text())
def test_hours_round_trip_and_the_config_pattern_agrees(text):
    h = OpeningHours.parse(text)
    assert OpeningHours.parse(str(h)) == h
    assert re.match(PATTERN, text) and re.match(PATTERN, str(h))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="monfriwedsat0123456789:-;, \t", max_size=40))
def test_hours_parser_never_accepts_what_the_config_pattern_rejects(text):
    try:
        OpeningHours.parse(text)
    except HoursError:
        return
    assert re.match(PATTERN, text.strip())


def test_hardware_config_section():
    meta = {f.name: f.metadata for f in fields(HardwareSection)}
    assert meta["opening_hours"]["check"] == OpeningHours.parse  # the parser itself, not a copy of its grammar
    cfg = config.load([], {"HCP_HARDWARE_PROFILE": "buttons-only-box", "HCP_HARDWARE_SIMULATE": "yes",
                           "HCP_HARDWARE_OPENING_HOURS": "mon-fri 08:30-17:30", "HCP_HARDWARE_DIM_AFTER_S": "30"})
    assert cfg.hardware.simulate and cfg.hardware.dim_after_s == 30 and cfg.hardware.profile == "buttons-only-box"
    with pytest.raises(config.ConfigError) as e:
        config.load([], {"HCP_HARDWARE_OPENING_HOURS": "weekdays 9-5", "HCP_HARDWARE_DIM_AFTER_S": "1"})
    assert [p.split(" ")[0] for p in e.value.problems] == ["hardware.opening_hours", "hardware.dim_after_s"]


def test_extra_keys_are_optional():
    data = shipped_data("official-7in-touch")
    for extra in EXTRA_KEYS:
        data["keys"]["pins"].pop(extra, None)
    assert set(parse_profile(data).keys.pins) == set(LEVEL_KEYS)
