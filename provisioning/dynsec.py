"""A client for Mosquitto's Dynamic Security plugin: commands over `$CONTROL/dynamic-security/v1`.

Each call publishes one batch of commands and waits for the plugin's answer on
`$CONTROL/dynamic-security/v1/response`, matched by correlation data. Passwords pass through here
and are never logged (mosquitto itself logs them as ******).
"""
from __future__ import annotations

import json
import secrets
import threading
from typing import Any

import paho.mqtt.client as mqtt

TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE = TOPIC + "/response"


class DynSecError(RuntimeError):
    def __init__(self, command: str, error: str):
        super().__init__(f"dynsec {command}: {error}")
        self.command, self.error = command, error


class DynSec:
    """Wraps a connected paho client whose account holds the dynsec admin ACLs."""

    def __init__(self, client: mqtt.Client, timeout: float = 10):
        self.client = client
        self.timeout = timeout
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[threading.Event, list]] = {}
        client.message_callback_add(RESPONSE, self._on_response)

    def subscribe(self) -> None:
        """Call from on_connect (the response subscription must exist before the first command)."""
        self.client.subscribe(RESPONSE, qos=1)

    def _on_response(self, client, userdata, msg) -> None:
        try:
            responses = json.loads(msg.payload).get("responses", [])
        except (ValueError, AttributeError):
            return
        for r in responses:
            key = r.get("correlationData") if isinstance(r, dict) else None
            slot = self._waiting.get(key) if isinstance(key, str) else None
            if slot:
                slot[1].append(r)
                slot[0].set()

    def call(self, command: str, *, ok_errors: tuple[str, ...] = (), **args: Any) -> dict:
        """Run one command; DynSecError unless it succeeded (or failed with one of `ok_errors`)."""
        key = secrets.token_hex(8)
        done: tuple[threading.Event, list] = (threading.Event(), [])
        self._waiting[key] = done
        try:
            body = json.dumps({"commands": [{"command": command, "correlationData": key, **args}]})
            info = self.client.publish(TOPIC, body, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS or not done[0].wait(self.timeout):
                raise DynSecError(command, "no answer from the broker")
            r = done[1][0]
        finally:
            self._waiting.pop(key, None)
        err = r.get("error")
        if err and not any(e.lower() in str(err).lower() for e in ok_errors):
            raise DynSecError(command, str(err))
        return r.get("data", {}) or {}

    # ---- the commands used by provisioning ------------------------------------------------------

    def create_role(self, role: str, acls: list[dict]) -> None:
        self.call("createRole", rolename=role, acls=acls)

    def delete_role(self, role: str) -> None:
        self.call("deleteRole", rolename=role, ok_errors=("not found",))

    def add_acl(self, role: str, acl: dict) -> None:
        self.call("addRoleACL", rolename=role, ok_errors=("already exists",), **acl)

    def remove_acl(self, role: str, acl: dict) -> None:
        self.call("removeRoleACL", rolename=role, acltype=acl["acltype"], topic=acl["topic"],
                  ok_errors=("not found",))

    def create_client(self, username: str, password: str, client_id: str, roles: list[str]) -> None:
        self.call("createClient", username=username, password=password, clientid=client_id,
                  roles=[{"rolename": r} for r in roles])

    def delete_client(self, username: str) -> None:
        self.call("deleteClient", username=username, ok_errors=("not found",))

    def set_password(self, username: str, password: str) -> None:
        self.call("setClientPassword", username=username, password=password)

    def disable_client(self, username: str) -> None:
        self.call("disableClient", username=username)

