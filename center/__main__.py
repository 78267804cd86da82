"""`python -m center`: the center service and its chores.

  serve --center-file center.toml        the service (record, MQTT intake, phone pages, SMS follow-up)
  serve --demo --mqtt-port N [--web-port N] [--data DIR] [--lan]     the same for `make run` and the tests
  cards --center-file center.toml --out DIR     printable staff and hall code cards (PNG each, one PDF)
  staff --center-file center.toml revoke|restore ID     a staff code stops/starts working (a new code
                                                         is issued on restore: reprint the card)
  hall --center-file center.toml renew           a new hall code (the old printed one stops working)
  users add NAME --role admin|supervisor|auditor [--windows W01,W02] --center-file center.toml
                                                 a console account (password from stdin or a prompt)
  city reconcile --date YYYY-MM-DD …           stored vs receipted by the city, per device (exit 1: open)
  keys add NAME [--windows W01,W02] --center-file center.toml
                                                 an API key (case feed, data API): the whole center, or
                                                 one business system's windows
"""
from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import update

from center.ledger.intake import LedgerError


def _serve(args) -> int:
    from center.service import CenterService, demo_options, options_from_center_file
    if args.demo:
        bind = "0.0.0.0" if args.lan else "127.0.0.1"
        public = f"http://{lan_address()}:{args.web_port}" if args.lan else ""
        opts = demo_options(Path(args.data), args.mqtt_port, args.web_port, bind=bind, public_url=public)
    else:
        opts = options_from_center_file(args.center_file)
    service = CenterService(opts)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        service.start()
    except LedgerError as e:
        logging.critical("cannot start: %s", e)
        service.stop()
        return 2
    print(f"center: phone pages on {opts.public_url}", flush=True)
    problem = None
    while not stop.wait(1):
        problem = service.health()
        if problem:
            logging.critical("stopping: %s", problem)
            break
    service.stop()
    return 1 if problem else 0


def lan_address() -> str:
    """This machine's address on its LAN (the one a route to the outside would use); no packet is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def _service_parts(center_file: str):
    from center.service import options_from_center_file
    from center.store import Store
    opts = options_from_center_file(center_file)
    from center.service import seed
    store = Store(opts.db)
    seed(store, opts)
    return opts, store


def _cards(args) -> int:
    from center.service import staff_rows
    from center.store.tables import centers
    from center.web import cards, links
    opts, store = _service_parts(args.center_file)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = []
    with store.read() as conn:
        gen = conn.execute(centers.select().where(centers.c.center == opts.center)).first().code_gen
    windows = {w.id: w.name for w in opts.center_config.windows}
    url = links.hall_url(opts.public_url, links.sign_hall(opts.static_key_id, opts.static_key, opts.center, gen))
    hall = cards.hall_card(url, opts.center_name)
    (out / "hall.png").write_bytes(cards.png_bytes(hall))
    images.append(hall)
    for s in staff_rows(store, opts.center):
        if s.revoked:
            continue
        token = links.sign_staff(opts.static_key_id, opts.static_key, opts.center, s.staff_id, s.code_gen)
        card = cards.staff_card(links.staff_url(opts.public_url, token), s.name, s.number or "",
                                windows.get(s.window or "", s.window or ""), s.title or "", opts.center_name)
        (out / f"staff-{s.staff_id}.png").write_bytes(cards.png_bytes(card))
        images.append(card)
    (out / "cards.pdf").write_bytes(cards.pdf_bytes(images))
    store.close()
    print(f"wrote {len(images)} cards to {out} (PNG each, all in cards.pdf)")
    return 0


def _staff(args) -> int:
    from center.store.tables import staff
    opts, store = _service_parts(args.center_file)
    where = (staff.c.center == opts.center) & (staff.c.staff_id == args.id)
    values = {"revoked": 1} if args.action == "revoke" else {"revoked": 0, "code_gen": staff.c.code_gen + 1}
    with store.write() as conn:
        n = conn.execute(update(staff).where(where).values(updated=time.time(), **values)).rowcount
    store.close()
    if not n:
        print(f"no staff member {args.id} at {opts.center}", file=sys.stderr)
        return 1
    print(f"{args.id}: {'code revoked' if args.action == 'revoke' else 'new code issued; print a new card'}")
    return 0


def _hall(args) -> int:
    from center.store.tables import centers
    opts, store = _service_parts(args.center_file)
    with store.write() as conn:
        conn.execute(update(centers).where(centers.c.center == opts.center)
                     .values(code_gen=centers.c.code_gen + 1, updated=time.time()))
    store.close()
    print("new hall code issued; print a new card (`python -m center cards`)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["users"]:  # staff accounts of the console: python -m center users --help
        from center.accounts import users_main
        return users_main(argv[1:])
    if argv[:2] == ["city", "reconcile"]:  # stored vs receipted by the city, per day and device
        from center.city.reconcile import reconcile_main
        return reconcile_main(argv[2:])
    if argv[:1] == ["keys"]:  # API keys of case/queue systems and data users: python -m center keys --help
        from center.apikeys import keys_main
        return keys_main(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m center", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the center service")
    s.add_argument("--center-file")
    s.add_argument("--demo", action="store_true", help="the demo's settings: published demo QR key, no accounts")
    s.add_argument("--mqtt-port", type=int, default=1883)
    s.add_argument("--web-port", type=int, default=8090)
    s.add_argument("--data", default=".demo/center")
    s.add_argument("--lan", action="store_true", help="demo: listen on every address so a phone on the LAN "
                                                      "can open the pages")
    c = sub.add_parser("cards", help="printable staff and hall code cards")
    c.add_argument("--center-file", required=True)
    c.add_argument("--out", required=True)
    st = sub.add_parser("staff", help="revoke or restore a staff member's printed code")
    st.add_argument("--center-file", required=True)
    st.add_argument("action", choices=("revoke", "restore"))
    st.add_argument("id")
    h = sub.add_parser("hall", help="issue a new hall code")
    h.add_argument("--center-file", required=True)
    h.add_argument("action", choices=("renew",))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s center %(name)s %(levelname)s: %(message)s")
    if args.command == "serve" and not (args.demo or args.center_file):
        ap.error("serve needs --center-file (or --demo)")
    from provisioning.config import CenterConfigError
    try:
        return {"serve": _serve, "cards": _cards, "staff": _staff, "hall": _hall}[args.command](args)
    except (CenterConfigError, OSError, ValueError) as e:
        print(f"python -m center: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
