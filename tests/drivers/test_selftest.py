"""The technicians' self-test: every part walked, pass/fail reported, in simulation and on temp 'hardware'."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import tomllib

from device.machine import DutyChanged, Phase
from devkit.waiting import wait_for
from drivers import attach, selftest
from drivers.profile import PROFILES_DIR, parse_profile
from drivers.rig import Rig
from drivers.selftest import SimOperator, UnattendedOperator
from tests.drivers.conftest import STAFF


def names(report) -> list[str]:
    return [s.name for s in report.steps]


def test_simulated_box_passes_every_step():
    report = selftest.run("buttons-only-box", simulate=True)
    assert report.ok, report.text()
    assert names(report) == ["key very_satisfied", "key satisfied", "key basically_satisfied", "key dissatisfied",
                             "key very_dissatisfied", "key print_slip", "key call_staff", "status LED",
                             "feedback LED", "buzzer", "backlight", "printer", "display"]
    assert "PASS: 13 of 13 passed" in report.text()


def test_swapped_and_dead_keys_fail(factory):
    rig = Rig("official-7in-touch", simulate=True, pin_factory=factory)
    try:
        op = SimOperator(rig, out=io.StringIO(), wrong={"satisfied": "dissatisfied"}, skip={"print_slip"})
        report = selftest.run(rig, op, steps=["keys"], key_timeout_s=0.5)
    finally:
        rig.close()
    results = {s.name: s for s in report.steps}
    assert not report.ok
    assert not results["key satisfied"].ok and "got dissatisfied instead" in results["key satisfied"].detail
    assert not results["key print_slip"].ok and "no press" in results["key print_slip"].detail
    assert results["key very_satisfied"].ok


def test_technician_saying_no_fails_the_step(factory):
    class Doubter(SimOperator):
        def confirm(self, question: str):
            return "蜂鸣" not in question

    rig = Rig("buttons-only-box", simulate=True, pin_factory=factory)
    try:
        report = selftest.run(rig, Doubter(rig, out=io.StringIO()), steps=["buzzer", "feedback_led"])
    finally:
        rig.close()
    assert [(s.name, s.ok) for s in report.steps] == [("feedback LED", True), ("buzzer", False)]


def box_profile(tmp_path, fb_path):
    data = tomllib.loads((PROFILES_DIR / "buttons-only-box.toml").read_text("utf-8"))
    data["display"]["device"] = str(fb_path)
    return parse_profile(data)


def test_real_drivers_on_temp_sysfs_and_framebuffer(tmp_path, factory, sysfs, fb_file):
    node = sysfs("fb_st7789v", 1, bl_power=False)
    rig = Rig(box_profile(tmp_path, fb_file(240, 240)), simulate=False, pin_factory=factory,
              sysfs_root=str(sysfs.root))
    try:
        assert not rig.problems
        report = selftest.run(rig, UnattendedOperator(out=io.StringIO()), steps=["backlight", "display"])
        assert report.ok, report.text()
        assert all("not observed" in s.detail for s in report.steps)
        node.joinpath("brightness").unlink()
        node.joinpath("brightness").mkdir()  # the node stops taking writes
        report = selftest.run(rig, UnattendedOperator(out=io.StringIO()), steps=["backlight"])
        assert not report.ok
    finally:
        rig.close()


def test_missing_parts_are_failures(tmp_path, factory):
    rig = Rig(box_profile(tmp_path, tmp_path / "fb9"), simulate=False, pin_factory=factory,
              sysfs_root=str(tmp_path / "nosys"))
    try:
        report = selftest.run(rig, UnattendedOperator(out=io.StringIO()), steps=["display"])
    finally:
        rig.close()
    assert not report.ok and {"open backlight", "open display"} <= set(names(report))


def test_test_keys_on_an_attached_terminal_rates_nothing(offline_terminal, factory):
    t = offline_terminal()
    t.submit(DutyChanged(STAFF, "一号窗口"))
    wait_for(lambda: t.state.staff is not None, 5, "duty")
    a = attach(t, "buttons-only-box", simulate=True, pin_factory=factory)
    try:
        report = selftest.run(a, SimOperator(a.rig, out=io.StringIO()), steps=["keys", "status_led"])
        assert report.ok, report.text()
        assert t.state.phase == Phase.IDLE and t.outbox.counts().pending == 0  # idle presses would rate staff
        done = []
        assert selftest.print_test_page(a, on_done=done.append) is None
        wait_for(lambda: done, 5, "test page")
        assert done[0].ok and b"\x1dv0" in a.rig.printer.sim_device.output
    finally:
        a.close()


def test_print_test_page_hook_on_a_profile():
    result = selftest.print_test_page(parse_profile({**tomllib.loads(
        (PROFILES_DIR / "official-7in-touch.toml").read_text("utf-8")), "simulate": True}))
    assert result.ok and result.job == "test"


def test_command_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "drivers.selftest", "--profile", "buttons-only-box", "--simulate",
                          "--json", "--artifacts", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"] and len(report["steps"]) == 13
    assert (tmp_path / "display-test.png").exists() and (tmp_path / "test-page.escpos").read_bytes().count(b"\x1dv0")
    bad = subprocess.run([sys.executable, "-m", "drivers.selftest", "--profile", "buttons-only"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "did you mean 'buttons-only-box'" in bad.stderr
    none = subprocess.run([sys.executable, "-m", "drivers.selftest", "--config", str(tmp_path / "none.toml")],
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin"})
    assert none.returncode == 2 and "no hardware profile" in none.stderr


def test_maintenance_hooks_for_the_ui(offline_terminal, factory):
    from ui.hooks import MaintenanceHooks

    t = offline_terminal()
    a = attach(t, "official-7in-touch", simulate=True, pin_factory=factory)
    said, reports, prints = [], [], []
    try:
        hooks = MaintenanceHooks()
        for action, fn in selftest.maintenance_hooks(a, say=said.append, on_report=reports.append,
                                                     on_print=prints.append, key_timeout_s=5).items():
            hooks.register(action, fn)
        ok, message = hooks.run("test_keys")
        assert ok and "按键" in message
        for i, key in enumerate(a.profile.keys.pins):  # the technician presses each key when the screen asks
            prompts = lambda: [line for line in said if line.startswith("请按")]  # noqa: E731
            wait_for(lambda: len(prompts()) == i + 1, 5, f"{key} asked")
            assert prompts()[-1] == f"请按【{selftest.KEY_LABELS[key]}】键"
            a.rig.press(key)
        wait_for(lambda: reports, 10, "report")
        assert reports[0].ok and len(reports[0].steps) == len(a.profile.keys.pins)
        assert t.outbox.counts().pending == 0
        ok, message = hooks.run("print_test_page")
        assert ok and message == "正在打印测试页…"
        wait_for(lambda: prints, 5, "test page printed")
        assert prints[0].ok
    finally:
        a.close()
