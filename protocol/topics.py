"""The topic tree: where each message of one device, window and center travels (docs/protocol.md)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from protocol import VERSION

PREFIX = f"hcp/v{VERSION}"


@dataclass(frozen=True)
class Topics:
    """The topic tree for one device at one window of one center."""

    center: str
    window: str
    device: str

    def window_topic(self, leaf: str) -> str:
        return f"{PREFIX}/{self.center}/window/{self.window}/{leaf}"

    def device_topic(self, leaf: str) -> str:
        return f"{PREFIX}/{self.center}/device/{self.device}/{leaf}"

    @property
    def case(self) -> str:
        return self.window_topic("case")

    @property
    def duty(self) -> str:
        return self.window_topic("duty")

    @property
    def catalog(self) -> str:
        return f"{PREFIX}/{self.center}/catalog"

    @property
    def config(self) -> str:
        return self.device_topic("config")

    @property
    def receipt(self) -> str:
        return self.device_topic("receipt")

    @property
    def rating(self) -> str:
        return self.device_topic("rating")

    @property
    def event(self) -> str:
        return self.device_topic("event")

    @property
    def status(self) -> str:
        return self.device_topic("status")

    @property
    def binding(self) -> str:
        return self.device_topic("binding")

    @property
    def credentials(self) -> str:
        return self.device_topic("credentials")

    @property
    def hello(self) -> str:
        return f"{PREFIX}/{self.center}/enrol/{self.device}/hello"

    def answer(self, key_id: str) -> str:
        """Where the center answers an announcement made with the key whose id is `key_id`."""
        return f"{PREFIX}/{self.center}/enrol/{self.device}/{key_id}/answer"

    def inbound(self) -> dict[str, str]:
        """Topic → message kind, for everything a device subscribes to."""
        return {self.case: "case", self.duty: "duty", self.catalog: "catalog",
                self.config: "config", self.receipt: "receipt"}


DEVICE_TOPIC = re.compile(rf"^{re.escape(PREFIX)}/([A-Za-z0-9_-]{{1,32}})/device/([A-Za-z0-9_-]{{1,32}})/([a-z]+)$")


def parse_device_topic(topic: str) -> tuple[str, str, str] | None:
    """(center, device, leaf) for a device topic, else None."""
    m = DEVICE_TOPIC.fullmatch(topic)  # not .match: its `$` would accept a trailing "\n"
    return (m.group(1), m.group(2), m.group(3)) if m else None
