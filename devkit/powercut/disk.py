"""A disk as a power cut leaves it: the write log replayed, then cut.

The model (POSIX's promises, nothing more):
- A file's data is durable up to its last fsync/fdatasync; writes and truncations after it are "pending".
- A directory's names are durable as of the directory's last fsync: a file created, renamed or unlinked
  since then may or may not be so on disk. A file whose name was never made durable is lost with its
  data, even if the file itself was fsynced (ext4 usually keeps it; POSIX does not promise it).
- At a cut, each file holds its durable content plus, by `mode`:
    synced   nothing pending (everything after each file's last fsync is lost);
    prefix   a random prefix of its pending operations (and of the directory's pending name changes);
    pages    each 4 KiB block touched since the last fsync from either before or after (any subset,
             any order), the size either the old or the new one; a block past the old end that was not
             written reads as zeros (ext4 data=ordered never shows stale blocks);
    sectors  the same with 512-byte sectors (torn 4 KiB pages).
- Beyond the model, `lost_flush`: one file (the WAL or the database) loses its last fsync too, as on
  a drive whose cache lies about FLUSH: its content is as of the sync before, plus any subset of the
  pages written since. Acknowledged ratings may be lost then, and the file may be damaged: what is
  checked is that the outbox still opens (salvaging with an alarm), never that nothing is lost.
- `-shm` files are not replayed: SQLite writes the wal-index through mmap (not in the log) and
  rebuilds it from the WAL on the first open after a reboot. A cut leaves it out, or (in half the
  cuts of the modes other than `synced`) leaves 32 KiB of garbage in its place.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from devkit.powercut.log import LogError, Op, Record

MODES = ("synced", "prefix", "pages", "sectors")
BEYOND = ("lost_flush",)  # outside the model: a drive that acknowledged a FLUSH it did not do
BLOCK = {"pages": 4096, "sectors": 512}
MAX_SIZE = 1 << 30  # a truncate or write beyond this is a damaged log, not a 1 GiB outbox


@dataclass(eq=False)
class File:
    """One inode: what is durable, and what was done to it since."""

    ino: int | None  # None: a file that was there before the log began, until it is opened
    durable: bytearray = field(default_factory=bytearray)
    pending: list[tuple] = field(default_factory=list)  # ("w", off, data) | ("t", size)
    last_batch: list[tuple] = field(default_factory=list)  # what the last sync made durable
    undo: list[tuple] = field(default_factory=list)  # how to take it back: (size before, offset, old bytes)

    def current(self) -> bytearray:
        return _applied(bytearray(self.durable), self.pending)

    def sync(self) -> None:
        self.undo = []
        for op in self.pending:
            size = len(self.durable)
            at = op[1] if op[0] == "w" else min(op[1], size)
            end = op[1] + len(op[2]) if op[0] == "w" else size
            self.undo.append((size, at, bytes(self.durable[at:end])))
            _applied(self.durable, [op])
        self.last_batch, self.pending = self.pending, []

    def before_last_sync(self) -> bytearray:
        """The content as of the sync before the last one (for a drive that lied about the last FLUSH)."""
        buf = bytearray(self.durable)
        for size, at, old in reversed(self.undo):
            buf[at:at + len(old)] = old
            del buf[size:]
            buf.extend(bytes(size - len(buf)))
        return buf


def _applied(buf: bytearray, ops: list[tuple]) -> bytearray:
    for op in ops:
        if op[0] == "w":
            _, off, data = op
            if off > len(buf):
                buf.extend(bytes(off - len(buf)))
            buf[off:off + len(data)] = data
        else:
            size = op[1]
            if size < len(buf):
                del buf[size:]
            else:
                buf.extend(bytes(size - len(buf)))
    return buf


class Disk:
    """The watched directory, built record by record from the log."""

    def __init__(self) -> None:
        self.names: dict[str, File] = {}          # as the running process saw it
        self.durable_names: dict[str, File] = {}  # as of the last directory fsync
        self.name_ops: list[tuple] = []           # name changes since then, in order
        self.by_ino: dict[int, File] = {}
        self.applied = 0

    @classmethod
    def holding(cls, files: dict[str, bytes]) -> "Disk":
        """A disk whose directory already holds `files`, all durable, when the log begins."""
        d = cls()
        for name, data in files.items():
            d.names[name] = File(None, bytearray(data))
        d.durable_names = dict(d.names)
        return d

    def apply(self, r: Record) -> None:
        """Replay one record; LogError if it contradicts what came before."""
        if r.op == Op.OPEN:
            f = self.names.get(r.path)
            if f is None:
                if not r.off & os.O_CREAT:
                    raise LogError(f"record {self.applied}: {r.path} opened without O_CREAT but never created")
                f = File(r.ino)
                self.names[r.path] = f
                self.name_ops.append(("link", r.path, f))
            elif f.ino is None:
                f.ino = r.ino
            elif f.ino != r.ino:
                raise LogError(f"record {self.applied}: {r.path} is inode {r.ino}, the log made it {f.ino}")
            self.by_ino[r.ino] = f
        elif r.op in (Op.WRITE, Op.TRUNC, Op.SYNC):
            f = self.by_ino.get(r.ino)
            if f is None:
                raise LogError(f"record {self.applied}: {r.op.name} on inode {r.ino}, never opened")
            if r.op == Op.SYNC:
                f.sync()
            elif r.op == Op.WRITE:
                if r.off + len(r.data) > MAX_SIZE:
                    raise LogError(f"record {self.applied}: write beyond {MAX_SIZE} bytes")
                f.pending.append(("w", r.off, r.data))
            else:
                if r.len > MAX_SIZE:
                    raise LogError(f"record {self.applied}: truncate to {r.len} bytes")
                f.pending.append(("t", r.len))
        elif r.op == Op.DIRSYNC:
            self.durable_names = dict(self.names)
            self.name_ops.clear()
        elif r.op == Op.RENAME:
            old, new = r.path.split("\0")
            if old not in self.names:
                raise LogError(f"record {self.applied}: rename of {old}, which does not exist")
            self.names[new] = self.names.pop(old)
            self.name_ops.append(("rename", old, new))
        elif r.op == Op.UNLINK:
            if self.names.pop(r.path, None) is None:
                raise LogError(f"record {self.applied}: unlink of {r.path}, which does not exist")
            self.name_ops.append(("unlink", r.path))
        self.applied += 1

    def after_cut(self, mode: str, rnd: random.Random) -> dict[str, bytes]:
        """What the directory holds after a power cut now: name → content (`-shm`: absent or garbage)."""
        if mode not in MODES + BEYOND:
            raise ValueError(f"unknown power-cut mode {mode!r}; one of {MODES + BEYOND}")
        names = dict(self.durable_names)
        if mode != "synced":
            for op in self.name_ops[:rnd.randint(0, len(self.name_ops))]:
                if op[0] == "link":
                    names[op[1]] = op[2]
                elif op[0] == "unlink":
                    names.pop(op[1], None)
                elif op[1] in names:
                    names[op[2]] = names.pop(op[1])
        out = {}
        liar = None
        if mode == "lost_flush":
            synced_twice = sorted((n for n, f in names.items() if f.last_batch and not n.endswith("-shm")))
            liar = names[rnd.choice(synced_twice)] if synced_twice else None
        for name, f in names.items():
            if name.endswith("-shm"):  # stale wal-index: absent, or (half the unsynced modes' cuts) garbage
                if mode != "synced" and rnd.random() < 0.5:
                    out[name] = rnd.randbytes(32768)
                continue
            if f is liar:
                out[name] = _torn(f.before_last_sync(), f.last_batch + f.pending, BLOCK["pages"], rnd)
            elif mode == "synced" or not f.pending:
                out[name] = bytes(f.durable)
            elif mode == "prefix":
                out[name] = bytes(_applied(bytearray(f.durable), f.pending[:rnd.randint(0, len(f.pending))]))
            else:
                out[name] = _torn(f.durable, f.pending, BLOCK.get(mode, 4096), rnd)
        return out


def _torn(old: bytearray, ops: list[tuple], block: int, rnd: random.Random) -> bytes:
    """Each block `ops` touched from before or after them, independently; the old or the new size."""
    new = _applied(bytearray(old), ops)
    size = rnd.choice((len(old), len(new)))
    out = bytearray(old[:size])
    out.extend(bytes(size - len(out)))
    touched: set[int] = set()
    for op in ops:
        lo, hi = (op[1], op[1] + len(op[2])) if op[0] == "w" else sorted((op[1], max(len(old), len(new))))
        touched.update(range(lo // block, (hi + block - 1) // block))
    for b in sorted(touched):
        lo = b * block
        if lo >= size or rnd.random() < 0.5:
            continue
        hi = min(lo + block, size)
        chunk = new[lo:hi]
        out[lo:lo + len(chunk)] = chunk
        if len(chunk) < hi - lo:
            out[lo + len(chunk):hi] = bytes(hi - lo - len(chunk))
    return bytes(out)


def materialise(files: dict[str, bytes], target: Path) -> None:
    """Write a cut state into an empty directory (0700, files 0600 as the outbox keeps them)."""
    target.mkdir(mode=0o700, parents=True)
    for name, data in files.items():
        with open(os.open(target / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
            fh.write(data)
