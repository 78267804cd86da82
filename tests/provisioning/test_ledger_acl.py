"""The ledger on the generated center broker (Dynamic Security): its role lets it read what it checks
ratings against, and a subscription the broker refuses stops it with a clear error."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from center.ledger import Ledger, LedgerError, query
from devkit.waiting import wait_for
from protocol import codec, topics
from tests.provisioning.helpers import CENTER

ROOT = Path(__file__).resolve().parents[2]


def test_a_refused_subscription_is_a_fatal_clearly_worded_error(site, tmp_path):
    """Without --center the ledger asks for every center's records; its role allows its own: SUBACK 0x87."""
    with pytest.raises(LedgerError, match=r"refused the ledger's subscription to hcp/v1/\+/device/\+/rating"):
        Ledger(tmp_path / "l.db", port=site.local_port, client_id="ledger-C1", username="ledger",
               password=site.password("ledger")).start()
    pw = tmp_path / "pw"
    pw.write_text(site.password("ledger"))
    proc = subprocess.run([sys.executable, "-m", "center.ledger", "--port", str(site.local_port), "--db",
                           str(tmp_path / "l2.db"), "--username", "ledger", "--password-file", str(pw)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "cannot start: the broker at" in proc.stderr and "refused the ledger's subscription" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_ledger_role_reads_bindings_and_cases(site, center_ledger):
    """What provisioning and the case system publish reaches the ledger through its own account."""
    binding = {"v": 1, "type": "binding", "center": CENTER, "device": "t9", "state": "active", "window": "W07"}
    case = {"v": 1, "type": "case", "center": CENTER, "window": "W07", "state": "closed", "case": {"id": "SH9"}}
    prov = site.service("provisioning")
    cs = site.service("centersys")
    try:
        assert prov.publish(f"{topics.PREFIX}/{CENTER}/device/t9/binding", codec.encode(binding), retain=True) == 0
        assert cs.publish(f"{topics.PREFIX}/{CENTER}/window/W07/case", codec.encode(case), retain=True) == 0
        db = center_ledger.db_path
        wait_for(lambda: query(db, "SELECT window FROM bindings WHERE device='t9'") == [("W07",)], what="binding")
        wait_for(lambda: query(db, "SELECT window FROM cases WHERE case_id='SH9'") == [("W07",)], what="case")
    finally:
        prov.close()
        cs.close()
