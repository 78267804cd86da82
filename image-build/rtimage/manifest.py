"""Publish an assembled image: the block map, the xz file, its checksum and the manifest.

`rating-terminal-<version>-arm64.img.xz` + `.bmap` (of the raw image: `bmaptool copy x.img.xz /dev/sdX`
finds it) + `.img.xz.sha256` (sha256sum format) + `.manifest.json` (every Debian package and Python
wheel inside, with versions; the partitions; sizes and checksums).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from rtimage.assemble import AssembleError, run

_WHEEL = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[A-Za-z0-9_.!+]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


@dataclass(frozen=True)
class Artifacts:
    img_xz: Path
    bmap: Path
    sha256: Path
    manifest: Path
    size_raw: int
    size_xz: int


def image_name(version: str) -> str:
    return f"rating-terminal-{version}-arm64"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def wheel_entry(wheel: Path | tuple[str, str]) -> dict:
    """{name, version[, file, sha256]} of a wheel file (PEP 427 name) or a (name, version) pair."""
    if isinstance(wheel, tuple):
        return {"name": wheel[0], "version": wheel[1]}
    m = _WHEEL.match(Path(wheel).name)
    if not m:
        raise AssembleError(f"{wheel}: not a wheel file name (name-version-python-abi-platform.whl)")
    return {"name": m["name"].replace("_", "-").lower(), "version": m["version"], "file": Path(wheel).name,
            "sha256": sha256(Path(wheel))}


def partitions(img: Path) -> list[dict]:
    """The image's partition table as sfdisk reads it (start and size in bytes)."""
    table = json.loads(run(["sfdisk", "-J", img]))["partitiontable"]
    unit = table.get("sectorsize", 512)
    return [{"number": i, "start": p["start"] * unit, "size": p["size"] * unit, "type": p["type"]}
            for i, p in enumerate(table.get("partitions", []), 1)]


def publish(img: Path, out_dir: Path, *, version: str, packages: Iterable[tuple[str, str, str]],
            wheels: Iterable[Path | tuple[str, str]], extra: dict | None = None, keep_raw: bool = False) -> Artifacts:
    """Turn the raw image `img` into the published artifacts in `out_dir` (the raw image is moved there
    and removed after compression unless `keep_raw`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = image_name(version)
    raw = out_dir / f"{stem}.img"
    if Path(img).resolve() != raw.resolve():
        os.replace(img, raw)
    bmap, xz = out_dir / f"{stem}.bmap", out_dir / f"{stem}.img.xz"
    run(["bmaptool", "-q", "create", "-o", bmap, raw])
    size_raw, raw_sum, table = raw.stat().st_size, sha256(raw), partitions(raw)
    xz.unlink(missing_ok=True)
    run(["xz", "-T0", "-k", "-f", raw])  # multi-threaded, but block size from the preset: same bytes everywhere
    if not keep_raw:
        raw.unlink()
    xz_sum = sha256(xz)
    sums = out_dir / f"{stem}.img.xz.sha256"
    sums.write_text(f"{xz_sum}  {xz.name}\n")
    manifest = out_dir / f"{stem}.manifest.json"
    doc = {
        "name": "rating-terminal", "version": version, "arch": "arm64",
        "image": {"file": xz.name, "size": xz.stat().st_size, "sha256": xz_sum},
        "raw": {"file": raw.name, "size": size_raw, "sha256": raw_sum},
        "bmap": bmap.name,
        "partitions": table,
        "packages": [{"name": n, "version": v, "arch": a} for n, v, a in sorted(set(map(tuple, packages)))],
        "wheels": sorted((wheel_entry(w) for w in wheels), key=lambda w: (w["name"], w["version"])),
        **(extra or {}),
    }
    manifest.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    return Artifacts(xz, bmap, sums, manifest, size_raw, xz.stat().st_size)
