"""The center service as a center runs it: `python -m center serve --center-file` on the generated broker
(TLS, Dynamic Security, no anonymous access) with the ledger account's own ACL; the printable cards and
the staff code's revocation from the command line."""
from __future__ import annotations

import re

import httpx
import pytest

from center.__main__ import main as center_main
from center.ledger import query
from center.service import CenterService, options_from_center_file
from devkit import factories
from devkit.broker import free_port
from devkit.waiting import wait_for
from protocol import codec, qrtoken, topics
from tests.provisioning.conftest import start_site, stop_site
from tests.provisioning.helpers import CENTER
from tests.screenshots import screens_dir


@pytest.fixture
def served(tmp_path, pki):
    port = free_port()
    extra = (f'[web]\nport = {port}\nhttps = false\npublic_url = "http://127.0.0.1:{port}"\n'
             f'[sms]\ndelay_min = 0\nhours = "00:00-23:59"\n[ledger]\ndb = "center.db"\n')
    site = start_site(tmp_path / "center", pki, extra=extra)
    service = CenterService(options_from_center_file(site.cfg.path)).start()
    yield site, service
    service.stop()
    stop_site(site)


def test_the_center_service_works_within_the_ledger_accounts_acl(served):
    """It subscribes to records, bindings, cases, duty and the catalog (a refusal would stop it at start), and
    the broker accepts what it publishes: receipts, the case published `rated` (PUBACK < 0x80, else the
    notice would stay unsent)."""
    site, service = served
    cs = site.service("centersys")
    t = topics.Topics(CENTER, "W01", "+")
    for topic, body in ((t.catalog, factories.catalog(CENTER)), (t.duty, factories.duty(CENTER, "W01")),
                        (t.case, factories.case(CENTER, "W01", "SH1"))):
        assert cs.publish(topic, codec.encode(body), retain=True) < 0x80
    db = site.root / "center.db"
    wait_for(lambda: query(db, "SELECT state FROM cases WHERE case_id='SH1'") == [("open",)], what="case learned")
    token = qrtoken.sign(site.cfg.qr.key_id, site.cfg.qr_key(), center=CENTER, case="SH1", window="W01",
                         staff=factories.STAFF[0]["id"], device="rpi-1", ttl_s=600)
    r = httpx.post(f"{service.options.public_url}/r", data={"t": token, "level": "satisfied"})
    assert r.status_code == 303
    wait_for(lambda: query(db, "SELECT count(*) FROM notices WHERE sent_at IS NULL") == [(0,)],
             what="the broker accepted the notices")
    assert query(db, "SELECT count(*) FROM notices") == [(1,)] and service.notices.refused == 0


def test_printable_cards_and_a_revoked_staff_code(served, tmp_path):
    site, service = served
    assert center_main(["cards", "--center-file", str(site.cfg.path), "--out", str(tmp_path / "cards")]) == 0
    staff = [s for w in site.cfg.windows for s in w.staff]
    pngs = sorted(p.name for p in (tmp_path / "cards").glob("*.png"))
    assert pngs == sorted(["hall.png", *(f"staff-{s.id}.png" for s in staff)])
    pdf = (tmp_path / "cards" / "cards.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) == len(pngs)
    # One staff card and the hall card for the README (docs/screens with `make screens`, else a temp dir).
    (screens_dir() / "card-staff.png").write_bytes((tmp_path / "cards" / f"staff-{staff[0].id}.png").read_bytes())
    (screens_dir() / "card-hall.png").write_bytes((tmp_path / "cards" / "hall.png").read_bytes())
    from center.web import links
    key = (site.root / "secrets" / "static.key").read_text().strip()
    url = links.staff_url(service.options.public_url,
                          links.sign_staff(site.cfg.web.static_key_id, bytes.fromhex(key), CENTER, staff[0].id, 1))
    assert httpx.get(url).status_code == 200
    assert center_main(["staff", "--center-file", str(site.cfg.path), "revoke", staff[0].id]) == 0
    assert httpx.get(url).status_code == 404 and "二维码无效" in httpx.get(url).text


def test_a_token_signed_with_a_retired_qr_key_is_accepted_until_it_is_removed(tmp_path, pki):
    """Key rotation (docs/protocol.md §10): tokens already on screens keep working while `[qr] retired` lists
    their key; a key id the service does not hold is refused like any other invalid token."""
    from provisioning import config as center_config
    from tests.provisioning.helpers import write_center_file
    path = write_center_file(tmp_path, pki)
    (tmp_path / "secrets" / "qr-old.key").write_text("ab" * 32)
    text = path.read_text("utf-8").replace('key_file = "secrets/qr.key"',
                                           'key_file = "secrets/qr.key"\nretired = ["old=secrets/qr-old.key"]')
    path.write_text(text, "utf-8")
    keys = center_config.load(path).qr_keys()
    assert keys["old"] == bytes.fromhex("ab" * 32) and set(keys) == {"old", "t1"}
    token = qrtoken.sign("old", keys["old"], center=CENTER, case="SH1", window="W01", staff="S1", device="d",
                         ttl_s=60)
    assert qrtoken.verify(token, keys).case == "SH1"
    with pytest.raises(qrtoken.TokenError, match="unknown_key"):
        qrtoken.verify(token, {"t1": keys["t1"]})
    path.write_text(text.replace('retired = ["old=secrets/qr-old.key"]', 'retired = ["old"]'), "utf-8")
    with pytest.raises(center_config.CenterConfigError, match="qr.retired"):
        center_config.load(path)
