"""Signed update bundles: make one from a release directory, verify and unpack one on the terminal.

A bundle is an xz-compressed tar, written deterministically (sorted, owner 0, fixed times), whose first
member is `bundle.json` (version, outbox schema, created, every file's sha256, size and mode, every
directory and symlink) and whose second is `bundle.json.sig`, a detached Ed25519 signature over those
exact bytes. The release itself follows under `release/`.

Reading is one streaming pass that trusts nothing before the signature: the signature is checked
against the trusted keys first, then each member against the signed manifest (path, type, size, hash)
as it is written into a staging directory that the caller removes on any failure. Nothing is ever
written through a symlink or outside the staging directory.

Runs on the terminal under the system python3 (stdlib + python3-cryptography), so it imports nothing
from the release it installs.
"""
from __future__ import annotations

import calendar
import hashlib
import io
import json
import lzma
import os
import re
import stat
import tarfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Iterable

FORMAT = 1
MANIFEST, SIGNATURE, PREFIX = "bundle.json", "bundle.json.sig", "release"
MAX_MANIFEST = 32 << 20       # bytes of bundle.json
MAX_FILE = 512 << 20          # one file
MAX_TOTAL = 2 << 30           # the whole release, unpacked
MAX_ENTRIES = 200_000         # files + directories + links
MAX_PATH = 1024               # characters of one path
VERSION_RE = re.compile(r"^\d{1,6}(\.\d{1,6}){1,3}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# A venv's bin/python points at the image's interpreter: the one absolute link target allowed.
ABSOLUTE_LINK_RE = re.compile(r"^/usr/bin/python3(\.\d+)?$")
CHUNK = 1 << 20


MAX_HEADER = 64 << 10         # bytes of one pax/GNU extended header (our paths are at most MAX_PATH)


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads an extended header whole into memory, before any member (or the signature) is
    checked: a few kB of xz can carry gigabytes of pax header. Refuse big ones unread."""

    def _proc_member(self, tar):
        if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                         tarfile.GNUTYPE_LONGLINK) and self.size > MAX_HEADER:
            raise tarfile.HeaderError(f"an extended header of {self.size} bytes (limit {MAX_HEADER})")
        return super()._proc_member(tar)


class BundleError(Exception):
    """The bundle was refused; the message says why (and names the member or key file at fault)."""


@dataclass(frozen=True)
class Manifest:
    version: str
    outbox_schema: int
    created: str
    files: dict[str, tuple[str, int, int]]   # path -> (sha256, size, mode)
    dirs: tuple[str, ...]
    links: dict[str, str]                    # path -> target
    size: int

    def disk_bytes(self, block: int = 4096) -> int:
        """A generous estimate of the blocks the unpacked release takes: every file rounded up to a
        block, a block per directory and per link (many tiny files cost far more than their sizes)."""
        return sum(-(-s // block) * block for _, s, _ in self.files.values()) \
            + block * (len(self.dirs) + len(self.links) + 1)

    @property
    def entries(self) -> int:
        return len(self.files) + len(self.dirs) + len(self.links) + 1

    def to_json(self) -> bytes:
        doc = {"format": FORMAT, "version": self.version, "outbox_schema": self.outbox_schema,
               "created": self.created, "size": self.size, "dirs": list(self.dirs),
               "files": {p: {"sha256": h, "size": s, "mode": oct(m)} for p, (h, s, m) in sorted(self.files.items())},
               "links": dict(sorted(self.links.items()))}
        return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False).encode() + b"\n"


# ---- versions and paths -----------------------------------------------------------------------

def version_key(version: str) -> tuple[int, ...]:
    """`0.10.2` -> (0, 10, 2, 0): numeric, so 0.10 > 0.9. Raises BundleError for anything else."""
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise BundleError(f"bad version {version!r}: expected numbers separated by dots, like 0.2.0")
    parts = tuple(int(p) for p in version.split("."))
    return parts + (0,) * (4 - len(parts))


def check_path(path: str) -> str:
    """A relative path inside the release: no absolute path, `..`, `.`, empty part, NUL or control char."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise BundleError(f"bad path {path!r}: empty or longer than {MAX_PATH}")
    if any(ord(c) < 32 or c == "\x7f" for c in path):
        raise BundleError(f"bad path {path!r}: control character")
    if path.startswith("/"):
        raise BundleError(f"bad path {path!r}: absolute")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise BundleError(f"bad path {path!r}: empty, '.' or '..' component")
    return path


def check_link(path: str, target: str) -> str:
    """A symlink must resolve inside the release (or be a venv's link to the system python3)."""
    if not isinstance(target, str) or not target or len(target) > MAX_PATH or "\x00" in target:
        raise BundleError(f"bad link {path!r} -> {target!r}")
    if target.startswith("/"):
        if ABSOLUTE_LINK_RE.match(target):
            return target
        raise BundleError(f"link {path!r} -> {target!r} points outside the release")
    depth = len(PurePosixPath(path).parts) - 1
    for part in target.split("/"):
        if part == "..":
            depth -= 1
        elif part not in ("", "."):
            depth += 1
        if depth < 0:
            raise BundleError(f"link {path!r} -> {target!r} points outside the release")
    return target


MAX_HOPS = 40  # as the kernel's ELOOP limit


def resolve_link(start: list[str], target: str, links: dict[str, str], name: str, hops: int = 0) -> list[str]:
    """Resolve `target` from the directory `start` through the release's own links, as the kernel would.

    `check_link` counts `..` by the letters of one target; this follows the links a target passes
    through, so `d -> .` then `e -> d/d/../..` (fine by the letters, the parent of the release on disk)
    is refused. The venv's absolute link to the system python3 may only end a path."""
    stack = list(start)
    parts = target.split("/")
    for i, part in enumerate(parts):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                raise BundleError(f"link {name!r} -> {links[name]!r} resolves outside the release")
            stack.pop()
            continue
        stack.append(part)
        via = links.get("/".join(stack))
        if via is None:
            continue
        hops += 1
        if hops > MAX_HOPS:
            raise BundleError(f"link {name!r}: more than {MAX_HOPS} links deep (a loop?)")
        if via.startswith("/"):
            if any(p not in ("", ".") for p in parts[i + 1:]):
                raise BundleError(f"link {name!r} -> {links[name]!r} goes through the system's {via}")
            return ["/"]
        stack = resolve_link(stack[:-1], via, links, name, hops)
        if stack == ["/"] and any(p not in ("", ".") for p in parts[i + 1:]):
            raise BundleError(f"link {name!r} -> {links[name]!r} goes through the system's python")
    return stack


def parse_manifest(data: bytes) -> Manifest:
    """bundle.json (already signature-checked) -> Manifest; BundleError on anything unexpected."""
    if len(data) > MAX_MANIFEST:
        raise BundleError(f"{MANIFEST} larger than {MAX_MANIFEST} bytes")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BundleError(f"{MANIFEST} is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise BundleError(f"{MANIFEST} is not an object")
    if doc.get("format") != FORMAT:
        raise BundleError(f"{MANIFEST}: format {doc.get('format')!r} is not {FORMAT}")
    version = doc.get("version")
    version_key(version)
    schema, created, size = doc.get("outbox_schema"), doc.get("created"), doc.get("size")
    if type(schema) is not int or not 1 <= schema <= 10_000:
        raise BundleError(f"{MANIFEST}: bad outbox_schema {schema!r}")
    if not isinstance(created, str) or len(created) > 64:
        raise BundleError(f"{MANIFEST}: bad created {created!r}")
    files_doc, dirs_doc, links_doc = doc.get("files"), doc.get("dirs"), doc.get("links")
    if not isinstance(files_doc, dict) or not isinstance(dirs_doc, list) or not isinstance(links_doc, dict):
        raise BundleError(f"{MANIFEST}: files, dirs and links must be an object, a list and an object")
    if len(files_doc) + len(dirs_doc) + len(links_doc) > MAX_ENTRIES:
        raise BundleError(f"{MANIFEST}: more than {MAX_ENTRIES} entries")
    files: dict[str, tuple[str, int, int]] = {}
    for path, entry in files_doc.items():
        check_path(path)
        if not isinstance(entry, dict) or set(entry) != {"sha256", "size", "mode"}:
            raise BundleError(f"{MANIFEST}: file {path!r} needs exactly sha256, size, mode")
        digest, fsize, mode = entry["sha256"], entry["size"], entry["mode"]
        if not isinstance(digest, str) or not SHA256_RE.match(digest):
            raise BundleError(f"{MANIFEST}: file {path!r} has a bad sha256")
        if type(fsize) is not int or not 0 <= fsize <= MAX_FILE:
            raise BundleError(f"{MANIFEST}: file {path!r} size {fsize!r} not in 0..{MAX_FILE}")
        if mode not in ("0o644", "0o755"):
            raise BundleError(f"{MANIFEST}: file {path!r} mode {mode!r} is not 0o644 or 0o755")
        files[path] = (digest, fsize, int(mode, 8))
    dirs = []
    for path in dirs_doc:
        dirs.append(check_path(path))
    links = {check_path(p): check_link(p, t) for p, t in links_doc.items()}
    for path, target in links.items():
        if not target.startswith("/"):
            resolve_link(path.split("/")[:-1], target, links, path)
    names = list(files) + dirs + list(links)
    if len(set(names)) != len(names):
        raise BundleError(f"{MANIFEST}: a path is listed twice")
    total = sum(s for _, s, _ in files.values())
    if type(size) is not int or size != total or total > MAX_TOTAL:
        raise BundleError(f"{MANIFEST}: size {size!r} is not the files' total {total} (limit {MAX_TOTAL})")
    known = set(dirs)
    for path in names:
        parent = path.rpartition("/")[0]
        if parent and parent not in known:
            raise BundleError(f"{MANIFEST}: {path!r} is not inside a listed directory")
    if "release.json" not in files:
        raise BundleError(f"{MANIFEST}: the release has no release.json")
    return Manifest(version, schema, created, files, tuple(dirs), links, total)


# ---- keys ---------------------------------------------------------------------------------------

def make_key(private: Path, public: Path) -> None:
    """A new Ed25519 key pair: PKCS8 PEM private key (0600) and SubjectPublicKeyInfo PEM public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    for path in (private, public):
        if path.exists():
            raise BundleError(f"{path} exists; not overwriting a key")
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))


def load_private(path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise BundleError(f"cannot read private key {path}: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path} is not an Ed25519 private key")
    return key


def trusted_keys(keys_dir: Path) -> list[tuple[str, object]]:
    """Every `*.pub` (PEM Ed25519 public key) in the directory, by file name; BundleError if none."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys, bad = [], []
    for path in sorted(Path(keys_dir).glob("*.pub")):
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as e:
            bad.append(f"{path.name}: {e}")
            continue
        if isinstance(key, Ed25519PublicKey):
            keys.append((path.name, key))
        else:
            bad.append(f"{path.name}: not an Ed25519 key")
    if not keys:
        raise BundleError(f"no trusted update key (*.pub, Ed25519 PEM) in {keys_dir}"
                          + (f" ({'; '.join(bad)})" if bad else ""))
    return keys


def check_signature(manifest: bytes, signature: bytes, keys: Iterable[tuple[str, object]]) -> str:
    """The name of the trusted key that signed `manifest`; BundleError if none did."""
    from cryptography.exceptions import InvalidSignature

    names = []
    for name, key in keys:
        names.append(name)
        try:
            key.verify(signature, manifest)
            return name
        except InvalidSignature:
            continue
    raise BundleError(f"signature does not match any trusted key ({', '.join(names)}): "
                      f"tampered bundle or unknown signer")


# ---- making ------------------------------------------------------------------------------------

def scan_release(release: Path, created: str) -> Manifest:
    """Walk a release directory (release.json + venv/) into a manifest; refuses what a bundle cannot hold."""
    release = Path(release)
    info = read_release_json(release / "release.json")
    files: dict[str, tuple[str, int, int]] = {}
    dirs: list[str] = []
    links: dict[str, str] = {}
    for top, dnames, fnames in os.walk(release):
        dnames.sort()
        rel_top = Path(top).relative_to(release).as_posix()
        for name in sorted(dnames + fnames):
            full = Path(top) / name
            rel = check_path(name if rel_top == "." else f"{rel_top}/{name}")
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                links[rel] = check_link(rel, os.readlink(full))
                if name in dnames:
                    dnames.remove(name)  # os.walk does not follow it anyway; be explicit
            elif stat.S_ISDIR(st.st_mode):
                dirs.append(rel)
            elif stat.S_ISREG(st.st_mode):
                if st.st_size > MAX_FILE:
                    raise BundleError(f"{full} is larger than {MAX_FILE} bytes")
                files[rel] = (_sha256_file(full), st.st_size, 0o755 if st.st_mode & 0o111 else 0o644)
            else:
                raise BundleError(f"{full}: not a file, directory or symlink")
    total = sum(s for _, s, _ in files.values())
    manifest = Manifest(info["version"], info["outbox_schema"], created, files, tuple(dirs), links, total)
    return parse_manifest(manifest.to_json())  # the maker checks exactly what the terminal will check


def make(release: Path, key_path: Path, out: Path, created: str | None = None) -> Manifest:
    """Write a signed bundle of `release` to `out` (deterministic: same release and `created`, same bytes).

    `created` defaults to release.json's "built", else SOURCE_DATE_EPOCH, else now (UTC, ISO 8601).
    """
    release = Path(release)
    key = load_private(Path(key_path))
    if created is None:
        info = read_release_json(release / "release.json")
        created = info.get("built") or _epoch_iso(os.environ.get("SOURCE_DATE_EPOCH")) or _epoch_iso(time.time())
    manifest = scan_release(release, created)
    doc = manifest.to_json()
    sig = key.sign(doc)
    mtime = _mtime(created)
    tmp = Path(str(out) + ".tmp")
    with open(tmp, "wb") as raw, lzma.open(raw, "wb", preset=6) as xz, \
            tarfile.open(fileobj=xz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((MANIFEST, doc), (SIGNATURE, sig)):
            tar.addfile(_info(name, tarfile.REGTYPE, 0o644, mtime, len(data)), io.BytesIO(data))
        tar.addfile(_info(PREFIX, tarfile.DIRTYPE, 0o755, mtime))
        for path in sorted(list(manifest.files) + list(manifest.dirs) + list(manifest.links)):
            name = f"{PREFIX}/{path}"
            if path in manifest.dirs:
                tar.addfile(_info(name, tarfile.DIRTYPE, 0o755, mtime))
            elif path in manifest.links:
                ti = _info(name, tarfile.SYMTYPE, 0o777, mtime)
                ti.linkname = manifest.links[path]
                tar.addfile(ti)
            else:
                _, size, mode = manifest.files[path]
                with open(release / path, "rb") as f:
                    tar.addfile(_info(name, tarfile.REGTYPE, mode, mtime, size), f)
    os.replace(tmp, out)
    return manifest


def _info(name: str, kind: bytes, mode: int, mtime: int, size: int = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime, ti.size = kind, mode, mtime, size
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def _epoch_iso(epoch) -> str:
    if epoch in (None, ""):
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(float(epoch))))


def _mtime(created: str) -> int:
    try:
        return calendar.timegm(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, OverflowError):
        return 0


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def read_release_json(path: Path) -> dict:
    """release.json: {"version", "outbox_schema", "built"}; BundleError naming the file when wrong."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleError(f"cannot read {path}: {e}") from None
    if not isinstance(doc, dict):
        raise BundleError(f"{path}: not a JSON object")
    try:
        version_key(doc.get("version"))
    except BundleError as e:
        raise BundleError(f"{path}: {e}") from None
    if type(doc.get("outbox_schema")) is not int or doc["outbox_schema"] < 1:
        raise BundleError(f"{path}: outbox_schema must be a positive integer")
    return doc


# ---- reading -----------------------------------------------------------------------------------

@dataclass
class Opened:
    """A bundle whose signature checked out: the manifest, and the stream positioned at the release."""
    manifest: Manifest
    signer: str
    _tar: tarfile.TarFile = field(repr=False)
    _raw: IO[bytes] = field(repr=False)

    def close(self) -> None:
        self._tar.close()
        self._raw.close()

    def __enter__(self) -> "Opened":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def unpack(self, dest: Path | None) -> None:
        """Check every member against the manifest, writing it under `dest` (None: check only).

        `dest` must not exist; on failure whatever was written stays under `dest` for the caller to remove.
        """
        m = self.manifest
        if dest is not None:
            os.mkdir(dest, 0o755)
        seen: set[str] = set()
        try:
            member = self._tar.next()
            if member is None or member.name != PREFIX or not member.isdir():
                raise BundleError(f"expected the {PREFIX}/ directory after the signature")
            while (member := self._tar.next()) is not None:
                name = member.name
                if not name.startswith(PREFIX + "/"):
                    raise BundleError(f"member {name!r} is outside {PREFIX}/")
                path = check_path(name[len(PREFIX) + 1:])
                if path in seen:
                    raise BundleError(f"member {name!r} appears twice")
                seen.add(path)
                self._one(member, path, dest)
        except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error) as e:
            raise BundleError(f"damaged bundle: {e}") from None
        missing = (set(m.files) | set(m.dirs) | set(m.links)) - seen
        if missing:
            raise BundleError(f"bundle lacks {len(missing)} listed entries, e.g. {sorted(missing)[0]!r}")
        if dest is not None:
            info = read_release_json(dest / "release.json")
            if info["version"] != m.version or info["outbox_schema"] != m.outbox_schema:
                raise BundleError(f"release.json ({info['version']}, schema {info['outbox_schema']}) does not "
                                  f"match {MANIFEST} ({m.version}, schema {m.outbox_schema})")
            for d in sorted(m.dirs, reverse=True):
                fsync_dir(dest / d)
            fsync_dir(dest)

    def _one(self, member: tarfile.TarInfo, path: str, dest: Path | None) -> None:
        m = self.manifest
        target = None if dest is None else _safe_parent(dest, path)
        if member.isdir():
            if path not in m.dirs:
                raise BundleError(f"directory {path!r} is not in {MANIFEST}")
            if target is not None:
                os.mkdir(target, 0o755)
        elif member.issym():
            if m.links.get(path) != member.linkname:
                raise BundleError(f"link {path!r} -> {member.linkname!r} is not in {MANIFEST}")
            if target is not None:
                os.symlink(member.linkname, target)
        elif member.isreg():
            if path not in m.files:
                raise BundleError(f"file {path!r} is not in {MANIFEST}")
            digest, size, mode = m.files[path]
            if member.size != size:
                raise BundleError(f"file {path!r} is {member.size} bytes, {MANIFEST} says {size}")
            src = self._tar.extractfile(member)
            h = hashlib.sha256()
            fd = None if target is None else os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                                                     0o600)
            try:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    if fd is not None:
                        _write_all(fd, chunk)
                if fd is not None:
                    os.fchmod(fd, mode)
                    os.fsync(fd)
            finally:
                if fd is not None:
                    os.close(fd)
            if h.hexdigest() != digest:
                raise BundleError(f"file {path!r} does not match its sha256 in {MANIFEST}: tampered bundle")
        else:
            raise BundleError(f"member {member.name!r} is a {_kind(member)}: only files, directories and "
                              f"symlinks are allowed")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _kind(member: tarfile.TarInfo) -> str:
    return {tarfile.LNKTYPE: "hard link", tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device",
            tarfile.FIFOTYPE: "FIFO", tarfile.CONTTYPE: "contiguous file"}.get(member.type, f"type {member.type!r}")


def _safe_parent(dest: Path, path: str) -> Path:
    """dest/path, after checking every parent below `dest` is a real directory (never a symlink)."""
    parts = path.split("/")
    here = dest
    for part in parts[:-1]:
        here = here / part
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            raise BundleError(f"{path!r} comes before its directory {part!r}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise BundleError(f"{path!r} would be written through {here.relative_to(dest)!s}, not a directory")
    return here / parts[-1]


def open_bundle(path: Path, keys_dir: Path) -> Opened:
    """Open a bundle and check its signature against the trusted keys; the release is not read yet."""
    keys = trusted_keys(keys_dir)
    raw = open(path, "rb")
    try:
        tar = tarfile.open(fileobj=raw, mode="r|*", tarinfo=_BoundedTarInfo)
    except (tarfile.TarError, lzma.LZMAError, EOFError) as e:
        raw.close()
        raise BundleError(f"{path} is not a bundle (not a tar archive): {e}") from None
    try:
        manifest_bytes = _small_member(tar, MANIFEST, MAX_MANIFEST)
        sig = _small_member(tar, SIGNATURE, 64)
        if len(sig) != 64:
            raise BundleError(f"{SIGNATURE} is {len(sig)} bytes, an Ed25519 signature is 64")
        signer = check_signature(manifest_bytes, sig, keys)
        manifest = parse_manifest(manifest_bytes)
    except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error) as e:
        tar.close()
        raw.close()
        raise BundleError(f"damaged bundle {path}: {e}") from None
    except BaseException:
        tar.close()
        raw.close()
        raise
    return Opened(manifest, signer, tar, raw)


def _small_member(tar: tarfile.TarFile, name: str, limit: int) -> bytes:
    member = tar.next()
    if member is None or member.name != name or not member.isreg():
        got = "the end" if member is None else repr(member.name)
        raise BundleError(f"expected {name} next in the bundle, found {got}")
    if member.size > limit:
        raise BundleError(f"{name} is {member.size} bytes (limit {limit})")
    return tar.extractfile(member).read()


def verify(path: Path, keys_dir: Path) -> Manifest:
    """Check signature, manifest and every member without writing anything."""
    with open_bundle(path, keys_dir) as opened:
        opened.unpack(None)
        return opened.manifest


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
