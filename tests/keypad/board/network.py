# A stand-in for MicroPython's `network` (tests only): a Wi-Fi interface that never joins.
STA_IF = 0


class WLAN:
    def __init__(self, which):
        self.on = False

    def active(self, on=None):
        if on is not None:
            self.on = on
        return self.on

    def isconnected(self):
        return False

    def connect(self, ssid, password):
        pass
