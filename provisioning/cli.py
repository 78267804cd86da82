"""`python -m provisioning`: the center's provisioning tool — the same operations as the console, for
scripting, plus the generators (broker configuration, enrolment file, certificates). The pairing service
and the console run inside the center service (`python -m center serve --center-file center.toml`, pages
under /console/); its staff accounts: `python -m center users add NAME --role admin --center-file …`.

    python -m provisioning --center center.toml broker-config --out /etc/mosquitto/hcp
    python -m provisioning --center center.toml list
    python -m provisioning --center center.toml pair 482915 W01
    python -m provisioning --center center.toml move rpi-1000000a3f9c2b7e W02
    python -m provisioning --center center.toml replace rpi-1000000a3f9c2b7e 731004
    python -m provisioning --center center.toml revoke|unpair|rotate rpi-1000000a3f9c2b7e
    python -m provisioning --center center.toml audit
"""
from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from datetime import datetime
from pathlib import Path

from provisioning import brokerconf, certs, users
from provisioning import config as center_config
from provisioning.registry import Registry
from provisioning.service import Provisioner, Refused


def _registry(cfg: center_config.CenterConfig) -> Registry:
    return Registry(cfg.console.db)


def _provisioner(cfg: center_config.CenterConfig, reg: Registry, listen: bool) -> Provisioner:
    host, port, ca = cfg.service_broker(cfg.console.mqtt_host, cfg.console.mqtt_port)
    return Provisioner(cfg, reg, host=host, port=port, tls_ca=str(ca or ""), listen=listen,
                       password=brokerconf.account_password(cfg, "provisioning")).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hcp-provisioning", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--center", default=os.environ.get("HCP_CENTER_FILE", "center.toml"), help="the center file")
    ap.add_argument("--as", dest="who", default=f"cli:{getpass.getuser()}", help="name written to the audit log")
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("broker-config", help="write mosquitto.conf, the initial dynsec database and enrolment.toml")
    g.add_argument("--out", default="generated")
    g.add_argument("--user", help="run mosquitto as this user (default: [broker] user)")
    c = sub.add_parser("certs", help="make a CA and the broker's server certificate (a center without its own PKI)")
    c.add_argument("--out", required=True)
    c.add_argument("--host", action="append", required=True, help="DNS name or IP the terminals connect to")
    sub.add_parser("list", help="unpaired and paired terminals")
    a = sub.add_parser("audit", help="the audit log, newest first")
    a.add_argument("--limit", type=int, default=50)
    p = sub.add_parser("pair", help="pair the terminal showing CODE to WINDOW")
    p.add_argument("code")
    p.add_argument("window")
    m = sub.add_parser("move", help="move a terminal to another window")
    m.add_argument("device")
    m.add_argument("window")
    r = sub.add_parser("replace", help="the terminal showing CODE takes over DEVICE's window; DEVICE is retired")
    r.add_argument("device")
    r.add_argument("code")
    for name, text in (("unpair", "unpair a terminal"), ("revoke", "disable a terminal's account at once"),
                       ("rotate", "send a terminal new credentials")):
        sub.add_parser(name, help=text).add_argument("device")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s: %(message)s")

    if args.cmd == "certs":
        out = Path(args.out)
        ca = certs.make_ca(out) if not (out / "ca.pem").exists() else certs.Issued(out / "ca.pem", out / "ca.key")
        server = certs.issue(ca, out, "server", hosts=tuple(args.host))
        print(f"CA {ca.cert} (keep {ca.key} offline); server certificate {server.cert}, key {server.key}")
        return 0
    try:
        cfg = center_config.load(args.center)
    except center_config.CenterConfigError as e:
        print(e, file=sys.stderr)
        return 2
    if args.cmd == "broker-config":
        for path in brokerconf.generate(cfg, Path(args.out), args.user):
            print(f"wrote {path}")
        if cfg.broker.dynsec_file.exists():
            print(f"kept {cfg.broker.dynsec_file} (the broker's live account database)")
        return 0
    reg = _registry(cfg)
    try:
        if args.cmd == "audit":
            for e in reg.audit_log(args.limit):
                # Names and details came from outside (a sign-in form, a terminal): escaped, one line each.
                print(users.printable(f"{datetime.fromtimestamp(e.at):%Y-%m-%d %H:%M:%S}  {e.who:<16} {e.action:<14} "
                                      f"{e.target:<24} {e.detail}"))
            return 0
        prov = _provisioner(cfg, reg, listen=False)
        try:
            return _operate(prov, args)
        finally:
            prov.stop()
    finally:
        reg.close()


def _operate(prov: Provisioner, args) -> int:
    try:
        if args.cmd == "list":
            pending, paired = prov.terminals()
            for t in pending:
                print(f"unpaired  {t.device:<24} {'online' if t.online else 'offline':<8} {t.model or ''}")
            for t in paired:
                print(f"{t.state:<9} {t.device:<24} {'online' if t.online else 'offline':<8} window {t.window or '-'}"
                      f"  pending {t.pending if t.pending is not None else '?'}{'  rotating' if t.rotating else ''}")
        elif args.cmd == "pair":
            d = prov.pair(args.code, args.window, args.who)
            print(f"paired {d.device} to {d.window}")
        elif args.cmd == "move":
            prov.move(args.device, args.window, args.who)
            print(f"moved {args.device} to {args.window}")
        elif args.cmd == "replace":
            d = prov.replace(args.device, args.code, args.who)
            print(f"{d.device} replaces {args.device} at {d.window}; {args.device} retired")
        elif args.cmd == "unpair":
            prov.unpair(args.device, args.who)
            print(f"unpaired {args.device}")
        elif args.cmd == "revoke":
            prov.revoke(args.device, args.who)
            print(f"revoked {args.device}")
        elif args.cmd == "rotate":
            gen = prov.rotate(args.device, args.who)
            print(f"credentials generation {gen} sent to {args.device}; in force once it confirms")
    except Refused as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    return 0
