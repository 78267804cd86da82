"""The rate-later slip: raster and cut bytes (escpos Dummy), File / Network / Serial connections, status
handling (paper out, cover open, offline), and a worker that never blocks its caller."""
from __future__ import annotations

import os
import threading
from datetime import datetime

import pytest
from escpos.printer import Dummy
from fontTools.ttLib import TTCollection
from hypothesis import given, strategies as st
from PIL import ImageDraw

from drivers.fonts import FONT_PATH
from drivers.printer import (FAILED_MESSAGE, PrinterStatus, SlipInfo, SlipPrinter, decode_lp_status,
                             decode_status, open_printer, render_slip, send_image, slip_from_state)
from devkit.waiting import wait_for
from drivers.profile import PrinterProfile
from tests.drivers.conftest import case_state, make_qr

GS_V0 = b"\x1dv0"


def slip_info(case_id: str = "SH0001") -> SlipInfo:
    q = make_qr()
    return SlipInfo(q.url, q.modules, "浦东新区政务服务中心", "一号窗口", "居住证办理", case_id, "0101",
                    datetime(2026, 11, 26, 9, 30), datetime(2026, 11, 27, 9, 30))


def rasters(data: bytes) -> list[tuple[int, int, list[list[bool]]]]:
    """Decode every `GS v 0 m xL xH yL yH d…` block into (width in dots, height, rows of black dots)."""
    out, i = [], 0
    while (i := data.find(GS_V0, i)) >= 0:
        wb = data[i + 4] | data[i + 5] << 8
        h = data[i + 6] | data[i + 7] << 8
        body = data[i + 8:i + 8 + wb * h]
        rows = [[bool(body[r * wb + c // 8] & (0x80 >> c % 8)) for c in range(wb * 8)] for r in range(h)]
        out.append((wb * 8, h, rows))
        i += 8 + wb * h
    return out


def test_slip_is_one_raster_with_the_qr_and_a_cut():
    info = slip_info()
    img = render_slip(info, 384)
    p = open_printer(PrinterProfile(connection="file", devfile="x"), simulate=True)
    assert isinstance(p, Dummy)
    send_image(p, img, "full")
    data = p.output
    assert data.startswith(b"\x1b@") and data.endswith(b"\x1dV\x00")  # init … full cut (GS V 0)
    [(w, h, rows)] = rasters(data)
    assert (w, h) == img.size
    assert all(rows[y][x] == (img.getpixel((x, y)) == 0) for y in range(0, h, 3) for x in range(0, w, 3))
    x0, y0, scale = img.info["qr_box"]
    assert scale >= 4
    for r, row in enumerate(info.modules):  # every module of the dynamic QR is in the printed raster
        for c, dark in enumerate(row):
            assert rows[y0 + r * scale + scale // 2][x0 + c * scale + scale // 2] == dark
    for r in range(-4, 0):  # the quiet zone above the QR is white
        assert not any(rows[y0 + r * scale][x0:x0 + len(info.modules) * scale])
    assert any(any(row) for row in rows[:y0 - 4 * scale])  # the Chinese title is drawn above it


@pytest.mark.parametrize("cut, tail", [("part", b"\x1dV\x01"), ("none", b"\x1bd\x04")])
def test_cut_modes(cut, tail):
    p = Dummy()
    send_image(p, render_slip(slip_info(), 576), cut)
    assert p.output.endswith(tail) and (b"\x1dV" in p.output) == (cut != "none")
    assert rasters(p.output)[0][0] == 576


def test_every_slip_character_is_in_the_shipped_font(monkeypatch):
    drawn: list[str] = []
    original = ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text", lambda self, xy, text, *a, **k: (drawn.append(text),
                                                                                      original(self, xy, text, *a, **k)))
    from drivers.printer import render_test_page
    render_slip(slip_info(), 384)
    render_test_page("official-7in-touch", 384)
    cmap = TTCollection(str(FONT_PATH)).fonts[0].getBestCmap()
    missing = {ch for text in drawn + [FAILED_MESSAGE] for ch in text if ord(ch) not in cmap and not ch.isspace()}
    assert drawn and not missing


def test_slip_from_state():
    s = case_state()
    info = slip_from_state(s, "中心", now=datetime(2026, 1, 1))
    assert info.url == s.qr.url and info.case_id == "SH0001" and info.window_name == "一号窗口"
    assert info.staff_number == "0101" and info.expires is not None
    assert slip_from_state(case_state(case_rated=True), "中心") is None
    assert slip_from_state(case_state(qr=None), "中心") is None


# ---- status decoding (hypothesis: a decoder of bytes from the printer) -------------------------

def status_bytes(offline: bool, cover: bool, paper_out: bool, low: bool, error: bool) -> dict[int, int]:
    return {1: 0x12 | (0x08 if offline else 0), 2: 0x12 | (0x04 if cover else 0) | (0x40 if error else 0),
            4: 0x12 | (0x0C if low else 0) | (0x60 if paper_out else 0)}


@given(st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_status_round_trip(offline, cover, paper_out, low, error):
    s = decode_status(status_bytes(offline, cover, paper_out, low, error))
    assert s.known and (s.online, s.cover_open, s.paper_out, s.paper_low, s.error) == (not offline, cover, paper_out,
                                                                                          low, error)
    expected = "paper_out" if paper_out else "cover_open" if cover else "error" if error else \
        "offline" if offline else ""
    assert s.problem == expected


@given(st.dictionaries(st.sampled_from([1, 2, 4]), st.integers(-5, 300), max_size=3))
def test_status_decoder_never_trusts_malformed_bytes(replies):
    s = decode_status(replies)
    valid = {n: b for n, b in replies.items() if 0 <= b <= 255 and b & 0x93 == 0x12}
    assert s.known == bool(valid)
    if not s.known:
        assert s.problem == ""


@given(st.integers(0, 255))
def test_lp_status(value):
    s = decode_lp_status(value)
    assert s.paper_out == bool(value & 0x20) and s.online == bool(value & 0x10) and s.error == (not value & 0x08)


# ---- the worker over real connections -----------------------------------------------------------

def results(printer: SlipPrinter) -> list:
    got: list = []
    printer.on_result(got.append)
    return got


def test_file_printer_writes_the_slip(tmp_path):
    lp0 = tmp_path / "lp0"
    lp0.write_bytes(b"")
    pp = PrinterProfile(connection="file", devfile=str(lp0))
    printer = SlipPrinter(pp)
    got = results(printer)
    assert printer.print_slip(slip_info()) is None  # queued, not printed on the caller's thread
    wait_for(lambda: got, 10, "print result")
    assert got[0].ok and got[0].message == "请取走凭条，稍后扫码评价"
    data = lp0.read_bytes()
    assert GS_V0 in data and data.endswith(b"\x1dV\x00")
    assert printer.print_slip(slip_info()).reason == "already_printed"  # one slip per case
    printer.close()


def test_missing_device_file_fails_with_the_scan_the_screen_message(tmp_path):
    problems = []
    printer = SlipPrinter(PrinterProfile(connection="file", devfile=str(tmp_path / "nope" / "lp0")),
                          on_problem=lambda r, d: problems.append(r))
    got = results(printer)
    printer.print_slip(slip_info())
    wait_for(lambda: got, 10, "print result")
    assert not got[0].ok and got[0].reason == "offline" and got[0].message == FAILED_MESSAGE
    assert problems == ["offline"]
    assert printer.print_slip(slip_info()) is None  # a failed slip may be tried again
    printer.close()


def network(tcp_printer, **kw) -> PrinterProfile:
    return PrinterProfile(connection="network", host="127.0.0.1", port=tcp_printer.port, timeout_s=2, **kw)


def test_network_printer_status_then_slip(tcp_printer):
    printer = SlipPrinter(network(tcp_printer))
    got = results(printer)
    printer.print_slip(slip_info())
    wait_for(lambda: got, 10, "print result")
    assert got[0].ok
    wait_for(lambda: tcp_printer.data().endswith(b"\x1dV\x00"), 10, "slip bytes at the printer")
    data = tcp_printer.data()
    assert data.startswith(b"\x10\x04\x01\x10\x04\x02\x10\x04\x04")  # DLE EOT 1, 2, 4 before printing
    assert len(rasters(data)) == 1
    printer.close()


@pytest.mark.parametrize("status, reason", [({4: 0x72}, "paper_out"), ({2: 0x16}, "cover_open"),
                                            ({1: 0x1A}, "offline"), ({2: 0x52}, "error")])
def test_network_printer_problems_stop_the_job(tcp_printer, status, reason):
    tcp_printer.status.update(status)
    problems = []
    printer = SlipPrinter(network(tcp_printer), on_problem=lambda r, d: problems.append(r))
    got = results(printer)
    printer.print_slip(slip_info())
    wait_for(lambda: got, 10, "print result")
    assert not got[0].ok and got[0].reason == reason and got[0].message == FAILED_MESSAGE
    assert problems == [reason]
    assert GS_V0 not in tcp_printer.data()  # nothing was sent to a printer that cannot print
    printer.close()


def test_paper_low_prints_and_warns(tcp_printer):
    tcp_printer.status[4] = 0x1E
    problems = []
    printer = SlipPrinter(network(tcp_printer), on_problem=lambda r, d: problems.append(r))
    got = results(printer)
    printer.print_slip(slip_info())
    wait_for(lambda: got, 10, "print result")
    assert got[0].ok and problems == ["paper_low"]
    printer.close()


def test_printer_that_does_not_answer_status_still_prints(tcp_printer):
    tcp_printer.silent = True
    printer = SlipPrinter(PrinterProfile(connection="network", host="127.0.0.1", port=tcp_printer.port,
                                         timeout_s=0.3))
    got = results(printer)
    printer.print_slip(slip_info())
    wait_for(lambda: got, 10, "print result")
    assert got[0].ok
    wait_for(lambda: GS_V0 in tcp_printer.data(), 10, "raster at the printer")
    printer.close()


def test_no_network_printer_is_offline():
    from tests.drivers.conftest import free_port
    printer = SlipPrinter(PrinterProfile(connection="network", host="127.0.0.1", port=free_port(), timeout_s=1))
    got = results(printer)
    printer.print_slip(slip_info())
    wait_for(lambda: got, 10, "print result")
    assert not got[0].ok and got[0].reason == "offline" and "扫描" in got[0].message
    printer.close()


def test_printing_never_blocks_the_caller():
    gate = threading.Event()
    opened = threading.Event()
    dummy = Dummy()

    def slow_printer():
        opened.set()
        gate.wait(10)  # a printer that takes its time (or hangs)
        return dummy

    printer = SlipPrinter(PrinterProfile(connection="file", devfile="x", query_status=False), factory=slow_printer)
    got = results(printer)
    assert printer.print_slip(slip_info("A1")) is None  # returns while the printer thread is stuck
    opened.wait(10)
    assert printer.busy and got == []
    assert printer.print_slip(slip_info("A2")).reason == "busy"  # a second press while printing
    gate.set()
    wait_for(lambda: any(r.ok for r in got), 10, "first slip done")
    assert [r.case_id for r in got if r.ok] == ["A1"] and GS_V0 in dummy.output
    printer.close()


def test_serial_printer_over_a_pty():
    master, slave = os.openpty()
    printer = SlipPrinter(PrinterProfile(connection="serial", devfile=os.ttyname(slave), baudrate=9600,
                                         timeout_s=0.3, query_status=False, cut="none"))
    got = results(printer)
    received = bytearray()
    stop = threading.Event()

    def drain():
        while not stop.is_set():
            try:
                received.extend(os.read(master, 65536))
            except OSError:
                return

    threading.Thread(target=drain, daemon=True).start()
    printer.print_slip(slip_info())
    wait_for(lambda: got, 10, "print result")
    assert got[0].ok
    wait_for(lambda: GS_V0 in received and received.endswith(b"\x1bd\x04"), 10, "slip bytes on the serial line")
    stop.set()
    printer.close()
    os.close(slave)
    os.close(master)


def test_simulated_printer_can_run_out_of_paper():
    printer = SlipPrinter(PrinterProfile(connection="file", devfile="/dev/usb/lp0"), simulate=True)
    printer.sim_status = PrinterStatus(known=True, paper_out=True)
    got = results(printer)
    printer.print_slip(slip_info())
    wait_for(lambda: got, 10, "print result")
    assert got[0].reason == "paper_out"
    printer.sim_status = PrinterStatus()
    printer.print_slip(slip_info())
    wait_for(lambda: len(got) == 2, 10, "second result")
    assert got[1].ok and GS_V0 in printer.sim_device.output
    printer.close()
