"""The keypad's MQTT path against a real Mosquitto and the real ledger: the keypad's own code (keypad/fw)
and micropython-lib's umqtt.simple (PyPI micropython-umqtt.simple 1.3.4), driven from CPython through a
socket shim (tests/keypad/usocket.py). Flash and pins are the host twins; nothing else is stood in for."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from center.ledger import Ledger, query
from devkit.broker import Broker
from devkit.center import Center
from devkit.factories import STAFF
from devkit.waiting import wait_for
from protocol import codec
from tests.keypad.mpy import on_cpython

on_cpython()
import app as kapp  # noqa: E402  (keypad/fw, importable after on_cpython)
import settings as ksettings  # noqa: E402
from hw import Leds  # noqa: E402
from ring import Ring  # noqa: E402
from twin import NorFlash, Pin  # noqa: E402
from umqtt.simple import MQTTClient  # noqa: E402

COLUMNS = "kind, level, channel, case_id, item_code, staff, applicant, reasons, catalog, first, flags, center"


class Box:
    """A keypad: the firmware's App on twin pins and flash, its main loop in a thread."""

    def __init__(self, port: int, device: str = "kp-1", window: str | None = "W01", flash: NorFlash | None = None,
                 **over):
        raw = {"device": device, "center": "C1", "mqtt": {"host": "127.0.0.1", "port": port},
               "pins": {"keys": [f"{device}-k{i}" for i in range(5)], "leds": [f"{device}-l{i}" for i in range(5)]},
               "reason_keys": ["501", "502", "503", "505"],
               "outbox": {"receipt_timeout_s": 1, "retry_max_s": 1, "alarm_after_offers": 3, "window": 20}}
        if window:
            raw["window"] = window
        for k, v in over.items():
            raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
        self.cfg = ksettings.check(raw)
        self.flash = flash or NorFlash(16)
        self.app = kapp.App(self.cfg, Ring(self.flash), Leds(Pin, self.cfg["pins"]["leds"]), MQTTClient)
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _loop(self) -> None:
        while not self.stopping:
            with self.lock:
                self.app.tick(self.now())
                self.app.net(self.now())
            time.sleep(0.01)

    def press(self, key: int) -> tuple[str, int]:
        """Press key (0-4); the phase and the records held right after it (before the loop runs on)."""
        with self.lock:
            self.app.key(key, self.now())
            return self.app.machine.phase, len(self.app.ring)

    def phase(self) -> str:
        return self.app.machine.phase

    def stop(self) -> None:
        self.stopping = True
        self.thread.join(5)
        if self.app.client is not None:
            self.app.client.sock.close()


@pytest.fixture
def boxes():
    made: list[Box] = []
    yield lambda *a, **kw: made.append(Box(*a, **kw)) or made[-1]
    for b in made:
        b.stop()


def rows(led: Ledger, device: str) -> list[tuple]:
    return query(led.db_path, f"SELECT {COLUMNS} FROM ratings WHERE device=? ORDER BY seq", (device,))


def test_a_key_press_is_stored_receipted_and_deleted(broker, ledger, center, boxes):
    box = boxes(broker.port)
    wait_for(lambda: box.app.connected, what="keypad online")
    center.catalog()
    center.case("K0001")
    wait_for(lambda: box.phase() == "case", what="the case reaches the keypad")
    assert box.press(1) == ("thanks", 1), "满意: committed to flash before the thank-you"
    wait_for(lambda: len(box.app.ring) == 0, what="receipt deletes the record")
    assert rows(ledger, "kp-1") == [("case", "satisfied", "keys", "K0001", "310115-001", STAFF[0]["id"],
                                     "ap_0123456789abcdef", None, None, 1, "unbound", "C1")]
    # A bad rating: the reasons step on the same keys (1-4 toggle the printed reasons, 5 submits).
    center.case("K0002")
    wait_for(lambda: box.phase() == "case", what="the next case")
    for k in (4, 0, 2, 4):  # 非常不满意, reasons 501 and 503, submit
        box.press(k)
    wait_for(lambda: len(rows(ledger, "kp-1")) == 2 and len(box.app.ring) == 0, what="bad rating stored")
    assert rows(ledger, "kp-1")[1][:3] == ("case", "very_dissatisfied", "keys")
    assert rows(ledger, "kp-1")[1][7:9] == ("501,503", "2026.1")
    status = center.messages_on("hcp/v1/C1/device/kp-1/status")
    assert status and status[-1]["state"] == "online" and status[-1]["fw"].startswith("keypad-")
    with center._lock:  # everything the keypad published passes the reference decoder
        mine = [(t.rsplit("/", 1)[1], p) for t, p in center.seen if "/device/kp-1/" in t and p]
    assert {kind for kind, _ in mine} >= {"rating", "status"}
    for kind, payload in mine:
        if kind in ("rating", "event", "status"):
            codec.decode(kind, payload)


def test_broker_down_buffers_on_flash_and_delivers_each_rating_once(tmp_path, boxes):
    (tmp_path / "b").mkdir()
    b = Broker(workdir=str(tmp_path / "b")).start()
    led = Ledger(tmp_path / "l.db", port=b.port).start()
    try:
        box = boxes(b.port, rating={"staff_rating_when_idle": True})
        c = Center(b.port)
        c.duty()
        wait_for(lambda: box.app.machine.staff is not None, what="duty reaches the keypad")
        c.close()
        b.stop()
        wait_for(lambda: not box.app.connected, what="the keypad sees the link go")
        for i in range(3):
            assert box.press(i) == ("thanks", i + 1)
            assert box.press(i) == ("thanks", i + 1), "a repeat press is not a second rating"
            with box.lock:  # past the thank-you and the repeat guard
                box.t0 -= 20
                box.app.tick(box.now())
        pending = len(box.app.ring)
        assert pending == 3
        # Power cut while offline: the flash is all that is left; a new box boots from it.
        image = box.flash.image()
        box.stop()
        b.start()
        again = boxes(b.port, flash=image)
        wait_for(lambda: len(again.app.ring) == 0, what="delivered after the broker came back")
        got = rows(led, "kp-1")
        assert len(got) == pending and all(r[0] == "staff" for r in got)
        assert led.stored == pending, "each stored once (a re-offer is answered `duplicate`)"
    finally:
        led.stop()
        b.stop()


def test_a_publish_refused_under_3_1_1_raises_no_receipt_after_n_offers_and_deletes_nothing(tmp_path, boxes):
    """umqtt.simple speaks 3.1.1: the broker acknowledges a publish its ACL denies and drops it."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite hcp/#\ntopic deny hcp/v1/C1/device/kp-denied/rating\n")
    (tmp_path / "b").mkdir()
    with Broker(extra=f"acl_file {acl}", workdir=str(tmp_path / "b")) as b:
        led = Ledger(tmp_path / "l.db", port=b.port, mqtt_version="3.1.1").start()
        try:
            box = boxes(b.port, device="kp-denied")
            c = Center(b.port)
            c.case("D0001")
            wait_for(lambda: box.phase() == "case", what="case")
            box.press(0)
            wait_for(lambda: "no_receipt" in box.app.alarms, what="no_receipt after 3 offers")
            assert len(box.app.ring) == 1 and box.app.ring.ids(True) == [], "kept, not quarantined, not deleted"
            assert query(led.db_path, "SELECT count(*) FROM ratings") == [(0,)]
            alarms = [codec.decode("event", codec.encode(m))
                      for m in c.messages_on("hcp/v1/C1/device/kp-denied/event") if m.get("event") == "alarm"]
            assert [m["alarm"] for m in alarms] == ["no_receipt"]
            c.close()
        finally:
            led.stop()


def test_a_keypad_and_a_pi_terminal_are_alike_at_the_ledger(broker, ledger, make_terminal, boxes):
    """Same topics, same messages, same receipts: the ledger cannot tell them apart but by device id."""
    from device.machine import LevelPressed
    from protocol.values import Channel, Level
    pi = make_terminal("pi-1")
    box = boxes(broker.port, device="kp-2", window="W02")
    c1, c2 = Center(broker.port, window="W01"), Center(broker.port, window="W02")
    try:
        wait_for(lambda: pi.online and box.app.connected, what="both online")
        c1.case("P0001")
        c2.case("P0002")
        wait_for(lambda: box.phase() == "case", what="keypad case")
        wait_for(lambda: pi.state.case is not None, what="terminal case")
        box.press(1)
        pi.submit(LevelPressed(Level.SATISFIED, Channel.KEYS))
        wait_for(lambda: len(query(ledger.db_path, "SELECT 1 FROM ratings")) == 2, what="both stored")
        wait_for(lambda: len(box.app.ring) == 0 and pi.outbox.counts().pending == 0, what="both receipted")
        k, p = rows(ledger, "kp-2")[0], rows(ledger, "pi-1")[0]
        assert k[:3] == p[:3] == ("case", "satisfied", "keys")
        assert k[4:] == p[4:], "item, staff, applicant, reasons, first, flags, center"
        assert (k[3], p[3]) == ("P0002", "P0001")
        schemas = query(ledger.db_path, "SELECT device, length(id), typeof(seq), length(ts) FROM ratings ORDER BY device")
        assert [s[1:] for s in schemas] == [(36, "integer", 29)] * 2
    finally:
        c1.close()
        c2.close()


def test_bad_settings_are_refused_with_every_problem_named():
    with pytest.raises(ksettings.SettingsError) as e:
        ksettings.check({"device": "kp/1", "center": "C1", "window": "W01", "mqtt": {"port": 0},
                         "pins": {"keys": [1, 2]}, "rating": {"thanks_s": 99}, "colour": "red"})
    text = str(e.value)
    for part in ("unknown setting 'colour'", "device must be an id", "mqtt.host is required", "mqtt.port",
                 "pins.keys must list 5 pins", "rating.thanks_s must be 1-30"):
        assert part in text


def test_tls_with_the_centers_ca_and_a_clear_refusal_with_another(tmp_path, boxes):
    """A center broker takes terminals over TLS only: the keypad verifies the broker against `mqtt.ca`."""
    from devkit.broker import free_port
    from provisioning import certs
    ca = certs.make_ca(tmp_path / "ca", "Test center CA")
    server = certs.issue(ca, tmp_path / "ca", "center", hosts=("127.0.0.1", "localhost"))
    other = certs.make_ca(tmp_path / "other", "Someone else's CA")
    tls_port = free_port()
    (tmp_path / "b").mkdir()
    extra = f"listener {tls_port} 127.0.0.1\ncertfile {server.cert}\nkeyfile {server.key}\n"
    with Broker(extra=extra, workdir=str(tmp_path / "b")) as b:
        led = Ledger(tmp_path / "l.db", port=b.port).start()
        try:
            wrong = boxes(tls_port, device="kp-wrong-ca", mqtt={"ca": str(other.cert)})
            box = boxes(tls_port, device="kp-tls", mqtt={"ca": str(ca.cert)})
            c = Center(b.port)
            wait_for(lambda: box.app.connected, what="the keypad connects over TLS")
            c.case("T0001")
            wait_for(lambda: box.phase() == "case", what="case over TLS")
            box.press(0)
            wait_for(lambda: len(box.app.ring) == 0, what="receipted over TLS")
            assert rows(led, "kp-tls")[0][:4] == ("case", "very_satisfied", "keys", "T0001")
            wait_for(lambda: wrong.app.problem, what="the other keypad says why it cannot connect")
            assert not wrong.app.connected
            assert wrong.app.problem.startswith(f"127.0.0.1:{tls_port}: TLS: ") and "certificate" in wrong.app.problem
            c.close()
        finally:
            led.stop()


def test_a_keypad_enrols_pairs_by_code_moves_and_takes_a_rotated_password(tmp_path, boxes):
    """docs/protocol.md §11 against the real center: TLS broker with Dynamic Security and the pairing service."""
    import json as _json
    from tests.provisioning.conftest import start_site, stop_site
    from tests.provisioning.helpers import make_pki
    from tests.provisioning.test_lifecycle import case
    site = start_site(tmp_path / "center", make_pki(tmp_path / "pki"))
    led = Ledger(tmp_path / "ledger.db", port=site.local_port, center="C1", client_id="ledger-C1", username="ledger",
                 password=site.password("ledger")).start()
    try:
        (tmp_path / "kp").mkdir()
        box = boxes(site.tls_port, device="kp-e1", window=None, data_dir=str(tmp_path / "kp"),
                    mqtt={"ca": str(site.pki["ca"].cert)},
                    enrolment={"username": "enrolment", "password": site.password("enrolment"), "announce_every_s": 2})
        assert box.app.mode == "enrolling"
        wait_for(lambda: box.app.enrol.state() == "code", 30, "a pairing code, sealed to the keypad")
        code = box.app.enrol.code
        wait_for(lambda: box.app.leds.name == "code-" + code, 5, "the code blinked on LED 1")
        site.prov.pair(code, "W01", "tester")
        wait_for(lambda: box.app.mode == "paired" and box.app.connected and box.app.enrol.binding is not None, 30,
                 "paired, online with its own account, bound")
        assert box.app.origin["window"] == "W01"
        creds = _json.loads((tmp_path / "kp" / "credentials.json").read_text())
        assert creds["username"] == "kp-e1" and creds["client_id"].startswith("kp-e1-")
        sys_ = site.service("centersys")
        sys_.publish("hcp/v1/C1/window/W01/case", case("W01", "E0001"), retain=True)
        wait_for(lambda: box.phase() == "case", 20, "case at W01")
        box.press(0)
        wait_for(lambda: len(box.app.ring) == 0, 30, "receipted")
        assert query(led.db_path, "SELECT case_id, window, flags, first FROM ratings") == [("E0001", "W01", None, 1)], \
            "checked against the binding and the case as published: clean, the case's first rating"
        site.prov.move("kp-e1", "W02", "tester")
        wait_for(lambda: box.app.origin["window"] == "W02" and box.app.connected, 30, "moved to W02")
        sys_.publish("hcp/v1/C1/window/W02/case", case("W02", "E0002"), retain=True)
        wait_for(lambda: box.phase() == "case" and box.app.machine.case["id"] == "E0002", 20, "case at W02")
        box.press(1)
        wait_for(lambda: len(box.app.ring) == 0, 30, "receipted at W02")
        assert query(led.db_path, "SELECT case_id, window, flags FROM ratings ORDER BY seq") == [
            ("E0001", "W01", None), ("E0002", "W02", None)]
        assert site.prov.rotate("kp-e1", "tester") == 2
        wait_for(lambda: site.reg.device("kp-e1").cred == 2, 30, "rotation confirmed by the keypad's status")

        def settled() -> bool:
            c = _json.loads((tmp_path / "kp" / "credentials.json").read_text())
            return box.app.connected and c["cred"] == 2 and not c["next_password"]

        wait_for(settled, 30, "back online with the new password, the old one dropped")
        sys_.close()
    finally:
        led.stop()
        stop_site(site)
