"""In-process terminals for tests and benchmarks: a configuration against a loopback broker (fast
reconnects, short receipt timeouts, the suite's own QR key) and started Terminals stopped at the end."""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

from device import config

if TYPE_CHECKING:
    from device.terminal import Terminal

TEST_QR_KEY = "74657374207172206b6579206f6e6c79" * 2  # the kit's own QR signing key (not the demo key)


def terminal_config(port: int, data_dir, **env: str) -> config.Config:
    """A terminal's configuration for a broker on 127.0.0.1:`port`; `env` overrides (HCP_… names)."""
    base = {"HCP_MQTT_PORT": str(port), "HCP_DEVICE_DATA_DIR": str(data_dir), "HCP_CENTER_ID": "C1",
            "HCP_CENTER_WINDOW": "W01", "HCP_MQTT_RECONNECT_MIN_S": "0.2", "HCP_MQTT_RECONNECT_MAX_S": "1",
            "HCP_OUTBOX_RECEIPT_TIMEOUT_S": "2", "HCP_OUTBOX_RETRY_MAX_S": "4", "HCP_QR_KEY": TEST_QR_KEY,
            "HCP_QR_KEY_ID": "test"}
    base.update({k.upper() if k.startswith("HCP_") else k: v for k, v in env.items()})
    return config.load([], base)


def start_terminal(cfg: config.Config, name: str) -> "Terminal":
    """A Terminal with its network, courier and core threads running."""
    from device.terminal import Terminal
    term = Terminal(cfg, name)
    term.start()
    return term


@contextmanager
def terminals() -> Iterator[Callable[[config.Config, str], "Terminal"]]:
    """`with terminals() as start:` — `start(cfg, name)` starts one; all are stopped at the end."""
    started: list[Terminal] = []

    def start(cfg: config.Config, name: str) -> "Terminal":
        started.append(start_terminal(cfg, name))
        return started[-1]

    try:
        yield start
    finally:
        for t in started:
            t.stop()
