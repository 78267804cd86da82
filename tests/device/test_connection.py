"""Connection failures are reported, not silent: each failed attempt says host:port and the cause in
words (rate-limited), and `Terminal.connection_problem` holds it for the maintenance screen.

Everything here is real: a closed loopback port, a TCP listener that answers with AMQP's greeting
(what RabbitMQ says on 5672), and a Mosquitto that refuses the password."""
from __future__ import annotations

import logging
import re
import socket
import subprocess
import threading

import pytest

from devkit.broker import Broker, free_port
from devkit.terminals import terminal_config, terminals
from devkit.waiting import wait_for

LINK = "device.link"


def problems(caplog, port: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LINK and f"127.0.0.1:{port}" in r.getMessage()
            and "cannot connect" in r.getMessage()]


def attempts(t) -> int:
    return t.link._failures


@pytest.fixture
def junk_listener():
    """A TCP server that is not an MQTT broker: it greets like AMQP (RabbitMQ's 5672) and hangs up."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.recv(1024)  # the terminal's CONNECT
                    conn.sendall(b"AMQP\x00\x00\x09\x01")
                except OSError:
                    pass

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    yield srv.getsockname()[1]
    stop.set()
    th.join(5)
    srv.close()


def test_a_closed_port_is_reported_with_host_port_and_cause_once_not_per_attempt(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    port = free_port()  # nothing listens here
    with terminals() as start:
        t = start(terminal_config(port, tmp_path / "t", HCP_DEVICE_ID="closed"), "closed")
        wait_for(lambda: attempts(t) >= 3, what="three failed attempts")  # hang guard only
        assert not t.online
        assert t.connection_problem == f"127.0.0.1:{port}: connection refused: nothing listens on that port " \
                                       "(or a firewall rejects it)"
        logged = problems(caplog, port)
        assert len(logged) == 1, [r.getMessage() for r in logged]  # same cause within a minute: logged once
        assert "connection refused" in logged[0].getMessage() and logged[0].levelno == logging.WARNING
        # paho's own "ERROR … Client is not connected" after every attempt is quietened
        assert not [r for r in caplog.records if "Client is not connected" in r.getMessage()]


def test_a_server_that_is_not_mqtt_is_named_as_such(tmp_path, caplog, junk_listener):
    caplog.set_level(logging.INFO)
    with terminals() as start:
        t = start(terminal_config(junk_listener, tmp_path / "t", HCP_DEVICE_ID="junk"), "junk")
        wait_for(lambda: attempts(t) >= 2, what="two failed attempts")
        assert t.connection_problem.startswith(f"127.0.0.1:{junk_listener}: not an MQTT broker")
        logged = problems(caplog, junk_listener)
        assert len(logged) == 1 and "not an MQTT broker" in logged[0].getMessage()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_refused_credentials_say_bad_credentials_with_the_connack_code(tmp_path, caplog, protocol):
    caplog.set_level(logging.INFO)
    pw = tmp_path / "passwd"
    pw.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "terminal", "right-password"], check=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "auth.conf").write_text(f"allow_anonymous false\npassword_file {pw}\n")
    with Broker(extra=f"include_dir {tmp_path / 'conf.d'}", workdir=str(tmp_path / "b")) as b, \
            terminals() as start:
        t = start(terminal_config(b.port, tmp_path / "t", HCP_DEVICE_ID="creds", HCP_MQTT_USERNAME="terminal",
                                  HCP_MQTT_PASSWORD="wrong-password", HCP_MQTT_PROTOCOL=protocol), "creds")
        wait_for(lambda: attempts(t) >= 2, what="two refused attempts")
        # Mosquitto answers a wrong password with 0x87 Not authorized (3.1.1: return code 5), others with 0x86
        assert re.fullmatch(rf"127\.0\.0\.1:{b.port}: bad credentials.* \(CONNACK 0x8[67] .+\)", t.connection_problem)
        logged = problems(caplog, b.port)
        assert len(logged) == 1 and logged[0].levelno == logging.ERROR


def test_the_problem_clears_once_connected_and_a_later_loss_is_named(broker, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    broker.stop()
    with terminals() as start:
        t = start(terminal_config(broker.port, tmp_path / "t", HCP_DEVICE_ID="back"), "back")
        wait_for(lambda: t.connection_problem, what="a problem while the broker is down")
        broker.start()
        wait_for(lambda: t.online, what="connected")
        assert t.connection_problem is None
        assert any("after" in r.getMessage() and "failed attempts" in r.getMessage()
                   for r in caplog.records if r.name == LINK)
        broker.stop()
        wait_for(lambda: not t.online, what="loss seen")
        assert t.connection_problem.startswith("connection lost")


def test_a_tls_terminal_against_a_plain_listener_says_tls_failure(broker, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with terminals() as start:
        t = start(terminal_config(broker.port, tmp_path / "t", HCP_DEVICE_ID="tls", HCP_MQTT_TLS="true"), "tls")
        wait_for(lambda: attempts(t) >= 1, what="a failed attempt")
        assert t.connection_problem.startswith(f"127.0.0.1:{broker.port}: TLS failure"), t.connection_problem


def test_a_name_that_does_not_resolve_says_dns_failure(tmp_path):
    with terminals() as start:
        t = start(terminal_config(1883, tmp_path / "t", HCP_DEVICE_ID="dns", HCP_MQTT_HOST="broker.invalid"), "dns")
        wait_for(lambda: attempts(t) >= 1, what="a failed attempt")
        assert t.connection_problem.startswith("broker.invalid:1883: DNS failure"), t.connection_problem
