# Board entry point (Pico W or ESP32): Wi-Fi, clock, flash, pins, then the loop. Runs at boot.
import time

import machine
import network

import settings
from app import App, log
from hw import BlockFlash, FileFlash, Keys, Leds
from ring import Ring
from umqtt.simple import MQTTClient


def wifi(cfg):
    w = cfg.get("wifi")
    if not w:
        return
    sta = network.WLAN(network.STA_IF)
    sta.active(True)
    if not sta.isconnected():
        sta.connect(w["ssid"], w["password"])


def set_clock():
    try:
        import ntptime
        ntptime.settime()
        return True
    except Exception as e:  # no network yet: retried from the loop
        log("ntp:", e)
        return False


def flash(cfg):
    ob = cfg["outbox"]
    if ob.get("partition"):
        import esp32
        found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=ob["partition"])
        if not found:
            raise OSError("no data partition labelled %r" % ob["partition"])
        return BlockFlash(found[0])
    return FileFlash(ob["file"], ob["sectors"])


class Box:
    """Everything the loop needs; `step()` is one pass of it (the tests drive it step by step)."""

    def __init__(self, cfg):
        pins = cfg["pins"]
        self.keys = Keys(machine.Pin, pins["keys"])
        self.leds = Leds(machine.Pin, pins["leds"], pins.get("buzzer"))
        self.app = App(cfg, Ring(flash(cfg)), self.leds, MQTTClient)
        wifi(cfg)
        self.clock_set = set_clock()
        self.last = time.ticks_ms()
        self.now = 0.0
        self.ntp_at = 30.0

    def step(self):
        t = time.ticks_ms()
        self.now += time.ticks_diff(t, self.last) / 1000  # ticks wrap; differences do not
        self.last = t
        for k in self.keys.poll(t):
            self.app.key(k, self.now)
        self.app.tick(self.now)
        if not self.clock_set and self.now >= self.ntp_at:
            self.clock_set, self.ntp_at = set_clock(), self.now + 30
        self.app.net(self.now)
        self.leds.update(t)


def _halt(what, e):
    """Nothing sensible can run: say why on the console, once a minute (no crash loop, nothing half-done)."""
    while True:
        log(what, e)
        time.sleep(60)


def run():
    try:
        cfg = settings.load()
    except settings.SettingsError as e:
        _halt("settings:", e)
    try:
        box = Box(cfg)
    except Exception as e:  # the flash file or partition, a pin that does not exist
        _halt("cannot start:", repr(e))
    said = None
    while True:
        try:
            box.step()
        except Exception as e:  # a bug must not stop the box: what is on flash stays, the loop goes on
            if said is None or time.ticks_diff(time.ticks_ms(), said) > 60000:
                log("error in the loop:", repr(e))
                said = time.ticks_ms()
            time.sleep_ms(500)
        time.sleep_ms(10)


if __name__ == "__main__":
    run()
