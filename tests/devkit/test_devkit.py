"""The development kit itself: its messages are valid protocol, its fakes behave as the tests rely on."""
from __future__ import annotations

import pytest

from devkit import factories
from devkit.clock import FakeClock
from devkit.waiting import wait_for
from protocol import codec
from protocol.values import Level


def test_every_factory_message_passes_the_protocol_schemas():
    case = factories.case_model("SH1")
    for msg in (factories.catalog("C1"), factories.duty("C1", "W01"), factories.duty("C1", "W01", None),
                factories.case("C1", "W01", "SH1"), factories.case("C1", "W01", "SH1", "closed"),
                factories.random_case("C1", "W01", 7),
                factories.binding("C1", "t1", window="W01", window_name="W01", staff=factories.STAFF),
                factories.binding("C1", "t1", "retired"),
                factories.rating("t1"),
                factories.rating("t1", kind="case", case=case, staff=case.staff, level=Level.DISSATISFIED,
                                 reasons=["501"])):
        assert codec.validate(msg) is msg
        assert codec.decode(msg["type"], codec.encode(msg)) == msg


def test_the_one_staff_fixture_and_the_demo_catalog_as_core_values():
    assert factories.staff().id == factories.STAFF[0]["id"] and factories.staff(1).name == factories.STAFF[1]["name"]
    assert [r.code for r in factories.catalog_model().reasons] == [r["code"] for r in factories.REASONS]
    assert factories.case_model("SH9").staff == factories.staff()


def test_fake_clock_moves_only_by_hand():
    clock = FakeClock(5.0)
    assert clock() == 5.0 and clock.advance(1.5) == 6.5 and clock() == 6.5


def test_wait_for_returns_the_value_and_fails_on_timeout():
    assert wait_for(lambda: 42, 1) == 42
    with pytest.raises(AssertionError, match="the impossible"):
        wait_for(lambda: None, 0.05, "the impossible")
