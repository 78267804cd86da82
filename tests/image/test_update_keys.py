"""`image-build/build --update-key FILE.pub`: the keys the card's updater trusts go in at build time."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

IMAGE_BUILD = Path(__file__).resolve().parents[2] / "image-build"
if str(IMAGE_BUILD) not in sys.path:
    sys.path.insert(0, str(IMAGE_BUILD))

from rtimage import bundle, debian  # noqa: E402
from rtimage.update import Paths  # noqa: E402


def test_keys_land_where_the_updater_reads_them_and_replace_older_ones(tmp_path):
    bundle.make_key(tmp_path / "release-2026.key", tmp_path / "release-2026.pub")
    bundle.make_key(tmp_path / "spare.key", tmp_path / "spare.pub")
    root = tmp_path / "root"
    stale = root / "etc/rating-terminal/update-keys/old.pub"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier build")
    names = debian.install_update_keys(root, [tmp_path / "release-2026.pub", tmp_path / "spare.pub"])
    assert names == ["release-2026.pub", "spare.pub"]
    keys_dir = Paths(root).keys
    assert sorted(p.name for p in keys_dir.iterdir()) == names, "exactly this build's keys"
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in keys_dir.iterdir())
    assert [n for n, _ in bundle.trusted_keys(keys_dir)] == names


def test_no_key_leaves_an_empty_directory_and_the_updater_refuses(tmp_path):
    root = tmp_path / "root"
    assert debian.install_update_keys(root, []) == []
    with pytest.raises(bundle.BundleError, match="no trusted update key"):
        bundle.trusted_keys(Paths(root).keys)


def test_a_private_key_is_refused_before_anything_is_written(tmp_path):
    bundle.make_key(tmp_path / "k.key", tmp_path / "k.pub")
    with pytest.raises(ValueError, match="a private key — give the public one"):
        debian.install_update_keys(tmp_path / "root", [tmp_path / "k.key"])
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("content, words", [
    (None, "cannot read the update key"),
    (b"hello", "not a public key in PEM"),
    ("rsa", "not an Ed25519 key (RSAPublicKey)"),
])
def test_what_is_not_an_ed25519_public_key_is_named(tmp_path, content, words):
    key = tmp_path / "bad.pub"
    if content == "rsa":
        pub = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        key.write_bytes(pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    elif content is not None:
        key.write_bytes(content)
    with pytest.raises(ValueError) as e:
        debian.check_update_keys([key])
    assert str(e.value).startswith(f"{key}: ") and words in str(e.value)


def test_two_keys_of_one_name_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    bundle.make_key(tmp_path / "a/k.key", tmp_path / "a/k.pub")
    bundle.make_key(tmp_path / "b/k.key", tmp_path / "b/k.pub")
    with pytest.raises(ValueError, match="two keys named k.pub"):
        debian.check_update_keys([tmp_path / "a/k.pub", tmp_path / "b/k.pub"])
