"""The image's fixed layout: partition labels, sizes, mount points, the kernel command line."""
from __future__ import annotations

MIB = 1024 * 1024
ALIGN = 4 * MIB            # every partition starts on a 4 MiB boundary (SD erase blocks)
SECTOR = 512

BOOT_LABEL = "RTBOOT"      # p1 FAT32, /boot/firmware
ROOT_LABEL = "RTROOT"      # p2 ext4, / (read-only, tmpfs overlay)
DATA_LABEL = "RTDATA"      # p3 ext4, the terminal's data; first boot grows it to the card's end
BOOT_MIB = 256
DATA_MIB = 64

BOOT_DIR = "/boot/firmware"
DATA_DIR = "/var/lib/rating-terminal"
SETTINGS_NAME = "rating-terminal.toml"     # site + terminal settings, the one file a technician edits
ENROLMENT_NAME = "hcp-enrolment.toml"      # the center's enrolment file, as it is

RATING_UID = RATING_GID = 990  # fixed, so fstab can give the boot partition's files to group `rating`

# Fixed identifiers make two builds of the same inputs byte-identical.
DISK_ID = 0x52544931                         # "RTI1"
BOOT_VOLUME_ID = "52544254"                  # "RTBT"
ROOT_UUID = "52544f4f-5400-4000-8000-000000000002"
DATA_UUID = "52544441-5441-4000-8000-000000000003"

CMDLINE = ("console=serial0,115200 console=tty3 root=LABEL=RTROOT rootfstype=ext4 ro rootwait fsck.repair=yes "
           "quiet loglevel=3 vt.global_cursor_default=0 rtroot=overlay")


def cmdline(extra: str = "") -> str:
    """cmdline.txt's one line (the Pi firmware wants a single line)."""
    return f"{CMDLINE} {extra}".strip() + "\n"


def align(n: int) -> int:
    """`n` bytes rounded up to the partition alignment."""
    return -(-n // ALIGN) * ALIGN
