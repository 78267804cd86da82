"""Two socket habits every MQTT client of ours shares (terminal, ledger, simulator); plain sockets, no paho."""
from __future__ import annotations

import random
import socket


def no_delay(client, userdata, sock) -> None:
    """Ratings and acks are small: send them now, not after Nagle's wait for the previous ACK."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass  # not a TCP socket (a test double, a proxy): nothing to tune


def backoff(attempt: int, low: float, high: float) -> float:
    """Exponential backoff with jitter: uniformly between half and all of low·2^attempt, capped."""
    cap = min(high, low * (2 ** min(attempt, 30)))
    return random.uniform(cap / 2, cap)
