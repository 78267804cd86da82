"""The image's own files (image-build/rootfs/, kiosk/): systemd units verified by systemd-analyze, fstab,
journald, watchdog, udev rules, the read-only-root initramfs script, the service user's groups, and the
boot-time scripts run against a temporary root."""
from __future__ import annotations

import configparser
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from rtimage import layout

from .conftest import KIOSK, ROOTFS

UNITS = sorted((ROOTFS / "etc/systemd/system").glob("*.service")) + sorted(
    (ROOTFS / "etc/systemd/system").glob("*.timer")) + [KIOSK / "rating-terminal-ui.service"]
BIN = ROOTFS / "usr/lib/rating-terminal"


def unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str
    cp.read(path)
    return cp


def test_every_unit_passes_systemd_analyze_verify(tmp_path):
    """In a temporary root: our units and scripts where the image puts them, plus this machine's own
    system units (sysinit.target, getty@.service …) — `--root` resolves ExecStart= paths inside it."""
    root = tmp_path / "root"
    shutil.copytree(ROOTFS, root, symlinks=True)
    shutil.copy2(KIOSK / "rating-terminal-ui.service", root / "etc/systemd/system/")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    names = [f"/etc/systemd/system/{u.name}" for u in UNITS]
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", *names],
                          capture_output=True, text=True)
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "Unknown" not in out and "not executable" not in out, out
    # the check can fail: a unit whose command is missing is refused
    (root / "etc/systemd/system/broken.service").write_text("[Service]\nExecStart=/usr/lib/rating-terminal/nope\n")
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", "/etc/systemd/system/broken.service"],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "not executable" in done.stdout + done.stderr


def test_kiosk_unit_runs_the_launcher_as_rating_and_never_waits_for_network_or_time():
    u = unit(KIOSK / "rating-terminal-ui.service")
    s, un = u["Service"], u["Unit"]
    assert s["Type"] == "notify" and int(s["WatchdogSec"]) > 0 and s["Restart"] == "always"
    assert s["ExecStart"] == "/usr/lib/rating-terminal/launch" and s["User"] == "rating"
    assert s["TTYPath"] == "/dev/tty1" and un["Conflicts"] == "getty@tty1.service"
    assert layout.DATA_DIR in un["RequiresMountsFor"].split()
    ordering = " ".join(un.get(k, "") for k in ("After", "Wants", "Requires", "BindsTo"))
    for target in ("time-sync.target", "time-set.target", "network-online.target", "systemd-time-wait-sync"):
        assert target not in ordering
    assert "rating-site-apply.service" in un["After"]
    assert "StateDirectory" not in s  # tmpfiles owns the data dir: no recursive chown of root's files


def test_site_apply_runs_before_network_time_and_kiosk():
    u = unit(ROOTFS / "etc/systemd/system/rating-site-apply.service")["Unit"]
    before = u["Before"].split()
    for name in ("systemd-networkd.service", "systemd-timesyncd.service", "rating-terminal-ui.service",
                 "ssh.service", "network-pre.target"):
        assert name in before
    assert u["DefaultDependencies"] == "no"  # timesyncd is ordered before sysinit.target
    assert {"/boot/firmware", layout.DATA_DIR} <= set(u["RequiresMountsFor"].split())


def test_grow_unit_is_once_per_card():
    u = unit(ROOTFS / "etc/systemd/system/rating-grow-data.service")
    assert u["Unit"]["ConditionPathExists"] == f"!{layout.DATA_DIR}/.grown"
    assert u["Service"]["ExecStart"].startswith("/usr/lib/rating-terminal/grow-data")


def fstab() -> list[list[str]]:
    return [line.split() for line in (ROOTFS / "etc/fstab").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_fstab_mounts_boot_read_only_and_data_noatime_by_label():
    rows = {r[1]: r for r in fstab()}
    assert "/" not in rows  # the initramfs mounts the root (read-only, overlay)
    boot, data = rows["/boot/firmware"], rows[layout.DATA_DIR]
    assert boot[0] == "LABEL=RTBOOT" and boot[2] == "vfat"
    opts = boot[3].split(",")
    assert "ro" in opts and "umask=0027" in opts and f"gid={layout.RATING_GID}" in opts
    assert data[0] == "LABEL=RTDATA" and data[2] == "ext4" and "noatime" in data[3].split(",")
    assert data[5] == "2"  # checked at boot


def test_journal_is_volatile_and_the_hardware_watchdog_is_on():
    j = unit(ROOTFS / "etc/systemd/journald.conf.d/50-rating-terminal.conf")["Journal"]
    assert j["Storage"] == "volatile"
    w = unit(ROOTFS / "etc/systemd/system.conf.d/50-watchdog.conf")["Manager"]
    assert 0 < int(w["RuntimeWatchdogSec"]) <= 15  # bcm2835's maximum is about 15 s


def test_udev_rules_give_backlight_to_video_and_printer_to_lp():
    rules = (ROOTFS / "etc/udev/rules.d/60-rating-terminal.rules").read_text()
    lines = [r for r in rules.splitlines() if r and not r.startswith("#")]
    backlight = next(r for r in lines if 'SUBSYSTEM=="backlight"' in r)
    assert "chgrp video" in backlight and "brightness" in backlight and "bl_power" in backlight
    assert any('KERNEL=="lp[0-9]*"' in r and 'GROUP="lp"' in r for r in lines)
    # the groups the rules hand out are the service user's
    groups = [w for line in (BIN / "groups").read_text().splitlines() if not line.startswith("#") for w in line.split()]
    assert {"video", "lp", "gpio", "render", "input"} <= set(groups)
    assert not {"sudo", "disk", "adm", "root", "shadow"} & set(groups)


def test_cmdline_is_one_quiet_line_for_an_overlay_root():
    line = layout.cmdline()
    assert line.endswith("\n") and line.count("\n") == 1
    words = line.split()
    assert {"quiet", "loglevel=3", "console=tty3", "vt.global_cursor_default=0", "rtroot=overlay", "ro",
            "root=LABEL=RTROOT"} <= set(words)
    assert "rw" not in words
    extra = (ROOTFS / "etc/default/raspi-extra-cmdline").read_text().split()
    assert "ro" in extra and "rtroot=overlay" in extra  # if raspi-firmware's hook ever rewrites cmdline.txt


@pytest.mark.parametrize("shell", ["sh", "dash"])
def test_scripts_are_valid_shell_and_executable(shell):
    if not shutil.which(shell):
        pytest.fail(f"{shell} missing")
    scripts = [ROOTFS / "etc/initramfs-tools/scripts/init-bottom/rtroot", ROOTFS / "etc/initramfs-tools/hooks/rtroot",
               BIN / "grow-data", BIN / "save-journal"]
    for s in scripts:
        assert os.access(s, os.X_OK), s
        done = subprocess.run([shell, "-n", str(s)], capture_output=True, text=True)
        assert done.returncode == 0, f"{s}: {done.stderr}"


def test_initramfs_script_answers_prereqs_and_mounts_an_overlay():
    script = ROOTFS / "etc/initramfs-tools/scripts/init-bottom/rtroot"
    for s in (script, ROOTFS / "etc/initramfs-tools/hooks/rtroot"):
        done = subprocess.run(["sh", str(s), "prereqs"], capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout.strip() == ""
    text = script.read_text()
    assert "rtroot=*" in text and "-t overlay" in text and "lowerdir=" in text and "-t tmpfs" in text
    assert "manual_add_modules overlay" in (ROOTFS / "etc/initramfs-tools/hooks/rtroot").read_text()


def run_rtroot(tmp_path: Path, fail: str, cmdline: str = "ro rtroot=overlay") -> list[str]:
    """The init-bottom script under sh with mount/umount/modprobe faked (they log; `fail` makes one fail)."""
    box = tmp_path / "initramfs"
    (box / "bin").mkdir(parents=True)
    log = box / "log"
    for tool in ("mount", "umount", "modprobe"):
        (box / "bin" / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n'
                                        f'case "{tool} $*" in {fail or "NEVER"}) exit 1 ;; esac\nexit 0\n')
        (box / "bin" / tool).chmod(0o755)
    (box / "functions").write_text(f'log_warning_msg() {{ echo "warning $*" >> {log}; }}\n'
                                   f'log_success_msg() {{ echo "success $*" >> {log}; }}\n')
    (box / "cmdline").write_text(cmdline + "\n")
    text = (ROOTFS / "etc/initramfs-tools/scripts/init-bottom/rtroot").read_text()
    text = text.replace("/scripts/functions", str(box / "functions")).replace("/proc/cmdline", str(box / "cmdline"))
    text = text.replace("/rtroot/", f"{box}/rtroot/")
    (box / "rtroot").write_text(text)
    env = {"PATH": f"{box / 'bin'}:/usr/bin:/bin", "rootmnt": str(box / "root")}
    done = subprocess.run(["sh", str(box / "rtroot")], capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr  # init-bottom never fails the boot
    return [line.replace(str(box), "") for line in log.read_text().splitlines()] if log.exists() else []


def test_initramfs_overlay_falls_back_to_a_read_only_root_at_every_failure(tmp_path):
    ok = run_rtroot(tmp_path / "ok", "")
    assert ok[-1].startswith("success") and "mount -o move /rtroot/lower /root/media/root-ro" in ok
    assert run_rtroot(tmp_path / "off", "", cmdline="ro quiet") == []
    # no overlay module (or no overlayfs in the kernel): the real root is moved back where it was
    nomod = run_rtroot(tmp_path / "nomod", "mount*-t\\ overlay*")
    assert nomod[-3:] == ["warning rtroot: overlay mount failed; the root stays read-only",
                          "mount -o move /rtroot/lower /root", "umount /rtroot/rw"]
    # the root cannot be moved aside: no overlay over an empty lower layer (that would hide /sbin/init)
    nomove = run_rtroot(tmp_path / "nomove", "mount\\ -o\\ move\\ */root\\ *")
    assert not any("-t overlay" in line for line in nomove) and nomove[-1] == "umount /rtroot/rw"
    notmpfs = run_rtroot(tmp_path / "notmpfs", "mount*-t\\ tmpfs*")
    assert not any("move" in line for line in notmpfs) and notmpfs[-1].startswith("warning")


def run_grow(box: Path, growpart: str, resize_rc: int = 0) -> tuple[int, list[str]]:
    """grow-data with the block tools faked: `growpart` is the fake's "rc:output"; each call is logged."""
    mnt, bin_ = box / "data", box / "bin"
    mnt.mkdir(parents=True, exist_ok=True)
    bin_.mkdir(exist_ok=True)
    log = box / "log"
    fakes = {"findmnt": f'case "$*" in *TARGET*) echo {mnt} ;; *) echo /dev/mmcblk0p3 ;; esac',
             "lsblk": "echo mmcblk0", "blockdev": "echo 31914983424",
             "growpart": f'echo "growpart $*" >> {log}; echo "{growpart.split(":", 1)[1]}"; '
                         f'exit {growpart.split(":", 1)[0]}',
             "resize2fs": f'echo "resize2fs $*" >> {log}; exit {resize_rc}'}
    for name, body in fakes.items():
        (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_ / name).chmod(0o755)
    (box / "partition").write_text("3\n")
    script = box / "grow-data"
    script.write_text((BIN / "grow-data").read_text().replace('"/sys/class/block/$name/partition"',
                                                              f'"{box}/partition"'))
    done = subprocess.run(["sh", str(script), str(mnt)], capture_output=True, text=True, timeout=30,
                          env={"PATH": f"{bin_}:/usr/bin:/bin"})
    return done.returncode, log.read_text().splitlines() if log.exists() else []


def test_grow_data_is_idempotent_and_survives_a_cut_between_growpart_and_resize2fs(tmp_path):
    grown = tmp_path / "data/.grown"
    # power cut after growpart, before resize2fs finished: no marker, so the next boot runs again
    rc, calls = run_grow(tmp_path, "0:CHANGED: partition=3 start=1056768 old: size=131072 end=1187840 new: ...",
                         resize_rc=1)
    assert rc != 0 and calls == ["growpart /dev/mmcblk0 3", "resize2fs /dev/mmcblk0p3"] and not grown.exists()
    # next boot: the partition already ends at the card's end; the file system is still grown
    rc, calls = run_grow(tmp_path, "1:NOCHANGE: partition 3 is size 62332928. it cannot be grown")
    assert rc == 0 and calls[-1] == "resize2fs /dev/mmcblk0p3" and grown.read_text().split()[1] == "31914983424"
    # growpart itself failing: nothing resized, no marker
    grown.unlink()
    rc, calls = run_grow(tmp_path, "2:FAILED: disk=/dev/mmcblk0 partition=3: failed to resize")
    assert rc == 1 and calls[-1].startswith("growpart") and not grown.exists()


def site_root(tmp_path: Path, settings_text: str | None) -> Path:
    root = tmp_path / "root"
    (root / "boot/firmware").mkdir(parents=True)
    (root / "usr/share/zoneinfo/Asia").mkdir(parents=True)
    (root / "usr/share/zoneinfo/Asia/Shanghai").write_bytes(b"TZif2")
    (root / "usr/share/zoneinfo/Europe").mkdir(parents=True)
    (root / "usr/share/zoneinfo/Europe/Berlin").write_bytes(b"TZif2")
    (root / layout.DATA_DIR.lstrip("/")).mkdir(parents=True)
    if settings_text is not None:
        (root / "boot/firmware/rating-terminal.toml").write_text(settings_text)
    return root


def site_apply(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["python3", str(BIN / "site-apply")], capture_output=True, text=True,
                          env={**os.environ, "RATING_ROOT": str(root)})


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGr6 tech@laptop"


def test_site_apply_writes_hostname_timezone_ntp_wifi_and_ssh(tmp_path):
    root = site_root(tmp_path, f"""
[mqtt]
host = "mqtt.center.example"
[system]
hostname = "w01"
timezone = "Europe/Berlin"
ntp = ["ntp.aliyun.com", "10.1.2.3"]
wifi_ssid = "IEEE"
wifi_psk = "password"
ssh_authorized_keys = ["{KEY}"]
""")
    done = site_apply(root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (root / "etc/hostname").read_text() == "w01\n" and "127.0.1.1\tw01" in (root / "etc/hosts").read_text()
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/Europe/Berlin"
    assert "NTP=ntp.aliyun.com 10.1.2.3" in (root / "etc/systemd/timesyncd.conf.d/50-site.conf").read_text()
    wpa = root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
    assert wpa.stat().st_mode & 0o777 == 0o600
    text = wpa.read_text()
    # IEEE 802.11i-2004 annex H.4 test vector: "password" on SSID "IEEE"
    assert "psk=f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e" in text
    assert f"ssid={b'IEEE'.hex()}" in text and "country=CN" in text and "password" not in text
    assert (root / "root/.ssh/authorized_keys").read_text() == KEY + "\n"
    assert (root / layout.DATA_DIR.lstrip("/") / ".ssh-host").stat().st_mode & 0o777 == 0o700


def test_site_apply_without_a_file_or_a_key_sets_defaults_and_no_ssh(tmp_path):
    root = site_root(tmp_path, None)
    done = site_apply(root)
    assert done.returncode == 0
    assert (root / "etc/hostname").read_text() == "rating-terminal\n"
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/Asia/Shanghai"
    assert not (root / "root/.ssh/authorized_keys").exists()
    assert not (root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf").exists()
    assert "no SSH server" in done.stdout


def test_site_apply_reports_a_wrong_key_by_name_and_applies_the_others(tmp_path):
    root = site_root(tmp_path, '[system]\nhostname = "bad_name!"\nwifi_ssid = "Hall"\nwifi_psk = "short"\n'
                               'timezone = "Mars/Olympus"\n')
    done = site_apply(root)
    assert "<3>site-apply: system.hostname" in done.stdout and "<3>site-apply: system.wifi_psk" in done.stdout
    assert "short" not in done.stdout  # secrets are never echoed
    assert "system.timezone: 'Mars/Olympus'" in done.stdout
    assert (root / "etc/hostname").read_text() == "rating-terminal\n"
    # a wrong passphrase is no Wi-Fi, never an open network of that name (anyone's access point)
    assert not (root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf").exists()
    assert "system.wifi_psk: not usable, so no Wi-Fi" in done.stdout


def test_site_apply_reads_a_file_saved_by_windows_notepad(tmp_path):
    text = '[system]\r\nhostname = "w02"\r\nwifi_ssid = "政务大厅"\r\nwifi_psk = "pass\\"word"\r\n'
    root = site_root(tmp_path, None)
    (root / "boot/firmware/rating-terminal.toml").write_bytes(b"\xef\xbb\xbf" + text.encode())  # UTF-8 with BOM
    done = site_apply(root)
    assert done.returncode == 0 and "<3>" not in done.stdout, done.stdout
    assert (root / "etc/hostname").read_text() == "w02\n"
    wpa = (root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf").read_text()
    assert f"ssid={'政务大厅'.encode().hex()}" in wpa and 'pass"word' not in wpa
    (root / "boot/firmware/rating-terminal.toml").write_bytes(text.encode("gbk"))  # Notepad's "ANSI"
    done = site_apply(root)
    assert "not UTF-8" in done.stdout and "save it as UTF-8" in done.stdout
    assert (root / "etc/hostname").read_text() == "rating-terminal\n"


def test_site_apply_never_puts_host_keys_where_the_kiosk_user_pointed(tmp_path):
    root = site_root(tmp_path, f'[system]\nssh_authorized_keys = ["{KEY}"]\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chmod(elsewhere, 0o755)
    (root / layout.DATA_DIR.lstrip("/") / ".ssh-host").symlink_to(elsewhere)
    done = site_apply(root)
    assert done.returncode == 0, done.stdout
    host = root / layout.DATA_DIR.lstrip("/") / ".ssh-host"
    assert host.is_dir() and not host.is_symlink() and (host / "etc/ssh").is_dir()
    assert list(elsewhere.iterdir()) == [] and elsewhere.stat().st_mode & 0o777 == 0o755


@settings(max_examples=40, deadline=None)
@given(st.text(min_size=1, max_size=32).filter(lambda s: len(s.encode()) <= 32),
       st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), min_size=8, max_size=63))
def test_wpa_psk_matches_the_pbkdf2_definition(ssid, psk):
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.SourceFileLoader("site_apply", str(BIN / "site-apply"))
    spec = importlib.util.spec_from_loader("site_apply", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    key = mod.wpa_psk(ssid, psk)
    assert key == hashlib.pbkdf2_hmac("sha1", psk.encode(), ssid.encode(), 4096, 32).hex() and len(key) == 64


def test_save_journal_appends_only_new_warnings_and_stays_bounded(tmp_path):
    """Run against a stand-in journalctl (this machine's journal is not the terminal's): it prints what
    a real one would for `--cursor-file`, i.e. only lines after the cursor; the script's own logic —
    one header per boot, nothing written when nothing is new, the size bound — is what is checked."""
    fake = tmp_path / "journalctl"
    feed = tmp_path / "feed"
    fake.write_text("#!/bin/sh\nfor a; do case $a in --cursor-file=*) c=${a#--cursor-file=};; esac; done\n"
                    f"cat {feed}; : > {feed}; echo cursor > \"$c\"\n")
    fake.chmod(0o755)
    logs = tmp_path / "logs"
    env = {**os.environ, "JOURNALCTL": str(fake), "RATING_LOG_MAX": "2000"}
    run = lambda: subprocess.run(["sh", str(BIN / "save-journal"), str(logs)], env=env, check=True)  # noqa: E731
    feed.write_text("Dec 01 kernel: warning one\n")
    run()
    log = logs / "warnings.log"
    assert log.read_text().startswith("-- boot ") and "warning one" in log.read_text()
    before = log.stat().st_mtime_ns
    run()  # nothing new: the file is not touched
    assert log.stat().st_mtime_ns == before
    for i in range(20):
        feed.write_text(f"Dec 01 kiosk: error {i} " + "x" * 200 + "\n")
        run()
    assert log.stat().st_size <= 2000 and "error 19" in log.read_text()
    assert log.read_text().count("-- boot ") <= 1


def test_kiosk_env_and_config_exist_where_the_unit_reads_them():
    u = unit(KIOSK / "rating-terminal-ui.service")
    assert u["Service"]["EnvironmentFile"] == "/etc/rating-terminal/kiosk.env"
    env = (KIOSK / "kiosk.env").read_text()
    assert "RATING_KIVY_CONFIG=/etc/rating-terminal/kivy-config.ini" in env


def test_the_data_partitions_top_is_roots_with_the_sticky_bit():
    """The kiosk's user makes its files there but cannot rename what root keeps there (releases/, logs/,
    .ssh-host/): with `rating` owning the directory it could swap root's releases/ for its own."""
    lines = [line.split() for line in (ROOTFS / "etc/tmpfiles.d/rating-terminal.conf").read_text().splitlines()
             if line and not line.startswith("#")]
    top = next(w for w in lines if w[1] == layout.DATA_DIR)
    assert top[:5] == ["d", layout.DATA_DIR, "1770", "root", "rating"]
