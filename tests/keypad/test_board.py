"""main.py under real MicroPython: settings file → keys (debounced pins) → machine → ring in a file on the
board's filesystem → a restart. `machine`, `network`, `ntptime` and `usocket` are the only stand-ins
(tests/keypad/board/): the WebAssembly port has none of them; the network is unreachable."""
from __future__ import annotations

from pathlib import Path

from tests.keypad.mpy import run

STANDINS = str(Path(__file__).with_name("board"))

SCRIPT = r"""
import json, os, time
import wire
settings = {"device": "kp-9", "center": "C1", "window": "W01", "mqtt": {"host": "10.9.9.9"},
            "wifi": {"ssid": "hall", "password": "x"}, "pins": {"keys": [2, 3, 4, 5, 6], "leds": [7, 8, 9, 10, 11]},
            "outbox": {"sectors": 8, "file": "ratings.bin"}}
with open("settings.json", "w") as f:
    f.write(json.dumps(settings))
import clock
import main
from twin import Pin
box = main.Box(main.settings.load())
box.step()
res = {"offline": box.app.problem, "leds_idle": box.leds.name}
case = {"v": 1, "type": "case", "center": "C1", "window": "W01", "state": "open",
        "case": {"id": "SH1", "item_code": "310115-001", "item_name": "居住证办理"},
        "staff": {"id": "S0101", "name": "王芳"}, "applicant": {"token": "ap_0123456789abcdef", "display": "张*"},
        "opened_at": clock.stamp()}
box.app._inbound(box.app.topics.case, wire.encode(case), box.now)
box.step()
res["leds_case"] = [Pin.pins[p].value() for p in (7, 8, 9, 10, 11)]

def press(pin):
    Pin.pins[pin].v = 0
    box.step()
    time.sleep_ms(40)  # held past the debounce time
    box.step()
    Pin.pins[pin].v = 1
    box.step()
    time.sleep_ms(40)
    box.step()

Pin.pins[3].v = 0  # a bounce shorter than the debounce time is not a press
box.step()
Pin.pins[3].v = 1
box.step()
time.sleep_ms(40)
box.step()
res["after_bounce"] = [len(box.app.ring), box.app.machine.phase]
press(3)  # key 2: 满意
res["after_press"] = [len(box.app.ring), box.app.machine.phase, box.leds.name]
press(3)
res["repeat"] = len(box.app.ring)
rec = json.loads(box.app.ring.read(box.app.ring.ids()[0]))
res["record"] = [rec["kind"], rec["level"], rec["channel"], rec["case"], rec["seq"], rec["device"]]
res["file"] = os.stat("ratings.bin")[6]
# Power off and on: a new Box on the same file.
again = main.Box(main.settings.load())
res["after_restart"] = [len(again.app.ring), again.app.ring.next_seq, sorted(again.app.rated_cases)]
again.app._inbound(again.app.topics.case, wire.encode(case), again.now)
res["same_case_again"] = again.app.machine.phase
with open("settings.json", "w") as f:
    f.write(json.dumps({"device": "kp 9", "mqtt": {}}))
try:
    main.settings.load()
except main.settings.SettingsError as e:
    res["bad_settings"] = str(e)
print("@" + json.dumps(res))
"""


def test_the_board_entry_point_rates_keeps_the_record_in_a_file_and_survives_a_restart(tmp_path):
    res = run(SCRIPT, tmp_path, extra_dirs=[STANDINS])[0]
    assert res["offline"].startswith("10.9.9.9:1883: network:") and res["leds_idle"] == "offline"
    assert res["leds_case"] == [1, 1, 1, 1, 1]
    assert res["after_bounce"] == [0, "case"]
    assert res["after_press"] == [1, "thanks", "thanks"]
    assert res["repeat"] == 1, "one case, one rating"
    assert res["record"] == ["case", "satisfied", "keys", "SH1", 1, "kp-9"]
    assert res["file"] == 8 * 4096
    assert res["after_restart"] == [1, 2, ["SH1"]]
    assert res["same_case_again"] == "idle", "a rated case is not offered again after a restart"
    for part in ("device must be an id", "center must be an id", "mqtt.host is required", "pins.keys"):
        assert part in res["bad_settings"]


def test_enrolment_files_on_the_board_filesystem(tmp_path):
    """enrol.py under real MicroPython: the key is made once, a sealed code then a sealed account open with it,
    the account survives a restart, a binding is kept, forgetting enrols again."""
    res = run(r"""
import json, os
import seal, wire
from enrol import Enrolment
cfg = {"device": "kp-7", "center": "C1", "enrolment": {"username": "enrolment", "password": "p"}, "data_dir": ""}
e = Enrolment(cfg)
key = open("enrolment.key", "rb").read()
res = {"mode": e.mode, "same_key": Enrolment(cfg).key == key and len(key) == 32}
hello = e.hello("keypad-0.1.0")
res["hello"] = [hello["key"] == seal.b64(seal.public_key(key)), e.answer_topic()]
topic = e.answer_topic()
def sealed(grant):
    box = seal.seal(e.public, json.dumps(grant).encode(), topic, bytes(range(32)), bytes(12))
    return wire.encode({"v": 1, "type": "sealed", "device": "kp-7", "box": box})
code = {"v": 1, "type": "grant", "grant": "code", "center": "C1", "device": "kp-7", "code": "123456", "ttl_s": 600}
res["code"] = [e.on_answer(topic, sealed(code), 10.0), e.state(), e.code]
try:
    e.on_answer(topic + "x", sealed(code), 10.0)
except wire.MessageError as err:
    res["other_topic"] = err.reason
acct = {"v": 1, "type": "grant", "grant": "credentials", "center": "C1", "device": "kp-7", "window": "W03",
        "username": "kp-7", "password": "x" * 40, "client_id": "kp-7-abc", "cred": 1}
res["paired"] = e.on_answer(topic, sealed(acct), 11.0)
again = Enrolment(cfg)
res["after_restart"] = [again.mode, again.window(), again.account()[2], again.account()[3]]
b = {"v": 1, "type": "binding", "center": "C1", "device": "kp-7", "state": "retired"}
again.on_binding(wire.encode(b))
res["retired"] = [Enrolment(cfg).state(), Enrolment(cfg).serving()]
again.forget()
res["forgotten"] = [Enrolment(cfg).mode, sorted(f for f in os.listdir() if f.endswith(".json"))]
print("@" + json.dumps(res))
""", tmp_path)[0]
    assert res["mode"] == "enrolling" and res["same_key"]
    assert res["hello"][0] and res["hello"][1].startswith("hcp/v1/C1/enrol/kp-7/") and res["hello"][1].endswith("/answer")
    assert res["code"] == ["code", "code", "123456"]
    assert res["other_topic"] == "unsealable", "a box opens only on the topic it was sealed for"
    assert res["paired"] == "paired"
    assert res["after_restart"] == ["paired", "W03", "kp-7-abc", False]
    assert res["retired"] == ["retired", False]
    assert res["forgotten"] == ["enrolling", []]
