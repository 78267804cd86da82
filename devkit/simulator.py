"""A center simulator for the demo (the case system): publishes the reason catalog and the staff on duty,
then opens cases at a window one after another, closing each when it is rated (at the terminal, or on a
phone: the center service then publishes the case `rated`) or when its time is up. On every reconnect it
publishes the window's current state again; `--bind DEVICE` publishes that terminal's binding.

With `--feed URL --feed-key-file F` it is a case system on the center's HTTP feed instead (center/web/feed.py):
the duty and each case (with a made-up applicant phone number, for the SMS follow-up) are PUT there and
closed there, and the center service publishes them; only the catalog (and bindings) still go over MQTT."""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
import signal
import sys
import threading
import time
import urllib.request
from datetime import datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devkit import factories
from protocol import codec, topics
from protocol.transport import no_delay

log = logging.getLogger("simulator")

CASE_EXPIRY_S = 12 * 3600


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


class Simulator:
    def __init__(self, host: str, port: int, center: str, window: str, hold_s: float, gap_s: float,
                 bind: tuple[str, ...] = (), feed: str = "", feed_key: str = ""):
        self.center, self.window, self.hold_s, self.gap_s = center, window, hold_s, gap_s
        self.feed, self.feed_key = feed.rstrip("/"), feed_key
        self.topics = topics.Topics(center, window, "+")
        self.bind = bind
        self.rated: set[str] = set()
        self.state: dict[str, tuple[dict, int]] = {}  # topic → (the current retained message, expiry s)
        self._lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{center}-{window}", protocol=mqtt.MQTTv5)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_rating
        self.c.on_socket_open = no_delay
        self.c.reconnect_delay_set(1, 10)
        self.c.connect(host, port)
        self.c.loop_start()

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        """On every (re)connect: the window's current state again, retained. A broker restored from an
        older snapshot may have brought back an older case; this supersedes it."""
        if reason.is_failure:
            return
        client.subscribe([(f"{topics.PREFIX}/{self.center}/device/+/rating", 1), (self.topics.case, 1)])
        with self._lock:
            current = list(self.state.items())
        for topic, (body, expiry) in current:
            client.publish(topic, codec.encode(body), qos=1, retain=True, properties=_expiry(expiry))
        if current:
            log.info("re-published the state of %s (%d messages)", self.window, len(current))

    def _on_rating(self, client, userdata, msg) -> None:
        """A rating of one of our cases (terminal), or the center publishing a case `rated` (a phone)."""
        try:
            body = json.loads(msg.payload) if msg.payload else {}
        except ValueError:
            return
        case = body.get("case")
        if msg.topic == self.topics.case:
            if body.get("state") == "rated" and isinstance(case, dict):
                self.rated.add(case.get("id"))
                with self._lock:  # the current case is rated now: re-published as such after a reconnect
                    kept = self.state.get(msg.topic)
                    if kept and kept[0].get("case", {}).get("id") == case.get("id"):
                        self.state[msg.topic] = ({**kept[0], "state": "rated"}, kept[1])
        elif isinstance(case, str):
            self.rated.add(case)

    def call(self, method: str, path: str, body: dict | None = None) -> dict | None:
        """One call to the center's case feed; the answer, or None (logged) when it failed."""
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        req = urllib.request.Request(f"{self.feed}/api/v1/{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.feed_key}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                raw = r.read()
            return json.loads(raw) if raw else {}
        except (OSError, ValueError) as e:  # HTTPError is an OSError: its status is in the message
            log.warning("the case feed refused or failed %s %s: %s", method, path, e)
            return None

    def open_case(self, body: dict) -> None:
        if not self.feed:
            self.send(self.topics.case, body, expiry=CASE_EXPIRY_S)
            return
        c = body["case"]
        self.call("PUT", f"windows/{self.window}/case", {
            "id": c["id"], "item_code": c["item_code"], "item_name": c["item_name"], "staff": body["staff"],
            "applicant": body["applicant"], "opened_at": body["opened_at"],
            # The applicant's number goes to the center service only (never on MQTT): a made-up one.
            "phone": f"139{random.randrange(10**8):08d}"})

    def close_case(self, body: dict) -> None:
        if not self.feed:
            self.send(self.topics.case, {**body, "state": "closed", "closed_at": now()}, expiry=CASE_EXPIRY_S)
            return
        self.call("POST", f"windows/{self.window}/case/close", {"id": body["case"]["id"]})

    def send(self, topic: str, body: dict, retain: bool = True, expiry: int = 0) -> None:
        """Publish; a retained message is also remembered and re-published on every reconnect."""
        if retain:
            with self._lock:
                self.state[topic] = (body, expiry)
        info = self.c.publish(topic, codec.encode(body), qos=1, retain=retain, properties=_expiry(expiry))
        try:
            info.wait_for_publish(5)
        except (RuntimeError, ValueError) as e:  # not connected: it goes out again on reconnect
            log.warning("could not publish on %s now (%s); it is sent again on reconnect", topic, e)

    def setup(self) -> None:
        name = f"{self.window} 综合受理"
        self.send(self.topics.catalog, factories.catalog(self.center))
        duty = factories.duty(self.center, self.window, factories.STAFF[0], name)
        if self.feed:
            self.call("PUT", f"windows/{self.window}/duty", {"staff": duty["staff"], "window_name": name})
        else:
            self.send(self.topics.duty, duty)
        for device in self.bind:  # what provisioning does for a paired terminal (docs/protocol.md §11)
            self.send(topics.Topics(self.center, self.window, device).binding,
                      factories.binding(self.center, device, "active", self.window, window_name=name,
                                        staff=factories.STAFF, issued=now()))

    def case(self, n: int) -> dict:
        return factories.random_case(self.center, self.window, n)

    def run(self, stop: threading.Event) -> None:
        self.setup()
        for n in itertools.count(1):
            body = self.case(n)
            cid = body["case"]["id"]
            log.info("case %s opened at %s", cid, self.window)
            self.open_case(body)
            end = time.monotonic() + self.hold_s
            while time.monotonic() < end and cid not in self.rated and not stop.is_set():
                stop.wait(0.2)
            if stop.is_set():
                return
            if cid in self.rated:
                log.info("case %s rated", cid)
                stop.wait(3)
            self.close_case(body)
            if stop.wait(self.gap_s):
                return


def _expiry(seconds: int) -> Properties | None:
    if not seconds:
        return None
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = seconds
    return props


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devkit.simulator", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--center", default="demo")
    ap.add_argument("--window", default="W01")
    ap.add_argument("--hold", type=float, default=60, help="seconds a case stays open")
    ap.add_argument("--gap", type=float, default=4, help="seconds between cases")
    ap.add_argument("--bind", action="append", default=[], metavar="DEVICE",
                    help="publish an active binding of this device to the window (as provisioning would), "
                         "so the ledger can check its ratings; repeatable")
    ap.add_argument("--feed", default="", help="the center service's address: duty and cases (each with a "
                                               "made-up applicant phone number) go through its HTTP case feed")
    ap.add_argument("--feed-key-file", help="file holding the feed's API key (`python -m center keys add`, or "
                                            "the service's [web] feed_key_file key in hex)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s simulator: %(message)s")
    feed_key = open(args.feed_key_file).read().strip() if args.feed_key_file else ""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Simulator(args.host, args.port, args.center, args.window, args.hold, args.gap, tuple(args.bind),
              args.feed, feed_key).run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
