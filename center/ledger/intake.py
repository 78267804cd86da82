"""The ledger's MQTT intake: closes the loop for the terminals.

Subscribes to every device's ratings and events, hands each batch to the record (`center.ledger.record`:
one row per id, one first rating per case and center, checks against bindings and cases), commits, and
only then publishes receipts to the device that sent it. It also follows what the center publishes
(bindings, cases, duty, the catalog), which the record keeps for the checks and the phone pages.

`python -m center.ledger --center-file center.toml` runs it as the center file says (or `--port 1883 --db
ledger.db`); `python -m center.ledger gaps --db ledger.db` lists each device's missing sequence numbers.

N workers share the load (docs/deployment.md), each exactly once in effect by rating id (the record's
unique id settles a duplicate that two workers got at once):
- `--share GROUP` (Mosquitto, MQTT 5 or 3.1.1): the device record topics are subscribed as the shared
  subscription `$share/GROUP/…`, so the broker hands each message to one worker; what the center publishes
  (cases, duty, catalog, bindings) is subscribed normally, every worker needs it.
- `--jetstream nats://…` (a NATS cluster, whose MQTT gateway has no shared subscriptions): the records come
  from one durable JetStream consumer the workers pull from (center/ledger/jetstream.py), acknowledged only
  once stored and receipted; MQTT (3.1.1) carries what the center publishes and the receipts.
"""
from __future__ import annotations

import argparse
import logging
import queue
import re
import sqlite3
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sqlalchemy import exc, text

from center.ledger.record import Record, Throttle
from center.store import Store
from protocol import codec, topics
from provisioning import config as center_config
from protocol.transport import backoff, no_delay

log = logging.getLogger("ledger")

BATCH = 1000
# Device records held in memory for the writer. While the database is slow or locked the terminals go on
# offering (new ratings, re-offers after their receipt timeout): an offer identical to one already held
# is dropped (the held one gets the receipt), and past INTAKE_MAX new offers are dropped with a warning —
# each is still in its terminal's outbox, which offers it again until a receipt comes. Memory stays bounded
# however long the database is held; the center's own messages (cases, duty, catalog, bindings) always pass.
INTAKE_MAX = 20_000
BATCH_ATTEMPTS = 3  # a batch the database refuses (busy, I/O) is tried again before it is given up
SUBACK_TIMEOUT_S = 10  # one broker: a SUBSCRIBE unanswered this long is fatal
# A NATS node answers a SUBSCRIBE only once JetStream made (or failed, after 4 s each) the session's
# consumer for every topic: for a while after a node of the cluster died that is 4 s × topics, then 0x80.
# With several brokers the ledger waits (and subscribes again after 0x80) CLUSTER_GRACE_S before it gives up.
REFUSAL_GRACE_S = 30  # one broker: a subscription refused without a reason (0x80) is tried again for this long
CLUSTER_GRACE_S = 90


class LedgerError(RuntimeError):
    """The ledger cannot do its job (subscription refused, a worker thread died): stop, exit non-zero."""


class Ledger:
    def __init__(self, db: str | Path | Store | Record, host: str = "127.0.0.1", port: int = 1883,
                 center: str = "+", client_id: str = "center-ledger", username: str = "", password: str = "",
                 mqtt_version: str = "5", *, share: str = "", records: bool = True,
                 brokers: list[tuple[str, int]] | None = None, intake_max: int = INTAKE_MAX):
        """`db`: a SQLite path or database URL (opened here), or the Store/Record of a larger service.
        `share`: subscribe the device records as `$share/<share>/…` (one of N workers); `records=False`:
        records come from elsewhere (`feed`, the JetStream consumer), MQTT only for state and receipts;
        `brokers`: several (host, port) to try in turn (a cluster), instead of host/port."""
        if mqtt_version not in ("5", "3.1.1"):
            raise ValueError(f"mqtt_version must be '5' or '3.1.1', not {mqtt_version!r}")
        if share and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", share):
            raise ValueError(f"share group must be letters, digits, _ or - (at most 32), not {share!r}")
        if isinstance(db, Record):
            self.record, self._owns_store = db, False
        elif isinstance(db, Store):
            self.record, self._owns_store = Record(db), False
        else:
            self.record, self._owns_store = Record(Store(db)), True
        self.store = self.record.store
        self.db_path = _sqlite_path(self.store.url)
        self.brokers = list(brokers or [(host, port)])
        self.host, self.port = self.brokers[0]
        self.mqtt_version, self.share = mqtt_version, share
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self.intake_max = intake_max
        self._held: set[tuple[str, bytes]] = set()   # device records queued or in the batch in hand
        self._held_lock = threading.Lock()
        self.dropped = {"same": 0, "full": 0}         # offers not queued (see INTAKE_MAX)
        self._stop = threading.Event()
        self._throttle = Throttle()
        self.fatal: str | None = None
        shared = f"$share/{share}/" if share else ""
        self.topics = [f"{shared}{topics.PREFIX}/{center}/device/+/{leaf}" for leaf in ("rating", "event")
                       if records]
        self.topics.append(f"{topics.PREFIX}/{center}/device/+/binding")
        self.topics += [f"{topics.PREFIX}/{center}/window/+/{leaf}" for leaf in ("case", "duty")]
        self.topics.append(f"{topics.PREFIX}/{center}/catalog")
        v5 = mqtt_version == "5"
        # One ledger keeps its session, to receive what arrived while it was down. One of N workers keeps
        # none: Mosquitto would go on queueing a dead worker's share for it; the others take the load, the
        # terminals re-offer what had no receipt, and what the center publishes is retained.
        self._clean = bool(share) or not records
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                        clean_session=None if v5 else self._clean, reconnect_on_failure=False)
        if username:
            c.username_pw_set(username, password)
        c.max_inflight_messages_set(1000)
        c.on_socket_open = no_delay
        c.suppress_exceptions = True
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_subscribe = self._subacked
        c.on_message = lambda cl, ud, m: self._offered(m.topic, m.payload)
        self.client = c
        self.subscribed = threading.Event()
        self._connected_at: float | None = None
        self._sub_sent_at = 0.0
        self._attempt = 0
        self._net = threading.Thread(target=self._net_loop, name="ledger-net", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "Ledger":
        """Connect (retrying while the broker is unreachable) and subscribe; LedgerError if refused."""
        self._writer.start()
        self._net.start()
        while not self.subscribed.wait(0.1):
            problem = self.health()
            if problem:
                self.stop()
                raise LedgerError(problem)
            if self._stop.is_set():
                break
        return self

    def health(self) -> str | None:
        """None while the ledger works; else why it cannot (the caller stops and exits non-zero)."""
        if self.fatal:
            return self.fatal
        if not self._stop.is_set():
            for t in (self._writer, self._net):
                if t.ident is not None and not t.is_alive():
                    return f"the {t.name} thread died; nothing would be stored"
        at = self._sub_sent_at if self._connected_at is not None else None
        wait = SUBACK_TIMEOUT_S if len(self.brokers) < 2 else CLUSTER_GRACE_S
        if at is not None and not self.subscribed.is_set() and time.monotonic() - at > wait:
            return (f"the broker at {self.host}:{self.port} did not answer the ledger's subscription within "
                    f"{wait} s: nothing would be stored")
        return None

    def stop(self) -> None:
        self._stop.set()
        if self._writer.ident is not None:
            self._writer.join(timeout=5)  # the batch in hand is committed and receipted first
        self.client.disconnect()
        if self._net.ident is not None:
            self._net.join(timeout=5)
        if self._owns_store:
            self.store.close()

    def counts(self) -> dict[str, int]:
        return self.record.counts()

    def feed(self, topic: str, payload: bytes, done: Callable[[], None]) -> None:
        """A record from another source than this MQTT session: stored with the next batch, receipted, and
        then `done()` is called (from the writer thread) — never when storing it failed."""
        self._q.put((topic, payload, done))

    @property
    def held(self) -> int:
        """Device records in memory: queued for the writer or in its batch."""
        return len(self._held)

    def _offered(self, topic: str, payload: bytes) -> None:
        """paho's network thread: queue a message for the writer (device records bounded: INTAKE_MAX)."""
        if topic.endswith(("/rating", "/event")):
            key = (topic, payload)
            with self._held_lock:
                if key in self._held:
                    self.dropped["same"] += 1
                    return
                if len(self._held) >= self.intake_max:
                    self.dropped["full"] += 1
                    self._throttle("full", logging.WARNING, "%d device records wait for the database: new offers "
                                   "are dropped (%d so far) and stay in the terminals' outboxes, offered again",
                                   len(self._held), self.dropped["full"])
                    return
                self._held.add(key)
        self._q.put((topic, payload, None))

    def _release(self, batch: list[tuple[str, bytes, Callable[[], None] | None]]) -> None:
        """The batch is stored (or given up): the same offer may be queued again."""
        with self._held_lock:
            for topic, payload, _ in batch:
                self._held.discard((topic, payload))

    def __getattr__(self, name: str):  # stored, rejected, failed, flagged, bad_topic: the record's counters
        if name in ("stored", "rejected", "failed", "flagged", "bad_topic"):
            return getattr(self.record, name)
        raise AttributeError(name)

    # ---- the network thread ---------------------------------------------------------------------

    def _net_loop(self) -> None:
        try:
            self._run_sessions()
        except BaseException as e:  # noqa: BLE001 - without the network thread nothing arrives: stop loudly
            self.fatal = f"the ledger-net thread died: {e!r}"
            log.critical("%s", self.fatal, exc_info=True)

    def _run_sessions(self) -> None:
        """Connect, run the session until it drops, reconnect with backoff; log each failure with its cause."""
        self._attempt = 0
        turn = 0
        while not self._stop.is_set():
            self.host, self.port = self.brokers[turn % len(self.brokers)]
            turn += 1  # the next attempt, after a failure or a loss, goes to the next broker of a cluster
            try:
                if self.mqtt_version == "5":
                    props = Properties(PacketTypes.CONNECT)
                    props.SessionExpiryInterval = 0 if self._clean else 7 * 86400
                    self.client.connect(self.host, self.port, keepalive=30, clean_start=self._clean,
                                        properties=props)
                else:
                    self.client.connect(self.host, self.port, keepalive=30)
            except (OSError, ValueError) as e:
                self._attempt += 1
                self._throttle("connect", logging.WARNING, "cannot reach the broker at %s:%d: %s (attempt %d; "
                               "retrying)", self.host, self.port, _cause(e), self._attempt)
                self._stop.wait(backoff(self._attempt, 0.5, 10))
                continue
            self.client.loop_forever()  # returns when the connection is lost (reconnect_on_failure=False)
            self._connected_at = None
            if not self._stop.is_set():
                self._attempt += 1
                self._stop.wait(backoff(self._attempt, 0.5, 10))

    def _connected(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self._throttle("refused", logging.ERROR, "the broker at %s:%d refused the connection: %s",
                           self.host, self.port, reason)
            return
        log.info("connected to %s:%d (MQTT %s, session present: %s)", self.host, self.port, self.mqtt_version,
                 flags.session_present)
        self.subscribed.clear()
        self._attempt = 0
        self._connected_at = time.monotonic()
        self._subscribe_all()

    def _subscribe_all(self) -> None:
        if self._connected_at is not None:
            self._sub_sent_at = time.monotonic()
            self.client.subscribe([(t, 1) for t in self.topics])

    def _disconnected(self, client, userdata, flags, reason, properties) -> None:
        if not self._stop.is_set():
            why = "connection lost" if reason.value in (0, 0x80) else str(reason)  # paho's "Unspecified error"
            log.warning("lost the broker at %s:%d: %s; reconnecting", self.host, self.port, why)

    def _subacked(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [f"{t} ({rc})" for t, rc in zip(self.topics, reason_codes) if rc.is_failure]
        if len(reason_codes) != len(self.topics):
            refused.append(f"{len(reason_codes)} answers for {len(self.topics)} subscriptions")
        at = self._connected_at
        if (refused and all(rc.value == 0x80 for rc in reason_codes if rc.is_failure) and at is not None
                and time.monotonic() - at < (REFUSAL_GRACE_S if len(self.brokers) < 2 else CLUSTER_GRACE_S)):
            # 0x80 says no more than "failure" (all a 3.1.1 SUBACK can say): a NATS node whose JetStream is
            # electing leaders answers so for a while. Not authorized (0x87) is final at once.
            log.warning("the broker at %s:%d refused %s; subscribing again", self.host, self.port, ", ".join(refused))
            timer = threading.Timer(1.0, self._subscribe_all)
            timer.daemon = True
            timer.start()
            return
        if refused:
            self.fatal = (f"the broker at {self.host}:{self.port} refused the ledger's subscription to "
                          f"{', '.join(refused)}: check the ledger account's ACL and --center; nothing would be "
                          f"stored")
            log.critical("%s", self.fatal)
            return
        log.info("subscribed to %s", ", ".join(self.topics))
        self.subscribed.set()

    # ---- the writer thread ----------------------------------------------------------------------

    def _write_loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    batch = [self._q.get(timeout=0.2)]
                except queue.Empty:
                    continue
                while len(batch) < BATCH:
                    try:
                        batch.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                try:
                    for attempt in range(BATCH_ATTEMPTS):
                        try:
                            self._store(batch)
                            break
                        except exc.DBAPIError as e:
                            if attempt + 1 == BATCH_ATTEMPTS:
                                log.exception("could not store a batch of %d; no receipts sent, the terminals "
                                              "will offer again", len(batch))
                                # Retained bindings and cases come again with a new SUBSCRIBE.
                                self.client.subscribe([(t, 1) for t in self.topics])
                            else:
                                log.warning("could not store a batch of %d (%s); trying again", len(batch), e)
                                self._stop.wait(0.5)
                finally:
                    self._release(batch)
        except BaseException as e:  # noqa: BLE001 - a dead writer must stop the process, not idle silently
            self.fatal = f"the ledger-writer thread died: {e!r}"
            log.critical("%s", self.fatal, exc_info=True)

    def _store(self, batch: list[tuple[str, bytes, Callable[[], None] | None]]) -> None:
        # committed when it returns: durable first, receipts after
        receipts = self.record.ingest([(topic, payload) for topic, payload, _ in batch])
        for topic, items in receipts.items():
            for chunk in receipt_chunks(items):
                self.client.publish(topic, chunk, qos=1)
        for _, _, done in batch:
            if done is not None:
                done()


RECEIPT_BUDGET = 12_000  # bytes: well inside the terminals' 16 KiB inbound limit
RECEIPT_MAX_ITEMS = 250  # the schema's maxItems


def receipt_chunks(items: list[dict]) -> list[bytes]:
    """Encoded receipt messages, each under RECEIPT_BUDGET bytes and RECEIPT_MAX_ITEMS items."""
    out: list[bytes] = []
    batch: list[dict] = []
    size = 40  # the envelope
    for item in items:
        n = len(codec.encode(item)) + 1
        if batch and (size + n > RECEIPT_BUDGET or len(batch) >= RECEIPT_MAX_ITEMS):
            out.append(codec.encode({"v": 1, "type": "receipt", "items": batch}))
            batch, size = [], 40
        batch.append(item)
        size += n
    if batch:
        out.append(codec.encode({"v": 1, "type": "receipt", "items": batch}))
    return out


def query(db: str | Path, sql: str, params: tuple | dict = ()) -> list[tuple]:
    """Read the record from another connection (tests, reports) while the service writes: a SQLite path
    (opened read-only; `?` parameters), or a database URL (`:name` parameters)."""
    if "://" in str(db):
        store = Store(str(db))
        try:
            with store.read() as conn:
                return [tuple(r) for r in conn.execute(text(sql), params or {})]
        finally:
            store.close()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def gaps(db_path: str | Path) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """Each device's missing sequence ranges (inclusive), from 1 to the highest seq the ledger holds.

    Ratings and `unrated` events share a terminal's sequence (its outbox); alarms carry none. A gap is a
    record the terminal numbered but the ledger never stored: not delivered yet, or lost."""
    rows = query(db_path, "SELECT center, device, seq FROM ratings UNION "
                          "SELECT center, device, seq FROM events WHERE seq IS NOT NULL ORDER BY 1, 2, 3")
    out: dict[tuple[str, str], list[tuple[int, int]]] = {}
    last: dict[tuple[str, str], int] = {}
    for center, device, seq in rows:
        key = (center, device)
        ranges = out.setdefault(key, [])
        if seq > last.get(key, 0) + 1:
            ranges.append((last.get(key, 0) + 1, seq - 1))
        last[key] = seq
    return out


def parse_brokers(text: str) -> list[tuple[str, int]]:
    """"host:port,host:port" → [(host, port), …]; ValueError naming the wrong entry."""
    out = []
    for entry in (e.strip() for e in text.split(",")):
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"--brokers: {entry!r} is not host:port (e.g. 127.0.0.1:1883)")
        out.append((host, int(port)))
    return out


def _without_password(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _cause(e: BaseException) -> str:
    """An exception in words an operator can act on."""
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (is the broker running on that port?)"
    if isinstance(e, TimeoutError):
        return "timed out"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _sqlite_path(url: str) -> Path | None:
    return Path(url.split("///", 1)[1]) if url.startswith("sqlite:///") else None


def gaps_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="rating-ledger gaps", description=gaps.__doc__)
    ap.add_argument("--db", default="ledger.db")
    args = ap.parse_args(argv)
    if not Path(args.db).exists():
        print(f"no ledger database at {args.db}", file=sys.stderr)
        return 2
    found = gaps(args.db)
    for (center, device), ranges in sorted(found.items()):
        missing = sum(hi - lo + 1 for lo, hi in ranges)
        text = ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges) or "none"
        print(f"{center}/{device}: missing {text} ({missing})")
    return 0


def _options(args: argparse.Namespace) -> dict:
    """What the ledger runs with: the center file's values (if given), each overridden by its flag."""
    o: dict = {"db": "ledger.db", "host": "127.0.0.1", "port": 1883, "center": "+", "username": "", "password": "",
               "mqtt_version": "5", "ca": None, "share": ""}
    tls_port = None
    if args.center_file:
        cfg = center_config.load(args.center_file)
        host, port, ca = cfg.service_broker(cfg.ledger.mqtt_host, cfg.ledger.mqtt_port)
        tls_port = port if ca else None
        secret = cfg.secret_file(cfg.ledger.account)
        if not secret.exists():
            raise OSError(f"{secret}: no password for the {cfg.ledger.account} account (made by "
                          "`python -m provisioning --center ... broker-config`)")
        o.update(db=cfg.ledger.url or cfg.ledger.db, host=host, port=port, center=cfg.center.id,
                 username=cfg.ledger.account,
                 password=secret.read_text().strip(), mqtt_version=cfg.ledger.mqtt_version, ca=ca)
        o["share"] = cfg.ledger.share
    given = {k: getattr(args, k) for k in ("db", "host", "port", "center", "username", "mqtt_version", "share")}
    o.update({k: v for k, v in given.items() if v is not None})
    if args.password_file:
        o["password"] = Path(args.password_file).read_text().strip()
    if o["port"] != tls_port:
        o["ca"] = None  # --port chose another listener than the center file's TLS one
    return o


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gaps"]:
        return gaps_main(argv[1:])
    ap = argparse.ArgumentParser(prog="rating-ledger", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--center-file", help="the center file (docs/center-file.md): broker, TLS, account, database "
                                          "and MQTT version from it ([ledger], [broker], [accounts]); a flag "
                                          "given as well wins")
    ap.add_argument("--db", help="database (default: ledger.db, or [ledger] db)")
    ap.add_argument("--host", help="broker host (default: 127.0.0.1)")
    ap.add_argument("--port", type=int, help="broker port (default: 1883)")
    ap.add_argument("--center", help="center id, or + for all (default: +, or the center file's)")
    ap.add_argument("--username", help="MQTT user (the center broker has no anonymous access)")
    ap.add_argument("--password-file", help="file holding that user's password")
    ap.add_argument("--mqtt-version", choices=("5", "3.1.1"),
                    help="MQTT protocol version (3.1.1: no reason codes; receipts are the only acknowledgement)")
    ap.add_argument("--brokers", help="several brokers (a cluster) as host:port,host:port: tried in turn, "
                                      "instead of --host/--port")
    ap.add_argument("--client-id", default="center-ledger",
                    help="MQTT client id (each worker of several its own; default: center-ledger)")
    ap.add_argument("--share", help="one of N workers on Mosquitto: take the device records through the shared "
                                    "subscription $share/SHARE/… (e.g. --share ledger on every worker)")
    ap.add_argument("--jetstream", metavar="NATS_URLS",
                    help="one of N workers on a NATS cluster: take the device records from the durable "
                         "JetStream consumer (nats://host:port,nats://host:port); MQTT for the rest")
    ap.add_argument("--jetstream-replicas", type=int, default=1,
                    help="replicas of the records stream when this worker makes it (3 on a 3-node cluster)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s ledger %(levelname)s: %(message)s")
    try:
        opts = _options(args)
        brokers = parse_brokers(args.brokers) if args.brokers else None
        if args.share and args.jetstream:
            raise ValueError("--share and --jetstream exclude each other (Mosquitto or a NATS cluster)")
    except (center_config.CenterConfigError, OSError, ValueError) as e:
        print(f"rating-ledger: {e}", file=sys.stderr)
        return 2
    ledger = Ledger(opts["db"], opts["host"], opts["port"], opts["center"], client_id=args.client_id,
                    username=opts["username"], password=opts["password"], mqtt_version=opts["mqtt_version"],
                    share=opts["share"] or "", records=not args.jetstream, brokers=brokers)
    if opts["ca"]:
        ledger.client.tls_set(ca_certs=str(opts["ca"]))
    feed = None
    if args.jetstream:
        from center.ledger.jetstream import JetStreamFeed
        feed = JetStreamFeed(args.jetstream.split(","), ledger, center=opts["center"],
                             replicas=args.jetstream_replicas, name=args.client_id)
    stop = threading.Event()

    def on_signal(*_) -> None:
        stop.set()
        ledger._stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("ledger for %s%s, database %s", ", ".join(f"{h}:{p}" for h, p in ledger.brokers),
             " (TLS)" if opts["ca"] else "", _without_password(str(opts["db"])))
    try:
        ledger.start()
    except LedgerError as e:
        log.critical("cannot start: %s", e)
        return 2
    if feed is not None:
        feed.start()
    problem = None
    while not stop.wait(1):
        problem = ledger.health() or (feed.health() if feed else None)
        if problem:
            log.critical("stopping: %s", problem)
            break
    ledger.stop()  # the batch in hand is committed, receipted and its acknowledgements handed to the feed
    if feed is not None:
        feed.stop()  # drains its connection: those acknowledgements reach NATS (the rest comes again)
    log.info("stored %d ratings, rejected %d, failed %d, flagged %d, bad topics %d; offers dropped while busy: "
             "%d already held, %d past the intake limit", ledger.stored, ledger.rejected, ledger.failed,
             ledger.flagged, ledger.bad_topic, ledger.dropped["same"], ledger.dropped["full"])
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
