"""The QR code a case screen shows: a fast QR matrix of the rating URL (rendering, not wire contract).

The signed token in the URL is `protocol.qrtoken`.
"""
from __future__ import annotations

from dataclasses import dataclass

import qrcode
from qrcode.constants import ERROR_CORRECT_M


def matrix(data: str) -> list[list[bool]]:
    """The QR modules (no quiet zone), error correction M.

    Faster than `qrcode.make()`: no image is drawn and the mask is fixed instead of trying all eight
    (any mask is valid; scanners handle all of them). The caller scales it to pixels.
    """
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, mask_pattern=0, border=0)
    code.add_data(data)
    code.make(fit=True)
    return code.get_matrix()


@dataclass(frozen=True)
class DynamicQr:
    url: str
    modules: tuple[tuple[bool, ...], ...]
    expires: int  # 0 when the platform issued the URL (its own expiry rules apply)
