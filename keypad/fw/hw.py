# The hardware seam: keys, LEDs, buzzer on `machine.Pin`-like pins; the ring's flash. On a board the
# pin class is machine.Pin and the flash a file or partition; on the host (twin.py) they are twins.


class Keys:
    """Five keys, active low with pull-ups, polled; a press counts once it is stable for debounce_ms."""

    def __init__(self, pin_class, pins, debounce_ms=30):
        self.pins = [pin_class(p, pin_class.IN, pin_class.PULL_UP) for p in pins]
        self.debounce_ms = debounce_ms
        self.stable = [1] * len(self.pins)
        self.seen = [1] * len(self.pins)
        self.since = [0] * len(self.pins)

    def poll(self, now_ms):
        """Indexes (0-4) of keys pressed since the last poll, in pin order."""
        pressed = []
        for i, pin in enumerate(self.pins):
            v = pin.value()
            if v != self.seen[i]:
                self.seen[i], self.since[i] = v, now_ms
            elif v != self.stable[i] and now_ms - self.since[i] >= self.debounce_ms:
                self.stable[i] = v
                if v == 0:
                    pressed.append(i)
        return pressed


# Patterns: a list of (LED mask, milliseconds), repeated while shown. Neutral: the same for every level.
PATTERNS = {
    "idle": [(0b00000, 1000)],
    "offline": [(0b00001, 60), (0b00000, 4940)],           # a short blink now and then: no link
    "case": [(0b11111, 1000)],                              # all lit: please rate
    "thanks": [(0b11111, 200), (0b00000, 200)],             # all blink: thank you (any level)
    "rated_elsewhere": [(0b11111, 600), (0b00000, 600)],
    "unavailable": [(0b10101, 150), (0b01010, 150)],        # alternating: not stored, scan the QR instead
    "full": [(0b10101, 150), (0b01010, 150)],
    "committing": [(0b11111, 1000)],
    "unpaired": [(0b10000, 1000), (0b00000, 1000)],        # LED 5 slow: not rating at a window (pairing)
}


class Leds:
    """Five LEDs (active high); `show(name)` starts a pattern; `update(now_ms)` drives it."""

    def __init__(self, pin_class, pins, buzzer=None):
        self.pins = [pin_class(p, pin_class.OUT) for p in pins]
        self.buzzer = pin_class(buzzer, pin_class.OUT) if buzzer is not None else None
        self.name, self.steps, self.start, self.mask = "", [(0, 1000)], 0, -1
        self.beep_until = 0

    def show(self, name, now_ms, steps=None):
        if name != self.name or steps is not None:
            self.name, self.steps, self.start = name, steps or PATTERNS[name], now_ms

    def beep(self, now_ms, ms=40):
        self.beep_until = now_ms + ms

    def update(self, now_ms):
        period = sum(ms for _, ms in self.steps)
        t = (now_ms - self.start) % period
        for mask, ms in self.steps:
            if t < ms:
                break
            t -= ms
        if mask != self.mask:
            self.mask = mask
            for i, pin in enumerate(self.pins):
                pin.value((mask >> i) & 1)
        if self.buzzer is not None:
            self.buzzer.value(1 if now_ms < self.beep_until else 0)


def code_pattern(code):
    """A number blinked digit by digit on LED 1 (0 as ten blinks), a pause between digits."""
    steps = []
    for ch in str(code):
        for _ in range(int(ch) or 10):
            steps += [(0b00001, 250), (0, 250)]
        steps.append((0, 1000))
    return steps + [(0, 2000)]


# ---- flash ----------------------------------------------------------------------------------------

class FileFlash:
    """The ring on a preallocated file of the board's filesystem (LittleFS: itself power-safe)."""

    def __init__(self, path, count, size=4096):
        self.path, self.count, self.size = path, count, size
        try:
            f = open(path, "rb")
            f.seek(0, 2)
            have = f.tell()
            f.close()
        except OSError:
            have = 0
        if have < count * size:
            with open(path, "ab") as f:
                blank = b"\xff" * size
                for _ in range((count * size - have) // size):
                    f.write(blank)
        self.f = open(path, "r+b")

    def read(self, addr, n):
        self.f.seek(addr)
        return self.f.read(n)

    def write(self, addr, data):
        old = self.read(addr, len(data))
        self.f.seek(addr)
        self.f.write(bytes(a & b for a, b in zip(old, data)))  # NOR: programming only clears bits
        self.f.flush()

    def erase(self, sector):
        self.f.seek(sector * self.size)
        self.f.write(b"\xff" * self.size)
        self.f.flush()


class BlockFlash:
    """The ring on a raw block device with the extended interface (esp32.Partition, rp2.Flash)."""

    def __init__(self, bdev):
        self.bdev = bdev
        self.size = bdev.ioctl(5, 0)   # block size
        self.count = bdev.ioctl(4, 0)  # block count

    def read(self, addr, n):
        buf = bytearray(n)
        self.bdev.readblocks(addr // self.size, buf, addr % self.size)
        return buf

    def write(self, addr, data):
        self.bdev.writeblocks(addr // self.size, data, addr % self.size)  # with an offset: no erase

    def erase(self, sector):
        self.bdev.ioctl(6, sector)
