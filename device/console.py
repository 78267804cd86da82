"""A headless console view: the rating screens as text, keyboard input on stdin.

Used by `make run` on machines without a screen and by the crash tests (which drive it through a
pipe). Like any view it sees only the core's port (`device.port`): it renders each published
`Snapshot` and submits events.
"""
from __future__ import annotations

import sys
import threading
import unicodedata
from typing import TextIO

from device.machine import Back, LevelPressed, Phase, ReasonsConfirmed, ReasonToggled, State
from device.port import Snapshot, TerminalPort
from protocol.values import LEVELS, Channel

# Controls (ANSI escapes, NUL, newlines: Cc), format characters (bidi overrides such as U+202E: Cf)
# and line/paragraph separators could repaint or reorder the operator's terminal.
_UNPRINTABLE = frozenset(("Cc", "Cf", "Zl", "Zp"))


def printable(text: object) -> str:
    """Center-supplied text as it may reach a terminal: without control and bidi-format characters."""
    return "".join(ch for ch in str(text) if unicodedata.category(ch) not in _UNPRINTABLE)


HELP = "键入 1–5 评价 (1 非常满意 … 5 非常不满意)；原因页：数字选择，y 确认，n 返回；q 退出"


class ConsoleView:
    """`run()` until `q` on the input, end of input, or `stop()` (a signal)."""

    def __init__(self, terminal: TerminalPort, out: TextIO = sys.stdout, inp: TextIO = sys.stdin):
        self.t = terminal
        self.out = out
        self.inp = inp
        self._last = ""
        self._pairing_line = ""
        self.quit = threading.Event()

    def run(self) -> None:
        self.t.watch(self.render)
        threading.Thread(target=self._read, name="console-input", daemon=True).start()
        while not self.quit.wait(0.5):  # (a timeout keeps the main thread responsive to signals)
            pass

    def stop(self) -> None:
        self.quit.set()

    # ---- output ---------------------------------------------------------------------------------

    def render(self, snap: Snapshot) -> None:
        if snap.mode != "plain":  # the console shows the rating screens; say what the Unpaired screen would
            self._say_pairing(snap)
        text = self.screen(snap)
        if text != self._last:
            self._last = text
            self.out.write(text + "\n")
            self.out.flush()

    def _say_pairing(self, snap: Snapshot) -> None:
        p = snap.pairing
        line = f"[未配对 {p.state}] 配对码 {p.code or '—'} {p.qr_url} {p.detail}".rstrip() if p else \
            "[已配对] 窗口 " + snap.window
        if line != self._pairing_line:
            self._pairing_line = line
            self.out.write(line + "\n")
            self.out.flush()

    def screen(self, snap: Snapshot) -> str:
        s = snap.state
        net = "在线" if snap.online else "离线"
        head = f"── {printable(s.window_name or snap.window)} │ {net} │ 待送 {snap.pending}" + \
               (f" │ 隔离 {snap.quarantined}" if snap.quarantined else "") + " ──"
        if s.phase == Phase.IDLE:
            staff = f"当班：{printable(s.staff.name)}（{printable(s.staff.number or s.staff.id)}）" if s.staff else "当班：—"
            return f"{head}\n[空闲] {staff}\n{HELP}"
        if s.phase == Phase.CASE and s.case:
            levels = "  ".join(f"{i + 1} {lvl.zh}" for i, lvl in enumerate(LEVELS))
            scan = f"扫码评价，可留言、上传图片：{printable(s.qr.url)}" if s.qr else "请在屏幕上评价"
            return (f"{head}\n[请评价] 事项：{printable(s.case.item_name)}  办件：{printable(s.case.id)}\n"
                    f"  工作人员：{printable(s.case.staff.name)}  申请人：{printable(s.case.applicant_display)}\n"
                    f"  {scan}\n  {levels}")
        if s.phase == Phase.REASONS:
            if s.catalog is None:
                return f"{head}\n[原因] 原因列表尚未下发，请扫码评价。n 返回"
            items = "\n".join(f"  {i + 1} [{'x' if r.code in s.selected else ' '}] {printable(r.zh)}"
                              for i, r in enumerate(s.catalog.reasons))
            return f"{head}\n[请选择不满意的原因（可多选）] {s.level.zh}\n{items}\n  y 确认  n 返回"
        if s.phase == Phase.THANKS:
            return f"{head}\n[谢谢您的评价！] rating {s.last_rating_id}"
        if s.phase == Phase.RATED_ELSEWHERE:
            return f"{head}\n[您已通过手机完成评价，谢谢！]"
        if s.phase == Phase.UNAVAILABLE:
            return f"{head}\n[暂时无法记录评价，请扫描二维码评价]"
        return f"{head}\n[{s.phase.value}]"

    # ---- input ----------------------------------------------------------------------------------

    def _read(self) -> None:
        for line in self.inp:
            cmd = line.strip().lower()
            if cmd == "q":
                self.quit.set()
                return
            event = self.parse(cmd, self.t.snapshot.state)
            if event is not None:
                self.t.submit(event)

    @staticmethod
    def parse(cmd: str, s: State):
        if s.phase == Phase.REASONS:
            if cmd == "y":
                return ReasonsConfirmed()
            if cmd == "n":
                return Back()
            if cmd.isdigit() and s.catalog and 1 <= int(cmd) <= len(s.catalog.reasons):
                return ReasonToggled(s.catalog.reasons[int(cmd) - 1].code)
            return None
        if cmd.isdigit() and 1 <= int(cmd) <= 5:
            return LevelPressed(LEVELS[int(cmd) - 1], Channel.KEYS)
        return None
