# A stand-in for micropython-lib's `ntptime` (tests only): no network, so no time from it.
def settime():
    raise OSError(113)
