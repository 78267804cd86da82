"""Backlight on a temp sysfs tree: discovery, scaling, bl_power, and the dim/wake/hours keeper."""
from __future__ import annotations

import pytest

from device.machine import Phase, State
from drivers.backlight import BacklightError, BacklightKeeper, SimBacklight, SysfsBacklight, discover
from drivers.hours import OpeningHours
from tests.drivers.conftest import case_state, local


def read(node, name):
    return (node / name).read_text().strip()


def test_discovery(sysfs):
    with pytest.raises(BacklightError, match="no backlight"):
        discover(sysfs.root)
    only = sysfs("rpi_backlight", 255)
    assert discover(sysfs.root) == only
    sysfs("acpi_video0", 15, type="firmware")
    sysfs("10-0045", 255, type="raw")
    assert discover(sysfs.root).name == "acpi_video0"  # the kernel's preferred type wins
    assert discover(sysfs.root, "10-0045").name == "10-0045"
    with pytest.raises(BacklightError, match="backlight.node"):
        discover(sysfs.root, "4-0045")


def test_known_pi_names_before_others(sysfs):
    sysfs("aaa", 100)
    sysfs("4-0045", 255)
    assert discover(sysfs.root).name == "4-0045"


@pytest.mark.parametrize("max_b, pct, raw", [(255, 100, 255), (255, 50, 128), (255, 20, 51), (31, 50, 16),
                                             (31, 1, 1), (1, 20, 1), (255, 0.1, 1)])
def test_scaling_by_max_brightness(sysfs, max_b, pct, raw):
    node = sysfs("10-0045", max_b)
    bl = SysfsBacklight(node)
    bl.set(pct)
    assert int(read(node, "brightness")) == raw and read(node, "bl_power") == "0"


def test_off_uses_bl_power_and_on_restores(sysfs):
    node = sysfs("10-0045", 255)
    bl = SysfsBacklight(node)
    bl.set(0)
    assert read(node, "bl_power") == "4" and bl.read()[1] is False
    bl.set(60)
    assert read(node, "bl_power") == "0" and read(node, "brightness") == "153"
    assert bl.read() == (pytest.approx(60), True)


def test_without_bl_power_off_writes_zero(sysfs):
    node = sysfs("fb_st7789v", 1, bl_power=False)
    bl = SysfsBacklight(node)
    bl.set(0)
    assert read(node, "brightness") == "0" and bl.read() == (0, False)


def test_unreadable_node(sysfs):
    node = sysfs("x", 255)
    (node / "max_brightness").write_text("0\n")
    with pytest.raises(BacklightError):
        SysfsBacklight(node)


class Now:
    def __init__(self, when):
        self.when = when

    def __call__(self):
        return self.when


def keeper(clock, when, hours="mon-fri 08:30-17:30", backlight=None, dim_after_s=60):
    bl = backlight or SimBacklight()
    return bl, BacklightKeeper(bl, bright=100, dim=20, dim_after_s=dim_after_s, hours=OpeningHours.parse(hours),
                               clock=clock, local_now=when)


def test_dims_after_idle_and_wakes_on_case_key_and_touch(clock):
    when = Now(local(10, 0, 1))
    bl, k = keeper(clock, when)
    assert k.tick() == "bright" and bl.percent == 100
    clock.advance(59)
    assert k.tick() == "bright"
    clock.advance(2)
    assert k.tick() == "dim" and bl.percent == 20
    k.on_state(case_state())  # a case arrives
    assert k.mode == "bright" and bl.percent == 100
    clock.advance(600)
    assert k.tick() == "bright"  # a citizen is rating: never dim
    k.on_state(State())
    clock.advance(61)
    assert k.tick() == "dim"
    k.activity()  # a key or a touch
    assert k.mode == "bright"
    assert bl.history == [100, 20, 100, 20, 100]


def test_off_outside_opening_hours_and_a_wake_lasts_the_idle_timeout(clock):
    when = Now(local(19, 0, 1))
    bl, k = keeper(clock, when)
    clock.advance(61)
    assert k.tick() == "off" and bl.percent == 0 and k.is_dark
    k.activity()
    assert k.mode == "bright" and not k.is_dark
    clock.advance(61)
    assert k.tick() == "off"
    when.when = local(9, 0, 2)  # next morning
    assert k.tick() == "dim"
    when.when = local(10, 0, 5)  # Saturday: closed
    assert k.tick() == "off"


def test_same_case_again_does_not_wake(clock):
    when = Now(local(10, 0, 1))
    bl, k = keeper(clock, when)
    k.on_state(case_state())
    k.on_state(State(case=case_state().case, phase=Phase.IDLE, case_rated=True))
    clock.advance(61)
    assert k.tick() == "dim"
    k.on_state(State(case=case_state().case, phase=Phase.IDLE, case_rated=True))  # unchanged case
    assert k.mode == "dim"


def test_keeper_on_real_sysfs_and_write_failure_alarms_once(sysfs, clock):
    node = sysfs("10-0045", 31)
    errors = []
    k = BacklightKeeper(SysfsBacklight(node), bright=100, dim=10, dim_after_s=10, clock=clock,
                        on_error=errors.append)
    assert k.tick() == "bright" and read(node, "brightness") == "31"
    clock.advance(11)
    assert k.tick() == "dim" and read(node, "brightness") == "3"
    node.joinpath("brightness").unlink()
    node.joinpath("brightness").mkdir()  # writes now fail
    k.activity()
    k.activity()
    assert k.mode == "dim" and len(errors) == 1
