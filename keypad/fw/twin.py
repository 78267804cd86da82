# Host twins of the hardware seam (tests only; not copied to a board): pins and NOR flash with power cuts.


class PowerCut(Exception):
    pass


class NorFlash:
    """NOR flash in RAM: programming ANDs bits in, erase sets a sector to 0xFF. `cut_after = n` cuts the
    power after n more bytes: the byte being programmed then keeps only some of its new zero bits, an
    erase leaves the sector half erased, and PowerCut is raised."""

    def __init__(self, count, size=4096, mem=None):
        self.count, self.size = count, size
        self.mem = bytearray(b"\xff" * (count * size)) if mem is None else mem
        self.cut_after = None
        self.programmed = 0
        self.erases = [0] * count

    def read(self, addr, n):
        return bytes(self.mem[addr:addr + n])

    def write(self, addr, data):
        for i in range(len(data)):
            if self.cut_after is not None:
                if self.cut_after == 0:
                    self.mem[addr + i] &= data[i] | 0x5A  # half-programmed: some bits made it
                    raise PowerCut()
                self.cut_after -= 1
            self.mem[addr + i] &= data[i]
            self.programmed += 1

    def erase(self, sector):
        base = sector * self.size
        if self.cut_after is not None:
            if self.cut_after == 0:
                half = self.size // 2
                self.mem[base:base + half] = b"\xff" * half
                raise PowerCut()
            self.cut_after -= 1
        self.mem[base:base + self.size] = b"\xff" * self.size
        self.erases[sector] += 1

    def image(self):
        return NorFlash(self.count, self.size, bytearray(self.mem))


class Pin:
    """machine.Pin's shape: value() reads or sets; tests press keys with `press`/`release`."""

    IN, OUT, PULL_UP = 0, 1, 2
    pins = {}

    def __init__(self, ident, mode=0, pull=None):
        self.ident, self.mode = ident, mode
        self.v = 1 if pull == Pin.PULL_UP else 0
        Pin.pins[ident] = self

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v
