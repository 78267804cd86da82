"""The terminal's Debian 12 arm64 root: mmdebstrap from pinned inputs, then the customize steps.

Runs as root on an x86 (or arm64) Debian machine; arm64 binaries in the chroot run through
qemu-user-static's binfmt handler. Nothing here needs loop devices: the result is a directory tree that
`rtimage.assemble` turns into the card image.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
COMPONENTS = "main,non-free-firmware"  # raspi-firmware and the Wi-Fi firmware live in non-free-firmware
FACTORY = Path("/opt/rating-terminal/releases")
DATA_DIR = Path("/var/lib/rating-terminal")
USER = "rating"
# Wanted groups when /usr/lib/rating-terminal/groups (from the rootfs overlay) does not say otherwise.
DEFAULT_GROUPS = ("video", "render", "input", "gpio", "i2c", "spi", "lp", "dialout", "audio")
# Documentation, manuals and translations are not needed on a kiosk: ~60 MB less.
DPKG_EXCLUDES = ("path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright",
                 "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*",
                 "path-exclude=/usr/share/locale/*", "path-include=/usr/share/locale/locale.alias",
                 "path-exclude=/usr/share/lintian/*")
PIP_PLATFORMS = ("manylinux_2_36_aarch64", "manylinux_2_34_aarch64", "manylinux_2_31_aarch64",
                 "manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")


class BuildError(RuntimeError):
    """A build step failed; the message names the step and the file or package at fault."""


def _run(argv: list[str], *, log: Path | None = None, env: dict | None = None, cwd: Path | None = None,
         capture: bool = False) -> str:
    """Run a command; on failure raise BuildError with the command and the tail of its output."""
    full_env = {**os.environ, **(env or {})}
    if log is not None and not capture:
        with open(log, "a") as fh:
            fh.write(f"$ {shlex.join(argv)}\n")
            fh.flush()
            proc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
        if proc.returncode:
            tail = "".join(log.read_text(errors="replace").splitlines(True)[-25:])
            raise BuildError(f"{argv[0]} failed ({proc.returncode}); see {log}:\n{tail}")
        return ""
    proc = subprocess.run(argv, capture_output=True, text=True, env=full_env, cwd=cwd)
    if proc.returncode:
        raise BuildError(f"{shlex.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


# --- pinned inputs -------------------------------------------------------------------------------------

def read_list(path: Path) -> list[str]:
    """Lines of a pins file without comments and blanks."""
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def read_lock(path: Path) -> dict[str, str]:
    """packages.lock: `name=version` per line (architecture-qualified names kept as dpkg prints them)."""
    lock = {}
    for n, line in enumerate(read_list(path), 1):
        name, sep, version = line.partition("=")
        if not sep or not name or not version:
            raise BuildError(f"{path}:{n}: expected name=version, got {line!r}")
        lock[name] = version
    return lock


def write_lock(path: Path, installed: dict[str, str]) -> None:
    lines = [f"# Every Debian package in the image root, as dpkg-query -W reports it ({SUITE} arm64).",
             "# Written by `image-build/build --lock`; every build compares against it (--update-lock to accept).",
             *(f"{k}={v}" for k, v in sorted(installed.items()))]
    path.write_text("\n".join(lines) + "\n")


def lock_drift(lock: dict[str, str], installed: dict[str, str]) -> list[str]:
    """Human-readable differences between the lock and what was installed (empty when they agree)."""
    drift = []
    for name in sorted(set(lock) | set(installed)):
        want, got = lock.get(name), installed.get(name)
        if want == got:
            continue
        if want is None:
            drift.append(f"+ {name}={got} (not in the lock)")
        elif got is None:
            drift.append(f"- {name}={want} (locked, not installed)")
        else:
            drift.append(f"~ {name}: locked {want}, got {got}")
    return drift


def installed_packages(root: Path) -> dict[str, tuple[str, str]]:
    """dpkg-query -W of the root, read with the host's dpkg against the root's database: name → (version, arch)."""
    out = _run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f",
                "${Package}\t${Version}\t${Architecture}\n"], capture=True)
    pkgs = {}
    for line in out.splitlines():
        name, version, arch = (line.split("\t") + ["", ""])[:3]
        if version:
            pkgs[name] = (version, arch)
    return pkgs


def versions(installed: dict[str, tuple[str, str]]) -> dict[str, str]:
    return {name: version for name, (version, _arch) in installed.items()}


# --- the root -------------------------------------------------------------------------------------------

def early_files(overlay: Path) -> list[Path]:
    """Overlay files that must be in place before the kernel is installed, so that its first initramfs
    and raspi-firmware's cmdline.txt/config.txt already carry them (an initramfs under qemu-user takes
    minutes: made once, not twice)."""
    return sorted(p for p in [*(overlay / "etc/initramfs-tools").rglob("*"), *(overlay / "etc/default").glob("raspi-*")]
                  if p.is_file())


def early_digest(overlay: Path) -> str:
    import hashlib

    h = hashlib.sha256((INITRAMFS_CONF + INITRAMFS_MODULES).encode())
    for p in early_files(overlay):
        h.update(str(p.relative_to(overlay)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


EARLY_MARK = "var/lib/rtimage-early.sha256"  # removed by customize

# The initramfs carries a list of modules, not Debian's MODULES=most: "most" copies ~3000 modules one
# shell call at a time, which under qemu-user takes over 20 minutes, and the card needs only these.
INITRAMFS_CONF = "MODULES=list\nBUSYBOX=y\nCOMPRESS=zstd\n"
INITRAMFS_MODULES = """\
# Modules in the terminal's initramfs (image-build/rtimage/debian.py; MODULES=list).
# Raspberry Pi 3/4: the SD card and USB boot
mmc_block
sdhci_iproc
bcm2835
sdhci_pltfm
pcie_brcmstb
reset_raspberrypi
xhci_pci
xhci_plat_hcd
dwc2
usb_storage
uas
# QEMU virt (the boot test)
virtio_pci
virtio_mmio
virtio_blk
# the root: ext4, read-only, under a tmpfs overlay
ext4
overlay
"""


def mmdebstrap(root: Path, packages: list[str], *, cache: Path, epoch: int, log: Path, overlay: Path,
               mirror: str = MIRROR) -> None:
    """Debian bookworm arm64, minbase + packages, into the directory `root`; .debs cached in `cache`."""
    if root.exists():
        shutil.rmtree(root)
    cache.mkdir(parents=True, exist_ok=True)
    early = [f"--essential-hook=mkdir -p \"$1\"/etc/initramfs-tools/conf.d && printf %s {shlex.quote(INITRAMFS_CONF)} "
             f"> \"$1\"/etc/initramfs-tools/conf.d/rating-terminal.conf && printf %s {shlex.quote(INITRAMFS_MODULES)} "
             f"> \"$1\"/etc/initramfs-tools/modules"]
    early += [f"--essential-hook=mkdir -p \"$1\"/{p.relative_to(overlay).parent} && "
             f"cp -p {shlex.quote(str(p))} \"$1\"/{p.relative_to(overlay)}" for p in early_files(overlay)]
    early.append(f"--essential-hook=echo {early_digest(overlay)} > \"$1\"/{EARLY_MARK}")
    argv = ["mmdebstrap", "--mode=root", "--arch=arm64", "--variant=minbase", f"--components={COMPONENTS}",
            "--include=" + ",".join(packages),
            "--aptopt=Acquire::Languages \"none\"", "--aptopt=APT::Install-Recommends \"false\"",
            *(f"--dpkgopt={o}" for o in DPKG_EXCLUDES),
            # the kernel's postinst hooks of raspi-firmware copy the kernel and initrd into /boot/firmware
            "--setup-hook=mkdir -p \"$1\"/boot/firmware \"$1\"/var/cache/apt/archives",
            f"--setup-hook=sync-in {cache} /var/cache/apt/archives/",
            "--skip=download/empty", *early,
            f"--customize-hook=sync-out /var/cache/apt/archives {cache}",
            "--customize-hook=rm -f \"$1\"/var/cache/apt/archives/*.deb",
            SUITE, str(root), mirror]
    _run(argv, log=log, env={"SOURCE_DATE_EPOCH": str(epoch)})


def chroot(root: Path, script: str, *, log: Path, env: dict | None = None) -> None:
    """Run a shell script inside the root with /proc, /sys and /dev mounted in a private mount namespace,
    so nothing stays mounted if the build dies."""
    inner = ('set -e; R="$1"; shift; mount -t proc proc "$R/proc"; mount -t sysfs sys "$R/sys"; '
             'mount --rbind /dev "$R/dev"; exec chroot "$R" /bin/sh -ec "$1"')
    base_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
                "HOME": "/root"}
    _run(["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c", inner, "sh", str(root), script],
         log=log, env={**base_env, **(env or {})})


def copy_tree(src: Path, root: Path) -> list[str]:
    """Copy an overlay tree over the root keeping modes (owner root); returns the relative paths copied."""
    copied = []
    if not src.is_dir():
        return copied
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        dest = root / rel
        if path.is_symlink():
            if dest.is_symlink() or dest.exists():
                dest.unlink()
            dest.symlink_to(os.readlink(path))
        elif path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            os.chmod(dest, path.stat().st_mode & 0o7777)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
            if path.name.endswith(".md"):
                continue
        copied.append(str(rel))
    return copied


def install_kiosk(kiosk: Path, root: Path) -> None:
    """image-build/kiosk/ → the places its unit and env file expect (the overlay tree may also carry them)."""
    unit = root / "etc/systemd/system/rating-terminal-ui.service"
    if not unit.exists():
        shutil.copy2(kiosk / "rating-terminal-ui.service", unit)
    (root / "etc/rating-terminal").mkdir(parents=True, exist_ok=True)
    shutil.copy2(kiosk / "kiosk.env", root / "etc/rating-terminal/kiosk.env")
    shutil.copy2(kiosk / "config.ini", root / "etc/rating-terminal/kivy-config.ini")


def enabled_units(root: Path) -> list[str]:
    """Units the overlay tree ships with an [Install] section (enabled in the image), plus the kiosk."""
    units = []
    sysd = root / "etc/systemd/system"
    for path in sorted(sysd.glob("*")):
        if path.suffix not in (".service", ".timer", ".path", ".socket") or path.is_symlink() or "@" in path.name:
            continue
        text = path.read_text(errors="replace")
        if re.search(r"^\[Install\]", text, re.M) and re.search(r"^(WantedBy|RequiredBy)=", text, re.M):
            units.append(path.name)
    return units


ALWAYS_ENABLED = ("systemd-networkd.service", "systemd-resolved.service", "systemd-timesyncd.service")
# sshd is installed but off: site-apply starts it only when the boot-partition file carries a key
DISABLED = ("ssh.service", "ssh.socket")
UID = 990


def customize(root: Path, *, repo: Path, log: Path, epoch: int) -> dict:
    """Overlay files, user, units, initramfs. Returns what was done (for the manifest and the log)."""
    ib = repo / "image-build"
    copied = copy_tree(ib / "rootfs", root)
    install_kiosk(ib / "kiosk", root)
    # site-apply (system python3) imports the one settings schema from here
    pylib = root / "usr/lib/rating-terminal/python/configuration"
    if pylib.exists():
        shutil.rmtree(pylib)
    shutil.copytree(repo / "configuration", pylib, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # launch and rating-update (system python3) import the updater from /usr/lib/rating-terminal/rtimage
    upd = root / "usr/lib/rating-terminal/rtimage"
    upd.mkdir(parents=True, exist_ok=True)
    for name in ("__init__.py", "update.py", "bundle.py"):
        if (ib / "rtimage" / name).exists():
            shutil.copy2(ib / "rtimage" / name, upd / name)
    listed = root / "usr/lib/rating-terminal/groups"
    groups = read_list(listed) if listed.exists() else list(DEFAULT_GROUPS)
    groups = [w for line in groups for w in line.split()]
    units = [u for u in enabled_units(root) if u not in DISABLED]
    (root / "etc/initramfs-tools/conf.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/initramfs-tools/conf.d/rating-terminal.conf").write_text(INITRAMFS_CONF)
    (root / "etc/initramfs-tools/modules").write_text(INITRAMFS_MODULES)
    mark = root / EARLY_MARK
    regen = not mark.exists() or mark.read_text().strip() != early_digest(ib / "rootfs")
    hostname = "rating-terminal"
    (root / "etc/hostname").write_text(hostname + "\n")
    (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost\n")
    script = f"""
        for g in {' '.join(groups)}; do getent group "$g" >/dev/null || groupadd -r "$g"; done
        getent group {USER} >/dev/null || groupadd -r -g {UID} {USER}
        getent passwd {USER} >/dev/null || useradd -r -u {UID} -g {USER} -d {DATA_DIR} -M \\
            -s /usr/sbin/nologin {f'-G {",".join(groups)}' if groups else ''} {USER}
        install -d -m 0755 {DATA_DIR}
        # root has no password: no console login; the technician's route is the boot-partition file
        passwd -l root
        systemctl enable {' '.join(ALWAYS_ENABLED)} {' '.join(units)}
        systemctl disable {' '.join(DISABLED)} 2>/dev/null || true
        systemctl set-default multi-user.target
        systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer 2>/dev/null || true
        # per-card host keys are made on the data partition by site-apply
        rm -f /etc/ssh/ssh_host_*
        # the overlay's initramfs script (read-only root): already in the initrd unless it changed since
        {'update-initramfs -u -k all' if regen else ': initrd made with the current rtroot script'}
        rm -f /{EARLY_MARK}
        rm -f /etc/machine-id /var/lib/dbus/machine-id && : > /etc/machine-id
        rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log /tmp/* /root/.cache
    """
    chroot(root, script, log=log, env={"SOURCE_DATE_EPOCH": str(epoch)})
    return {"overlay_files": len(copied), "groups": groups, "enabled_units": [*ALWAYS_ENABLED, *units]}


def check_update_keys(keys: list[Path]) -> list[str]:
    """The names the keys get on the card; ValueError naming the file that is not an Ed25519 public key.

    Each must be an Ed25519 public key in PEM (what `image-build/rating-bundle make-key` writes as STEM.pub);
    a private key by mistake, an RSA key or an unreadable file stops the build before it starts."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    names: list[str] = []
    for key in keys:
        try:
            text = key.read_bytes()
        except OSError as e:
            raise ValueError(f"{key}: cannot read the update key ({e.strerror})") from None
        if b"PRIVATE KEY" in text:
            raise ValueError(f"{key}: a private key — give the public one (.pub); the private key never goes on a card")
        try:
            public = serialization.load_pem_public_key(text)
        except ValueError:
            raise ValueError(f"{key}: not a public key in PEM") from None
        if not isinstance(public, Ed25519PublicKey):
            raise ValueError(f"{key}: not an Ed25519 key ({type(public).__name__.lstrip('_')})")
        name = key.name if key.name.endswith(".pub") else key.name + ".pub"
        if name in names:
            raise ValueError(f"{key}: two keys named {name}")
        names.append(name)
    return names


def install_update_keys(root: Path, keys: list[Path]) -> list[str]:
    """The release keys the updater trusts, as `/etc/rating-terminal/update-keys/<name>.pub` (root's, 0644).
    Keys already in the tree are replaced: the image trusts exactly the keys of this build."""
    names = check_update_keys(keys)
    dest = root / "etc/rating-terminal/update-keys"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True, mode=0o755)
    for key, name in zip(keys, names):
        (dest / name).write_bytes(key.read_bytes())
        os.chmod(dest / name, 0o644)
    return names


# --- the factory release --------------------------------------------------------------------------------

def project_wheel(repo: Path, dest: Path, *, log: Path, epoch: int) -> Path:
    """`pip wheel --no-deps .` of the repository on the host (pure Python: the same wheel serves arm64)."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("rating_terminal-*.whl"):
        old.unlink()
    _run(["python3", "-m", "pip", "wheel", "--no-deps", "-w", str(dest), str(repo)],
         log=log, env={"SOURCE_DATE_EPOCH": str(epoch)})
    found = sorted(dest.glob("rating_terminal-*.whl"))
    if not found:
        raise BuildError(f"pip wheel made no rating_terminal wheel in {dest}")
    return found[-1]


def download_wheels(requirements: Path, dest: Path, *, log: Path) -> list[Path]:
    """The aarch64 wheels of requirements (pinned, with hashes) for CPython 3.11, downloaded on the host."""
    dest.mkdir(parents=True, exist_ok=True)
    argv = ["python3", "-m", "pip", "download", "--require-hashes", "--no-deps", "--only-binary=:all:",
            "--implementation", "cp", "--python-version", "3.11", "--dest", str(dest), "-r", str(requirements)]
    for plat in PIP_PLATFORMS:
        argv += ["--platform", plat]
    _run(argv, log=log)
    names = {re.split(r"[=\s]", line, maxsplit=1)[0].lower().replace("_", "-") for line in read_list(requirements)
             if not line.startswith("-")}
    wheels = [w for w in sorted(dest.glob("*.whl")) if w.name.split("-")[0].lower().replace("_", "-") in names]
    return wheels


def lock_wheels(spec: list[str], out: Path, *, log: Path, scratch: Path) -> None:
    """Resolve spec for aarch64/cp311 and write `name==version --hash=sha256:…` lines for every wheel."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    argv = ["python3", "-m", "pip", "download", "--only-binary=:all:", "--implementation", "cp",
            "--python-version", "3.11", "--dest", str(scratch), *spec]
    for plat in PIP_PLATFORMS:
        argv += ["--platform", plat]
    _run(argv, log=log)
    import hashlib

    lines = ["# aarch64 CPython 3.11 wheels of the factory release (.[ui,hw] without the center extras).",
             "# Written by `image-build/build --lock` from pins/wheels.in; pip checks every hash."]
    for whl in sorted(scratch.glob("*.whl"), key=lambda p: p.name.lower()):
        name, version = whl.name.split("-")[:2]
        digest = hashlib.sha256(whl.read_bytes()).hexdigest()
        lines.append(f"{name}=={version} --hash=sha256:{digest}")
    out.write_text("\n".join(lines) + "\n")


def install_release(root: Path, *, version: str, wheels: list[Path], app_wheel: Path, log: Path,
                    epoch: int, outbox_schema: int) -> Path:
    """`python3 -m venv` in the chroot at the factory release path, then the wheels, offline, with pip."""
    rel = FACTORY / version
    host_rel = root / rel.relative_to("/")
    if host_rel.exists():
        shutil.rmtree(host_rel)
    stage = root / "tmp/rtwheels"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for w in [*wheels, app_wheel]:
        shutil.copy2(w, stage / w.name)
    script = f"""
        python3 -m venv {rel}/venv
        {rel}/venv/bin/python -m pip install --no-index --find-links /tmp/rtwheels --no-cache-dir \
            --disable-pip-version-check /tmp/rtwheels/{app_wheel.name} {' '.join('/tmp/rtwheels/' + w.name for w in wheels)}
        {rel}/venv/bin/python -c 'import device, ui, paho.mqtt, cryptography, qrcode, kivy' >/dev/null 2>&1 || \
            {rel}/venv/bin/python -c 'import device, paho.mqtt, cryptography, qrcode'
        # pip's own wheel cache and build leftovers are not part of the release
        rm -rf /tmp/rtwheels /root/.cache
    """
    chroot(root, script, log=log, env={"SOURCE_DATE_EPOCH": str(epoch), "PYTHONDONTWRITEBYTECODE": ""})
    built = subprocess.run(["date", "-u", "-d", f"@{epoch}", "+%Y-%m-%dT%H:%M:%SZ"], capture_output=True,
                           text=True).stdout.strip()
    (host_rel / "release.json").write_text(json.dumps(
        {"version": version, "outbox_schema": outbox_schema, "built": built}, indent=2) + "\n")
    return rel


def boot_tree(root: Path) -> Path:
    """The boot partition's content: the root's /boot/firmware after raspi-firmware's hooks ran."""
    boot = root / "boot/firmware"
    for needed in ("config.txt", "cmdline.txt"):
        if not (boot / needed).exists():
            raise BuildError(f"{boot}/{needed} missing: raspi-firmware's kernel hooks did not run")
    if not list(boot.glob("vmlinuz*")) or not list(boot.glob("initrd.img*")):
        raise BuildError(f"{boot} has no vmlinuz*/initrd.img*: raspi-firmware's z50 hook did not copy them")
    return boot


def write_cmdline(boot: Path) -> str:
    """cmdline.txt: the layout's quiet-boot line with the read-only root (raspi-firmware writes a generic one)."""
    from rtimage import layout

    line = layout.cmdline().strip()
    (boot / "cmdline.txt").write_text(line + "\n")
    return line
