# The keypad runtime: keys → state machine → ring (commit before "thank you") → MQTT, receipts → delete.
# Plain MicroPython; the same code runs on CPython in the tests (with twin pins and flash, and umqtt
# over a socket shim). The main loop (main.py) calls key(), tick() and net() with a monotonic `now`.
import wire
import clock
from hw import code_pattern
from kmachine import Machine
from ring import RingFull

LEVELS = ("very_satisfied", "satisfied", "basically_satisfied", "dissatisfied", "very_dissatisfied")
FW = "keypad-0.1.0"
RATED_CASES = 128


def log(*args):
    print("keypad:", *args)


class App:
    def __init__(self, cfg, ring, leds, mqtt_class):
        self.cfg = cfg
        self.enrol = None
        if cfg.get("enrolment"):
            from enrol import Enrolment
            self.enrol = Enrolment(cfg)
        self._set_window(self.enrol.window() if self.enrol else cfg["window"])
        self.ring = ring
        self.leds = leds
        self.mqtt_class = mqtt_class
        self.local = dict(cfg.get("rating", {}))
        self.machine = Machine(self.local)
        self.ob = cfg["outbox"]
        self.client = None
        self.connected = False
        self.attempt = 0
        self.retry_at = 0
        self.ping_at = 0
        self.status_at = 0
        self.offer_at = 0
        self.offers = {}           # id (16 bytes) -> [offers so far, next offer at]
        self.alarms = set()
        self.inbox = []            # (topic, payload) received by umqtt's callback, handled in net()
        self.rejected_inputs = 0
        self.last_opened = None    # opened_at (epoch s) of the newest open case seen: older ones are refused
        self.full = False
        self.problem = ""
        self.hello_at = 0
        self.rated_cases = self._rated_cases()
        if self.ring.corrupt:
            self._alarm("outbox_corrupt", True, "%d records failed their CRC" % self.ring.corrupt)

    @property
    def mode(self):
        """"plain" (account from settings.json), "enrolling" or "paired" (docs/protocol.md §11)."""
        return self.enrol.mode if self.enrol else "plain"

    def serving(self):
        """Taking cases at a window: configured by hand, or paired with an active binding."""
        return self.enrol is None or self.enrol.serving()

    def _set_window(self, window):
        """Adopt the window to serve; a move forgets the previous window's case and duty."""
        old = getattr(self, "origin", None)
        self.origin = {"center": self.cfg["center"], "window": window, "device": self.cfg["device"]}
        self.topics = wire.Topics(self.cfg["center"], window, self.cfg["device"])
        if old is not None and old["window"] != window:
            log("now serving window", window)
            self._reset_machine()

    def _reset_machine(self):
        m = self.machine
        self.machine = Machine(m.settings)
        self.machine.catalog, self.machine.recently_rated = m.catalog, m.recently_rated
        self.last_opened = None

    def _rated_cases(self):
        """Case ids rated on this keypad that are still on its flash (one case, one rating across restarts)."""
        self.rated_order = []
        for p in self.ring.payloads():
            i = p.find(b'"case":"')
            if i >= 0 and b'"type":"rating"' in p:
                self.rated_order.append(p[i + 8:p.find(b'"', i + 8)].decode())
        self.rated_order = self.rated_order[-RATED_CASES:]
        return set(self.rated_order)

    def _rated(self, case_id):
        self.rated_order.append(case_id)
        self.rated_cases.add(case_id)
        if len(self.rated_order) > RATED_CASES:  # bounded: the center's first-rating flag is the backstop
            self.rated_cases.discard(self.rated_order.pop(0))

    # ---- keys and time ------------------------------------------------------------------------------

    def key(self, k, now):
        """Key k (0-4) pressed. Levels by key: 1 非常满意 … 5 非常不满意; in the reasons step keys 1-4 toggle
        the reasons printed beside them (`reason_keys`) and key 5 submits."""
        self.leds.beep(int(now * 1000))
        if self.machine.phase == "reasons":
            if k == 4:
                return self._run(("confirm",), now)
            keys = self.cfg.get("reason_keys", [])
            return self._run(("reason", keys[k]) if k < len(keys) else ("back",), now)
        return self._run(("level", LEVELS[k], "keys"), now)

    def tick(self, now):
        self._run(("tick",), now)
        self._show(now)

    def _run(self, ev, now):
        for eff in self.machine.step(ev, now):
            if eff[0] == "commit":
                self._commit(eff[1], now)
            elif eff[0] == "unrated":
                self._record(lambda rid, seq, ts: wire.unrated(eff[1], self.origin, rid, seq, ts))
        self._show(now)

    def _commit(self, draft, now):
        try:
            if not clock.clock_ok():
                raise OSError("the clock is not set (no NTP yet): a rating would carry a wrong time")
            rid = self._record(lambda rid, seq, ts: wire.rating(draft, self.origin, rid, seq, ts))
        except RingFull as e:
            self.full = True
            self._alarm("rating_not_stored", True, "outbox full: " + str(e))
            return self._run(("commit_failed", "full"), now)
        except (OSError, wire.MessageError) as e:
            self.full = False
            self._alarm("rating_not_stored", True, str(e))
            return self._run(("commit_failed", str(e)), now)
        if draft.get("case"):
            self._rated(draft["case"]["id"])
        self._alarm("rating_not_stored", False)
        self._run(("committed", rid), now)

    def _record(self, build):
        """Build, check and commit one record; its id. RingFull / OSError when it cannot be stored."""
        rid, raw = clock.uuid7()
        msg = wire.check_outbound(build(rid, self.ring.next_seq, clock.stamp(self.cfg.get("utc_offset_min", 480))))
        self.ring.append(raw, wire.encode(msg))
        self.offer_at = 0  # offer it now
        self._watch_level()
        return rid

    def _watch_level(self):
        high = self.ring.live_bytes >= 0.8 * self.ring.capacity()
        if high != ("outbox_high" in self.alarms):
            self._alarm("outbox_high", high, "%d of %d bytes" % (self.ring.live_bytes, self.ring.capacity()))

    def _show(self, now):
        ms = int(now * 1000)
        if self.enrol is not None and not self.serving():
            state = self.enrol.state()
            if state == "code" and now < self.enrol.code_until:
                return self.leds.show("code-" + self.enrol.code, ms, code_pattern(self.enrol.code))
            return self.leds.show("unpaired", ms)  # enrolling without a code, retired, unpaired, revoked
        ph = self.machine.phase
        if ph == "reasons":
            usable = [c for c in self.cfg.get("reason_keys", [])
                      if self.machine.catalog and c in self.machine.catalog[1]]
            if not usable:
                return self.leds.show("unavailable", ms)  # no catalog: scan the QR code instead
            sel = 0
            for i, c in enumerate(self.cfg.get("reason_keys", [])[:4]):
                if c in self.machine.selected:
                    sel |= 1 << i
            return self.leds.show("reasons-%d" % sel, ms, [(sel | 0b10000, 300), (sel, 300)])
        if ph == "unavailable":
            return self.leds.show("full" if self.full else "unavailable", ms)
        if ph == "idle" and not self.connected:
            return self.leds.show("offline", ms)
        self.leds.show(ph, ms)

    # ---- the network --------------------------------------------------------------------------------

    def net(self, now):
        """Keep the link up, hand inbound messages to the machine, offer records, publish status."""
        if not self.connected:
            if now >= self.retry_at:
                self._connect(now)
            return
        try:
            self.client.check_msg()
            self._drain(now)
            if not self.connected:  # rewired by what arrived (paired, a new binding)
                return
            if now >= self.offer_at and self.mode != "enrolling":  # the enrolment account publishes no records
                self._offer(now)
                self._drain(now)
                if not self.connected:
                    return
            if now >= self.ping_at:
                self.client.ping()
                self.ping_at = now + self.cfg["mqtt"].get("keepalive_s", 30) / 2
            if self.mode == "enrolling":
                if now >= self.hello_at:
                    self._publish(self.enrol.hello_topic(), self.enrol.hello(FW))
                    self.hello_at = now + self.cfg["enrolment"].get("announce_every_s", 30)
            elif now >= self.status_at:
                self._status(now)
            if self.enrol is not None and self.enrol.state() == "unpaired" and len(self.ring) == 0:
                log("unpaired and drained: forgetting this keypad's account; enrolling again")
                self.enrol.forget()
                self._rewire(now)
        except Exception as e:  # umqtt raises OSError, IndexError, AssertionError on a dead link
            self._lost(now, e)

    def _client(self):
        m = self.cfg["mqtt"]
        user, password, client_id = m.get("username"), m.get("password"), m.get("client_id") or self.cfg["device"]
        if self.enrol is not None:
            user, password, client_id, _ = self.enrol.account()
        args = (client_id, m["host"], m.get("port", 1883), user, password, m.get("keepalive_s", 30))
        if not m.get("ca"):
            return self.mqtt_class(*args)
        import ssl
        ca = der(m["ca"])
        try:  # umqtt.simple 1.3 (PyPI) wraps with ssl.wrap_socket(**ssl_params)
            return self.mqtt_class(*args, ssl=True, ssl_params={"cert_reqs": ssl.CERT_REQUIRED, "cadata": ca,
                                                                "server_hostname": m["host"]})
        except TypeError:  # umqtt.simple 1.4 and later (mip) take an SSLContext
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=ca)
            return self.mqtt_class(*args, ssl=ctx)

    def _connect(self, now):
        m = self.cfg["mqtt"]
        try:
            c = self._client()
        except (OSError, ValueError) as e:
            return self._lost(now, e)
        c.set_callback(lambda t, p: self.inbox.append((t.decode(), bytes(p))))
        enrolling = self.mode == "enrolling"
        if not enrolling:
            c.set_last_will(self.topics.status, wire.encode(wire.status(self.origin, "offline")), True, 1)
        try:
            # Clean session off: the broker keeps receipts while the keypad is away. Enrolling: a fresh one.
            c.connect(enrolling)
            self.client, self.connected = c, True
            for t in self._subscriptions():
                c.subscribe(t, 1)
        except Exception as e:
            if self.enrol is not None and type(e).__name__ == "MQTTException" and e.args and e.args[0] in (4, 5):
                self.enrol.refused()  # a rotation took effect while away: the other password is tried next
            self._lost(now, e)
            return
        if self.enrol is not None and not enrolling:
            self.enrol.accepted()
        self.hello_at = now
        log("connected to %s:%s" % (m["host"], m.get("port", 1883)))
        self.attempt, self.problem = 0, ""
        self.offers = {}  # a new session: offer everything again now
        self.offer_at = self.ping_at = now
        self.status_at = now

    def _subscriptions(self):
        if self.mode == "enrolling":
            return [self.enrol.answer_topic()]
        own = list(self.enrol.own_topics()) if self.enrol else []
        if self.serving():
            return list(self.topics.inbound()) + own
        return [self.topics.receipt, self.topics.config] + own  # still delivers what it holds; takes no cases

    def _rewire(self, now):
        """Reconnect as whoever the keypad now is (enrolment account <-> its own account, or a new window)."""
        if self.enrol is not None:
            self._set_window(self.enrol.window())
        try:
            if self.client is not None:
                self.client.disconnect()
        except Exception:
            pass
        self.client, self.connected, self.attempt = None, False, 0
        self.retry_at = now
        self.inbox = []

    def _lost(self, now, e):
        m = self.cfg["mqtt"]
        self.problem = "%s:%s: %s" % (m["host"], m.get("port", 1883), _cause(e))
        if self.attempt == 0 or self.attempt % 20 == 0:
            log("link down:", self.problem)
        self.attempt += 1
        try:
            if self.client is not None:
                self.client.sock.close()
        except Exception:
            pass
        self.client, self.connected = None, False
        self.retry_at = now + min(60, 2 ** min(self.attempt, 6) * 0.5)
        self._show(now)

    def _publish(self, topic, msg, retain=False):
        self.client.publish(topic, wire.encode(msg) if isinstance(msg, dict) else msg, retain, 1)

    def _offer(self, now):
        ob = self.ob
        self.offer_at = now + 0.5
        inflight = len(self.offers)
        for raw in self.ring.ids():
            o = self.offers.get(raw)
            if o is None:
                if inflight >= ob.get("window", 20):
                    continue
                inflight += 1
                o = self.offers[raw] = [0, now]
            if now < o[1]:
                continue
            payload = self.ring.read(raw)
            if payload is None:
                continue
            kind = "rating" if b'"type":"rating"' in payload else "event"
            o[0] += 1
            o[1] = now + min(ob.get("receipt_timeout_s", 30) * 2 ** (o[0] - 1), ob.get("retry_max_s", 600))
            self._publish(self.topics.rating if kind == "rating" else self.topics.event, payload)
        stuck = [r for r, o in self.offers.items() if o[0] >= ob.get("alarm_after_offers", 10)]
        if bool(stuck) != ("no_receipt" in self.alarms):
            self._alarm("no_receipt", bool(stuck), "%d records offered %d times without a receipt" % (
                len(stuck), ob.get("alarm_after_offers", 10)))

    def _drain(self, now):
        while self.inbox and self.connected:
            topic, payload = self.inbox.pop(0)
            try:
                self._inbound(topic, payload, now)
            except wire.MessageError as e:
                self.rejected_inputs += 1
                log("refused a message on", topic, ":", e)

    def _inbound(self, topic, payload, now):
        if self.enrol is not None and self._enrolment_inbound(topic, payload, now):
            return
        kind = self.topics.inbound().get(topic)
        if kind is None or (kind in ("case", "duty") and not self.serving()):
            raise wire.MessageError("unexpected_topic", topic)
        if kind == "case" and not payload:
            return self._run(("case_cleared",), now)
        m = wire.decode(kind, payload)
        if kind in ("case", "duty", "catalog") and m["center"] != self.origin["center"]:
            raise wire.MessageError("wrong_center")
        if kind in ("case", "duty") and m["window"] != self.origin["window"]:
            raise wire.MessageError("wrong_window")
        if kind == "config" and m["device"] != self.origin["device"]:
            raise wire.MessageError("wrong_device")
        if kind == "receipt":
            return self._receipts(m["items"], now)
        if kind == "duty":
            return self._run(("duty", (m["staff"] or {}).get("id")), now)
        if kind == "catalog":
            return self._run(("catalog", m["version"], [r["code"] for r in m["reasons"]]), now)
        if kind == "config":
            merged = dict(self.local)
            merged.update(m.get("rating", {}))
            return self._run(("settings", merged), now)
        cid = m["case"]["id"]
        if m["state"] == "closed":
            return self._run(("case_closed", cid), now)
        if m["state"] == "rated":
            return self._run(("rated_elsewhere", cid), now)
        opened = clock.parse(m["opened_at"])
        if clock.clock_ok() and opened is not None and \
                clock.unix() - opened > self.cfg.get("case_max_age_h", 12) * 3600:
            raise wire.MessageError("stale_case", cid)
        if self.last_opened is not None and opened is not None and opened < self.last_opened:
            raise wire.MessageError("older_case", cid)
        self.last_opened = opened
        case = {"id": cid, "item_code": m["case"]["item_code"], "staff": m["staff"]["id"],
                "token": m["applicant"]["token"]}
        self._run(("case_opened", case, cid in self.rated_cases), now)

    def _enrolment_inbound(self, topic, payload, now):
        """Answers while enrolling; binding and rotated credentials once paired. True if it was one of them."""
        e = self.enrol
        if self.mode == "enrolling":
            if topic != e.answer_topic():
                raise wire.MessageError("unexpected_topic", topic)
            if payload and e.on_answer(topic, payload, now) == "paired":
                log("paired: own account received; reconnecting with it")
                self._rewire(now)
            return True
        binding, credentials = e.own_topics()
        if topic == binding and payload:
            before = (e.serving(), e.window())
            b = e.on_binding(payload)
            if (e.serving(), e.window()) != before:  # (a retained binding comes again at every connect)
                log("binding:", b["state"], b.get("window", ""))
                if not e.serving():
                    self._reset_machine()
                self._rewire(now)  # new subscriptions and window
            return True
        if topic == credentials and payload:
            if e.on_rotation(topic, payload):
                self.status_at = 0  # `cred` tells the center the new password is held
            return True
        return topic in (binding, credentials)

    def _receipts(self, items, now):
        for it in items:
            raw = clock.id_bytes(it["id"])
            self.offers.pop(raw, None)
            if it["status"] == "rejected":
                if self.ring.quarantine(raw):
                    self._alarm("record_rejected", True, "%s: %s" % (it["id"], it.get("reason", "")))
            else:
                self.ring.delete(raw)
        self._watch_level()
        if self.full and self.machine.phase != "unavailable":
            self.full = False

    def _alarm(self, code, on, detail=""):
        if on == (code in self.alarms):
            return
        (self.alarms.add if on else self.alarms.discard)(code)
        log("alarm" if on else "alarm cleared", code, detail)
        if self.connected:
            try:
                rid, _ = clock.uuid7()
                self._publish(self.topics.event, wire.alarm(code, detail, self.origin, rid, clock.stamp(
                    self.cfg.get("utc_offset_min", 480)), cleared=not on))
                self.status_at = 0
            except Exception as e:
                self._lost(0, e)

    def _status(self, now):
        q = len(self.ring.ids(True))
        msg = wire.status(self.origin, "online", clock.stamp(self.cfg.get("utc_offset_min", 480)), FW,
                          len(self.ring) - q, q, max(1, self.ring.capacity() // 400), sorted(self.alarms),
                          self.rejected_inputs)
        if self.enrol is not None and self.enrol.newest():
            msg["cred"] = self.enrol.newest()
        self._publish(self.topics.status, msg, True)
        self.status_at = now + 300

    def stats(self):
        q = len(self.ring.ids(True))
        return {"pending": len(self.ring) - q, "quarantined": q, "alarms": sorted(self.alarms),
                "connected": self.connected, "phase": self.machine.phase, "rejected_inputs": self.rejected_inputs}


def der(path):
    """The CA certificate for TLS as DER bytes (MicroPython's cadata), from a PEM or DER file."""
    import binascii
    with open(path, "rb") as f:
        data = f.read()
    if b"-----BEGIN" not in data:
        return data
    body = data.split(b"-----BEGIN CERTIFICATE-----")[1].split(b"-----END CERTIFICATE-----")[0]
    return binascii.a2b_base64(b"".join(body.split()))


def _cause(e):
    if type(e).__name__ == "MQTTException":
        code = e.args[0] if e.args else 0
        return {1: "protocol version refused", 2: "client id refused", 3: "server unavailable",
                4: "bad user name or password", 5: "not authorized"}.get(code, "refused (%s)" % code)
    text = str(e).lower()
    if "ssl" in type(e).__name__.lower() or "certificate" in text or "mbedtls" in text or "x509" in text:
        return "TLS: %s" % (e,)
    if isinstance(e, OSError):
        return "network: %s" % (e,)
    return "protocol: %r" % (e,)
