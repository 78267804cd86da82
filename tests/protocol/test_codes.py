"""Numeric codes at the platform edge: the two level orders and the channel (`pf`) codes."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codes import DEFAULT_CHANNELS, LEVEL_SCHEMES, CodeMap
from protocol.values import LEVELS, Channel, Level

# Written out from the texts themselves (not computed), so a reordered enum cannot go unnoticed.
GBT39046 = {"very_satisfied": 1, "satisfied": 2, "basically_satisfied": 3, "dissatisfied": 4,
            "very_dissatisfied": 5}                      # GB/T 39046-2020 Table A.8
PROVINCIAL = {"very_satisfied": 5, "satisfied": 4, "basically_satisfied": 3, "dissatisfied": 2,
              "very_dissatisfied": 1}                    # e.g. Zhejiang `satisfaction`
ZH = {"very_satisfied": "非常满意", "satisfied": "满意", "basically_satisfied": "基本满意",
      "dissatisfied": "不满意", "very_dissatisfied": "非常不满意"}


@pytest.mark.parametrize("scheme,table", [("gbt39046", GBT39046), ("provincial", PROVINCIAL)])
def test_level_codes_both_directions(scheme, table):
    codes = CodeMap.create(scheme)
    for name, number in table.items():
        assert codes.level_code(name) == number
        assert codes.level_code(Level(name)) == number
        assert codes.level_of(number) is Level(name)


def test_the_two_orders_are_mirror_images():
    gbt, prov = CodeMap.create("gbt39046"), CodeMap.create("provincial")
    assert gbt.level_code("very_satisfied") == 1 and prov.level_code("very_satisfied") == 5
    assert gbt.level_code("very_dissatisfied") == 5 and prov.level_code("very_dissatisfied") == 1
    for level in LEVELS:
        assert gbt.level_code(level) + prov.level_code(level) == 6
        assert prov.level_of(gbt.level_code(level)) == gbt.level_of(prov.level_code(level))


def test_default_scheme_is_the_national_standard():
    assert CodeMap.create().level_code(Level.VERY_SATISFIED) == 1


def test_level_names_and_chinese_labels():
    assert [lvl.value for lvl in LEVELS] == list(GBT39046)
    assert {lvl.value: lvl.zh for lvl in LEVELS} == ZH
    assert [lvl.value for lvl in LEVELS if lvl.is_bad] == ["dissatisfied", "very_dissatisfied"]


@pytest.mark.parametrize("scheme", sorted(LEVEL_SCHEMES))
def test_every_scheme_is_a_bijection_onto_1_to_5(scheme):
    assert sorted(LEVEL_SCHEMES[scheme].values()) == [1, 2, 3, 4, 5]
    assert set(LEVEL_SCHEMES[scheme]) == set(LEVELS)


@settings(max_examples=200, deadline=None)
@given(scheme=st.sampled_from(sorted(LEVEL_SCHEMES)), level=st.sampled_from(LEVELS))
def test_level_of_inverts_level_code(scheme, level):
    codes = CodeMap.create(scheme)
    assert codes.level_of(codes.level_code(level)) is level


@settings(max_examples=200, deadline=None)
@given(scheme=st.sampled_from(sorted(LEVEL_SCHEMES)),
       code=st.integers().filter(lambda n: not 1 <= n <= 5))
def test_codes_outside_1_to_5_have_no_level(scheme, code):
    with pytest.raises(ValueError):
        CodeMap.create(scheme).level_of(code)


@pytest.mark.parametrize("name", ["good", "VERY_SATISFIED", "非常满意", "", "1"])
def test_unknown_level_names_are_rejected(name):
    with pytest.raises(ValueError):
        CodeMap.create().level_code(name)


def test_unknown_scheme_is_rejected_naming_the_known_ones():
    with pytest.raises(ValueError, match="gbt39046.*provincial"):
        CodeMap.create("zhejiang")


# ---- channels ---------------------------------------------------------------------------------

DEFAULTS = {"touch": 4, "keys": 4, "qr": 3, "staff_qr": 3, "hall_qr": 3, "sms": 7, "other": 5}


def test_channel_defaults():
    codes = CodeMap.create()
    assert {c.value: codes.channel_code(c) for c in Channel} == DEFAULTS
    assert {c.value: codes.channel_code(c.value) for c in Channel} == DEFAULTS
    assert set(DEFAULT_CHANNELS) == set(Channel)


def test_channel_override_changes_only_what_it_names():
    codes = CodeMap.create("provincial", {"sms": 6})  # the province that numbers SMS 6
    assert codes.channel_code(Channel.SMS) == 6
    assert {c.value: codes.channel_code(c) for c in Channel if c is not Channel.SMS} == \
        {k: v for k, v in DEFAULTS.items() if k != "sms"}
    assert CodeMap.create().channel_code("sms") == 7  # the defaults are not mutated by an override
    assert DEFAULT_CHANNELS[Channel.SMS] == 7


@settings(max_examples=200, deadline=None)
@given(over=st.dictionaries(st.sampled_from([c.value for c in Channel]), st.integers(0, 99)))
def test_channel_overrides_apply(over):
    codes = CodeMap.create("gbt39046", over)
    for c in Channel:
        assert codes.channel_code(c) == over.get(c.value, DEFAULTS[c.value])


@pytest.mark.parametrize("name", ["SMS", "wechat", "", "phone"])
def test_unknown_channel_names_are_rejected(name):
    with pytest.raises(ValueError, match="unknown channel"):
        CodeMap.create("gbt39046", {name: 6})
    with pytest.raises(ValueError):
        CodeMap.create().channel_code(name)
