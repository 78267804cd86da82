"""Signed update bundles: made deterministically, verified before anything is trusted, hostile ones refused.

Hostile tars are signed with the trusted key on purpose: the unpacker must hold even against a bundle
whose signer was careless or compromised (nothing outside the staging directory, no device files, no
links out, no surprises the manifest does not list).
"""
from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

IMAGE_BUILD = Path(__file__).resolve().parents[2] / "image-build"
if str(IMAGE_BUILD) not in sys.path:
    sys.path.insert(0, str(IMAGE_BUILD))

from rtimage import bundle  # noqa: E402
from rtimage.bundle import BundleError  # noqa: E402

CREATED = "2026-11-30T12:00:00Z"


def make_release(d: Path, version: str = "0.2.0", schema: int = 1, extra: bytes = b"") -> Path:
    """A small release: release.json and a venv with an executable, a module, links and an empty dir."""
    (d / "venv/bin").mkdir(parents=True)
    (d / "venv/lib/python3.11/site-packages/ui").mkdir(parents=True)
    (d / "venv/include").mkdir()
    (d / "release.json").write_text(json.dumps({"version": version, "outbox_schema": schema, "built": CREATED}))
    py = d / "venv/bin/python"
    py.write_text("#!/bin/sh\necho hello\n")
    py.chmod(0o755)
    os.symlink("python", d / "venv/bin/python3")
    os.symlink("/usr/bin/python3.11", d / "venv/bin/python3.11")
    os.symlink("lib", d / "venv/lib64")
    (d / "venv/lib/python3.11/site-packages/ui/__init__.py").write_bytes(b"VERSION = %r\n" % version.encode() + extra)
    (d / "venv/pyvenv.cfg").write_text("home = /usr/bin\n")
    return d


@pytest.fixture
def keys(tmp_path):
    """(private key, trusted keys dir) of a fresh pair."""
    kd = tmp_path / "keys"
    kd.mkdir()
    bundle.make_key(tmp_path / "signer.key", kd / "signer.pub")
    return tmp_path / "signer.key", kd


@pytest.fixture
def made(tmp_path, keys):
    rel = make_release(tmp_path / "rel")
    out = tmp_path / "r.bundle"
    bundle.make(rel, keys[0], out)
    return rel, out


def tree(d: Path) -> dict[str, tuple]:
    """Every entry under d: file (content hash, exec bit), link target, or dir."""
    out = {}
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d).as_posix()
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir",)
        else:
            out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), bool(p.stat().st_mode & 0o100))
    return out


def test_make_verify_and_unpack_round_trip(tmp_path, made, keys):
    rel, out = made
    m = bundle.verify(out, keys[1])
    assert (m.version, m.outbox_schema, m.created) == ("0.2.0", 1, CREATED)
    assert "venv/bin/python" in m.files and m.links["venv/lib64"] == "lib" and "venv/include" in m.dirs
    with bundle.open_bundle(out, keys[1]) as opened:
        assert opened.signer == "signer.pub"
        opened.unpack(tmp_path / "staging")
    assert tree(tmp_path / "staging") == tree(rel)


def test_bundles_are_deterministic(tmp_path, made, keys):
    rel, out = made
    again = tmp_path / "again.bundle"
    bundle.make(rel, keys[0], again)
    assert again.read_bytes() == out.read_bytes()
    os.utime(rel / "venv/pyvenv.cfg", (1, 1))  # file times do not matter, contents do
    bundle.make(rel, keys[0], again)
    assert again.read_bytes() == out.read_bytes()
    (rel / "venv/pyvenv.cfg").write_text("home = /usr/local/bin\n")
    bundle.make(rel, keys[0], again)
    assert again.read_bytes() != out.read_bytes()


def test_command_line(tmp_path):
    cli = [sys.executable, str(IMAGE_BUILD / "rating-bundle")]
    run = lambda *a: subprocess.run(cli + [str(x) for x in a], capture_output=True, text=True, timeout=60)
    (tmp_path / "trusted").mkdir()
    assert run("make-key", tmp_path / "k/rel").returncode == 0
    os.replace(tmp_path / "k/rel.pub", tmp_path / "trusted/rel.pub")
    assert oct((tmp_path / "k/rel.key").stat().st_mode & 0o777) == "0o600"
    assert run("make-key", tmp_path / "k/rel").returncode == 1  # never overwrites a key
    rel = make_release(tmp_path / "rel", "0.3.1")
    r = run("make", rel, "--key", tmp_path / "k/rel.key", "-o", tmp_path / "b.bundle")
    assert r.returncode == 0 and "version 0.3.1" in r.stdout, r.stderr
    r = run("verify", tmp_path / "b.bundle", "--keys", tmp_path / "trusted")
    assert r.returncode == 0 and "good" in r.stdout
    data = bytearray((tmp_path / "b.bundle").read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / "b.bundle").write_bytes(bytes(data))
    r = run("verify", tmp_path / "b.bundle", "--keys", tmp_path / "trusted")
    assert r.returncode == 1 and "refused" in r.stderr


# ---- tampering and keys ---------------------------------------------------------------------------

def repack(src: Path, dst: Path, edit) -> None:
    """Decompress a bundle, let `edit(name, data) -> data` change members, write it back (same order)."""
    with tarfile.open(src, "r:xz") as tin, lzma.open(dst, "wb") as xz, tarfile.open(fileobj=xz, mode="w",
                                                                                     format=tarfile.PAX_FORMAT) as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isreg() else None
            if data is not None:
                data = edit(m.name, data)
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data) if data is not None else None)


def test_a_flipped_byte_in_the_compressed_file_is_refused(tmp_path, made, keys):
    data = bytearray(made[1].read_bytes())
    for at in (100, len(data) // 2, len(data) - 30):
        bad = bytearray(data)
        bad[at] ^= 0x40
        (tmp_path / "bad.bundle").write_bytes(bytes(bad))
        with pytest.raises(BundleError):
            bundle.verify(tmp_path / "bad.bundle", keys[1])


def test_a_changed_file_inside_is_refused_by_its_hash(tmp_path, made, keys):
    repack(made[1], tmp_path / "bad.bundle",
           lambda n, d: d.replace(b"hello", b"HELLO") if n == "release/venv/bin/python" else d)
    with pytest.raises(BundleError, match="venv/bin/python.*sha256.*tampered"):
        bundle.verify(tmp_path / "bad.bundle", keys[1])


def test_a_changed_manifest_is_refused_by_the_signature(tmp_path, made, keys):
    repack(made[1], tmp_path / "bad.bundle",
           lambda n, d: d.replace(b'"0.2.0"', b'"9.2.0"') if n == "bundle.json" else d)
    with pytest.raises(BundleError, match="signature does not match any trusted key"):
        bundle.verify(tmp_path / "bad.bundle", keys[1])


def test_wrong_key_no_key_and_key_rotation(tmp_path, made, keys):
    other = tmp_path / "other"
    other.mkdir()
    bundle.make_key(tmp_path / "other.key", other / "other.pub")
    with pytest.raises(BundleError, match=r"signature does not match any trusted key \(other.pub\)"):
        bundle.verify(made[1], other)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no trusted update key"):
        bundle.verify(made[1], tmp_path / "empty")
    (other / "junk.pub").write_text("not a key")
    (other / "signer.pub").write_bytes((keys[1] / "signer.pub").read_bytes())  # old and new key side by side
    assert bundle.verify(made[1], other).version == "0.2.0"


def test_not_a_bundle(tmp_path, keys):
    for name, data in (("empty", b""), ("text", b"hello"), ("xz-of-junk", lzma.compress(b"junk" * 100))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(BundleError):
            bundle.verify(tmp_path / name, keys[1])


def test_making_refuses_what_a_terminal_would_refuse(tmp_path, keys):
    rel = make_release(tmp_path / "rel")
    os.symlink("/etc/passwd", rel / "venv/passwd")
    with pytest.raises(BundleError, match="points outside the release"):
        bundle.make(rel, keys[0], tmp_path / "x.bundle")
    os.unlink(rel / "venv/passwd")
    os.mkfifo(rel / "venv/fifo")
    with pytest.raises(BundleError, match="not a file, directory or symlink"):
        bundle.make(rel, keys[0], tmp_path / "x.bundle")
    os.unlink(rel / "venv/fifo")
    (rel / "release.json").write_text('{"version": "../../x", "outbox_schema": 1}')
    with pytest.raises(BundleError, match="bad version"):
        bundle.make(rel, keys[0], tmp_path / "x.bundle")


# ---- hostile tars (signed: the unpacker must hold on its own) -----------------------------------------

def forge(path: Path, key: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], manifest: dict | None = None,
          files: dict | None = None) -> None:
    """A bundle with a signed manifest (default: one listing `files`) and arbitrary members after it."""
    priv = bundle.load_private(key)
    if manifest is None:
        files = files or {}
        manifest = {"format": 1, "version": "0.2.0", "outbox_schema": 1, "created": CREATED,
                    "dirs": [], "links": {}, "size": sum(len(d) for d in files.values()),
                    "files": {p: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d), "mode": "0o644"}
                              for p, d in files.items()}}
    doc = json.dumps(manifest).encode()
    with lzma.open(path, "wb") as xz, tarfile.open(fileobj=xz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("bundle.json", doc), ("bundle.json.sig", priv.sign(doc))):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)


def member(name: str, kind=tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode = kind, link, 0o644
    return ti


RJ = json.dumps({"version": "0.2.0", "outbox_schema": 1}).encode()
BASE = [(member("release", tarfile.DIRTYPE), None), (member("release/release.json"), RJ)]

HOSTILE = {
    "dotdot": ([(member("release/../evil"), b"x")], {"release.json": RJ}, "'..'"),
    "absolute": ([(member("/tmp/evil-abs"), b"x")], {"release.json": RJ}, "outside release/"),
    "outside prefix": ([(member("evil"), b"x")], {"release.json": RJ}, "outside release/"),
    "unlisted file": ([(member("release/extra"), b"x")], {"release.json": RJ}, "not in bundle.json"),
    "listed file missing": ([], {"release.json": RJ, "missing": b"x"}, "lacks 1 listed"),
    "hard link": ([(member("release/h", tarfile.LNKTYPE, "release/release.json"), None)], {"release.json": RJ},
                  "hard link"),
    "char device": ([(member("release/null", tarfile.CHRTYPE), None)], {"release.json": RJ}, "character device"),
    "block device": ([(member("release/sda", tarfile.BLKTYPE), None)], {"release.json": RJ}, "block device"),
    "fifo": ([(member("release/p", tarfile.FIFOTYPE), None)], {"release.json": RJ}, "FIFO"),
    "unlisted link out": ([(member("release/l", tarfile.SYMTYPE, "/etc"), None)], {"release.json": RJ},
                          "not in bundle.json"),
    "twice": ([(member("release/release.json"), RJ)], {"release.json": RJ}, "appears twice"),
    "size lie": ([(member("release/a"), b"xx")], {"release.json": RJ, "a": b"x"}, "bytes, bundle.json says"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tars_are_refused_and_nothing_lands_outside_staging(tmp_path, keys, case):
    extra, files, why = HOSTILE[case]
    members = BASE + extra if case != "twice" else BASE + extra
    if case == "listed file missing":
        members = BASE
    forge(tmp_path / "h.bundle", keys[0], members, files=files)
    before = set(os.listdir(tmp_path))
    with pytest.raises(BundleError) as e:
        with bundle.open_bundle(tmp_path / "h.bundle", keys[1]) as opened:
            opened.unpack(tmp_path / "staging")
    assert why in str(e.value)
    assert set(os.listdir(tmp_path)) - before <= {"staging"}
    assert not Path("/tmp/evil-abs").exists()


def test_a_listed_directory_replaced_by_a_link_is_never_written_through(tmp_path, keys):
    outside = tmp_path / "outside"
    outside.mkdir()
    manifest = {"format": 1, "version": "0.2.0", "outbox_schema": 1, "created": CREATED, "dirs": ["d"],
                "links": {"l": "d"}, "size": len(RJ) + 1,
                "files": {"release.json": {"sha256": hashlib.sha256(RJ).hexdigest(), "size": len(RJ), "mode": "0o644"},
                          "d/x": {"sha256": hashlib.sha256(b"x").hexdigest(), "size": 1, "mode": "0o644"}}}
    # the tar says d is a link to the outside; the manifest says d is a directory
    forge(tmp_path / "h.bundle", keys[0], BASE + [(member("release/d", tarfile.SYMTYPE, str(outside)), None),
                                                 (member("release/d/x"), b"x")], manifest=manifest)
    with pytest.raises(BundleError, match="link 'd'"):
        with bundle.open_bundle(tmp_path / "h.bundle", keys[1]) as opened:
            opened.unpack(tmp_path / "staging")
    assert list(outside.iterdir()) == []


def test_manifest_limits(tmp_path, keys):
    big = {"format": 1, "version": "0.2.0", "outbox_schema": 1, "created": CREATED, "dirs": [], "links": {},
           "size": bundle.MAX_FILE + 1,
           "files": {"release.json": {"sha256": "0" * 64, "size": bundle.MAX_FILE + 1, "mode": "0o644"}}}
    with pytest.raises(BundleError, match="size"):
        bundle.parse_manifest(json.dumps(big).encode())
    setuid = dict(big, size=1, files={"release.json": {"sha256": "0" * 64, "size": 1, "mode": "0o4755"}})
    with pytest.raises(BundleError, match="mode"):
        bundle.parse_manifest(json.dumps(setuid).encode())
    with pytest.raises(BundleError, match="larger than"):
        bundle.parse_manifest(b" " * (bundle.MAX_MANIFEST + 1))


# ---- parsers under hypothesis ------------------------------------------------------------------------

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                           max_leaves=10)
parts = st.sampled_from(["release.json", "venv", "..", ".", "", "a", "b/c", "/", "\x00", "ü", "x" * 300])
paths = st.lists(parts, min_size=1, max_size=4).map("/".join)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_parse_manifest_accepts_or_refuses_cleanly(data):
    try:
        bundle.parse_manifest(data)
    except BundleError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({
    "format": st.sampled_from([1, 2, "1"]), "version": st.sampled_from(["0.2.0", "1.2", "x", "", "0.2.0/.."]),
    "outbox_schema": st.sampled_from([1, 0, -1, True, 2**40]), "created": st.sampled_from([CREATED, 5]),
    "dirs": st.lists(paths, max_size=3), "links": st.dictionaries(paths, paths, max_size=2),
    "files": st.dictionaries(paths, st.fixed_dictionaries({
        "sha256": st.sampled_from(["0" * 64, "g" * 64, ""]), "size": st.integers(-1, 5),
        "mode": st.sampled_from(["0o644", "0o755", "0o777", 420])}), max_size=3),
    "size": st.integers(-1, 10)}))
def test_parsed_manifests_hold_only_safe_paths(doc):
    try:
        m = bundle.parse_manifest(json.dumps(doc).encode())
    except BundleError:
        return
    for p in list(m.files) + list(m.dirs) + list(m.links):
        assert not p.startswith("/") and ".." not in p.split("/") and "\x00" not in p
    for p, t in m.links.items():
        resolved = os.path.normpath(os.path.join("/r", os.path.dirname(p), t))
        assert resolved.startswith("/r") or bundle.ABSOLUTE_LINK_RE.match(t)


kinds = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                         tarfile.FIFOTYPE])
names = st.lists(st.sampled_from(["release", "a", "..", "b", "release.json", ".", "/"]), min_size=1, max_size=4) \
    .map("/".join)
targets = st.sampled_from(["a", "../a", "../../x", "/etc", "/usr/bin/python3", "b/../..", "."])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(names, kinds, targets, st.binary(max_size=4)), max_size=6), st.booleans())
def test_any_signed_tar_is_unpacked_inside_staging_or_refused(tmp_path_factory, keys, entries, list_them):
    tmp = tmp_path_factory.mktemp("h")
    members, files, dirs, links = list(BASE), {"release.json": RJ}, [], {}
    for name, kind, target, data in entries:
        members.append((member(name, kind, target), data if kind == tarfile.REGTYPE else None))
        if list_them and name.startswith("release/"):  # a manifest that agrees, where a manifest can
            rel = name[len("release/"):]
            if kind == tarfile.REGTYPE:
                files[rel] = data
            elif kind == tarfile.DIRTYPE:
                dirs.append(rel)
            elif kind == tarfile.SYMTYPE:
                links[rel] = target
    manifest = {"format": 1, "version": "0.2.0", "outbox_schema": 1, "created": CREATED, "dirs": dirs,
                "links": links, "size": sum(len(d) for d in files.values()),
                "files": {p: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d), "mode": "0o644"}
                          for p, d in files.items()}}
    forge(tmp / "h.bundle", keys[0], members, manifest=manifest)
    staging = tmp / "box" / "staging"
    staging.parent.mkdir()
    try:
        with bundle.open_bundle(tmp / "h.bundle", keys[1]) as opened:
            opened.unpack(staging)
    except BundleError:
        pass
    assert os.listdir(staging.parent) in ([], ["staging"])
    assert sorted(os.listdir(tmp)) == ["box", "h.bundle"]
    for p in staging.rglob("*") if staging.exists() else []:
        assert not (p.is_file() or p.is_dir()) or p.is_symlink() or p.resolve().is_relative_to(staging.resolve())
        assert p.is_symlink() or p.is_dir() or p.is_file()  # no devices or FIFOs


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_check_path_keeps_paths_inside(path):
    try:
        bundle.check_path(path)
    except BundleError:
        return
    assert os.path.normpath(os.path.join("/r", path)).startswith("/r/")


# ---- links through links -----------------------------------------------------------------------------

def links_manifest(links: dict[str, str], dirs=("a",)) -> bytes:
    return json.dumps({"format": 1, "version": "0.2.0", "outbox_schema": 1, "created": CREATED,
                       "dirs": list(dirs), "links": links, "size": len(RJ),
                       "files": {"release.json": {"sha256": hashlib.sha256(RJ).hexdigest(), "size": len(RJ),
                                                  "mode": "0o644"}}}).encode()


@pytest.mark.parametrize("links", [
    {"d": ".", "e": "d/d/../.."},                          # fine by its letters, the release's parent on disk
    {"d": ".", "e": "d/d/d/d/d/d/../../../../../../etc/passwd"},
    {"a/up": "..", "x": "a/up/a/up/../.."},
    {"py": "/usr/bin/python3", "e": "py/../../etc"},     # through the one absolute link allowed
    {"l1": "l2", "l2": "l1"},                              # a loop
])
def test_a_link_through_the_releases_own_links_cannot_leave_it(links):
    with pytest.raises(BundleError, match="outside the release|through the system|links deep"):
        bundle.parse_manifest(links_manifest(links))


def test_a_venvs_links_still_pass():
    m = bundle.parse_manifest(links_manifest({"a/python": "python3", "a/python3": "/usr/bin/python3",
                                              "a/python3.11": "python3", "lib64": "a", "b": "lib64/python"}))
    assert len(m.links) == 5


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["d", "e", "f", "a/g", "a/h"]),
                       st.sampled_from([".", "..", "d", "e/..", "d/d/..", "a", "a/g/..", "../a", "g/../..", "f/f",
                                        "/usr/bin/python3", "e/..", "d/../d/e", "h/.."]), max_size=5))
def test_accepted_links_resolve_inside_the_release_on_disk(tmp_path_factory, links):
    try:
        bundle.parse_manifest(links_manifest(links))
    except BundleError:
        return
    box = tmp_path_factory.mktemp("links")
    rel = box / "releases" / "0.2.0"
    (rel / "a").mkdir(parents=True)
    for p, t in links.items():
        os.symlink(t, rel / p)
    python = os.path.realpath("/usr/bin/python3")
    for p in links:
        real = os.path.realpath(rel / p)
        assert real == python or Path(real).is_relative_to(rel.resolve()), (p, links, real)


def test_a_huge_extended_header_is_refused_before_it_is_read(tmp_path, keys, made):
    """A pax header is read whole into memory before anything is checked: 8 MiB of it (a few kB of xz) is
    refused unread (gigabytes would be as cheap to send)."""
    priv = bundle.load_private(keys[0])
    doc = json.dumps({"format": 1}).encode()
    path = tmp_path / "pax.bundle"
    with lzma.open(path, "wb") as xz, tarfile.open(fileobj=xz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ti = tarfile.TarInfo("bundle.json")
        ti.size, ti.pax_headers = len(doc), {"comment": "x" * (8 << 20)}
        tar.addfile(ti, io.BytesIO(doc))
        sig = priv.sign(doc)
        ti = tarfile.TarInfo("bundle.json.sig")
        ti.size = len(sig)
        tar.addfile(ti, io.BytesIO(sig))
    assert path.stat().st_size < 64 << 10
    with pytest.raises(BundleError, match="extended header of"):
        bundle.open_bundle(path, keys[1])
    assert bundle.verify(made[1], keys[1]).version == "0.2.0"  # ordinary bundles (pax too) still pass
