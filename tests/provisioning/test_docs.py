"""The documents a center operator and an integrator read agree with the code."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.codec import KINDS
from provisioning import acl

ROOT = Path(__file__).resolve().parents[2]
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
_PATH = re.compile(r"`((?:\.\./|\./)?[\w./-]+\.(?:md|py|toml|conf|json))`")


@pytest.mark.parametrize("doc", ["image-build/README.md", "provisioning/README.md", "protocol/golden/README.md"])
def test_a_document_refers_only_to_files_in_this_repository(doc):
    path = ROOT / doc
    text = path.read_text("utf-8")
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # a web address, not a file
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(ROOT) and resolved.exists(), f"{doc}: link {target}"
    for target in _PATH.findall(text):
        if target.startswith(("../", "./")):
            resolved = (path.parent / target).resolve()
            assert resolved.is_relative_to(ROOT) and resolved.exists(), f"{doc}: path {target}"


def test_provisioning_readme_gives_the_ledgers_real_options_and_every_service_account():
    """(The ledger alone: `python -m center serve` runs it within the center service.)"""
    text = (ROOT / "provisioning" / "README.md").read_text("utf-8")
    helptext = subprocess.run([sys.executable, "-m", "center.ledger", "--help"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout
    for option in ("--center-file", "--username", "--password-file"):
        assert option in helptext and option in text, option
    assert "no password option" not in text
    for account in acl.SERVICE_ROLES:
        assert re.search(rf"^\| `{account}` \|", text, re.M), f"{account} is not in the service accounts table"


def test_the_golden_readme_counts_the_kinds_right():
    text = (ROOT / "protocol" / "golden" / "README.md").read_text("utf-8")
    words = {8: "eight", 12: "twelve"}
    assert f"one of the {words[len(KINDS)]}" in text
