"""Status LED and neutral key feedback on MockFactory pins."""
from __future__ import annotations

from gpiozero import LED, RGBLED, Buzzer

from devkit.waiting import wait_for
from drivers.feedback import KeyFeedback, Status, StatusLight, terminal_status
from drivers.keys import KeyTiming, RatingKeys
from protocol.values import LEVELS


def test_status_priority():
    assert terminal_status(True, 0, 0, {}, 20) == Status.ONLINE
    assert terminal_status(True, 20, 0, {}, 20) == Status.BACKLOG
    assert terminal_status(True, 0, 0, {"outbox_high": "x"}, 20) == Status.BACKLOG
    assert terminal_status(False, 500, 0, {"outbox_high": "x"}, 20) == Status.OFFLINE
    assert terminal_status(False, 0, 0, {"printer_paper_out": "x"}, 20) == Status.FAULT
    assert terminal_status(True, 0, 1, {}, 20) == Status.FAULT


def toggles(pin) -> int:
    return sum(1 for s in pin.states[1:])


def test_rgb_status_light(factory):
    light = StatusLight(RGBLED(16, 20, 12, pwm=False, pin_factory=factory), rgb=True)
    r, g, b = (factory.pin(n) for n in (16, 20, 12))
    light.show(Status.ONLINE)
    assert (r.state, g.state, b.state) == (False, True, False)
    light.show(Status.OFFLINE)
    assert (r.state, g.state, b.state) == (True, True, False)
    r.clear_states()
    light.show(Status.FAULT)  # blinking red, on gpiozero's thread
    wait_for(lambda: toggles(r) >= 3, 5, "red blinking")
    assert not g.state and not b.state
    light.close()


def test_mono_status_light_patterns(factory):
    led = LED(16, pin_factory=factory)
    light = StatusLight(led, rgb=False)
    pin = factory.pin(16)
    light.show(Status.ONLINE)
    assert pin.state
    pin.clear_states()
    light.show(Status.FAULT)
    wait_for(lambda: toggles(pin) >= 4, 5, "fast blink")
    light.show(Status.FAULT)  # same status: pattern not restarted
    light.off()
    assert not pin.state
    light.close()


def test_key_feedback_is_the_same_for_every_level(factory, clock):
    fb = KeyFeedback(LED(24, pin_factory=factory), Buzzer(18, pin_factory=factory), flash_s=0.02, beep_s=0.01)
    pins = dict(zip([lvl.value for lvl in LEVELS], (5, 6, 13, 19, 26)))
    keys = RatingKeys(pins, KeyTiming(burst_max=50), pin_factory=factory, on_press=lambda k: fb.ack(), clock=clock)
    led_pin, buzz_pin = factory.pin(24), factory.pin(18)
    patterns = {}
    for level, n in pins.items():
        led_pin.clear_states(); buzz_pin.clear_states()
        factory.pin(n).drive_low(); clock.advance(0.1); factory.pin(n).drive_high(); clock.advance(1)
        wait_for(lambda: len(led_pin.states) >= 3 and len(buzz_pin.states) >= 3, 5, "flash and beep done")
        patterns[level] = ([s.state for s in led_pin.states], [s.state for s in buzz_pin.states])
    assert len(set(map(str, patterns.values()))) == 1, patterns  # neutral: one pattern for all levels
    assert patterns[LEVELS[0].value] == ([False, True, False], [False, True, False])
    keys.close(); fb.close()


def test_staff_bell_is_distinct_from_key_feedback(factory):
    fb = KeyFeedback(None, Buzzer(18, pin_factory=factory))
    pin = factory.pin(18)
    pin.clear_states()
    fb.bell()
    wait_for(lambda: len(pin.states) >= 7, 5, "three rings")
    assert [s.state for s in pin.states][:7] == [False, True, False, True, False, True, False]
    fb.close()
