"""Photos on a phone rating: re-encoded with nothing of the upload kept but its pixels, decompression bombs
refused from the header, hostile files refused with a stable code, and written 0600 under random names."""
from __future__ import annotations

import io
import os
import random
import stat
import struct
import warnings
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

from center.web import photos
from center.web.photos import PhotoError, PhotoLimits

RED = (220, 20, 20)


def jpeg(im: Image.Image, **params) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", **params)
    return out.getvalue()


def png(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def camera_photo() -> bytes:
    """A 12-megapixel phone photo stored sideways (orientation 6), with GPS, a description, an ICC profile,
    XMP and a comment: everything a re-encode must drop. A red block marks the stored top-left corner."""
    im = Image.linear_gradient("L").resize((4000, 3000)).convert("RGB")
    im.paste(RED, (0, 0, 400, 400))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010E] = "secret-description"
    exif[0x8825] = {1: "N", 2: (31.0, 14.0, 9.5), 3: "E", 4: (121.0, 28.0, 3.25)}
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return jpeg(im, exif=exif, icc_profile=icc, comment=b"secret-comment",
                xmp=b"<x:xmpmeta>secret-xmp</x:xmpmeta>", quality=90)


def refused(data: bytes, limits: PhotoLimits = PhotoLimits()) -> PhotoError:
    with pytest.raises(PhotoError) as caught:
        photos.reencode(data, limits)
    assert caught.value.reason and not caught.value.reason.isascii()  # a Chinese sentence for the citizen
    return caught.value


def png_header(width: int, height: int, idat: bytes) -> bytes:
    """A 1-bit greyscale PNG of any declared size around the given IDAT payload."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bomb(width: int, height: int) -> bytes:
    """A real decompression bomb: a valid, all-zero image that compresses to a few hundred kilobytes."""
    squeeze = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    rows = row * 1000
    body = b"".join(squeeze.compress(rows) for _ in range(height // 1000)) + squeeze.flush()
    return png_header(width, height, body)


# ---- what comes out ------------------------------------------------------------------------------------

def test_a_phone_photo_comes_out_upright_small_and_with_no_metadata() -> None:
    data = camera_photo()
    source = Image.open(io.BytesIO(data))
    assert source.getexif().get_ifd(0x8825) and b"Exif" in data and b"secret-comment" in data  # the test bites

    out, width, height = photos.reencode(data)

    assert (width, height) == (1536, 2048)  # 4000×3000 stored sideways: upright it is portrait
    im = Image.open(io.BytesIO(out))
    assert im.format == "JPEG" and im.mode == "RGB" and im.size == (1536, 2048)
    assert dict(im.getexif()) == {}
    assert not {"exif", "icc_profile", "xmp", "comment"} & set(im.info)
    for secret in (b"Exif", b"GPS", b"secret", b"ICC_PROFILE", b"xmpmeta", b"http://ns.adobe.com"):
        assert secret not in out
    # Orientation 6 means "turn 90° clockwise to show": the stored top-left corner ends up top-right.
    r, g, b = im.getpixel((width - 40, 40))
    assert r > 180 and g < 80 and b < 80
    r, g, b = im.getpixel((40, 40))
    assert not (r > 180 and g < 80)


def test_small_photos_are_not_enlarged_and_every_orientation_is_applied() -> None:
    base = Image.new("RGB", (300, 200), (255, 255, 255))
    base.paste(RED, (0, 0, 30, 30))
    # Where the stored top-left corner appears once the picture is shown upright (300×200 stored).
    corner = {1: (0, 0), 2: (299, 0), 3: (299, 199), 4: (0, 199), 5: (0, 0), 6: (199, 0), 7: (199, 299),
              8: (0, 299)}
    for orientation, (x, y) in corner.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        out, width, height = photos.reencode(jpeg(base, exif=exif, quality=95))
        assert (width, height) == ((300, 200) if orientation < 5 else (200, 300)), orientation
        r, g, _ = Image.open(io.BytesIO(out)).getpixel((min(max(x, 5), width - 6), min(max(y, 5), height - 6)))
        assert r > 180 and g < 80, orientation


def test_a_transparent_png_is_flattened_onto_white() -> None:
    im = Image.new("RGBA", (400, 100), (0, 0, 0, 0))
    im.paste((10, 40, 200, 255), (200, 0, 400, 100))
    out, width, height = photos.reencode(png(im))
    flat = Image.open(io.BytesIO(out))
    assert (width, height) == (400, 100) and flat.mode == "RGB"
    assert min(flat.getpixel((50, 50))) > 240            # transparent: white, not black
    r, g, b = flat.getpixel((300, 50))
    assert b > 170 and r < 50


def test_webp_and_palette_png_are_accepted() -> None:
    im = Image.new("RGB", (64, 48), (0, 128, 0))
    out = io.BytesIO()
    im.save(out, "WEBP")
    assert photos.reencode(out.getvalue())[1:] == (64, 48)
    assert photos.reencode(png(im.convert("P")))[1:] == (64, 48)


# ---- what is refused -----------------------------------------------------------------------------------

def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    data = bomb(30000, 30000)  # 900 megapixels: Pillow's own bomb limit
    assert len(data) < 1_000_000
    assert refused(data).code == "too_many_pixels"


def test_pillows_own_bomb_warning_counts_as_too_many_pixels() -> None:
    # 100 megapixels: Pillow warns while reading the header; as an error, the warning is a refusal too.
    data = png_header(10000, 10000, b"")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert refused(data, PhotoLimits(max_pixels=10 ** 9)).code == "too_many_pixels"


def test_pixels_over_the_limit_are_refused_before_any_decoding() -> None:
    # 7000×7000 is under Pillow's own limit: only our check stands between it and a 49-megapixel decode.
    # The payload is garbage, so a decoder would have said "corrupt": "too_many_pixels" proves none ran.
    garbage = zlib.compress(b"\x00") + b"not a zlib stream"
    assert refused(png_header(7000, 7000, garbage)).code == "too_many_pixels"
    assert refused(png_header(70, 70, garbage)).code == "corrupt"  # the same file, small: decoded, broken
    small = PhotoLimits(max_pixels=100 * 100)
    assert refused(png(Image.new("RGB", (101, 100))), small).code == "too_many_pixels"
    assert photos.reencode(png(Image.new("RGB", (100, 100))), small)[1:] == (100, 100)


def test_a_truncated_jpeg_is_corrupt() -> None:
    whole = jpeg(Image.linear_gradient("L").convert("RGB").resize((640, 480)))
    assert refused(whole[: len(whole) // 2]).code == "corrupt"
    assert refused(whole[:20]).code == "corrupt"


def test_other_files_are_refused_by_what_their_bytes_say() -> None:
    assert refused(random.Random(7).randbytes(5000)).code == "not_an_image"
    assert refused(b"").code == "not_an_image"
    assert refused(b"%PDF-1.7\n...").code == "not_an_image"
    heic = refused(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200)
    assert heic.code == "unsupported_type" and "JPEG" in heic.reason and "请改用" in heic.reason
    gif = io.BytesIO()
    Image.new("P", (10, 10)).save(gif, "GIF")
    assert refused(gif.getvalue()).code == "unsupported_type"


def test_an_upload_over_the_byte_limit_is_refused_unread() -> None:
    data = jpeg(Image.new("RGB", (200, 200)))
    assert refused(data, PhotoLimits(max_bytes=len(data) - 1)).code == "too_big"
    assert photos.reencode(data, PhotoLimits(max_bytes=len(data)))[1:] == (200, 200)
    assert "10 MB" in refused(b"\xff\xd8\xff" + b"\x00" * (10 * 2 ** 20)).reason


def test_more_photos_than_allowed_are_refused() -> None:
    photos.check_count(3)
    with pytest.raises(PhotoError) as caught:
        photos.check_count(4)
    assert caught.value.code == "too_many" and "3" in caught.value.reason


# ---- stored --------------------------------------------------------------------------------------------

def test_saved_photos_get_random_names_and_private_modes(tmp_path) -> None:
    folder = tmp_path / "photos"
    data, width, height = photos.reencode(jpeg(Image.new("RGB", (640, 480), (1, 2, 3))))
    first = photos.save(data, folder)
    second = photos.save(data, folder)
    assert first.name != second.name
    for photo in (first, second):
        assert len(photo.name) == 36 and photo.name.endswith(".jpg") and int(photo.name[:32], 16) >= 0
        assert (photo.bytes, photo.width, photo.height) == (len(data), width, height)
        path = folder / photo.name
        assert path.read_bytes() == data
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert sorted(os.listdir(folder)) == sorted([first.name, second.name])  # no temporary files left


def test_store_writes_nothing_when_the_photo_is_refused(tmp_path) -> None:
    with pytest.raises(PhotoError):
        photos.store(b"GIF89a" + b"\x00" * 100, tmp_path / "p")
    assert not (tmp_path / "p").exists() or os.listdir(tmp_path / "p") == []
    stored = photos.store(png(Image.new("RGB", (3000, 1000))), tmp_path / "p")
    assert (stored.width, stored.height) == (2048, 683)


# ---- hypothesis: outside bytes raise PhotoError or nothing --------------------------------------------

MAGIC = [b"", b"\xff\xd8\xff", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"\x89PNG\r\n\x1a\n",
         b"RIFF\x00\x01\x00\x00WEBPVP8 ", b"RIFF\x00\x01\x00\x00WEBPVP8L", b"\x00\x00\x00\x18ftypheic"]
SMALL_PNG = png(Image.new("RGBA", (20, 12), (5, 6, 7, 128)))
SMALL_JPEG = jpeg(Image.new("RGB", (20, 12), (5, 6, 7)))


def outcome(data: bytes) -> None:
    try:
        out, width, height = photos.reencode(data, PhotoLimits(max_pixels=4_000_000))
    except PhotoError as e:
        assert e.code in {"too_big", "too_many_pixels", "not_an_image", "unsupported_type", "corrupt"}
    else:
        assert Image.open(io.BytesIO(out)).size == (width, height)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(MAGIC), st.binary(max_size=2000))
def test_arbitrary_bytes_raise_only_photo_errors(magic: bytes, rest: bytes) -> None:
    outcome(magic + rest)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([SMALL_PNG, SMALL_JPEG]), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                          min_size=1, max_size=8),
       st.integers(0, 10_000))
def test_damaged_real_images_raise_only_photo_errors(base: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(base)
    for at, value in flips:
        data[at % len(data)] = value
    outcome(bytes(data[: max(1, len(data) - cut % len(data))]))
