"""image-build/stamp: the enrolment file and the site settings onto a card's FAT boot partition (our image,
a stock Raspberry Pi OS-like image, a mounted boot directory), checked by the terminal's own loader,
read back with --show; clear refusals."""
from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from rtimage import layout, settings
from rtimage.assemble import make_ext4, make_fat, partition_table, place
from rtimage.stamp import StampError, find_boot

from .conftest import EPOCH, IMAGE_BUILD

STAMP = IMAGE_BUILD / "stamp"
CA = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----"
ENROLMENT = f'''# The enrolment file of center hz01
[center]
id = "hz01"

[mqtt]
host = "mqtt.hz01.example"
port = 8883
tls = true
ca_pem = """
{CA}
"""

[enrolment]
username = "enrolment"
password = "s3cret-enrolment-pass"
console_url = "https://hcp.hz01.example/console/"
'''
MIB = 1024 * 1024


@pytest.fixture
def enrolment(tmp_path) -> Path:
    p = tmp_path / "center-enrolment.toml"
    p.write_text(ENROLMENT)
    return p


def stamp(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(STAMP), *map(str, args)], capture_output=True, text=True)


def fat_file(img: Path, offset: int, name: str) -> str | None:
    done = subprocess.run(["mtype", "-i", f"{img}@@{offset}", f"::/{name}"], capture_output=True, text=True,
                          env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    return done.stdout if done.returncode == 0 else None


def test_stamp_writes_both_files_and_show_reads_them_back(image_copy, enrolment, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text(CA + "\n")
    done = stamp(image_copy, "--enrolment", enrolment, "--broker", "10.0.2.100:8883", "--ca", ca,
                 "--wifi-ssid", "政务大厅", "--wifi-psk", "hall-pass-2024", "--hardware", "official-7in-touch",
                 "--timezone", "Asia/Shanghai")
    assert done.returncode == 0, done.stderr
    boot = find_boot(image_copy)
    assert (boot.number, boot.label) == (1, "RTBOOT")
    assert fat_file(image_copy, boot.offset, layout.ENROLMENT_NAME) == ENROLMENT
    conf = tomllib.loads(fat_file(image_copy, boot.offset, layout.SETTINGS_NAME))
    assert conf["mqtt"] == {"host": "10.0.2.100", "port": 8883, "tls": True, "ca_pem": CA + "\n"}
    assert conf["system"]["wifi_ssid"] == "政务大厅" and conf["hardware"]["profile"] == "official-7in-touch"
    # the kernel and the rest of the boot partition are untouched
    assert fat_file(image_copy, boot.offset, "cmdline.txt") == layout.cmdline()

    shown = stamp(image_copy, "--show")
    assert shown.returncode == 0, shown.stderr
    assert "hall-pass-2024" not in shown.stdout and "s3cret-enrolment-pass" not in shown.stdout
    assert 'wifi_psk = "***"' in shown.stdout and 'password = "***"' in shown.stdout
    assert 'host = "10.0.2.100"' in shown.stdout and "政务大厅" in shown.stdout

    # stamping again replaces the files (a corrected Wi-Fi password, say)
    site = tmp_path / "site.toml"
    site.write_text('[system]\nwifi_ssid = "Hall"\nwifi_psk = "another-pass"\n')
    assert stamp(image_copy, "--enrolment", enrolment, "--settings", site).returncode == 0
    assert fat_file(image_copy, boot.offset, layout.SETTINGS_NAME) == site.read_text()


def test_wrong_settings_are_refused_by_name_and_nothing_is_written(image_copy, enrolment, tmp_path):
    site = tmp_path / "site.toml"
    site.write_text('[mqtt]\nprot = 1883\n[system]\nwifi_ssid = "Hall"\nwifi_psk = "short"\n'
                    '[hardware]\nprofile = "official-7in-touc"\n')
    done = stamp(image_copy, "--enrolment", enrolment, "--settings", site)
    assert done.returncode == 2
    assert "mqtt.prot" in done.stderr and "did you mean 'port'" in done.stderr
    assert "system.wifi_psk" in done.stderr and "short" not in done.stderr
    assert "hardware.profile" in done.stderr and "official-7in-touch" in done.stderr
    boot = find_boot(image_copy)
    assert fat_file(image_copy, boot.offset, layout.SETTINGS_NAME) is None
    assert fat_file(image_copy, boot.offset, layout.ENROLMENT_NAME) is None


def test_a_file_that_is_not_an_enrolment_file_is_refused(image_copy, tmp_path):
    bogus = tmp_path / "enrol.toml"
    bogus.write_text('[mqtt]\nhost = "x"\n')
    done = stamp(image_copy, "--enrolment", bogus, "--broker", "h:1883")
    assert done.returncode == 2 and "not a center enrolment file" in done.stderr
    bogus.write_text("[enrolment\nusername=")
    done = stamp(image_copy, "--enrolment", bogus)
    assert done.returncode == 2 and "not valid TOML" in done.stderr


def test_compressed_image_is_refused_with_the_hint(tmp_path, enrolment):
    xz = tmp_path / "rating-terminal-0.9.0-arm64.img.xz"
    xz.write_bytes(b"\xfd7zXZ\x00")
    done = stamp(xz, "--enrolment", enrolment)
    assert done.returncode == 2
    assert "xz -dk" in done.stderr and "rating-terminal-0.9.0-arm64.img" in done.stderr


def test_image_without_a_fat_partition_is_refused(tmp_path, enrolment):
    img = tmp_path / "noboot.img"
    piece = tmp_path / "p1"
    make_ext4(None, piece, 16 * MIB, label="ONLY", uuid=layout.DATA_UUID, epoch=EPOCH, owners=[])
    with open(img, "wb") as f:
        f.truncate(4 * MIB + 16 * MIB)
    subprocess.run(["sfdisk", "-q", str(img)], input=partition_table([(4 * MIB, 16 * MIB, "83")], 1), text=True,
                   check=True)
    place(piece, img, 4 * MIB)
    done = stamp(img, "--enrolment", enrolment)
    assert done.returncode == 2 and "none of its 1 partitions is a FAT boot partition" in done.stderr
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(StampError, match="not an SD-card image"):
        find_boot(junk)
    with pytest.raises(StampError, match="no such image"):
        find_boot(tmp_path / "missing.img")


def pi_os_like(tmp_path: Path) -> tuple[Path, int]:
    """A stock Raspberry Pi OS Lite layout: p1 FAT32 `bootfs` at 4 MiB, p2 ext4 `rootfs`."""
    boot_tree, root_tree = tmp_path / "bootfs", tmp_path / "rootfs"
    boot_tree.mkdir()
    (boot_tree / "config.txt").write_text("[all]\narm_64bit=1\n")
    (boot_tree / "cmdline.txt").write_text("console=serial0,115200 console=tty1 root=PARTUUID=1234-02 rootwait\n")
    (boot_tree / "kernel8.img").write_bytes(b"MZ" * 100)
    (root_tree / "etc").mkdir(parents=True)
    (root_tree / "etc/os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    boot_size, root_size = 64 * MIB, 32 * MIB
    make_fat(boot_tree, tmp_path / "p1", boot_size, label="bootfs", volume_id="12345678", hidden=8192, epoch=EPOCH)
    make_ext4(root_tree, tmp_path / "p2", root_size, label="rootfs", uuid=layout.ROOT_UUID, epoch=EPOCH, owners=[])
    img = tmp_path / "2024-11-19-raspios-bookworm-arm64-lite.img"
    with open(img, "wb") as f:
        f.truncate(4 * MIB + boot_size + root_size)
    table = partition_table([(4 * MIB, boot_size, "c"), (4 * MIB + boot_size, root_size, "83")], 0x1234abcd)
    subprocess.run(["sfdisk", "-q", str(img)], input=table, text=True, check=True)
    place(tmp_path / "p1", img, 4 * MIB)
    place(tmp_path / "p2", img, 4 * MIB + boot_size)
    return img, 4 * MIB


def test_stock_pi_os_image_is_stamped_on_its_bootfs(tmp_path, enrolment):
    img, offset = pi_os_like(tmp_path)
    done = stamp(img, "--enrolment", enrolment, "--hardware", "buttons-only-box", "--timezone", "Asia/Shanghai")
    assert done.returncode == 0, done.stderr
    assert "partition 1 (bootfs)" in done.stdout
    assert fat_file(img, offset, layout.ENROLMENT_NAME) == ENROLMENT
    assert 'profile = "buttons-only-box"' in fat_file(img, offset, layout.SETTINGS_NAME)
    assert fat_file(img, offset, "kernel8.img") == "MZ" * 100  # Pi OS's own files stay
    shown = stamp(img, "--show")
    assert shown.returncode == 0 and "buttons-only-box" in shown.stdout


def test_a_mounted_boot_directory_is_stamped_in_place(tmp_path, enrolment):
    boot = tmp_path / "RTBOOT"
    boot.mkdir()
    done = stamp("--boot-dir", boot, "--enrolment", enrolment, "--wifi-ssid", "Hall")
    assert done.returncode == 0, done.stderr
    assert (boot / layout.ENROLMENT_NAME).read_text() == ENROLMENT
    assert tomllib.loads((boot / layout.SETTINGS_NAME).read_text())["system"] == {"wifi_ssid": "Hall"}
    assert not list(boot.glob(".*.tmp"))
    assert stamp("--boot-dir", boot, "--show").returncode == 0


def test_show_of_an_unstamped_card_says_what_is_missing(image_copy):
    done = stamp(image_copy, "--show")
    assert done.returncode == 1 and "hcp-enrolment.toml on" in done.stdout and "missing" in done.stdout
    assert "hcp-enrolment.toml: not on the card" in done.stderr and "qr.key" not in done.stderr


def test_options_and_a_settings_file_are_not_mixed(image_copy, enrolment, tmp_path):
    site = tmp_path / "s.toml"
    site.write_text("")
    done = stamp(image_copy, "--enrolment", enrolment, "--settings", site, "--wifi-ssid", "x")
    assert done.returncode == 2 and "either it or the single options" in done.stderr


# ---- the settings file: properties ------------------------------------------------------------------

printable = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@hsettings(max_examples=40, deadline=None)
@given(ssid=printable, psk=printable, tz=printable, host=printable,
       broker=st.one_of(st.none(), st.from_regex(r"[a-z0-9.-]{1,20}:[0-9]{1,5}", fullmatch=True), printable))
def test_rendered_settings_parse_back_and_validation_names_the_key(ssid, psk, tz, host, broker):
    try:
        text = settings.from_options(broker=broker, wifi_ssid=ssid, wifi_psk=psk, timezone=tz, hostname=host)
    except settings.SettingsError as e:
        assert e.problems[0].startswith("--broker")
        return
    data = tomllib.loads(text)  # always valid TOML, whatever the values hold
    assert data["system"]["wifi_ssid"] == ssid and data["system"]["wifi_psk"] == psk
    problems = settings.validate(text, ENROLMENT)
    for p in problems:
        assert p.split(" ", 1)[0].split(":", 1)[0] in {
            "system.wifi_ssid", "system.wifi_psk", "system.timezone", "system.hostname", "mqtt.port", "mqtt.host"}
        if p.startswith("system.wifi_psk"):
            assert p.endswith("got ***")  # a secret is never quoted
    psk_lines = [line for line in settings.masked(text).splitlines() if line.startswith("wifi_psk")]
    assert psk_lines == ['wifi_psk = "***"']


@given(st.text(max_size=300))
@hsettings(max_examples=40, deadline=None)
def test_validate_never_crashes_on_any_settings_text(text):
    problems = settings.validate(text, ENROLMENT)
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)


def test_files_from_windows_notepad(image_copy, enrolment, tmp_path):
    """UTF-8 with BOM and CRLF (Notepad) is stamped without the BOM; ANSI/GBK bytes are refused by name."""
    site = tmp_path / "site.toml"
    text = '[system]\r\nwifi_ssid = "政务大厅"\r\nwifi_psk = "hall-pass-2024"\r\n'
    site.write_bytes(b"\xef\xbb\xbf" + text.encode())
    done = stamp(image_copy, "--enrolment", enrolment, "--settings", site)
    assert done.returncode == 0, done.stderr
    boot = find_boot(image_copy)
    written = subprocess.run(["mtype", "-i", f"{image_copy}@@{boot.offset}", f"::/{layout.SETTINGS_NAME}"],
                             capture_output=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout
    assert written == text.encode()  # no BOM on the card, CRLF kept (TOML reads it)
    site.write_bytes(text.encode("gbk"))
    done = stamp(image_copy, "--enrolment", enrolment, "--settings", site)
    assert done.returncode == 2 and "not UTF-8" in done.stderr and "save it as UTF-8" in done.stderr
    assert str(site) in done.stderr

    # the technician then edits the file on the card with Notepad, saving it as ANSI (GBK)
    subprocess.run(["mcopy", "-o", "-i", f"{image_copy}@@{boot.offset}", "-", f"::/{layout.SETTINGS_NAME}"],
                   input=text.encode("gbk"), check=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    shown = stamp(image_copy, "--show")
    assert shown.returncode == 1 and f"{layout.SETTINGS_NAME}: not UTF-8" in shown.stderr


def test_a_nearly_full_boot_partition_is_refused_before_anything_is_written(tmp_path, enrolment):
    """mcopy truncates a file on a full FAT and exits 0: the stamp must not report a truncated file as done."""
    fat = tmp_path / "boot.fat"
    subprocess.run(["mkfs.vfat", "-C", str(fat), "1024"], check=True, capture_output=True)
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    free = int(subprocess.run(["mdir", "-i", str(fat), "::/"], capture_output=True, text=True, env=env)
               .stdout.split("bytes free")[0].split("\n")[-1].replace(" ", ""))
    (tmp_path / "filler").write_bytes(b"\0" * (free - 2048))
    subprocess.run(["mcopy", "-i", str(fat), str(tmp_path / "filler"), "::/filler"], check=True, env=env)
    site = tmp_path / "site.toml"
    site.write_text('[system]\nhostname = "w01"\n# ' + "x" * 3000 + "\n")
    done = stamp(fat, "--enrolment", enrolment, "--settings", site)
    assert done.returncode == 2 and "bytes free" in done.stderr and "nothing written" in done.stderr
    listing = subprocess.run(["mdir", "-b", "-i", str(fat), "::/"], capture_output=True, text=True, env=env).stdout
    assert layout.ENROLMENT_NAME not in listing and layout.SETTINGS_NAME not in listing


def test_a_gpt_image_with_a_fat16_boot_partition_is_stamped(tmp_path, enrolment):
    """A GPT disk (Pi 4/5 boot it) whose boot partition is FAT16 "basic data": found and stamped."""
    img, fat = tmp_path / "gpt.img", tmp_path / "p1"
    subprocess.run(["mkfs.vfat", "-F", "16", "-n", "BOOT", "-C", str(fat), str(32 * 1024)], check=True,
                   capture_output=True)
    with open(img, "wb") as f:
        f.truncate(4 * MIB + 32 * MIB + MIB)
    subprocess.run(["sfdisk", "-q", str(img)], text=True, check=True,
                   input="label: gpt\nstart=8192, size=65536, type=EBD0A0A2-B9E5-4433-87C0-68B6B7260599\n")
    place(fat, img, 4 * MIB)
    done = stamp(img, "--enrolment", enrolment, "--hardware", "buttons-only-box")
    assert done.returncode == 0, done.stderr
    assert "partition 1 (BOOT)" in done.stdout and fat_file(img, 4 * MIB, layout.ENROLMENT_NAME) == ENROLMENT
