"""Hardware self-test for technicians: ``python -m drivers.selftest [--profile NAME] [--simulate]``.

Walks every part the profile describes — each key (press it when asked), the status LED patterns, the
key-feedback LED, the buzzer, the backlight levels, a printed test page, the small display — and prints
PASS/FAIL per step; the exit code is 0 only when every step passed. Outputs are checked twice: the
driver's read-back (pin state, sysfs value, framebuffer bytes, printer status) and, when someone is
there, a yes/no question ("did the LED light?"). ``--unattended`` skips the questions (read-back only).
``--simulate`` runs against the simulated twins, with a simulated technician pressing the keys.

For the UI's maintenance screen: ``maintenance_hooks(attachment, say=…, on_report=…)`` gives the
zero-argument ``test_keys`` and ``print_test_page`` hooks (non-blocking); underneath are
``run(attachment, operator, steps=["keys"])`` (key presses are diverted from the terminal while it runs,
so they rate nothing) and ``print_test_page(attachment)``.
"""
from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from PIL import Image, ImageDraw

from drivers.feedback import Status
from drivers.fonts import font
from drivers.keys import Press
from drivers.printer import PrintResult
from drivers.profile import Profile, ProfileError, load_profile
from drivers.rig import Rig
from protocol.values import Level

STEPS = ("keys", "status_led", "feedback_led", "buzzer", "backlight", "printer", "display")
KEY_LABELS = {**{lvl.value: lvl.zh for lvl in Level}, "print_slip": "打印凭条", "call_staff": "呼叫工作人员"}


@dataclass(frozen=True)
class StepResult:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Report:
    profile: str
    simulate: bool
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    def text(self) -> str:
        width = max((len(s.name) for s in self.steps), default=4) + 2
        lines = [f"self-test of {self.profile}{' (simulated)' if self.simulate else ''}"]
        lines += [f"  {'PASS' if s.ok else 'FAIL'}  {s.name:<{width}}{s.detail}" for s in self.steps]
        lines.append(f"{'PASS' if self.ok else 'FAIL'}: {sum(s.ok for s in self.steps)} of {len(self.steps)} passed")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"profile": self.profile, "simulate": self.simulate, "ok": self.ok,
                "steps": [asdict(s) for s in self.steps]}


class Operator(Protocol):
    """The person doing the test (or a stand-in): told what to do, asked what they saw."""

    def say(self, text: str) -> None: ...

    def confirm(self, question: str) -> bool | None: ...  # None: nobody can tell (read-back decides)

    def prompt_key(self, key: str, label: str) -> None: ...


class ConsoleOperator:
    """A technician at a terminal: prompts on stdout, answers y/n on stdin."""

    def __init__(self, out=sys.stdout, inp=sys.stdin):
        self.out, self.inp = out, inp

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def confirm(self, question: str) -> bool | None:
        self.out.write(f"{question} [y/n] ")
        self.out.flush()
        answer = self.inp.readline().strip().lower()
        return answer in ("y", "yes", "是", "1")

    def prompt_key(self, key: str, label: str) -> None:
        self.say(f"请按【{label}】键 (press the {key} key)")


class UnattendedOperator(ConsoleOperator):
    """Nobody to ask: outputs are judged by read-back only."""

    def confirm(self, question: str) -> bool | None:
        return None


class SimOperator(ConsoleOperator):
    """A simulated technician: presses the asked key on the mock pins and says yes to what it 'sees'."""

    def __init__(self, rig: Rig, out=sys.stdout, wrong: dict[str, str] | None = None, skip: set[str] = frozenset()):
        super().__init__(out=out)
        self.rig = rig
        self.wrong = wrong or {}  # key → the key pressed instead (to test the test)
        self.skip = set(skip)  # keys never pressed

    def confirm(self, question: str) -> bool | None:
        return True

    def prompt_key(self, key: str, label: str) -> None:
        super().prompt_key(key, label)
        if key in self.skip:
            return
        actual = self.wrong.get(key, key)
        threading.Thread(target=self.rig.press, args=(actual,), daemon=True).start()


# ---- running ------------------------------------------------------------------------------------

def _rig_of(target: Any, simulate: bool | None, sysfs_root: str) -> tuple[Rig, bool, Any]:
    """(rig, whether we built it and must close it, the attachment or None)."""
    if isinstance(target, Rig):
        return target, False, None
    if hasattr(target, "rig") and isinstance(target.rig, Rig):
        return target.rig, False, target
    return Rig(target, simulate=simulate, sysfs_root=sysfs_root), True, None


def run(target: Any, operator: Operator | None = None, steps: list[str] | tuple[str, ...] | None = None, *,
        simulate: bool | None = None, sysfs_root: str = "/sys", key_timeout_s: float | None = None,
        dwell_s: float | None = None, artifacts: str | Path | None = None) -> Report:
    """Test the parts of `target` (an Attachment, a Rig, a Profile or a profile name/path)."""
    rig, owned, attachment = _rig_of(target, simulate, sysfs_root)
    operator = operator or (SimOperator(rig) if rig.simulate else ConsoleOperator())
    key_timeout_s = key_timeout_s if key_timeout_s is not None else (5.0 if rig.simulate else 20.0)
    dwell_s = dwell_s if dwell_s is not None else (0.05 if rig.simulate else 1.0)
    report = Report(rig.profile.name, rig.simulate)
    wanted = [s for s in STEPS if steps is None or s in steps]
    for part, problem in rig.problems.items():
        report.steps.append(StepResult(f"open {part}", False, problem))
    try:
        with (attachment.paused() if attachment is not None else nullcontext()):
            for step in wanted:
                fn = _STEP_FUNCS[step]
                for result in fn(rig, operator, key_timeout_s=key_timeout_s, dwell_s=dwell_s, artifacts=artifacts):
                    report.steps.append(result)
                    operator.say(f"{'PASS' if result.ok else 'FAIL'} {result.name} {result.detail}")
    finally:
        if owned:
            rig.close()
    return report


def print_test_page(target: Any, on_done: Callable[[PrintResult], None] | None = None) -> PrintResult | None:
    """The maintenance hook "print test page": non-blocking on an Attachment (result to on_done and the
    attachment's on_print listeners); blocking on a Rig / profile."""
    if hasattr(target, "print_test_page") and not isinstance(target, Rig):
        return target.print_test_page(on_done)
    rig, owned, _ = _rig_of(target, None, "/sys")
    try:
        if rig.printer is None:
            result = PrintResult(False, "test", reason="offline", detail="no printer in this profile")
        else:
            result = rig.printer.wait_test_page(rig.profile.name)
        if on_done:
            on_done(result)
        return result
    finally:
        if owned:
            rig.close()


class RelayOperator:
    """For a running UI: prompts go to `say` (called on the self-test thread: hand them to the UI thread);
    nothing is asked, so outputs are judged by read-back."""

    def __init__(self, say: Callable[[str], None]):
        self._say = say

    def say(self, text: str) -> None:
        self._say(text)

    def confirm(self, question: str) -> bool | None:
        return None

    def prompt_key(self, key: str, label: str) -> None:
        self._say(f"请按【{label}】键")


def maintenance_hooks(attachment: Any, *, say: Callable[[str], None] = lambda text: None,
                      on_report: Callable[[Report], None] = lambda report: None,
                      on_print: Callable[[PrintResult], None] = lambda result: None,
                      key_timeout_s: float = 15.0) -> dict[str, Callable[[], str | None]]:
    """Zero-argument hooks for the UI's maintenance screen (``ui.hooks.MaintenanceHooks.register``):
    ``test_keys`` and ``print_test_page``. Each returns at once with a line to show; the work runs on a
    thread and reports through `say` / `on_report` / `on_print` (called off the UI thread)."""
    busy = threading.Lock()

    def test_keys() -> str:
        if not busy.acquire(blocking=False):
            return "按键测试正在进行"

        def work() -> None:
            try:
                on_report(run(attachment, RelayOperator(say), steps=["keys"], key_timeout_s=key_timeout_s))
            finally:
                busy.release()

        threading.Thread(target=work, name="selftest-keys", daemon=True).start()
        return "按键测试：请按提示依次按下每个键（按键不会产生评价）"

    def print_test() -> str:
        refused = print_test_page(attachment, on_done=on_print)
        return "正在打印测试页…" if refused is None else f"无法打印测试页：{refused.reason} {refused.detail}".strip()

    return {"test_keys": test_keys, "print_test_page": print_test}


def _verdict(name: str, driven: bool, seen: bool | None, what: str) -> StepResult:
    if not driven:
        return StepResult(name, False, f"{what}: read-back does not match")
    if seen is False:
        return StepResult(name, False, f"{what}: driven, but the technician did not see/hear it")
    return StepResult(name, True, f"{what}: driven" + ("; confirmed" if seen else "; not observed (unattended)"))


def _keys(rig: Rig, op: Operator, *, key_timeout_s: float, **_: Any):
    if rig.keys is None or rig.profile.keys is None:
        return
    presses: queue.Queue[Press] = queue.Queue()
    with rig.keys.diverted(presses.put):
        for key in rig.profile.keys.pins:
            while not presses.empty():
                presses.get_nowait()
            op.prompt_key(key, KEY_LABELS.get(key, key))
            try:
                press = presses.get(timeout=key_timeout_s)
            except queue.Empty:
                yield StepResult(f"key {key}", False, f"no press within {key_timeout_s:.0f} s")
                continue
            note = " (quick succession: in service the burst filter would reject it)" if press.reason == "burst" else ""
            if press.key != key:
                yield StepResult(f"key {key}", False, f"got {press.key} instead (wiring swapped?)")
            elif not press.accepted and press.reason != "burst":  # bursts are about rate, not wiring
                yield StepResult(f"key {key}", False, f"press rejected: {press.reason}")
            else:
                yield StepResult(f"key {key}", True, f"pressed {press.duration * 1000:.0f} ms{note}")


def _status_led(rig: Rig, op: Operator, *, dwell_s: float, **_: Any):
    if rig.status is None:
        return
    led = rig.status.led
    driven = True
    for status in Status:
        rig.status.show(status)
        if status in (Status.ONLINE, Status.OFFLINE):
            value = led.value
            driven &= (value == (0, 1, 0) if status == Status.ONLINE else value == (1, 1, 0)) if rig.status.rgb \
                else bool(value) or status == Status.OFFLINE
        time.sleep(dwell_s * 2)
    rig.status.off()
    seen = op.confirm("状态灯是否依次显示：在线、积压、离线、故障 四种样式？")
    yield _verdict("status LED", driven, seen, "online/backlog/offline/fault patterns")


def _output(device: Any, name: str, question: str, op: Operator, dwell_s: float) -> StepResult:
    device.on()
    driven = bool(device.value)
    time.sleep(dwell_s)
    device.off()
    driven = driven and not device.value
    return _verdict(name, driven, op.confirm(question), "on then off")


def _feedback_led(rig: Rig, op: Operator, *, dwell_s: float, **_: Any):
    if rig.feedback.led is not None:
        yield _output(rig.feedback.led, "feedback LED", "按键指示灯是否亮起又熄灭？", op, dwell_s)


def _buzzer(rig: Rig, op: Operator, *, dwell_s: float, **_: Any):
    if rig.feedback.buzzer is not None:
        yield _output(rig.feedback.buzzer, "buzzer", "是否听到蜂鸣声？", op, dwell_s)


def _backlight(rig: Rig, op: Operator, *, dwell_s: float, **_: Any):
    if rig.backlight is None:
        return
    bright = rig.profile.backlight.bright_percent
    bad = []
    for pct in (100, 50, 10, 0, bright):
        try:
            rig.backlight.set(pct)
            got, powered = rig.backlight.read()
        except (OSError, ValueError) as e:
            yield StepResult("backlight", False, str(e))
            return
        step = 100 / getattr(rig.backlight, "max", 100)
        if (pct == 0 and powered) or (pct > 0 and (not powered or abs(got - pct) > step)):
            bad.append(f"{pct}% read back as {got:.0f}%{'' if powered else ' off'}")
        time.sleep(dwell_s)
    seen = op.confirm("背光是否由亮到暗、熄灭后又恢复？")
    result = _verdict("backlight", not bad, seen, "levels 100/50/10/0 %")
    yield StepResult(result.name, result.ok, result.detail + ("; " + ", ".join(bad) if bad else ""))


def _printer(rig: Rig, op: Operator, *, artifacts: Any = None, **_: Any):
    if rig.printer is None:
        return
    result = rig.printer.wait_test_page(rig.profile.name)
    if not result.ok:
        yield StepResult("printer", False, f"{result.reason}: {result.detail}")
        return
    if artifacts and rig.simulate and rig.printer.sim_device is not None:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        (Path(artifacts) / "test-page.escpos").write_bytes(rig.printer.sim_device.output)
    seen = op.confirm("测试页是否打印：中文清晰、二维码完整、已切纸/可撕下？")
    yield _verdict("printer", True, seen, "test page sent")


def test_pattern(size: tuple[int, int]) -> Image.Image:
    """Colour bars, a white frame and Chinese text."""
    w, h = size
    img = Image.new("RGB", size, (0, 0, 0))
    d = ImageDraw.Draw(img)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (255, 255, 0), (0, 255, 255)]
    for i, c in enumerate(colours):
        d.rectangle((i * w // len(colours), 0, (i + 1) * w // len(colours) - 1, h // 2), fill=c)
    d.rectangle((0, 0, w - 1, h - 1), outline=(255, 255, 255))
    d.text((8, h // 2 + 16), "显示测试 好差评", font=font(22), fill=(255, 255, 255))
    return img


def _display(rig: Rig, op: Operator, *, artifacts: Any = None, **_: Any):
    disp = rig.display
    if disp is None:
        return
    img = test_pattern(disp.size)
    try:
        disp.show(img)
    except (OSError, ValueError) as e:
        yield StepResult("display", False, str(e))
        return
    if hasattr(disp, "path"):
        from drivers.display import rgb565
        expected = rgb565(img.rotate(-disp.rotation, expand=True) if disp.rotation else img)
        with open(disp.path, "rb") as f:
            driven = f.read(disp.width * 2) == expected[:disp.width * 2]
    else:
        driven = disp.frame is not None and disp.frame.tobytes() == img.tobytes()
        if artifacts and disp.frame is not None:
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            disp.frame.save(Path(artifacts) / "display-test.png")
    seen = op.confirm("显示屏是否显示彩色条和“显示测试”中文？")
    yield _verdict("display", driven, seen, "test pattern")


_STEP_FUNCS = {"keys": _keys, "status_led": _status_led, "feedback_led": _feedback_led, "buzzer": _buzzer,
               "backlight": _backlight, "printer": _printer, "display": _display}


# ---- command line -------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m drivers.selftest", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", help="shipped profile name or TOML path (default: [hardware] profile of the config)")
    ap.add_argument("--config", action="append", help="terminal TOML file(s) to read [hardware] from")
    ap.add_argument("--simulate", action="store_true", help="use the simulated twins and a simulated technician")
    ap.add_argument("--unattended", action="store_true", help="ask nothing: judge outputs by read-back only")
    ap.add_argument("--steps", help=f"comma-separated subset of {','.join(STEPS)}")
    ap.add_argument("--key-timeout", type=float, help="seconds to wait for each key")
    ap.add_argument("--artifacts", help="simulation: write the display frame and printer bytes here")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    from device import config

    try:
        cfg = config.load(args.config)
    except config.ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    name = args.profile or cfg.hardware.profile
    if not name:
        print("no hardware profile: pass --profile NAME (shipped: "
              f"{', '.join(__import__('drivers.profile').profile.shipped())})", file=sys.stderr)
        return 2
    try:
        profile: Profile = load_profile(name)
    except ProfileError as e:
        print(e, file=sys.stderr)
        return 2
    steps = [s.strip() for s in args.steps.split(",")] if args.steps else None
    if steps and set(steps) - set(STEPS):
        print(f"unknown steps {sorted(set(steps) - set(STEPS))}; known: {', '.join(STEPS)}", file=sys.stderr)
        return 2
    rig = Rig(profile, simulate=args.simulate or cfg.hardware.simulate, sysfs_root=cfg.hardware.sysfs_root)
    with ExitStack() as stack:
        stack.callback(rig.close)
        out = sys.stderr if args.json else sys.stdout
        operator = (SimOperator(rig, out=out) if rig.simulate else
                    UnattendedOperator(out=out) if args.unattended else ConsoleOperator(out=out))
        report = run(rig, operator, steps, key_timeout_s=args.key_timeout, artifacts=args.artifacts)
    print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2) if args.json else report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
