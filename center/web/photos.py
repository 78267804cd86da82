"""Photos a citizen attaches to a phone rating: checked, re-encoded, stored under a random name.

Nothing of the upload is kept but its pixels: `reencode` sniffs the type from the bytes (JPEG, PNG, WebP;
HEIC and everything else refused), reads the pixel count from the header *before* decoding (so a
decompression bomb costs nothing), applies the EXIF orientation, flattens to RGB, scales the long edge
down to `max_edge` and writes a fresh JPEG with no EXIF, GPS, ICC, XMP or comment. `save` writes it
atomically under a random name (mode 0600) into a directory the web server never serves (mode 0700).
Every refusal is a `PhotoError` with a stable `code` and a short Chinese `reason` for the citizen.
"""
from __future__ import annotations

import io
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from center.desk import StoredPhoto

ACCEPTED = ("JPEG", "PNG", "WEBP")
# ISO base media ftyp brands of HEIF-family stills (iPhone photos by default); also AVIF.
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1",
               b"avif", b"avis"}
ORIENTATION = 0x0112
# EXIF orientation value -> the transpose that shows the picture upright.
UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
           4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
           6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}

REASONS = {
    "too_big": "照片太大，请选择不超过 {mb} MB 的照片。",
    "too_many_pixels": "照片像素太多，请换一张照片或缩小后再上传。",
    "not_an_image": "这不是照片文件，请选择 JPEG、PNG 或 WebP 格式的照片。",
    "unsupported_type": "不支持这种图片格式，请选择 JPEG、PNG 或 WebP 格式的照片。",
    "heic": "请改用 JPEG 格式照片（可在手机相机设置中选择“兼容性最佳”），或截图后上传。",
    "corrupt": "照片文件已损坏或不完整，请重新拍摄或选择。",
    "too_many": "最多上传 {count} 张照片。",
}


class PhotoError(ValueError):
    """A refused photo: `code` is stable (too_big, too_many_pixels, not_an_image, unsupported_type,
    corrupt, too_many), `reason` is what the page tells the citizen."""

    def __init__(self, code: str, reason: str):
        super().__init__(code)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class PhotoLimits:
    max_bytes: int = 10 * 2 ** 20      # the upload as sent
    max_pixels: int = 40_000_000       # width × height from the header, checked before decoding
    max_edge: int = 2048               # the long edge of the stored JPEG
    max_count: int = 3                 # photos per rating
    quality: int = 82                  # JPEG quality of the stored copy


def _refuse(code: str, limits: PhotoLimits, key: str | None = None) -> PhotoError:
    reason = REASONS[key or code].format(mb=limits.max_bytes // 2 ** 20 or 1, count=limits.max_count)
    return PhotoError(code, reason)


def sniff(data: bytes) -> str:
    """The container the bytes say they are: JPEG, PNG, WEBP, HEIF, GIF or '' (unknown)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        return "HEIF"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return ""


def check_count(count: int, limits: PhotoLimits = PhotoLimits()) -> None:
    """Refuse more photos than one rating may carry (code too_many)."""
    if count > limits.max_count:
        raise _refuse("too_many", limits)


def reencode(data: bytes, limits: PhotoLimits = PhotoLimits()) -> tuple[bytes, int, int]:
    """Check and re-encode one upload; return (jpeg, width, height) or raise PhotoError."""
    if len(data) > limits.max_bytes:
        raise _refuse("too_big", limits)
    kind = sniff(data)
    if kind == "HEIF":
        raise _refuse("unsupported_type", limits, "heic")
    if kind == "GIF":
        raise _refuse("unsupported_type", limits)
    if kind not in ACCEPTED:
        raise _refuse("not_an_image", limits)
    try:
        # Image.open reads only the header; `formats` keeps every other decoder out of reach.
        im = Image.open(io.BytesIO(data), formats=[kind])
        width, height = im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _refuse("too_many_pixels", limits) from None
    except Exception:  # noqa: BLE001 - any failure to read the header is a broken file
        raise _refuse("corrupt", limits) from None
    if width * height > limits.max_pixels:
        raise _refuse("too_many_pixels", limits)
    if width < 1 or height < 1:
        raise _refuse("corrupt", limits)
    try:
        return _redraw(im, limits)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _refuse("too_many_pixels", limits) from None
    except MemoryError:
        raise _refuse("too_many_pixels", limits) from None
    except Exception:  # noqa: BLE001 - truncated data, bad chunks, bad EXIF: all mean a broken file
        raise _refuse("corrupt", limits) from None


def _redraw(im: Image.Image, limits: PhotoLimits) -> tuple[bytes, int, int]:
    try:
        orientation = int(im.getexif().get(ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - an unreadable EXIF block only loses the orientation
        orientation = 1
    if im.format == "JPEG":
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still leaves at least max_edge.
        scale = max(im.size) / limits.max_edge
        if scale >= 2:
            im.draft("RGB", (im.size[0] // int(scale), im.size[1] // int(scale)))
    im.load()
    im = _flatten(im)
    long_edge = max(im.size)
    if long_edge > limits.max_edge:
        w, h = im.size
        size = (max(1, round(w * limits.max_edge / long_edge)), max(1, round(h * limits.max_edge / long_edge)))
        im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if orientation in UPRIGHT:
        im = im.transpose(UPRIGHT[orientation])
    im.info = {}  # the JPEG writer falls back to info for some markers (a comment): carry nothing over
    out = io.BytesIO()
    im.save(out, "JPEG", quality=limits.quality)
    return out.getvalue(), im.size[0], im.size[1]


def _flatten(im: Image.Image) -> Image.Image:
    """RGB pixels only: transparency goes onto white (a transparent PNG would otherwise turn black)."""
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        back = Image.new("RGB", rgba.size, (255, 255, 255))
        back.paste(rgba, mask=rgba.getchannel("A"))
        return back
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: keep the top 8 bits, not the clipped low ones.
        im = im.point(lambda v: v / 256).convert("L") if im.mode != "I" else im.convert("L")
    return im.convert("RGB")


def save(jpeg: bytes, photo_dir: str | Path) -> StoredPhoto:
    """Write a re-encoded photo under a random name; the directory must be outside any served path."""
    folder = Path(photo_dir)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    name = secrets.token_hex(16) + ".jpg"
    tmp = folder / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(jpeg)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with Image.open(io.BytesIO(jpeg)) as im:
        width, height = im.size
    return StoredPhoto(name, len(jpeg), width, height)


def store(data: bytes, photo_dir: str | Path, limits: PhotoLimits = PhotoLimits()) -> StoredPhoto:
    """`reencode` then `save`: an upload in, a stored photo out (or PhotoError, nothing written)."""
    jpeg, _, _ = reencode(data, limits)
    return save(jpeg, photo_dir)
