"""The "rate later" slip on a thermal printer (python-escpos), printed on a worker thread.

The slip is one raster image (``GS v 0``): the centre's name, the case's dynamic QR (the state's
``qr.modules``, drawn module by module: no second QR encoding), Chinese text drawn with the shipped
CJK font (ESC/POS has no standard CJK encoding), window, item, case number and date; then a cut
(``GS V``) when the printer has a cutter. The applicant's name is never printed: slips get thrown away.

Connections from the profile: ``usb`` (escpos Usb, needs pyusb), ``file`` (``/dev/usb/lp0``, the kernel
usblp node), ``network`` (TCP 9100) and ``serial`` (needs pyserial); simulation uses escpos ``Dummy``.
Before printing, status is asked where the printer can answer: ``DLE EOT 1/2/4`` on usb, network and
serial; the usblp ``LPGETSTATUS`` ioctl on file. Paper out, cover open and offline fail the job without
sending it. A failed job ends in a `PrintResult` whose ``message`` tells the citizen to scan the screen.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import queue
import socket
import struct
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from PIL import Image, ImageDraw

from device.machine import State
from drivers.fonts import font, wrap
from drivers.profile import PrinterProfile

log = logging.getLogger(__name__)

DLE_EOT = b"\x10\x04"
LPGETSTATUS = 0x060B
FAILED_MESSAGE = "凭条打印失败，请直接扫描屏幕上的二维码评价"
FAILED_MESSAGE_BOX = "凭条打印失败，请扫描显示屏上的二维码评价"
PRINTED_MESSAGE = "请取走凭条，稍后扫码评价"
REASON_ZH = {"paper_out": "打印机缺纸", "cover_open": "打印机盖未合上", "offline": "打印机未连接",
             "error": "打印机故障", "busy": "正在打印上一张凭条", "no_case": "当前没有可评价的办件",
             "already_printed": "本办件的凭条已打印"}


# ---- status -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PrinterStatus:
    known: bool = False  # False: the printer cannot tell (then we print and hope)
    online: bool = True
    cover_open: bool = False
    paper_out: bool = False
    paper_low: bool = False
    error: bool = False

    @property
    def problem(self) -> str:
        """The reason printing cannot start, or ""."""
        if not self.known:
            return ""
        if self.paper_out:
            return "paper_out"
        if self.cover_open:
            return "cover_open"
        if self.error:
            return "error"
        if not self.online:
            return "offline"
        return ""


def decode_status(replies: dict[int, int]) -> PrinterStatus:
    """Decode ESC/POS real-time status bytes, keyed by n of ``DLE EOT n`` (1 printer, 2 offline cause,
    4 roll paper sensor). A byte whose fixed bits (bit 1 and 4 set, 0 and 7 clear) are wrong is ignored."""
    valid = {n: b for n, b in replies.items() if 0 <= b <= 255 and b & 0x93 == 0x12}
    if not valid:
        return PrinterStatus()
    b1, b2, b4 = valid.get(1, 0x12), valid.get(2, 0x12), valid.get(4, 0x12)
    return PrinterStatus(known=True, online=not b1 & 0x08, cover_open=bool(b2 & 0x04),
                         paper_out=bool(b4 & 0x60) or bool(b2 & 0x20), paper_low=bool(b4 & 0x0C),
                         error=bool(b2 & 0x40))


def decode_lp_status(value: int) -> PrinterStatus:
    """Decode the usblp port status (LPGETSTATUS): 0x20 paper empty, 0x10 selected, 0x08 not-error."""
    return PrinterStatus(known=True, online=bool(value & 0x10), paper_out=bool(value & 0x20),
                         error=not value & 0x08)


def query_status(printer: Any, pp: PrinterProfile) -> PrinterStatus:
    """Ask the printer (see module doc); unknown when it cannot answer. OSError: it is not there."""
    if not pp.query_status:
        return PrinterStatus()
    if pp.connection == "file":
        device = printer.device  # opens the file
        try:
            raw = fcntl.ioctl(device.fileno(), LPGETSTATUS, struct.pack("i", 0))
        except OSError as e:
            if e.errno in (errno.ENOTTY, errno.EINVAL):
                return PrinterStatus()  # not a usblp node (or a plain file)
            raise
        return decode_lp_status(struct.unpack("i", raw)[0])
    replies: dict[int, int] = {}
    for n in (1, 2, 4):
        try:
            printer._raw(DLE_EOT + bytes([n]))
            data = printer._read()
        except (NotImplementedError, socket.timeout, TimeoutError):
            break
        except Exception as e:  # noqa: BLE001 - pyusb/pyserial have their own timeout classes
            if "timeout" in type(e).__name__.lower():
                break
            raise
        if not data:
            break
        replies[n] = data[-1]
    return decode_status(replies)


# ---- connections --------------------------------------------------------------------------------

def open_printer(pp: PrinterProfile, simulate: bool = False) -> Any:
    """A python-escpos printer object for the profile (not yet connected: escpos opens lazily)."""
    from escpos import printer as ep

    if simulate:
        p = ep.Dummy()
    elif pp.connection == "file":
        p = ep.File(pp.devfile)
    elif pp.connection == "network":
        p = ep.Network(pp.host, port=pp.port, timeout=pp.timeout_s)
    elif pp.connection == "serial":
        if not ep.Serial.is_usable():
            raise OSError("printer.connection = \"serial\" needs pyserial (pip install pyserial)")
        p = ep.Serial(pp.devfile, baudrate=pp.baudrate, timeout=pp.timeout_s, dsrdtr=False)
    elif pp.connection == "usb":
        if not ep.Usb.is_usable():
            raise OSError("printer.connection = \"usb\" needs pyusb (pip install pyusb)")
        p = ep.Usb(pp.usb_vendor, pp.usb_product, timeout=int(pp.timeout_s * 1000))
    else:
        raise OSError("no printer in this profile")
    # Tell escpos the paper width (its default profile does not know it and would print a warning).
    p.profile.profile_data = {**p.profile.profile_data,
                              "media": {"width": {"pixels": pp.width_px, "mm": 48 if pp.width_px == 384 else 72},
                                        "dpi": 203}}
    return p


def send_image(printer: Any, image: Image.Image, cut: str = "full") -> None:
    """Initialise, print `image` as one raster (GS v 0), feed and cut."""
    printer.hw("INIT")
    printer.image(image, impl="bitImageRaster")
    if cut == "none":
        printer.print_and_feed(4)
    else:
        printer.cut(mode="PART" if cut == "part" else "FULL")


# ---- the slip -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SlipInfo:
    url: str
    modules: tuple[tuple[bool, ...], ...]
    center_name: str
    window_name: str
    item_name: str = ""
    case_id: str = ""
    staff_number: str = ""
    issued: datetime = field(default_factory=datetime.now)
    expires: datetime | None = None


def slip_from_state(s: State, center_name: str, window_name: str = "", now: datetime | None = None) -> SlipInfo | None:
    """The slip for the case on screen, or None when there is no unrated case with a QR."""
    if s.case is None or s.qr is None or s.case_rated:
        return None
    exp = datetime.fromtimestamp(s.qr.expires) if getattr(s.qr, "expires", 0) else None
    return SlipInfo(url=s.qr.url, modules=s.qr.modules, center_name=center_name,
                    window_name=s.window_name or window_name, item_name=s.case.item_name, case_id=s.case.id,
                    staff_number=s.case.staff.number or s.case.staff.id, issued=now or datetime.now(), expires=exp)


def _text(draw: ImageDraw.ImageDraw, y: int, text: str, size: int, width: int, *, center: bool = False,
          margin: int = 8) -> int:
    f = font(size)
    for line in wrap(text, size, width - 2 * margin):
        x = (width - f.getlength(line)) / 2 if center else margin
        draw.text((x, y), line, font=f, fill=0)
        y += size + size // 4
    return y


def draw_qr(img: Image.Image, modules: tuple[tuple[bool, ...], ...], x: int, y: int, scale: int,
            fill: Any = 0) -> None:
    """Draw the QR modules (no quiet zone in `modules`: leave 4 modules free around it)."""
    draw = ImageDraw.Draw(img)
    for r, row in enumerate(modules):
        c = 0
        n = len(row)
        while c < n:
            if row[c]:
                start = c
                while c < n and row[c]:
                    c += 1
                draw.rectangle((x + start * scale, y + r * scale, x + c * scale - 1, y + (r + 1) * scale - 1),
                               fill=fill)
            else:
                c += 1


def qr_geometry(n_modules: int, width: int) -> tuple[int, int]:
    """(scale in dots per module, left x) for a QR of `n_modules` centred on paper `width` dots wide."""
    scale = max(1, min(8, (width - 16) // (n_modules + 8)))
    return scale, (width - n_modules * scale) // 2


def render_slip(info: SlipInfo, width: int = 384) -> Image.Image:
    """The whole slip as a 1-bit image `width` dots wide."""
    img = Image.new("1", (width, 1200), 1)
    draw = ImageDraw.Draw(img)
    y = 8
    y = _text(draw, y, info.center_name, 28, width, center=True)
    y = _text(draw, y, "政务服务“好差评” · 稍后评价", 22, width, center=True) + 4
    n = len(info.modules)
    scale, x = qr_geometry(n, width)
    y += 4 * scale
    draw_qr(img, info.modules, x, y, scale)
    qr_box = (x, y, scale)
    y += n * scale + 4 * scale
    y = _text(draw, y, "请用随申办、支付宝或微信扫码，对本次服务进行评价（可填写文字、上传图片）", 20, width)
    y += 6
    draw.line((8, y, width - 8, y), fill=0, width=2)
    y += 8
    lines = [f"窗口：{info.window_name}" if info.window_name else "",
             f"事项：{info.item_name}" if info.item_name else "",
             f"办件编号：{info.case_id}" if info.case_id else "",
             f"工作人员工号：{info.staff_number}" if info.staff_number else "",
             f"打印时间：{info.issued:%Y-%m-%d %H:%M}",
             f"二维码有效期至：{info.expires:%Y-%m-%d %H:%M}" if info.expires else ""]
    for line in filter(None, lines):
        y = _text(draw, y, line, 22, width)
    y = _text(draw, y + 6, "一事一评：每个办件只能评价一次", 18, width, center=True)
    slip = img.crop((0, 0, width, y + 16))
    slip.info["qr_box"] = qr_box  # (x, y, dots per module): for tests and previews
    return slip


def render_test_page(profile_name: str, width: int = 384, now: datetime | None = None) -> Image.Image:
    """A technician's test page: Chinese text, a QR, a ruler and the date."""
    from device.qr import matrix

    img = Image.new("1", (width, 900), 1)
    draw = ImageDraw.Draw(img)
    y = _text(draw, 8, "打印测试页 · 好差评评价器", 26, width, center=True)
    y = _text(draw, y, f"硬件配置：{profile_name}", 20, width)
    y = _text(draw, y, f"时间：{(now or datetime.now()):%Y-%m-%d %H:%M:%S}", 20, width)
    y = _text(draw, y, "中文字体：非常满意 满意 基本满意 不满意 非常不满意", 20, width)
    for x in range(0, width, 8):
        draw.line((x, y, x, y + (16 if x % 64 == 0 else 8)), fill=0)
    y += 24
    modules = tuple(map(tuple, matrix("https://hcp.example.gov.cn/test")))
    scale, x = qr_geometry(len(modules), width)
    draw_qr(img, modules, x, y + 4 * scale, scale)
    y += (len(modules) + 8) * scale
    y = _text(draw, y, "若中文清晰、二维码可扫、已切纸，则打印机正常", 20, width)
    return img.crop((0, 0, width, y + 16))


# ---- the worker ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PrintResult:
    """How a print job ended. `message` is what to tell the citizen (Chinese)."""

    ok: bool
    job: str  # "slip" | "test"
    case_id: str = ""
    reason: str = ""  # "" | paper_out | cover_open | offline | error | busy | no_case | already_printed
    detail: str = ""
    message: str = ""


@dataclass
class _Job:
    kind: str
    image: Image.Image
    case_id: str
    on_done: Callable[[PrintResult], None] | None


class SlipPrinter:
    """Prints on its own thread: `print_slip()` and `print_test_page()` return at once.

    Results go to every `on_result` listener (on the printer thread: a UI hands them to its own thread)
    and to `last` (a small status object the UI may poll). One job at a time; one good slip per case.
    """

    def __init__(self, pp: PrinterProfile, *, simulate: bool = False, factory: Callable[[], Any] | None = None,
                 failed_message: str = FAILED_MESSAGE,
                 on_problem: Callable[[str, str], None] = lambda reason, detail: None,
                 on_ok: Callable[[], None] = lambda: None):
        self.pp = pp
        self.simulate = simulate
        self.failed_message = failed_message
        self.on_problem, self.on_ok = on_problem, on_ok
        self._factory = factory or (lambda: open_printer(pp, simulate))
        self.sim_device: Any = None  # the Dummy in simulation (bytes of the last job)
        self.sim_status = PrinterStatus()  # what the simulated printer reports (set paper_out=True to try failures)
        self.last: PrintResult | None = None
        self.busy = False
        self._printed: str = ""  # case id of the last good slip
        self._listeners: list[Callable[[PrintResult], None]] = []
        self._q: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="printer", daemon=True)
        self._thread.start()

    def on_result(self, fn: Callable[[PrintResult], None]) -> None:
        self._listeners.append(fn)

    def print_slip(self, info: SlipInfo | None, on_done: Callable[[PrintResult], None] | None = None) -> PrintResult | None:
        """Queue the slip; None when queued, else the refusal (busy, no case, already printed)."""
        if info is None:
            return self._finish(PrintResult(False, "slip", reason="no_case", message=REASON_ZH["no_case"]), on_done)
        with self._lock:
            if info.case_id and info.case_id == self._printed:
                refusal = "already_printed"
            elif self.busy:
                refusal = "busy"
            else:
                refusal = ""
                self.busy = True
        if refusal:
            return self._finish(PrintResult(False, "slip", info.case_id, refusal, message=REASON_ZH[refusal]),
                                on_done)
        self._q.put(_Job("slip", render_slip(info, self.pp.width_px), info.case_id, on_done))
        return None

    def print_test_page(self, profile_name: str, on_done: Callable[[PrintResult], None] | None = None) -> PrintResult | None:
        with self._lock:
            if self.busy:
                return self._finish(PrintResult(False, "test", reason="busy", message=REASON_ZH["busy"]), on_done)
            self.busy = True
        self._q.put(_Job("test", render_test_page(profile_name, self.pp.width_px), "", on_done))
        return None

    def wait_test_page(self, profile_name: str, timeout: float = 30) -> PrintResult:
        """Blocking variant for the self-test command."""
        done: queue.Queue[PrintResult] = queue.Queue()
        refused = self.print_test_page(profile_name, on_done=done.put)
        if refused is not None:
            return refused
        try:
            return done.get(timeout=timeout)
        except queue.Empty:
            return PrintResult(False, "test", reason="offline", detail=f"no answer in {timeout} s")

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=self.pp.timeout_s * 4 + 1)

    # ---- printer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:  # warm up on this thread: the first slip should not pay for loading the font and escpos
            from escpos import printer as _  # noqa: F401
            for size in (18, 20, 22, 28):
                font(size)
        except Exception:  # noqa: BLE001
            log.exception("printer warm-up")
        while True:
            job = self._q.get()
            if job is None:
                return
            result = self._print(job)
            with self._lock:
                self.busy = False
                if result.ok and job.kind == "slip":
                    self._printed = job.case_id
            self._finish(result, job.on_done)

    def _print(self, job: _Job) -> PrintResult:
        printer = None
        try:
            printer = self._factory()
            if self.simulate:
                self.sim_device = printer
            status = self.sim_status if self.simulate else query_status(printer, self.pp)
            if status.problem:
                self.on_problem(status.problem, REASON_ZH[status.problem])
                return PrintResult(False, job.kind, job.case_id, status.problem, REASON_ZH[status.problem],
                                   self.failed_message)
            send_image(printer, job.image, self.pp.cut)
            if hasattr(printer, "flush"):
                printer.flush()
        except Exception as e:  # noqa: BLE001 - any failure of the device ends the job, never the thread
            log.warning("print %s failed: %s", job.kind, e)
            self.on_problem("offline", str(e))
            return PrintResult(False, job.kind, job.case_id, "offline", str(e)[:200], self.failed_message)
        finally:
            if printer is not None and not self.simulate:
                try:
                    printer.close()
                except Exception:  # noqa: BLE001
                    pass
        self.on_ok()
        if status.paper_low:
            self.on_problem("paper_low", "打印纸将用完")
        return PrintResult(True, job.kind, job.case_id, message=PRINTED_MESSAGE if job.kind == "slip" else "")

    def _finish(self, result: PrintResult, on_done: Callable[[PrintResult], None] | None) -> PrintResult:
        self.last = result
        if result.ok:
            log.info("printed %s %s", result.job, result.case_id)
        else:
            log.warning("print %s %s refused/failed: %s %s", result.job, result.case_id, result.reason, result.detail)
        for fn in ([on_done] if on_done else []) + self._listeners:
            try:
                fn(result)
            except Exception:  # noqa: BLE001
                log.exception("print result listener failed")
        return result
