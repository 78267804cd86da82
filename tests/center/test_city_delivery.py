"""Loss-free delivery to the city: the ledger keeps each rating's city-delivery state, the city (the stand-in:
the ledger's intake in city mode, in its own process) receipts on the terminals' contract, and anything not
receipted is offered again after any outage or crash. Center store on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from center.city import delivery
from center.city.delivery import CityDelivery, CityLink
from center.city.reconcile import reconcile, reconcile_main
from center.city.standin import stand_in, stored_ids
from center.ledger.intake import Ledger
from center.ledger.record import Record
from center.store import Store, sqlite_url
from center.store.tables import city_delivery, ratings
from devkit.broker import Broker, free_port
from devkit.waiting import wait_for
from protocol import ids

CENTER = "C1"
PREFIX = f"city/v1/{CENTER}/"
DEVICES = ("d1", "d2", "d3", "d4", "d5")


def rating(device: str, seq: int, ts: str = "2026-12-01T10:00:00.000+08:00") -> dict:
    return {"v": 1, "type": "rating", "id": ids.uuid7(), "device": device, "center": CENTER, "window": "W01",
            "seq": seq, "ts": ts, "kind": "hall", "level": "satisfied", "channel": "touch"}


class Terminals:
    """Many terminals' outboxes in one client: offers every record until its receipt (docs/protocol.md §7),
    again after the broker comes back."""

    def __init__(self, port: int):
        self.pending: dict[str, tuple[str, bytes]] = {}
        self.lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="terminals", protocol=mqtt.MQTTv5)
        c.max_inflight_messages_set(500)
        c.reconnect_delay_set(0.1, 0.5)
        c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe(f"hcp/v1/{CENTER}/device/+/receipt", qos=1)
        c.on_message = self._receipt
        c.connect_async("127.0.0.1", port)
        c.loop_start()
        self.c = c

    def _receipt(self, client, userdata, msg) -> None:
        with self.lock:
            for item in json.loads(msg.payload)["items"]:
                assert item["status"] in ("stored", "duplicate"), item
                self.pending.pop(item["id"], None)

    def offer(self, records: list[dict]) -> None:
        with self.lock:
            for r in records:
                self.pending[r["id"]] = (f"hcp/v1/{CENTER}/device/{r['device']}/rating", json.dumps(r).encode())
        self.offer_again()

    def offer_again(self) -> None:
        with self.lock:
            waiting = list(self.pending.values())
        for topic, payload in waiting:
            self.c.publish(topic, payload, qos=1)

    def drained(self, timeout: float = 120) -> None:
        """Until every record has its receipt, offering again what has none every few seconds."""
        def done() -> bool:
            with self.lock:
                if not self.pending:
                    return True
            return False
        for _ in range(int(timeout / 3)):
            try:
                wait_for(done, 3, "receipts")
                return
            except AssertionError:
                self.offer_again()
        raise AssertionError(f"{len(self.pending)} records never receipted")

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def start_standin(port: int, db: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "center.city.standin", "--port", str(port), "--db", str(db)],
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def city_link(port: int) -> CityLink:
    return CityLink("127.0.0.1", port, PREFIX, reconnect_min_s=0.1, reconnect_max_s=0.5)


def states(store: Store) -> dict[str, int]:
    with store.read() as conn:
        return delivery.states(conn)


@pytest.fixture
def brokers(tmp_path):
    for name in ("center-broker", "city-broker"):
        (tmp_path / name).mkdir()
    center_broker = Broker(workdir=str(tmp_path / "center-broker")).start()
    city_broker = Broker(workdir=str(tmp_path / "city-broker"))   # not started: the city is down
    yield center_broker, city_broker
    center_broker.stop()
    city_broker.stop()


def test_city_down_for_5000_ratings_and_the_center_broker_killed_every_rating_reaches_the_city_once(
        store, brokers, tmp_path):
    center_broker, city_broker = brokers
    record = Record(store)
    ledger = Ledger(record, port=center_broker.port, center=CENTER).start()
    worker = CityDelivery(store, city_link(city_broker.port), CENTER, receipt_timeout_s=2).start()
    terminals = Terminals(center_broker.port)
    standin = None
    try:
        batch = [rating(d, seq) for seq in range(1, 1001) for d in DEVICES]   # 5,000
        terminals.offer(batch[:2500])
        terminals.drained()
        terminals.offer(batch[2500:])
        center_broker.proc.kill()            # kill -9 during the city's outage, with records in flight
        center_broker.proc.wait()
        center_broker.start()
        terminals.drained()

        with store.read() as conn:
            assert conn.execute(select(func.count()).select_from(ratings)).scalar() == 5000
        assert states(store).get("receipted", 0) == 0          # the city is still down
        assert sum(states(store).values()) == 5000, "every rating is owed to the city (Record.accept → enqueue)"

        city_broker.start()                  # the city is back
        standin = start_standin(city_broker.port, tmp_path / "city.db", tmp_path / "standin.log")
        wait_for(lambda: states(store) == {"receipted": 5000}, 120, "every rating receipted by the city")

        city = Store(sqlite_url(tmp_path / "city.db"))
        try:
            held = stored_ids(city)
            assert len(held) == len(set(held)) == 5000
            assert set(held) == {r["id"] for r in batch}
            report = reconcile(store, "2026-12-01", CENTER, city)
        finally:
            city.close()
        assert report.balanced
        assert [(x.device, x.stored, x.receipted, x.city) for x in report.lines] == \
            [(d, 1000, 1000, 1000) for d in DEVICES]
    finally:
        terminals.close()
        worker.stop()
        ledger.stop()
        if standin is not None:
            standin.terminate()
            standin.wait(10)


def test_what_was_offered_and_never_receipted_is_offered_again_after_a_crash(store, tmp_path):
    """The city's broker takes the offers (PUBACK) but nobody stores them (the stand-in is down; this broker
    keeps nothing); the worker dies. The next one offers them again and the city receipts each once."""
    with Broker(workdir=str(tmp_path)) as city_broker:
        record = Record(store)
        with store.write() as conn:
            for seq in range(1, 301):
                record.accept(conn, rating("d1", seq), 1000.0)
            delivery.backfill(conn, 1000.0)   # a no-op when Record.accept owes the city itself
        first = CityDelivery(store, city_link(city_broker.port), CENTER, receipt_timeout_s=600).start()
        wait_for(lambda: states(store) == {"offered": 300}, 30, "every rating offered")
        first.stop()                          # offered, never receipted: the PUBACKs mean nothing

        standin = stand_in(tmp_path / "city.db", port=city_broker.port).start()
        second = CityDelivery(store, city_link(city_broker.port), CENTER, receipt_timeout_s=600).start()
        try:
            wait_for(lambda: states(store) == {"receipted": 300}, 60, "every rating receipted")
            assert len(stored_ids(standin.record.store)) == 300
        finally:
            second.stop()
            standin.stop()
            standin.record.store.close()
        with store.read() as conn:
            attempts = conn.execute(select(city_delivery.c.attempts)).scalars().all()
        assert min(attempts) >= 2             # each was offered by both workers


def test_the_city_broker_killed_mid_delivery_loses_nothing(store, tmp_path):
    (tmp_path / "b").mkdir()
    city_broker = Broker(workdir=str(tmp_path / "b")).start()
    record = Record(store)
    with store.write() as conn:
        for seq in range(1, 2001):
            record.accept(conn, rating(DEVICES[seq % 5], seq), 1000.0)
        delivery.backfill(conn, 1000.0)
    standin = stand_in(tmp_path / "city.db", port=city_broker.port).start()
    worker = CityDelivery(store, city_link(city_broker.port), CENTER, batch=50, window=500,
                          receipt_timeout_s=600).start()
    try:
        wait_for(lambda: states(store).get("receipted", 0) > 0, 60, "the first receipts")
        city_broker.proc.kill()               # kill -9: whatever it held in flight is gone
        city_broker.proc.wait()
        city_broker.start()
        wait_for(lambda: states(store) == {"receipted": 2000}, 120, "every rating receipted")
        held = stored_ids(standin.record.store)
        assert len(held) == len(set(held)) == 2000
    finally:
        worker.stop()
        standin.stop()
        standin.record.store.close()
        city_broker.stop()


def test_a_record_the_city_refuses_is_kept_rejected_with_its_reason_and_not_offered_again(store, tmp_path):
    with Broker(workdir=str(tmp_path)) as city_broker:
        record = Record(store)
        with store.write() as conn:
            for seq in range(1, 11):
                record.accept(conn, rating("d1", seq), 1000.0)
            delivery.backfill(conn, 1000.0)
        standin = stand_in(tmp_path / "city.db", port=city_broker.port).start()
        # An area code the city's checks refuse (行政区划 is digits only): every record is refused.
        worker = CityDelivery(store, city_link(city_broker.port), CENTER, area="31010x", receipt_timeout_s=0.2,
                              retry_max_s=0.2).start()
        try:
            wait_for(lambda: states(store) == {"rejected": 10}, 30, "every rating rejected")
            offered = worker.offered
            with store.read() as conn:
                reasons = conn.execute(select(city_delivery.c.reason)).scalars().all()
            assert all("行政区划" in r for r in reasons)
            assert stored_ids(standin.record.store) == []
            time.sleep(1)                         # five receipt timeouts: nothing is offered again
            assert worker.offered == offered      # never offered again
        finally:
            worker.stop()
            standin.stop()
            standin.record.store.close()
        report = reconcile(store, "2026-12-01", CENTER)
        assert not report.balanced and report.lines[0].rejected == 10


def test_every_stored_rating_owes_the_city_in_the_transaction_that_stores_it(store):
    """Record.accept writes the delivery row itself (no backfill): a rating is never stored un-owed."""
    record = Record(store)
    with store.write() as conn:
        r = rating("d1", 1)
        record.accept(conn, r, 1000.0)
        row = conn.execute(select(city_delivery).where(city_delivery.c.rating_id == r["id"])).mappings().first()
    assert row is not None, "Record.accept does not call center.city.delivery.enqueue yet"
    assert (row["state"], row["device"], row["day"], row["next_try"]) == ("pending", "d1", "2026-12-01", 1000.0)


def test_the_reconciliation_counts_per_day_and_device_and_exits_non_zero_when_unbalanced(store, capsys):
    record = Record(store)
    with store.write() as conn:
        rs = [rating("d1", 1), rating("d1", 2), rating("d2", 3), rating("d2", 4, "2026-12-02T00:00:01+08:00")]
        for r in rs:
            record.accept(conn, r, 1000.0)
        delivery.backfill(conn, 1000.0)
        conn.execute(city_delivery.update().where(city_delivery.c.rating_id.in_([rs[0]["id"], rs[2]["id"]]))
                     .values(state="receipted"))
    report = reconcile(store, "2026-12-01")
    assert [(x.device, x.stored, x.receipted, x.open) for x in report.lines] == [("d1", 2, 1, 1), ("d2", 1, 1, 0)]
    assert not report.balanced
    assert reconcile_main(["--db", store.url, "--date", "2026-12-01"]) == 1
    out = capsys.readouterr().out
    assert "NOT balanced" in out and "d1" in out
    with store.write() as conn:
        conn.execute(city_delivery.update().values(state="receipted"))
    assert reconcile_main(["--db", store.url, "--date", "2026-12-01", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["balanced"] and got["total"]["stored"] == 3
    assert reconcile_main(["--db", store.url, "--date", "2026-12-02"]) == 0
    assert reconcile_main(["--db", store.url, "--date", "yesterday"]) == 2


def test_over_tls_with_the_bridges_account_as_a_center_file_gives_it(store, tmp_path):
    """The worker takes the city's address, CA and account from [bridge] (as the bridge does) and speaks TLS."""
    from provisioning import config as center_config
    from tests.provisioning.helpers import city_broker, make_pki

    pki = make_pki(tmp_path / "pki")
    port = free_port()
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "city.password").write_text("city-bridge-password\n")
    example = Path(__file__).parents[2] / "center" / "broker" / "center.example.toml"
    text = example.read_text().replace('address = "hcp-mqtt.city.example.gov.cn:8883"', f'address = "127.0.0.1:{port}"')
    text = text.replace('remote_prefix = "hcp/v1/pudong/"', f'remote_prefix = "{PREFIX}"')
    text = text.replace('cafile = "tls/city-ca.pem"', f'cafile = "{pki["city_ca"].cert}"')
    text = text.replace('certfile = "tls/bridge.pem"', "").replace('keyfile = "tls/bridge.key"', "")
    text = text.replace('# remote_username = "pudong"', 'remote_username = "center-C1"')
    text = text.replace('# remote_password_file = "secrets/city.password"',
                        'remote_password_file = "secrets/city.password"')
    (tmp_path / "center.toml").write_text(text)
    link = CityLink.from_center_file(center_config.load(tmp_path / "center.toml"))
    assert (link.host, link.port, link.username, link.password) == ("127.0.0.1", port, "center-C1",
                                                                    "city-bridge-password")
    city = city_broker(tmp_path / "city", port, pki).start()
    try:
        record = Record(store)
        with store.write() as conn:
            for seq in range(1, 21):
                record.accept(conn, rating("d1", seq), 1000.0)
            delivery.backfill(conn, 1000.0)
        standin = stand_in(tmp_path / "city.db", port=port, username="city-reader", password="reader-password")
        standin.client.tls_set(ca_certs=str(pki["city_ca"].cert))
        standin.start()
        worker = CityDelivery(store, link, CENTER).start()
        try:
            wait_for(lambda: states(store) == {"receipted": 20}, 60, "every rating receipted over TLS")
        finally:
            worker.stop()
            standin.stop()
            standin.record.store.close()
    finally:
        city.stop()
