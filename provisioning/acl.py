"""Who may do what on the center broker: Dynamic Security roles, one per terminal.

Mosquitto 2.0's dynsec ACL topics are literal (no %c/%u), so every terminal gets its own role
(`device-<id>`) naming exactly its topics. Two facts of 2.0.11 shape these lists (tests/provisioning
pins both):
- `subscribe*` ACLs are only checked when a client subscribes. A subscription made earlier survives an
  ACL removal (and a reconnect with a persistent session). So every readable topic also has a
  `publishClientReceive` allow, the default for receiving is *deny*, and taking a window away removes
  the receive allow: from that moment nothing of that window is delivered, old subscription or not.
- A role change does not disconnect anybody; disabling a client or changing its password does.
"""
from __future__ import annotations

from protocol.topics import PREFIX

DEFAULT_ACCESS = {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                  "unsubscribe": True}

Acl = dict


def _read(topic: str, pattern: bool = False) -> list[Acl]:
    sub = "subscribePattern" if pattern else "subscribeLiteral"
    return [{"acltype": sub, "topic": topic, "allow": True},
            {"acltype": "publishClientReceive", "topic": topic, "allow": True}]


def _send(topic: str) -> list[Acl]:
    return [{"acltype": "publishClientSend", "topic": topic, "allow": True}]


def device_role(device: str) -> str:
    return f"device-{device}"


def device_acls(center: str, device: str, window: str | None) -> list[Acl]:
    """A terminal: publish its own records and status; read its window's case and duty (only while it
    serves `window`; None = retired or unpaired), the center catalog and its own config, receipts,
    binding and rotated credentials."""
    d = f"{PREFIX}/{center}/device/{device}"
    acls = _send(f"{d}/rating") + _send(f"{d}/event") + _send(f"{d}/status")
    for leaf in ("receipt", "config", "binding", "credentials"):
        acls += _read(f"{d}/{leaf}")
    if window is not None:
        acls += _read(f"{PREFIX}/{center}/window/{window}/case") + _read(f"{PREFIX}/{center}/window/{window}/duty")
        acls += _read(f"{PREFIX}/{center}/catalog")
    return acls


def window_acls(center: str, window: str) -> list[Acl]:
    """The part of a device role that a move takes away or adds."""
    return (_read(f"{PREFIX}/{center}/window/{window}/case") + _read(f"{PREFIX}/{center}/window/{window}/duty")
            + _read(f"{PREFIX}/{center}/catalog"))


def enrolment_acls(center: str) -> list[Acl]:
    """The center-wide enrolment account: announce, and read answers (sealed: useless without the key)."""
    e = f"{PREFIX}/{center}/enrol"
    return _send(f"{e}/+/hello") + _read(f"{e}/+/+/answer", pattern=True)


def provisioning_acls(center: str) -> list[Acl]:
    """The pairing service: manages dynsec, hears announcements and status, answers and binds."""
    c = f"{PREFIX}/{center}"
    ctl = "$CONTROL/dynamic-security/#"
    return ([{"acltype": "publishClientSend", "topic": ctl, "allow": True}] + _read(ctl, pattern=True)
            + _read(f"{c}/enrol/+/hello", pattern=True) + _read(f"{c}/device/+/status", pattern=True)
            + _send(f"{c}/enrol/+/hello") + _send(f"{c}/enrol/+/+/answer")
            + _send(f"{c}/device/+/binding") + _send(f"{c}/device/+/credentials"))


def ledger_acls(center: str) -> list[Acl]:
    """The system of record (the center service): reads every record, the bindings and cases it checks
    them against, the duty and catalog the phone pages show; answers with receipts; publishes the windows'
    cases and duty (the case feed, a case rated on a phone as `rated`)."""
    c = f"{PREFIX}/{center}"
    return (_read(f"{c}/device/+/rating", pattern=True) + _read(f"{c}/device/+/event", pattern=True)
            + _read(f"{c}/device/+/binding", pattern=True) + _read(f"{c}/window/+/case", pattern=True)
            + _read(f"{c}/window/+/duty", pattern=True) + _read(f"{c}/catalog")
            + _send(f"{c}/device/+/receipt") + _send(f"{c}/window/+/case") + _send(f"{c}/window/+/duty")
            # N ledger workers share the records through a shared subscription ([ledger] share)
            + [{"acltype": "subscribePattern", "topic": f"$share/+/{c}/device/+/{leaf}", "allow": True}
               for leaf in ("rating", "event")])


def centersys_acls(center: str) -> list[Acl]:
    """Case handling and queue systems: publish cases, duty, catalog and terminal config; read records and status."""
    c = f"{PREFIX}/{center}"
    return (_send(f"{c}/window/+/case") + _send(f"{c}/window/+/duty") + _send(f"{c}/catalog")
            + _send(f"{c}/device/+/config") + _read(f"{c}/device/+/rating", pattern=True)
            + _read(f"{c}/device/+/event", pattern=True) + _read(f"{c}/device/+/status", pattern=True))


SERVICE_ROLES = {"provisioning": provisioning_acls, "ledger": ledger_acls, "centersys": centersys_acls,
                 "enrolment": enrolment_acls}
