"""The shim's write log: records as the C shim (shim.c) writes them, parsed back.

One record: magic 0xA5 (u8), op (u8), ino (u64), off (i64), len (u64), path length (u32), path, then
`len` data bytes for WRITE only. Little-endian. A log cut short inside its last record (the process
died mid-write) parses as the complete records before it; anything else malformed raises LogError.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

MAGIC = 0xA5
HEADER = struct.Struct("<BBQqQI")
MAX_PATH = 4096


class Op(IntEnum):
    OPEN = 1     # path: the name opened (ino bound to it); off: the open flags
    WRITE = 2    # ino, off, data
    TRUNC = 3    # ino, len: the new size
    SYNC = 4     # ino: fsync/fdatasync of a file
    DIRSYNC = 5  # fsync/fdatasync of the watched directory
    RENAME = 6   # path: "old\0new"
    UNLINK = 7   # path: the name
    MARK = 8     # path: the workload's marker text (UTF-8)


class LogError(ValueError):
    """The log is not a power-cut write log (or is damaged before its last record)."""


@dataclass(frozen=True)
class Record:
    op: Op
    ino: int = 0
    off: int = 0
    len: int = 0
    path: str = ""
    data: bytes = b""


def encode(r: Record) -> bytes:
    """The bytes the shim writes for `r` (the tests' and the parser's reference)."""
    p = r.path.encode("utf-8", "surrogateescape")
    return HEADER.pack(MAGIC, int(r.op), r.ino, r.off, r.len, len(p)) + p + (r.data if r.op == Op.WRITE else b"")


def parse(buf: bytes, *, strict_tail: bool = False) -> list[Record]:
    """Every complete record in `buf`; a partial last record is dropped unless `strict_tail`."""
    out: list[Record] = []
    pos, n = 0, len(buf)
    while pos < n:
        if n - pos < HEADER.size:
            if strict_tail:
                raise LogError(f"log ends inside a record header at byte {pos}")
            break
        magic, op, ino, off, ln, plen = HEADER.unpack_from(buf, pos)
        if magic != MAGIC:
            raise LogError(f"bad record magic 0x{magic:02x} at byte {pos}")
        try:
            op = Op(op)
        except ValueError:
            raise LogError(f"unknown op {op} at byte {pos}") from None
        if plen > MAX_PATH:
            raise LogError(f"path length {plen} at byte {pos} exceeds {MAX_PATH}")
        dlen = ln if op == Op.WRITE else 0
        end = pos + HEADER.size + plen + dlen
        if end > n:
            if strict_tail:
                raise LogError(f"log ends inside the record at byte {pos}")
            break
        path = bytes(buf[pos + HEADER.size:pos + HEADER.size + plen]).decode("utf-8", "surrogateescape")
        if op in (Op.OPEN, Op.UNLINK) and (not path or "/" in path or "\0" in path):
            raise LogError(f"{op.name} record at byte {pos} has a bad name {path!r}")
        if op == Op.RENAME and (path.count("\0") != 1 or "" in path.split("\0") or "/" in path):
            raise LogError(f"RENAME record at byte {pos} has a bad name pair {path!r}")
        if op == Op.WRITE and off < 0:
            raise LogError(f"WRITE record at byte {pos} has a negative offset {off}")
        data = bytes(buf[end - dlen:end]) if dlen else b""
        out.append(Record(op, ino, off, ln, path, data))
        pos = end
    return out


def read(path) -> list[Record]:
    with open(path, "rb") as f:
        return parse(f.read())
