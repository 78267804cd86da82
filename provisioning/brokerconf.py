"""Generate the center broker's configuration from the center file.

Writes, into one output folder:
- `mosquitto.conf`: TLS listener, Dynamic Security, no anonymous access, persistence, queue limits for a
  week of outage, and the bridge to the city platform (MQTT v5, or 3.1.1 with `bridge.protocol`);
- `dynamic-security.json`: the initial dynsec database (service accounts, the enrolment account, their
  roles, deny-by-default), only if it does not exist yet — the broker rewrites that file itself as
  terminals are paired, so generating again never wipes device accounts;
- `enrolment.toml`: the center's enrolment file, copied to every new terminal's boot partition;
- passwords of the service accounts in the secrets folder (mode 0600), made once.
"""
from __future__ import annotations

import base64
import glob
import hashlib
import json
import math
import os
import re
import secrets
from pathlib import Path

from provisioning import acl
from provisioning.config import CenterConfig

TEMPLATE = Path(__file__).resolve().parents[1] / "center" / "broker" / "center.conf.template"
ACCOUNTS = ("provisioning", "ledger", "centersys", "enrolment")
BRIDGE_PROTOCOLS = {"5": "mqttv50", "3.1.1": "mqttv311"}  # center file `bridge.protocol` → Mosquitto's name
HASH_ITERATIONS = 10_000  # service accounts; device passwords are 192-bit random, hashed by the broker


_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def fill(template: str, **values: object) -> str:
    """Substitute exactly the named `{placeholders}` of a configuration template, in one pass.

    Any other brace (in a comment, or in a substituted value) stays as it is. A value with a line break
    may only stand where a whole line is expected: inside a comment its later lines would become
    configuration, so that is a ValueError rather than a broker that does not start."""
    out = []
    for line in template.splitlines(keepends=True):
        comment = line.lstrip().startswith("#")

        def put(m: re.Match) -> str:
            if m.group(1) not in values:
                return m.group(0)
            text = str(values[m.group(1)])
            if comment and "\n" in text:
                raise ValueError(f"{{{m.group(1)}}} has several lines and stands in a comment: {line.strip()!r}")
            return text

        out.append(_PLACEHOLDER.sub(put, line))
    return "".join(out)


def plugin_path() -> str:
    for cand in sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so")) + [
            "/usr/lib/mosquitto_dynamic_security.so", "/usr/local/lib/mosquitto_dynamic_security.so"]:
        if os.path.exists(cand):
            return cand
    raise FileNotFoundError("mosquitto_dynamic_security.so not found (Debian: package mosquitto)")


def max_queued(cfg: CenterConfig) -> int:
    return math.ceil(cfg.broker.ratings_per_day * cfg.broker.outage_days * 2 * 1.25)


def new_password() -> str:
    return secrets.token_urlsafe(24)  # 32 characters, [A-Za-z0-9_-]


def write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def account_password(cfg: CenterConfig, account: str) -> str:
    """The service account's password from the secrets folder, made the first time it is asked for."""
    path = cfg.secret_file(account)
    if not path.exists():
        write_secret(path, new_password() + "\n")
    return path.read_text().strip()


def _hashed(password: str) -> dict:
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, HASH_ITERATIONS)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": HASH_ITERATIONS}


def dynsec_database(cfg: CenterConfig) -> dict:
    roles = [{"rolename": name, "acls": make(cfg.center.id)} for name, make in acl.SERVICE_ROLES.items()]
    clients = [{"username": name, "textname": f"{name} ({cfg.center.id})", "roles": [{"rolename": name}],
                **_hashed(account_password(cfg, name))} for name in ACCOUNTS]
    return {"clients": clients, "groups": [], "roles": roles, "defaultACLAccess": dict(acl.DEFAULT_ACCESS)}


def _bridge(cfg: CenterConfig) -> str:
    b = cfg.bridge
    if not b.enabled:
        return "# No bridge: [bridge] enabled = false in the center file."
    local = f"hcp/v1/{cfg.center.id}/"
    protocol = b.protocol
    lines = [
        f"# The bridge to the city platform. MQTT {protocol} (bridge.protocol); one persistent session on both",
        "# sides (cleansession and local_cleansession equal and false: Debian's 2.0.11 does not persist the",
        "# bridge queue otherwise); reconnect backoff bounded by restart_timeout.",
        f"connection {b.name}",
        f"address {b.address}",
        f"bridge_protocol_version {BRIDGE_PROTOCOLS[protocol]}",
        "cleansession false",
        "local_cleansession false",
        f"remote_clientid {b.remote_clientid or cfg.center.id + '-center'}",
        f"local_clientid {cfg.center.id}-bridge-{b.name}",
        f"restart_timeout {b.restart_timeout_min_s} {b.restart_timeout_max_s}",
        f"keepalive_interval {b.keepalive_s}",
        "start_type automatic",
        "try_private false",
        "notifications true",
        "notifications_local_only true",
        f"notification_topic {local}bridge/{b.name}/state",
        f"bridge_cafile {b.cafile}",
        "bridge_insecure false",
    ]
    if b.certfile:
        lines += [f"bridge_certfile {b.certfile}", f"bridge_keyfile {b.keyfile}"]
    if b.remote_username:
        lines.append(f"remote_username {b.remote_username}")
        if b.remote_password_file:
            lines.append(f"remote_password {b.remote_password_file.read_text().strip()}")
    for pattern in b.topics_out:
        lines.append(f"topic {pattern} out 1 {local} {b.remote_prefix}")
    for pattern in b.topics_in:
        lines.append(f"topic {pattern} in 1 {local} {b.remote_prefix}")
    return "\n".join(lines)


def mosquitto_conf(cfg: CenterConfig, user: str | None = None) -> str:
    local = (f"\n# Center services on this machine (ledger, pairing console): loopback, same accounts.\n"
             f"listener {cfg.broker.local_port} 127.0.0.1\nprotocol mqtt\n") if cfg.broker.local_port else ""
    br = cfg.broker
    return fill(
        TEMPLATE.read_text("utf-8"), source=cfg.path, user=user or br.user, plugin=br.plugin or plugin_path(),
        dynsec_file=br.dynsec_file, port=br.port, bind=br.bind, cafile=br.cafile, certfile=br.certfile,
        keyfile=br.keyfile, local_listener=local, data_dir=br.data_dir, autosave=br.autosave_interval_s,
        session_expiry=f"{br.session_expiry_days}d", ratings_per_day=br.ratings_per_day,
        outage_days=br.outage_days, max_queued=max_queued(cfg), log_dest=br.log_dest, bridge=_bridge(cfg))


def enrolment_file(cfg: CenterConfig) -> str:
    """The file a technician copies to a new terminal's boot partition (`hcp-enrolment.toml`)."""
    pem = cfg.broker.cafile.read_text().strip()
    url = cfg.console.url
    return (f"# The enrolment file of center {cfg.center.id}: copy it as /boot/firmware/hcp-enrolment.toml.\n"
            "# It lets a terminal announce itself and nothing else; pairing happens in the console.\n"
            f"[center]\nid = \"{cfg.center.id}\"\n\n"
            f"[mqtt]\nhost = \"{cfg.broker.host}\"\nport = {cfg.broker.port}\ntls = true\n"
            f"ca_pem = \"\"\"\n{pem}\n\"\"\"\n\n"
            f"[enrolment]\nusername = \"enrolment\"\npassword = \"{account_password(cfg, 'enrolment')}\"\n"
            + (f"console_url = \"{url}\"\n" if url else ""))


def generate(cfg: CenterConfig, out: Path, user: str | None = None) -> list[Path]:
    """Write the broker configuration and friends into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    conf = out / "mosquitto.conf"
    write_secret(conf, mosquitto_conf(cfg, user))  # may hold the bridge's remote password: 0600
    written.append(conf)
    dynsec = cfg.broker.dynsec_file
    if not dynsec.exists():
        dynsec.parent.mkdir(parents=True, exist_ok=True)
        write_secret(dynsec, json.dumps(dynsec_database(cfg), indent=1))
        written.append(dynsec)
    enrol = out / "enrolment.toml"
    write_secret(enrol, enrolment_file(cfg))
    written.append(enrol)
    _hand_to(user or cfg.broker.user, [conf, dynsec, cfg.broker.data_dir])
    return written


def _hand_to(user: str, paths: list[Path]) -> None:
    """Mosquitto drops privileges to `user`: a root-owned 0600 file would be unreadable to it."""
    import pwd
    import shutil
    if os.geteuid() != 0 or user == "root":
        return
    try:
        pwd.getpwnam(user)
    except KeyError:
        return  # no such user here (generating on another machine): see README, step "install"
    for p in paths:
        if p.exists():
            shutil.chown(p, user, None)
