"""Printable cards: A6 at 300 dpi, and the printed QR code is module for module the code of the card's URL
(no decoder is installed, so the test samples the rendered card at every module's centre against a code
made independently with the qrcode library)."""
from __future__ import annotations

import io
import re

import pytest
import qrcode
from PIL import Image

from center.web import cards, links

KEY = b"a center key for the card tests."
BASE = "https://hcp.example.gov.cn"


def staff_url(staff: str = "staff_0042", gen: int = 3) -> str:
    return links.staff_url(BASE, links.sign_staff("k1", KEY, "SH-PD-01", staff, gen))


def expected_modules(url: str) -> list[list[bool]]:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=0)
    code.add_data(url)
    code.make(fit=True)
    return code.get_matrix()


def printed_modules(card: Image.Image, count: int) -> tuple[list[list[bool]], int, tuple[int, int, int, int]]:
    """Find the code in the band between headline and name by its dark bounding box (the finder patterns
    mark three corners), then read each module at its centre. Returns (modules, module px, box)."""
    grey = card.convert("L")
    band = grey.crop((0, cards.QR_TOP, card.width, cards.QR_TOP + cards.QR_AREA))
    left, top, right, bottom = band.point(lambda v: 255 if v < 128 else 0).getbbox()
    top, bottom = top + cards.QR_TOP, bottom + cards.QR_TOP
    assert right - left == bottom - top, "the code is not square"
    module, rest = divmod(right - left, count)
    assert rest == 0 and module >= 3, (right - left, count)
    modules = [[grey.getpixel((left + module * x + module // 2, top + module * y + module // 2)) < 128
                for x in range(count)] for y in range(count)]
    return modules, module, (left, top, right, bottom)


def assert_card_shows_code(card: Image.Image, url: str) -> None:
    expected = expected_modules(url)
    modules, module, (left, top, right, bottom) = printed_modules(card, len(expected))
    assert modules == expected
    assert right - left >= 50 / 25.4 * 300       # at least 50 mm wide at 300 dpi
    # The quiet zone: 4 modules of white on every side.
    quiet = card.convert("L").crop((left - 4 * module, top - 4 * module, right + 4 * module, bottom + 4 * module))
    inner = Image.new("L", (right - left, bottom - top), 255)
    quiet.paste(inner, (4 * module, 4 * module))
    assert quiet.getextrema()[0] > 200


def test_a_staff_card_is_a6_and_prints_its_urls_code() -> None:
    url = staff_url()
    card = cards.staff_card(url, "王晓明", "0042", "3号窗口", "综合受理岗", "上海市浦东新区政务服务中心")
    assert card.size == (1240, 1748) and card.mode == "RGB"
    assert_card_shows_code(card, url)
    for corner in ((0, 0), (1239, 0), (0, 1747), (1239, 1747)):
        assert card.getpixel(corner) == (255, 255, 255)
    # The headline and the name are there (dark ink above and below the code).
    grey = card.convert("L")
    assert grey.crop((0, 60, 1240, cards.QR_TOP - 10)).getextrema()[0] < 100
    assert grey.crop((0, cards.QR_TOP + cards.QR_AREA, 1240, 1748)).getextrema()[0] < 100


def test_another_url_prints_another_code() -> None:
    first, second = staff_url("staff_0042", 3), staff_url("staff_0042", 4)
    card = cards.staff_card(first, "王晓明", "0042", "3号窗口", "", "中心")
    modules, _, _ = printed_modules(card, len(expected_modules(second)))
    assert modules != expected_modules(second)  # the sampling tells two codes apart


def test_a_hall_card_prints_its_urls_code() -> None:
    url = links.hall_url(BASE, links.sign_hall("k1", KEY, "SH-PD-01", 1))
    card = cards.hall_card(url, "上海市浦东新区政务服务中心")
    assert card.size == (1240, 1748)
    assert_card_shows_code(card, url)
    assert card.tobytes() != cards.hall_card(url, "另一个中心").tobytes()


def test_long_names_still_fit_and_the_code_is_intact() -> None:
    url = staff_url("s" * 32, 999_999)
    card = cards.staff_card(url, "阿卜杜热合曼·买买提明·艾力" * 3, "1234567890123456", "第十二号综合受理窗口" * 3,
                            "综合受理岗" * 10, "上海市浦东新区政务服务中心" * 4)
    assert_card_shows_code(card, url)
    assert card.getpixel((0, 1300)) == card.getpixel((1239, 1300)) == (255, 255, 255)  # nothing runs off the edge


def test_a_url_too_long_for_a_card_is_refused() -> None:
    with pytest.raises(ValueError):
        cards.hall_card(BASE + "/p/h/" + "x" * 2000, "中心")


def test_png_carries_300_dpi() -> None:
    card = cards.hall_card(staff_url(), "中心")
    back = Image.open(io.BytesIO(cards.png_bytes(card)))
    assert back.format == "PNG" and back.size == (1240, 1748)
    assert tuple(round(v) for v in back.info["dpi"]) == (300, 300)
    assert_card_shows_code(back.convert("RGB"), staff_url())


def test_a_centers_cards_make_one_pdf_with_one_a6_page_each() -> None:
    urls = [staff_url(f"staff_{i}") for i in range(3)]
    imgs = [cards.staff_card(u, f"员工{i}", str(i), "窗口", "", "中心") for i, u in enumerate(urls)]
    imgs.append(cards.hall_card(links.hall_url(BASE, links.sign_hall("k1", KEY, "SH-PD-01", 1)), "中心"))
    pdf = cards.pdf_bytes(imgs)
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf)) == 4
    boxes = re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([0-9.]+)\s+([0-9.]+)\s*\]", pdf)
    assert len(boxes) == 4
    for width, height in boxes:  # A6 = 105 × 148 mm = 297.6 × 419.5 pt
        assert abs(float(width) - 105 / 25.4 * 72) < 1 and abs(float(height) - 148 / 25.4 * 72) < 1
    with pytest.raises(ValueError):
        cards.pdf_bytes([])


def test_the_pdf_pages_still_carry_the_code() -> None:
    url = staff_url()
    pdf = cards.pdf_bytes([cards.staff_card(url, "王晓明", "0042", "3号窗口", "", "中心")])
    jpeg = pdf[pdf.index(b"\xff\xd8\xff"): pdf.rindex(b"\xff\xd9") + 2]  # the page image as embedded
    assert_card_shows_code(Image.open(io.BytesIO(jpeg)).convert("RGB"), url)
