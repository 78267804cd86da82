# The keypad's outbox: an append-only ring of records on raw flash (plain MicroPython; CPython too).
#
# Region: `flash.count` sectors of `flash.size` bytes (4 KiB on the boards' NOR flash). NOR rules:
# programming only clears bits (1 → 0), erasing sets a whole sector back to 0xFF. Every write below
# relies on nothing more, so a cut can leave at most one half-programmed record or header.
#
# Sector header (16 bytes): b"HKR1", sseq u32 (order of opening), rseq u32 (next record seq then),
# crc32 of the first 12 bytes. Record: 0xA5, len u16, seq u32, id 16 bytes, crc32(payload) u32,
# crc32(the 27 bytes before) u32, payload, quarantined, deleted, commit. The last three bytes are
# 0xFF when written; commit is programmed to 0x00 in a second write once the body is down, deleted
# and quarantined later in place. A record counts only when its header checks, commit is 0x00 and
# its payload checks. Nothing is ever appended over programmed bytes: the next record goes after the
# last programmed byte of the head sector, so a torn record is skipped, never overwritten.
#
# Wear levelling: sectors are opened round-robin (the next after the head), each erased only when
# it is opened again. Invariant: the sector after the head holds no live record; opening a sector
# copies the live records of the one after it first (copies are found by id; the newest copy wins),
# so an old undelivered record never pins the ring. A sector is erased only when no live record is
# in it: a full ring refuses new records, it never overwrites one.
import struct
from binascii import crc32

MAGIC = b"HKR1"
HEADER = 16
REC_HEAD = 31
REC_TAIL = 3  # quarantined, deleted, commit
OVERHEAD = REC_HEAD + REC_TAIL
MAX_PAYLOAD = 2048
ERASED = 0xFF
SLACK = 512  # per sector: the tail a record did not fit into (a case rating is about 400 bytes)


def _erased(size):
    return b"\xff" * size


class RingFull(Exception):
    pass


class Ring:
    """Records by 16-byte id: append, read, delete (on a receipt), quarantine (on a rejection)."""

    def __init__(self, flash):
        self.flash = flash
        self.size = flash.size
        self.count = flash.count
        if self.count < 3:
            raise ValueError("the ring needs at least 3 sectors")
        self.usable = self.size - HEADER
        self.corrupt = 0  # records whose payload no longer matches its CRC (bit rot), skipped
        self.torn = 0     # half-written records found at start (power cut while writing), skipped
        self.erases = 0
        self.programs = 0
        self._scan()

    # ---- start-up -------------------------------------------------------------------------------

    def _scan(self):
        self.sseq = [None] * self.count  # opening order of each sector, None = not a valid sector
        self.index = {}                  # id -> [sector, offset, seq, length, quarantined]
        self.live_bytes = 0
        next_seq = 1
        for s in range(self.count):
            h = self.flash.read(s * self.size, HEADER)
            if h[:4] == MAGIC and struct.unpack("<I", h[12:16])[0] == crc32(h[:12]) & 0xFFFFFFFF:
                sseq, rseq = struct.unpack("<II", h[4:12])
                self.sseq[s] = sseq
                next_seq = max(next_seq, rseq)
        order = sorted([s for s in range(self.count) if self.sseq[s] is not None], key=lambda s: self.sseq[s])
        self.fill = [self.size] * self.count  # where the next record of each sector would go
        for s in order:
            for rid, off, seq, n, quar, deleted in self._records(s):
                next_seq = max(next_seq, seq + 1)
                if deleted:
                    self.index.pop(rid, None)
                else:
                    self.index[rid] = [s, off, seq, n, quar]
        self.live_bytes = sum(e[3] + OVERHEAD for e in self.index.values())
        self.next_seq = next_seq
        if order:
            self.head = order[-1]
            self.next_sseq = self.sseq[self.head] + 1
        else:
            self.head = None
            self.next_sseq = 1
        self._restore_spare()

    def _records(self, s):
        """(id, offset, seq, length, quarantined, deleted) of each committed record of sector s."""
        base = s * self.size
        data = self.flash.read(base, self.size)
        end = self.size
        while end > HEADER and data[end - 1] == ERASED:
            end -= 1
        self.fill[s] = end
        off = HEADER
        while off + REC_HEAD <= end:
            if data[off] == 0xA5 and _u32(data, off + 27) == crc32(data[off:off + 27]) & 0xFFFFFFFF:
                n = data[off + 1] | data[off + 2] << 8
                total = REC_HEAD + n + REC_TAIL
                if n <= MAX_PAYLOAD and off + total <= self.size:
                    # The header is whole, so is the extent: nothing is ever written inside it again,
                    # even where a cut left its last bytes erased.
                    self.fill[s] = max(self.fill[s], off + total)
                    body = data[off + REC_HEAD:off + REC_HEAD + n]
                    if data[off + total - 1] != 0:
                        self.torn += 1  # cut before its commit byte: never acknowledged, skipped
                    elif _u32(data, off + 23) == crc32(body) & 0xFFFFFFFF:
                        tail = off + REC_HEAD + n
                        yield (bytes(data[off + 7:off + 23]), off, _u32(data, off + 3), n,
                               data[tail] != ERASED, data[tail + 1] != ERASED)
                    else:
                        self.corrupt += 1  # committed once, changed since (bit rot): skipped, counted
                    off += total
                    continue
            # A torn header (a cut inside its first 31 bytes): look for the next record after it.
            self.torn += 1
            off += 1
            while off + REC_HEAD <= end and data[off] != 0xA5:
                off += 1

    def _restore_spare(self):
        """After a cut during an opening, finish copying the live records out of the next sector."""
        if self.head is None:
            return
        nxt = (self.head + 1) % self.count
        for rid in self._live_in(nxt):
            if not self._relocate(rid):
                return  # no room: the sector stays pinned until receipts free it (never erased live)

    # ---- queries --------------------------------------------------------------------------------

    def __len__(self):
        return len(self.index)

    def ids(self, quarantined=False):
        """Ids of live records (not quarantined, or only quarantined), oldest first by seq."""
        out = [(e[2], rid) for rid, e in self.index.items() if bool(e[4]) == quarantined]
        out.sort()
        return [rid for _, rid in out]

    def read(self, rid):
        e = self.index.get(rid)
        if e is None:
            return None
        return bytes(self.flash.read(e[0] * self.size + e[1] + REC_HEAD, e[3]))

    def capacity(self):
        """Bytes the ring can hold without blocking itself: all but the spare and the head's slack."""
        return (self.count - 2) * (self.usable - SLACK)

    def fits(self, n):
        return n <= MAX_PAYLOAD and self.live_bytes + n + OVERHEAD <= self.capacity()

    def payloads(self):
        """Every committed payload still on flash, delivered or not (e.g. for rated cases at start)."""
        counts = self.torn, self.corrupt  # counted once, at the scan
        for s in range(self.count):
            if self.sseq[s] is not None:
                for rid, off, seq, n, quar, deleted in self._records(s):
                    yield bytes(self.flash.read(s * self.size + off + REC_HEAD, n))
        self.torn, self.corrupt = counts

    # ---- changes --------------------------------------------------------------------------------

    def append(self, rid, payload):
        """Commit a record with the next seq; return the seq. RingFull when it cannot be held."""
        if len(rid) != 16:
            raise ValueError("id must be 16 bytes")
        n = len(payload)
        if not self.fits(n):
            raise RingFull("%d bytes held, %d more do not fit" % (self.live_bytes, n + OVERHEAD))
        seq = self.next_seq
        self._write(rid, seq, payload, False)
        self.next_seq = seq + 1
        return seq

    def delete(self, rid):
        """Forget a record (its end-to-end receipt arrived). True if it was held."""
        e = self.index.pop(rid, None)
        if e is None:
            return False
        self._program(e[0] * self.size + e[1] + REC_HEAD + e[3] + 1, b"\x00")
        self.live_bytes -= e[3] + OVERHEAD
        return True

    def quarantine(self, rid):
        """Keep a rejected record, never offer it again by itself. True if it was held."""
        e = self.index.get(rid)
        if e is None or e[4]:
            return False
        self._program(e[0] * self.size + e[1] + REC_HEAD + e[3], b"\x00")
        e[4] = True
        return True

    def release(self, rid):
        """Offer a quarantined record again (maintenance): copied as a new live record, same id and seq."""
        e = self.index.get(rid)
        if e is None or not e[4]:
            return False
        body = self.read(rid)
        self._need(len(body))
        self._write(rid, e[2], body, False)
        return True

    def _write(self, rid, seq, payload, quarantined):
        n = len(payload)
        self._need(n)
        s = self.head
        off = self.fill[s]
        head = bytearray(REC_HEAD)
        head[0] = 0xA5
        struct.pack_into("<HI", head, 1, n, seq)
        head[7:23] = rid
        struct.pack_into("<I", head, 23, crc32(payload) & 0xFFFFFFFF)
        struct.pack_into("<I", head, 27, crc32(head[:27]) & 0xFFFFFFFF)
        tail = b"\x00\xff" if quarantined else b"\xff\xff"
        addr = s * self.size + off
        self._program(addr, bytes(head) + payload + tail)
        self.fill[s] = off + REC_HEAD + n + REC_TAIL
        self._program(addr + REC_HEAD + n + 2, b"\x00")  # commit: the record counts from here on
        old = self.index.get(rid)
        if old is not None:
            self.live_bytes -= old[3] + OVERHEAD
        self.index[rid] = [s, off, seq, n, quarantined]
        self.live_bytes += n + OVERHEAD

    def _need(self, n):
        """Make room for a record of n payload bytes in the head sector (opening sectors as needed)."""
        tries = 0
        while self.head is None or self.fill[self.head] + REC_HEAD + n + REC_TAIL > self.size:
            if tries == self.count:
                raise RingFull("no sector can be opened without erasing an undelivered record")
            self._open_next()
            tries += 1

    def _open_next(self):
        target = 0 if self.head is None else (self.head + 1) % self.count
        if self._live_in(target):
            raise RingFull("the next sector still holds undelivered records")
        base = target * self.size
        if self.sseq[target] is not None:
            self._program(base, b"\x00")  # invalidate first: a cut mid-erase leaves no valid header
        if self.sseq[target] is not None or bytes(self.flash.read(base, self.size)) != _erased(self.size):
            self.flash.erase(target)
            self.erases += 1
        h = bytearray(HEADER)
        h[:4] = MAGIC
        struct.pack_into("<II", h, 4, self.next_sseq, self.next_seq)
        struct.pack_into("<I", h, 12, crc32(h[:12]) & 0xFFFFFFFF)
        self._program(base, bytes(h))
        self.sseq[target] = self.next_sseq
        self.next_sseq += 1
        self.fill[target] = HEADER
        self.head = target
        # Keep the sector after the new head free of live records: copy them here first.
        for rid in self._live_in((target + 1) % self.count):
            self._relocate(rid)

    def _relocate(self, rid):
        e = self.index[rid]
        if self.fill[self.head] + REC_HEAD + e[3] + REC_TAIL > self.size:
            return False
        self._write(rid, e[2], self.read(rid), e[4])
        return True

    def _live_in(self, s):
        return [rid for rid, e in self.index.items() if e[0] == s]

    def _program(self, addr, data):
        self.flash.write(addr, data)
        self.programs += 1


def _u32(b, off):
    return b[off] | b[off + 1] << 8 | b[off + 2] << 16 | b[off + 3] << 24
