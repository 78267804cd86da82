"""Printable cards for the static codes: one per staff member (人员评价) and one per hall (大厅评价).

A card is an A6 portrait page at 300 dpi (1240×1748 pixels): a headline, the QR code large (error
correction M, quiet zone of 4 modules, the code itself at least 50 mm wide), the person's name, number,
window and title (or the center's name), and how to scan it. The center downloads them as PNG (one card)
or PDF (a whole center's cards, one page each) and prints them.

The font is the terminal's (ui/fonts/wqy-microhei.ttc), read from its path: the center does not import ui.
"""
from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, ImageFont

FONT = Path(__file__).resolve().parents[2] / "ui" / "fonts" / "wqy-microhei.ttc"
DPI = 300
WIDTH, HEIGHT = 1240, 1748            # A6 (105 × 148 mm) at 300 dpi
MARGIN = 80
QR_TOP = 210                          # the QR code with its quiet zone sits in this square, centred
QR_AREA = 860
QUIET = 4                             # modules of white around the code
MIN_CODE_PX = round(50 / 25.4 * DPI)  # 50 mm: the smallest code a phone reads from arm's length
MIN_MODULE_PX = 6                     # 0.5 mm: finer modules blur in print
INK = (0, 0, 0)
ACCENT = (12, 58, 120)                # dark blue: contrast > 10:1 on white
MUTED = (60, 60, 60)
PAPER = (255, 255, 255)
STAFF_HEADLINE = "请为我的服务评价"
HALL_HEADLINE = "请为本大厅评价"
HOW_TO_SCAN = "微信、支付宝或随申办扫码"


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT), size)


def qr_matrix(url: str) -> list[list[bool]]:
    """The code's modules, quiet zone included (True = dark)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=QUIET)
    code.add_data(url)
    code.make(fit=True)
    return code.get_matrix()


def qr_image(url: str, max_px: int = QR_AREA) -> Image.Image:
    """The code as whole-pixel modules (no resampling blur), as large as fits in `max_px`."""
    matrix = qr_matrix(url)
    count = len(matrix)
    box = max_px // count
    if box < MIN_MODULE_PX or box * (count - 2 * QUIET) < MIN_CODE_PX:
        raise ValueError(f"URL too long for a printable code: {len(url)} characters")
    modules = Image.new("1", (count, count), 1)
    modules.putdata([0 if dark else 1 for row in matrix for dark in row])
    return modules.resize((count * box, count * box), Image.Resampling.NEAREST).convert("RGB")


def _fitted(draw: ImageDraw.ImageDraw, text: str, size: int, max_width: int = WIDTH - 2 * MARGIN,
            smallest: int = 32) -> tuple[str, ImageFont.FreeTypeFont]:
    """The largest size ≤ `size` at which the text fits the width; cut with "…" if even `smallest` does not."""
    while size > smallest and draw.textlength(text, font=_font(size)) > max_width:
        size -= 4
    font = _font(size)
    if draw.textlength(text, font=font) > max_width:
        while text and draw.textlength(text + "…", font=font) > max_width:
            text = text[:-1]
        text += "…"
    return text, font


def _line(draw: ImageDraw.ImageDraw, y: int, text: str, size: int, fill=INK) -> None:
    if text:
        shown, font = _fitted(draw, text, size)
        draw.text((WIDTH // 2, y), shown, font=font, fill=fill, anchor="ma")


def _card(url: str, headline: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    card = Image.new("RGB", (WIDTH, HEIGHT), PAPER)
    draw = ImageDraw.Draw(card)
    _line(draw, 80, headline, 96, ACCENT)
    code = qr_image(url)
    card.paste(code, ((WIDTH - code.width) // 2, QR_TOP + (QR_AREA - code.height) // 2))
    return card, draw


def _footer(draw: ImageDraw.ImageDraw, center_name: str) -> None:
    _line(draw, 1500, HOW_TO_SCAN, 52, MUTED)
    draw.line((MARGIN, 1600, WIDTH - MARGIN, 1600), fill=MUTED, width=3)
    _line(draw, 1630, center_name, 48, INK)


def staff_card(url: str, name: str, number: str, window_name: str, title: str, center_name: str) -> Image.Image:
    """The card of one staff member's code (人员评价)."""
    card, draw = _card(url, STAFF_HEADLINE)
    _line(draw, QR_TOP + QR_AREA + 20, name, 120)
    details = "　".join(part for part in (f"工号 {number}" if number else "", window_name) if part)
    _line(draw, QR_TOP + QR_AREA + 175, details, 56)
    _line(draw, QR_TOP + QR_AREA + 260, title, 48, MUTED)
    _footer(draw, center_name)
    return card


def hall_card(url: str, center_name: str) -> Image.Image:
    """The card of a center's hall code (大厅评价)."""
    card, draw = _card(url, HALL_HEADLINE)
    _line(draw, QR_TOP + QR_AREA + 40, center_name, 96)
    _line(draw, QR_TOP + QR_AREA + 190, "大厅评价", 56, MUTED)
    _footer(draw, "政务服务“好差评”")
    return card


def png_bytes(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG", dpi=(DPI, DPI))
    return out.getvalue()


def pdf_bytes(imgs: list[Image.Image]) -> bytes:
    """One PDF, one A6 page per card (a whole center's cards in one download)."""
    if not imgs:
        raise ValueError("no cards to print")
    pages = [img.convert("RGB") for img in imgs]
    out = io.BytesIO()
    # JPEG inside the PDF: high quality and no chroma subsampling keep the modules' and glyphs' edges sharp.
    pages[0].save(out, "PDF", resolution=DPI, save_all=True, append_images=pages[1:], quality=95, subsampling=0)
    return out.getvalue()
