"""The center tier on more than one process, for the tests and the fleet simulator (docs/deployment.md):

- `NatsCluster(root, nodes=3)`: nats-server nodes with JetStream and the MQTT gateway (3.1.1) on free
  loopback ports, routed to each other; `kill(i)` (SIGKILL) and `restart(i)` on the same ports and store.
- `Deployment`: brokers + the center store + N ledger worker processes (`python -m center.ledger …`, so
  `kill_worker` is a real `kill -9`). `mosquitto_deployment()`: one Mosquitto (MQTT 5), workers sharing
  the device records through `$share/ledger/…`; `nats_deployment()`: a NatsCluster, workers sharing one
  durable JetStream consumer, terminals at 3.1.1 with the nodes as their broker list.

These brokers are anonymous and have no ACL (a test bed for load and failures); the single-hall default with
Dynamic Security is `provisioning`'s broker configuration.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devkit.broker import NATS, Broker, _stop, _wait_for_port, free_port

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"


class NatsCluster:
    """`nodes` nats-server processes forming one JetStream cluster, each with an MQTT gateway."""

    def __init__(self, root: Path, nodes: int = 3):
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.nodes = nodes
        self.client_ports = [free_port() for _ in range(nodes)]
        self.cluster_ports = [free_port() for _ in range(nodes)]
        self.mqtt_ports = [free_port() for _ in range(nodes)]
        self.http_ports = [free_port() for _ in range(nodes)]
        self.procs: list[subprocess.Popen | None] = [None] * nodes
        for i in range(nodes):
            d = self.root / f"n{i}"
            d.mkdir(exist_ok=True)
            routes = ", ".join(f'"nats-route://{LOOPBACK}:{p}"' for j, p in enumerate(self.cluster_ports) if j != i)
            cluster = (f'cluster {{ name: "hcp", listen: "{LOOPBACK}:{self.cluster_ports[i]}", routes: [{routes}] }}\n'
                       if nodes > 1 else "")
            (d / "nats.conf").write_text(
                f'server_name: "hcp-n{i}"\nlisten: "{LOOPBACK}:{self.client_ports[i]}"\n'
                f'http: "{LOOPBACK}:{self.http_ports[i]}"\n'
                f'jetstream {{ store_dir: "{d / "js"}" }}\n{cluster}'
                # MQTT sessions and QoS 1 state replicated like the records: a node may die.
                f'mqtt {{ host: "{LOOPBACK}", port: {self.mqtt_ports[i]}, stream_replicas: {min(3, nodes)} }}\n')

    @property
    def servers(self) -> list[str]:
        """NATS URLs of every node (what nats-py connects to)."""
        return [f"nats://{LOOPBACK}:{p}" for p in self.client_ports]

    def log(self, i: int) -> Path:
        return self.root / f"n{i}" / "nats.log"

    def _spawn(self, i: int) -> None:
        self.procs[i] = subprocess.Popen([NATS, "-c", str(self.root / f"n{i}" / "nats.conf")],
                                         stdout=open(self.log(i), "ab"), stderr=subprocess.STDOUT)

    def start(self, timeout: float = 60) -> "NatsCluster":
        for i in range(self.nodes):
            self._spawn(i)
        end = time.monotonic() + timeout
        for i in range(self.nodes):
            self._ready(i, end)
        return self

    def _ready(self, i: int, end: float, health: bool = True) -> None:
        """The node's ports are open, its JetStream is current (`health`: at first start; a restarted node
        catches up with its streams in the background), and its MQTT gateway accepts a session."""
        _wait_for_port(self.procs[i], self.mqtt_ports[i], end, f"nats-server n{i}", self.log(i))
        while not ((not health or _healthy(self.http_ports[i])) and _mqtt_accepts(self.mqtt_ports[i])):
            if time.monotonic() > end:
                raise RuntimeError(f"nats-server n{i} is not ready (JetStream/MQTT): "
                                   f"{self.log(i).read_text(errors='replace')[-2000:]}")
            if self.procs[i].poll() is not None:
                raise RuntimeError(f"nats-server n{i} exited: {self.log(i).read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)

    def kill(self, i: int) -> None:
        """SIGKILL node i (no goodbye to its clients or its peers)."""
        p = self.procs[i]
        if p and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
        self.procs[i] = None

    def restart(self, i: int, timeout: float = 60) -> None:
        """Start node i again on the same ports and store; returns once it is ready."""
        self.kill(i)
        self._spawn(i)
        self._ready(i, time.monotonic() + timeout, health=False)

    def stop(self) -> None:
        for i in range(self.nodes):
            _stop(self.procs[i])
            self.procs[i] = None

    def __enter__(self) -> "NatsCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _healthy(http_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{http_port}/healthz", timeout=2) as r:
            return json.loads(r.read()).get("status") == "ok"
    except (OSError, ValueError):
        return False


def _mqtt_accepts(port: int) -> bool:
    """An MQTT 3.1.1 CONNECT is answered with success (the gateway's JetStream streams exist)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{port}", protocol=mqtt.MQTTv311)
    try:
        c.connect(LOOPBACK, port, keepalive=10)
        end = time.monotonic() + 5
        while not c.is_connected() and time.monotonic() < end:
            c.loop(0.1)
        return c.is_connected()
    except OSError:
        return False
    finally:
        try:
            c.disconnect()
        except OSError:
            pass


class Deployment:
    """Brokers + the center store + N ledger workers; a context manager (`start()` → self, `stop()`)."""

    center_id = "C1"

    def __init__(self, root: Path, kind: str, *, workers: int, db: str = "postgres", nodes: int = 1,
                 broker_extra: str = ""):
        if kind not in ("mosquitto", "nats-cluster"):
            raise ValueError(f"kind must be 'mosquitto' or 'nats-cluster', not {kind!r}")
        if db not in ("postgres", "sqlite"):
            raise ValueError(f"db must be 'postgres' or 'sqlite', not {db!r}")
        if db == "sqlite" and workers > 1:
            raise ValueError("several ledger workers need PostgreSQL (db='postgres'): SQLite has one writer")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.kind, self.workers, self.db, self.nodes = kind, workers, db, nodes
        self.broker_extra = broker_extra  # more mosquitto.conf lines (e.g. `max_connections -1` for a fleet)
        self.mqtt_version = "5" if kind == "mosquitto" else "3.1.1"
        self.brokers: list[tuple[str, int]] = []
        self.db_url = ""
        self.broker: Broker | None = None
        self.cluster: NatsCluster | None = None
        self.postgres = None
        self.procs: list[subprocess.Popen | None] = [None] * workers

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "Deployment":
        try:
            self._start_db()
            if self.kind == "mosquitto":
                (self.root / "mosquitto").mkdir(exist_ok=True)
                self.broker = Broker(workdir=str(self.root / "mosquitto"), extra=self.broker_extra).start()
                self.brokers = [(LOOPBACK, self.broker.port)]
            else:
                self.cluster = NatsCluster(self.root / "nats", self.nodes).start()
                self.brokers = [(LOOPBACK, p) for p in self.cluster.mqtt_ports]
            for i in range(self.workers):
                self._spawn_worker(i)
            for i in range(self.workers):
                self._worker_ready(i)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_db(self) -> None:
        from center.store import Store
        if self.db == "sqlite":
            self.db_url = f"sqlite:///{self.root / 'ledger.db'}"
        else:
            from devkit.postgres import Postgres
            self.postgres = Postgres().start()
            self.db_url = self.postgres.url
        Store(self.db_url).close()  # the schema, once, before N workers open it at the same time

    def stop(self) -> None:
        for i, p in enumerate(self.procs):
            if p is not None:
                _stop(p)
                self.procs[i] = None
        if self.broker is not None:
            self.broker.stop()
        if self.cluster is not None:
            self.cluster.stop()
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None

    def __enter__(self) -> "Deployment":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- what terminals and tests use -----------------------------------------------------------

    def terminal_env(self) -> dict[str, str]:
        """HCP_… overrides for `devkit.terminals.terminal_config`: the broker list and the MQTT version."""
        return {"HCP_MQTT_HOSTS": ",".join(f"{h}:{p}" for h, p in self.brokers),
                "HCP_MQTT_PROTOCOL": self.mqtt_version, "HCP_CENTER_ID": self.center_id}

    def stored(self) -> int:
        """Ratings in the record."""
        from center.ledger import query
        return query(self.db_url, "SELECT count(*) FROM ratings")[0][0]

    # ---- failures -------------------------------------------------------------------------------

    def kill_broker(self, i: int) -> None:
        if self.cluster is not None:
            self.cluster.kill(i)
            return
        self._only(i)
        if self.broker.proc and self.broker.proc.poll() is None:
            self.broker.proc.send_signal(signal.SIGKILL)
            self.broker.proc.wait()

    def restart_broker(self, i: int) -> None:
        if self.cluster is not None:
            self.cluster.restart(i)
            return
        self._only(i)
        self.kill_broker(0)
        self.broker.start()

    def _only(self, i: int) -> None:
        if i != 0:
            raise IndexError(f"a Mosquitto deployment has one broker (0), not {i}")

    def kill_worker(self, i: int) -> None:
        """SIGKILL ledger worker i: whatever it fetched and had not committed is offered again."""
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
        self.procs[i] = None

    def restart_worker(self, i: int) -> None:
        self.kill_worker(i)
        self._spawn_worker(i)
        self._worker_ready(i)

    def worker_log(self, i: int) -> Path:
        return self.root / f"worker-{i}.log"

    def _worker_args(self, i: int) -> list[str]:
        args = [sys.executable, "-m", "center.ledger", "--db", self.db_url, "--center", self.center_id,
                "--client-id", f"ledger-{i}", "--mqtt-version", self.mqtt_version,
                # each worker starts at another node: one node's death takes only its share of sessions
                "--brokers", ",".join(f"{h}:{p}" for h, p in self.brokers[i:] + self.brokers[:i])]
        if self.kind == "nats-cluster":
            args += ["--jetstream", ",".join(self.cluster.servers),
                     "--jetstream-replicas", str(min(3, self.nodes))]
        elif self.workers > 1:
            args += ["--share", "ledger"]
        return args

    def _spawn_worker(self, i: int) -> None:
        log = self.worker_log(i)
        self._log_offset = getattr(self, "_log_offset", {})
        self._log_offset[i] = log.stat().st_size if log.exists() else 0
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.procs[i] = subprocess.Popen(self._worker_args(i), cwd=REPO, env=env, stdout=open(log, "ab"),
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def _worker_ready(self, i: int, timeout: float = 60) -> None:
        """Until worker i subscribed (and, on NATS, pulls from the consumer)."""
        need = ["subscribed to"] + (["pulling records from JetStream"] if self.kind == "nats-cluster" else [])
        log = self.worker_log(i)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = log.read_bytes()[self._log_offset[i]:].decode(errors="replace") if log.exists() else ""
            if all(n in text for n in need):
                return
            p = self.procs[i]
            if p is None or p.poll() is not None:
                raise RuntimeError(f"ledger worker {i} exited: {text[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"ledger worker {i} not ready within {timeout:.0f} s: see {log}")


def mosquitto_deployment(root: Path, *, workers: int = 1, db: str = "postgres",
                         broker_extra: str = "") -> Deployment:
    """One Mosquitto (MQTT 5, anonymous), `workers` ledger processes (sharing through `$share/ledger/…`
    when more than one), on PostgreSQL or (one worker) SQLite; `broker_extra`: more mosquitto.conf lines."""
    return Deployment(root, "mosquitto", workers=workers, db=db, broker_extra=broker_extra)


def nats_deployment(root: Path, *, nodes: int = 3, workers: int = 2) -> Deployment:
    """A `nodes`-node NATS JetStream cluster (MQTT 3.1.1 gateway on each), `workers` ledger processes
    sharing one durable JetStream consumer, PostgreSQL."""
    return Deployment(root, "nats-cluster", workers=workers, db="postgres", nodes=nodes)


__all__ = ["Deployment", "NatsCluster", "mosquitto_deployment", "nats_deployment"]
