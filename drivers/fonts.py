"""The one CJK font shared by the printed slip and the small display (WenQuanYi Micro Hei, shipped in ui/fonts)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

FONT_PATH = Path(__file__).resolve().parent.parent / "ui" / "fonts" / "wqy-microhei.ttc"


@lru_cache(maxsize=32)
def font(size: int, path: str = str(FONT_PATH)) -> ImageFont.FreeTypeFont:
    """The font at `size` pixels (cached: loading the 5 MB collection costs milliseconds)."""
    return ImageFont.truetype(path, size, index=0)


@lru_cache(maxsize=4096)
def advance(ch: str, size: int) -> float:
    """Advance width of one character (cached: wrapping measures characters, not growing strings)."""
    return font(size).getlength(ch)


def wrap(text: str, size: int, width: int) -> list[str]:
    """Split `text` into lines no wider than `width` pixels (CJK wraps anywhere; words are not kept whole)."""
    lines: list[str] = []
    for para in text.split("\n"):
        if font(size).getlength(para) <= width:
            lines.append(para)
            continue
        line, used = "", 0.0
        for ch in para:
            w = advance(ch, size)
            if line and used + w > width:
                lines.append(line)
                line, used = "", 0.0
            line += ch
            used += w
        lines.append(line)
    return lines
