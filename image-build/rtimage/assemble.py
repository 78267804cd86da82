"""Assemble the SD-card image from a boot tree and a root tree, rootless and without loop devices.

p1 FAT32 `RTBOOT` (mkfs.vfat + mtools), p2 ext4 `RTROOT` and p3 ext4 `RTDATA` (mke2fs -d, then one
debugfs -w script for timestamps and forced owners), an MBR written by sfdisk, the pieces joined at
4 MiB-aligned offsets like `dd conv=notrunc,sparse` (zero blocks stay holes). Identical inputs give an identical image: fixed disk
id, volume id, UUIDs and hash seeds, files added in sorted order, every timestamp clamped to `epoch`.
"""
from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from rtimage import layout
from rtimage.layout import ALIGN, MIB, SECTOR

FAT_EPOCH_MIN = 315532800  # 1980-01-01 UTC: FAT cannot store anything older


class AssembleError(Exception):
    """A tool failed or an input is not what the image needs; the message names the file or command."""


@dataclass(frozen=True)
class Entry:
    """Force an owner and permission bits on one path of a file system (`/` = its root directory)."""

    path: str
    uid: int
    gid: int
    mode: int  # permission bits only (e.g. 0o750); the file type is kept


@dataclass(frozen=True)
class Part:
    number: int
    label: str
    fstype: str   # "vfat" or "ext4"
    start: int    # bytes from the start of the image
    size: int     # bytes
    uuid: str     # ext4 UUID, or the FAT volume id as XXXX-XXXX


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    size: int
    disk_id: str
    partitions: tuple[Part, ...]

    def part(self, label: str) -> Part:
        return next(p for p in self.partitions if p.label == label)


def run(cmd: Sequence[str | os.PathLike], *, env: dict | None = None, input: str | None = None) -> str:
    """Run a tool; a failure raises AssembleError with the command and its error output."""
    try:
        done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, input=input,
                              env={**os.environ, **(env or {})})
    except FileNotFoundError:
        raise AssembleError(f"{cmd[0]}: not installed (Debian: mtools dosfstools e2fsprogs fdisk bmap-tools)") from None
    if done.returncode != 0:
        raise AssembleError(f"{' '.join(map(str, cmd))} failed ({done.returncode}): "
                            f"{(done.stderr or done.stdout).strip()[-2000:]}")
    return done.stdout


def read_owners(source: Iterable[Entry] | Path | str | None) -> list[Entry]:
    """Entries from a list, or from a file of lines `PATH UID GID MODE` (mode octal, `#` comments)."""
    if source is None:
        return []
    if not isinstance(source, (str, Path)):
        return list(source)
    out = []
    for n, line in enumerate(Path(source).read_text().splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        try:
            path, uid, gid, mode = words
            out.append(Entry(path, int(uid), int(gid), int(mode, 8)))
        except ValueError:
            raise AssembleError(f"{source}:{n}: expected 'PATH UID GID MODE' (mode in octal), got {line!r}") from None
    return out


def tree_size(root: Path) -> tuple[int, int]:
    """(bytes of the files rounded up to 4 KiB blocks, number of entries) under `root`."""
    total, count = 0, 1
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(dirpath, name))
            count += 1
            total += -(-st.st_size // 4096) * 4096 if stat.S_ISREG(st.st_mode) else 4096
    return total, count


def sorted_tree(root: Path) -> Iterable[tuple[str, list[str], list[str]]]:
    """os.walk in sorted order, relative directory names ("" for the top)."""
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(dirpath, root)
        yield ("" if rel == "." else rel), dirs, sorted(files)


def make_fat(src: Path, piece: Path, size: int, *, label: str, volume_id: str, hidden: int, epoch: int) -> None:
    """A FAT32 file system of `size` bytes holding the tree `src`, added in sorted order."""
    piece.unlink(missing_ok=True)
    run(["mkfs.vfat", "-C", piece, str(size // 1024), "-F", "32", "-n", label, "--invariant", "-i", volume_id,
         "-h", str(hidden)])
    env = {"MTOOLS_SKIP_CHECK": "1", "TZ": "UTC", "SOURCE_DATE_EPOCH": str(max(epoch, FAT_EPOCH_MIN)),
           "MTOOLSRC": os.devnull}
    for rel, dirs, files in sorted_tree(src):
        target = "::/" + rel.replace(os.sep, "/") if rel else "::"
        for name in files + dirs:
            path = os.path.join(src, rel, name)
            if os.path.islink(path) or not (os.path.isfile(path) or os.path.isdir(path)):
                raise AssembleError(f"{path}: only regular files and directories can go onto the FAT boot "
                                    f"partition (FAT has no links): replace it by a copy")
        if dirs:
            run(["mmd", "-i", piece, *[f"{target}/{d}" for d in dirs]], env=env)
        if files:
            run(["mcopy", "-i", piece, "-o", *[src / rel / f for f in files], target + "/"], env=env)


def quote(path: str) -> str:
    """A path as one debugfs argument."""
    if "\n" in path:
        raise AssembleError(f"{path!r}: a file name with a newline cannot go into the image")
    return '"' + path.replace('"', '""') + '"'


def make_ext4(src: Path | None, piece: Path, size: int, *, label: str, uuid: str, epoch: int,
              owners: list[Entry], inodes: int | None = None, reserved_percent: int = 0) -> None:
    """An ext4 file system of `size` bytes holding the tree `src` (or empty), timestamps clamped to
    `epoch`, `owners` applied."""
    piece.unlink(missing_ok=True)
    with open(piece, "wb") as f:
        f.truncate(size)
    cmd = ["mke2fs", "-q", "-F", "-t", "ext4", "-L", label, "-U", uuid, "-m", str(reserved_percent),
           "-E", f"hash_seed={uuid},lazy_itable_init=0,lazy_journal_init=0"]
    if inodes:
        cmd += ["-N", str(inodes)]
    if src is not None:
        cmd += ["-d", src]
    run([*cmd, piece], env={"E2FSPROGS_FAKE_TIME": str(epoch), "MKE2FS_CONFIG": "/etc/mke2fs.conf"})
    script = []
    at = f"@{epoch}"
    script += [f"sif <2> {f} {at}" for f in ("ctime", "atime", "mtime", "crtime")]
    if src is not None:
        # mke2fs -d copies ctime/atime from the tree and stamps crtime with the clock: clamp them all.
        for rel, dirs, files in sorted_tree(src):
            for name in dirs + files:
                full = os.path.join(src, rel, name)
                p = quote("/" + os.path.join(rel, name) if rel else "/" + name)
                mtime = int(min(os.lstat(full).st_mtime, epoch))
                script += [f"sif {p} ctime {at}", f"sif {p} atime @{mtime}", f"sif {p} mtime @{mtime}",
                           f"sif {p} crtime @{mtime}"]
    for e in owners:
        target = "<2>" if e.path.strip("/") == "" else quote("/" + e.path.strip("/"))
        kind = stat.S_IFDIR
        if src is not None and e.path.strip("/"):
            try:
                kind = stat.S_IFMT(os.lstat(src / e.path.strip("/")).st_mode)
            except FileNotFoundError:
                raise AssembleError(f"owners: {e.path} is not in {src}") from None
        script += [f"sif {target} uid {e.uid}", f"sif {target} gid {e.gid}",
                   f"sif {target} mode 0{kind | (e.mode & 0o7777):o}"]
    cmds = piece.with_suffix(".debugfs")
    cmds.write_text("\n".join(script) + "\n")
    out = subprocess.run(["debugfs", "-w", "-f", str(cmds), str(piece)], capture_output=True, text=True,
                         env={**os.environ, "E2FSPROGS_FAKE_TIME": str(epoch)})
    cmds.unlink()
    errors = [line for line in (out.stderr + out.stdout).splitlines()
              if line.strip() and not line.startswith(("debugfs ", "debugfs: "))]
    if out.returncode != 0 or errors:
        raise AssembleError(f"debugfs on {label}: {'; '.join(errors[:5]) or out.returncode}")


def mount_points(root_dir: Path, keep: list[Path]) -> list[Path]:
    """The root tree's non-empty mount points that hold another partition's tree (`keep`: set aside while
    p2 is made, so p2 has them empty). Any other non-empty mount point is an error."""
    out = []
    for mp in (layout.BOOT_DIR, layout.DATA_DIR):
        d = root_dir / mp.lstrip("/")
        if d.is_dir() and not d.is_symlink() and any(d.iterdir()):
            if not any(d.resolve() == k.resolve() for k in keep):
                raise AssembleError(f"{d}: must be empty in the root tree (it is the mount point of another "
                                    f"partition); pass it as the boot or data tree, or move its files there")
            out.append(d)
    return out


@contextlib.contextmanager
def set_aside(dirs: list[Path]) -> Iterator[dict[Path, Path]]:
    """Rename each directory away and leave an empty one (same mode and owner) in its place; put them
    back afterwards. Yields {original: where it is meanwhile}."""
    moved: dict[Path, Path] = {}
    try:
        for d in dirs:
            st = os.lstat(d)
            aside = d.with_name(f".{d.name}.rtimage-aside")
            os.rename(d, aside)
            moved[d] = aside
            d.mkdir()
            os.chmod(d, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0:
                os.chown(d, st.st_uid, st.st_gid)
        yield moved
    finally:
        for d, aside in moved.items():
            os.rmdir(d)
            os.rename(aside, d)


def partition_table(parts: list[tuple[int, int, str]], disk_id: int) -> str:
    """sfdisk's input: MBR, fixed disk id, (start, size, type) in bytes."""
    lines = ["label: dos", f"label-id: 0x{disk_id:08x}", "unit: sectors", f"sector-size: {SECTOR}", ""]
    for start, size, ptype in parts:
        lines.append(f"start={start // SECTOR}, size={size // SECTOR}, type={ptype}")
    return "\n".join(lines) + "\n"


def place(piece: Path, img: Path, offset: int, chunk: int = 64 * 1024) -> None:
    """Copy `piece` into `img` at `offset`, as `dd conv=notrunc,sparse` would, but reading only the
    piece's data extents (SEEK_DATA): a 256 MiB FAT piece is mostly holes."""
    zero = bytes(chunk)
    src, dst = os.open(piece, os.O_RDONLY), os.open(img, os.O_WRONLY)
    try:
        size, pos = os.fstat(src).st_size, 0
        while pos < size:
            try:
                pos = os.lseek(src, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(src, pos, os.SEEK_HOLE)
            while pos < end:
                data = os.pread(src, min(chunk, end - pos), pos)
                if data != zero[:len(data)]:
                    os.pwrite(dst, data, offset + pos)
                pos += len(data)
    finally:
        os.close(src)
        os.close(dst)


def assemble(boot_dir: Path, root_dir: Path, out_img: Path, *, data_mib: int = layout.DATA_MIB,
             boot_mib: int = layout.BOOT_MIB, root_mib: int | None = None, data_dir: Path | None = None,
             root_owners: Iterable[Entry] | Path | None = None, data_owners: Iterable[Entry] | Path | None = None,
             epoch: int | None = None, workdir: Path | None = None) -> ImageInfo:
    """Build the raw three-partition image `out_img` (sparse) from the trees; see the module docstring."""
    boot_dir, root_dir, out_img = Path(boot_dir), Path(root_dir), Path(out_img)
    for d, what in ((boot_dir, "boot"), (root_dir, "root")) + (((data_dir, "data"),) if data_dir else ()):
        if not Path(d).is_dir():
            raise AssembleError(f"{d}: the {what} tree is not a directory")
    busy = mount_points(root_dir, [boot_dir] + ([Path(data_dir)] if data_dir else []))
    if epoch is None:
        epoch = int(os.environ.get("SOURCE_DATE_EPOCH", FAT_EPOCH_MIN))
    work = Path(workdir or out_img.parent)
    work.mkdir(parents=True, exist_ok=True)

    content, entries = tree_size(root_dir)
    for d in busy:  # their files go to p1/p3
        content, entries = content - tree_size(d)[0], entries - tree_size(d)[1] + 1
    root_size = root_mib * MIB if root_mib else layout.align(int(content * 1.15) + 64 * MIB)
    boot_size, data_size = boot_mib * MIB, data_mib * MIB
    boot_start = ALIGN
    root_start = layout.align(boot_start + boot_size)
    data_start = layout.align(root_start + root_size)
    total = data_start + data_size

    stem = out_img.name
    pieces = [work / f".{stem}.p{n}" for n in (1, 2, 3)]
    try:
        with set_aside(busy) as moved:
            def where(tree: Path) -> Path:  # a tree set aside is read from where it is meanwhile
                return next((aside for d, aside in moved.items() if d.resolve() == tree.resolve()), tree)
            make_fat(where(boot_dir), pieces[0], boot_size, label=layout.BOOT_LABEL,
                     volume_id=layout.BOOT_VOLUME_ID, hidden=boot_start // SECTOR, epoch=epoch)
            make_ext4(root_dir, pieces[1], root_size, label=layout.ROOT_LABEL, uuid=layout.ROOT_UUID, epoch=epoch,
                      owners=read_owners(root_owners), inodes=int(entries * 1.25) + 4096)
            make_ext4(where(Path(data_dir)) if data_dir else None, pieces[2], data_size, label=layout.DATA_LABEL,
                      uuid=layout.DATA_UUID, epoch=epoch, owners=read_owners(data_owners), reserved_percent=1)
        out_img.unlink(missing_ok=True)
        with open(out_img, "wb") as f:
            f.truncate(total)
        table = partition_table([(boot_start, boot_size, "c"), (root_start, root_size, "83"),
                                 (data_start, data_size, "83")], layout.DISK_ID)
        run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", out_img], input=table)
        for piece, start in zip(pieces, (boot_start, root_start, data_start)):
            place(piece, out_img, start)
    finally:
        for p in pieces:
            p.unlink(missing_ok=True)
    vol = layout.BOOT_VOLUME_ID.upper()
    return ImageInfo(out_img, total, f"0x{layout.DISK_ID:08x}", (
        Part(1, layout.BOOT_LABEL, "vfat", boot_start, boot_size, f"{vol[:4]}-{vol[4:]}"),
        Part(2, layout.ROOT_LABEL, "ext4", root_start, root_size, layout.ROOT_UUID),
        Part(3, layout.DATA_LABEL, "ext4", data_start, data_size, layout.DATA_UUID),
    ))
