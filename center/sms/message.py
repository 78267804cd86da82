"""The follow-up SMS text: one segment, signature first, the link always whole.

A Chinese SMS segment holds 70 UCS-2 units (a longer text is split into 67-unit parts and may arrive
out of order, or be billed twice), and carriers require the sender's registered signature in 【】.
When the text would not fit, the item name is shortened, then left out, then the center name is
shortened and left out; the URL is never cut.
"""
from __future__ import annotations

import unicodedata

SEGMENT = 70
_ELLIPSIS = "…"
_MIN_KEPT = 2          # a name shortened to fewer characters than this is left out instead


def units(s: str) -> int:
    """Length as the SMS network counts it (UCS-2/UTF-16 code units: an emoji takes two)."""
    return len(s.encode("utf-16-le")) // 2


def text(signature: str, center_name: str, item_name: str, url: str) -> str:
    """`【签名】您在<中心>办理的<事项>已办结，请评价：<url>` in at most 70 units; ValueError when even the
    signature and the URL alone do not fit, or the signature or URL is unusable."""
    signature, url = signature.strip(), url.strip()
    if not signature or signature != _clean(signature):
        raise ValueError("the SMS signature must be non-empty plain text without 【】 or line breaks")
    if not url or any(c.isspace() for c in url) or url != _clean(url):
        raise ValueError("the SMS link must be non-empty without spaces or control characters")
    center, item = _clean(center_name), _clean(item_name)
    if center == signature:        # the signature already names the center: say it once
        center = ""
    head = f"【{signature}】"

    def compose(c: str, i: str) -> str:
        if not c and not i:
            return f"{head}您的事项已办结，请评价：{url}"
        where = f"在{c}" if c else ""
        return f"{head}您{where}办理的{i or '事项'}已办结，请评价：{url}"

    for i in _shortenings(item):           # the whole center name, the item ever shorter, then none
        msg = compose(center, i)
        if units(msg) <= SEGMENT:
            return msg
    for c in _shortenings(center):
        msg = compose(c, "")
        if units(msg) <= SEGMENT:
            return msg
    for msg in (f"{head}请评价：{url}", f"{head}{url}"):
        if units(msg) <= SEGMENT:
            return msg
    raise ValueError(f"the signature and the link alone take {units(head + url)} units, more than {SEGMENT}")


def _shortenings(name: str) -> list[str]:
    """The name, then ever shorter prefixes ending in …, then '' (left out)."""
    out = [name] if name else []
    chars = list(name)[:SEGMENT]    # a longer prefix could never fit
    for keep in range(len(chars) - 1, _MIN_KEPT - 1, -1):
        out.append("".join(chars[:keep]) + _ELLIPSIS)
    out.append("")
    return out


def _clean(s: str) -> str:
    """One line of printable text: control and format characters and 【】 dropped, spaces collapsed."""
    kept = "".join(c for c in s if unicodedata.category(c)[0] != "C" and c not in "【】")
    return " ".join(kept.split())
