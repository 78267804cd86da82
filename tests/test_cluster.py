"""The center tier on several processes (docs/deployment.md): N ledger workers on PostgreSQL sharing the
load through Mosquitto's shared subscriptions, or through a durable JetStream consumer on a 3-node NATS
cluster; real terminals, real `kill -9` of a broker node and of a worker. Every rating exactly once in the
record, every outbox empty at the end."""
from __future__ import annotations

import re
import threading

import pytest

from center.ledger import Ledger, Record, query
from center.store import Store
from devkit import factories
from devkit.cluster import mosquitto_deployment, nats_deployment
from devkit.terminals import terminal_config, terminals
from devkit.waiting import wait_for
from protocol import codec
from tests.device.test_delivery import rate_cases

pytestmark = pytest.mark.timeout(600)  # a cluster, PostgreSQL and worker processes start per test


def worker_counts(d) -> list[int]:
    """Ratings each worker says it stored (its last line when stopped with SIGTERM)."""
    out = []
    for i in range(d.workers):
        found = re.findall(r"stored (\d+) ratings", d.worker_log(i).read_text(errors="replace"))
        out.append(sum(int(n) for n in found))
    return out


def rows(d) -> list[tuple]:
    return query(d.db_url, "SELECT count(*), count(DISTINCT id), count(DISTINCT device || '/' || case_id) "
                           "FROM ratings")


def start_fleet(d, start, tmp_path, n: int, rotate: bool = False):
    """n terminals on the deployment's brokers (each its own rotation of the list when `rotate`)."""
    out = []
    for k in range(n):
        env = d.terminal_env()
        if rotate:
            hosts = env["HCP_MQTT_HOSTS"].split(",")
            env["HCP_MQTT_HOSTS"] = ",".join(hosts[k % len(hosts):] + hosts[:k % len(hosts)])
        out.append(start(terminal_config(d.brokers[0][1], tmp_path / f"t{k}", HCP_DEVICE_ID=f"ct{k}", **env), f"ct{k}"))
    for t in out:
        wait_for(lambda t=t: t.online, timeout=60, what=f"{t.link.client._client_id!r} online")
    return out


def test_two_workers_share_the_ratings_through_mosquitto_shared_subscriptions(tmp_path):
    with mosquitto_deployment(tmp_path / "dep", workers=2, db="postgres") as d:
        assert d.mqtt_version == "5" and len(d.brokers) == 1
        with terminals() as start:
            fleet = start_fleet(d, start, tmp_path, 3)
            for k, t in enumerate(fleet):
                rate_cases(t, 40, f"SH{k}-")
            # rate_cases only queues on each core: wait for the record too, not only for empty outboxes.
            wait_for(lambda: rows(d) == [(120, 120, 120)], timeout=120, what="120 ratings in the record")
            for t in fleet:
                wait_for(lambda t=t: t.outbox.counts().pending == 0, timeout=120, what="every outbox empty")
            assert all(t.outbox.counts().quarantined == 0 for t in fleet)
        for i in range(d.workers):
            d.procs[i].terminate()
            d.procs[i].wait(30)
            d.procs[i] = None
        counts = worker_counts(d)
        assert sum(counts) == 120, counts  # no rating stored twice (a duplicate is no "stored")
        assert all(n > 0 for n in counts), f"both workers took a share: {counts}"


def test_nats_cluster_two_workers_survive_a_node_and_a_worker_killed_mid_drain(tmp_path):
    with nats_deployment(tmp_path / "dep", nodes=3, workers=2) as d:
        assert d.mqtt_version == "3.1.1" and len(d.brokers) == 3
        with terminals() as start:
            fleet = start_fleet(d, start, tmp_path, 3, rotate=True)
            assert {t.link.address for t in fleet} == {f"{h}:{p}" for h, p in d.brokers}, "one per node"
            for k, t in enumerate(fleet):
                rate_cases(t, 30, f"NA{k}-")
            wait_for(lambda: d.stored() >= 10, timeout=60, what="the drain under way")
            d.kill_broker(0)    # kill -9 of the node terminal 0 and worker 0 are connected to
            d.kill_worker(1)    # kill -9 of a worker, whatever it had fetched and not acknowledged
            for k, t in enumerate(fleet):
                rate_cases(t, 10, f"NB{k}-")
            wait_for(lambda: fleet[0].online and fleet[0].link.address != f"{d.brokers[0][0]}:{d.brokers[0][1]}",
                     timeout=60, what="terminal 0 moved to another node")
            wait_for(lambda: rows(d) == [(120, 120, 120)], timeout=240, what="120 ratings in the record")
            for t in fleet:
                wait_for(lambda t=t: t.outbox.counts().pending == 0, timeout=240, what="every outbox empty")
            assert all(t.outbox.counts().quarantined == 0 for t in fleet)
            d.restart_worker(1)
            d.restart_broker(0)
            for k, t in enumerate(fleet):
                rate_cases(t, 2, f"NC{k}-")
            wait_for(lambda: rows(d) == [(126, 126, 126)], timeout=120, what="126 ratings in the record")
            for t in fleet:
                wait_for(lambda t=t: t.outbox.counts().pending == 0, timeout=120, what="receipted after restarts")


def test_a_rating_two_workers_store_at_once_is_one_row_and_two_receipts(tmp_path):
    """The same ratings reaching two writers at once on PostgreSQL (a re-offer that went to the other
    worker): one `stored`, one `duplicate` each — no error that refuses one or makes its batch start over
    (the database logs no unique-key violation)."""
    from devkit.postgres import Postgres
    with Postgres() as pg:
        url = pg.url
        Store(url).close()
        records = [Record(Store(url)) for _ in range(2)]
        try:
            msgs = []
            for k in range(50):
                body = factories.rating("twin", kind="case", case=factories.case_model(f"TW{k}"),
                                        staff=factories.staff(0), seq=k + 1)
                msgs.append(("hcp/v1/C1/device/twin/rating", codec.encode(body)))
            results: list[dict] = [{}, {}]
            gate = threading.Barrier(2)

            def run(i: int) -> None:
                gate.wait()
                for lo in range(0, len(msgs), 10):  # batches of 10: the two transactions overlap
                    for items in records[i].ingest(msgs[lo:lo + 10]).values():
                        for item in items:
                            results[i][item["id"]] = item["status"]

            threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(120)
            assert query(url, "SELECT count(*) FROM ratings") == [(50,)]
            assert len(results[0]) == len(results[1]) == 50
            for rid in results[0]:
                assert sorted([results[0][rid], results[1][rid]]) == ["duplicate", "stored"], rid
            assert records[0].stored + records[1].stored == 50
            assert records[0].failed == records[1].failed == 0
            assert records[0].rejected == records[1].rejected == 0
            assert "duplicate key value" not in pg.log.read_text(errors="replace")
        finally:
            for r in records:
                r.store.close()


def test_a_ledger_with_share_subscribes_records_shared_and_state_plainly(tmp_path):
    led = Ledger(tmp_path / "l.db", share="ledger", center="C1")
    try:
        assert "$share/ledger/hcp/v1/C1/device/+/rating" in led.topics
        assert "$share/ledger/hcp/v1/C1/device/+/event" in led.topics
        assert "hcp/v1/C1/device/+/binding" in led.topics and "hcp/v1/C1/catalog" in led.topics
    finally:
        led.store.close()
    with pytest.raises(ValueError, match="share group"):
        Ledger(tmp_path / "l.db", share="a/b")


def test_a_ledger_on_a_cluster_waits_for_a_slow_subscription_one_broker_does_not(tmp_path, monkeypatch):
    """A NATS node answers SUBSCRIBE only after JetStream made each topic's consumer (4 s per topic
    after a node died): a ledger with several brokers must not give up after 10 s, a single one does."""
    from types import SimpleNamespace

    from center.ledger import intake
    now = [1000.0]
    monkeypatch.setattr(intake, "time", SimpleNamespace(monotonic=lambda: now[0]))  # this module's clock only
    for brokers, fatal_after in (([("127.0.0.1", 1)], intake.SUBACK_TIMEOUT_S),
                                 ([("127.0.0.1", 1), ("127.0.0.1", 2)], intake.CLUSTER_GRACE_S)):
        led = Ledger(tmp_path / f"l{len(brokers)}.db", brokers=brokers, records=False, center="C1")
        try:
            led._connected_at = led._sub_sent_at = now[0]  # connected, SUBSCRIBE sent, no SUBACK yet
            now[0] += 16   # what nats-server 2.9.10 took for the worker's 4 topics after a node kill
            assert (led.health() is None) == (fatal_after > 16), brokers
            now[0] += fatal_after
            assert "did not answer the ledger's subscription" in (led.health() or ""), brokers
        finally:
            led.store.close()
