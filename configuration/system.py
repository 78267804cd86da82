"""The `[system]` section: the board's own settings, in the same boot-partition file as the terminal's
(`/boot/firmware/rating-terminal.toml`). The image applies them on every boot (rating-site-apply,
image-build/README.md); the terminal only validates them, so `--check-config` and the stamp catch a
wrong value before a card goes out.

Imports only configuration.schema (the image's site-apply runs it with the system Python, no venv).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from configuration.schema import opt

_HOST = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
_IPV6 = r"[0-9A-Fa-f:.]+"
_SSH_KEY = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|"
                      r"sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [\x20-\x7e]{0,200})?")


def check_ssid(value: str) -> None:
    if not 1 <= len(value.encode("utf-8")) <= 32 or any(ord(c) < 0x20 or ord(c) == 0x7f for c in value):
        raise ValueError("expected a Wi-Fi network name of 1 to 32 bytes without control characters")


def check_ntp(value: tuple[str, ...]) -> None:
    for server in value:
        if not (re.fullmatch(_HOST, server) or re.fullmatch(_IPV6, server) and ":" in server) or len(server) > 253:
            raise ValueError(f"expected host names or IP addresses of NTP servers, got {server!r}")


def check_keys(value: tuple[str, ...]) -> None:
    for i, key in enumerate(value):
        if not _SSH_KEY.fullmatch(key):
            raise ValueError(f"entry {i + 1}: expected one OpenSSH public key line "
                             f"('ssh-ed25519 AAAA… comment'), got {key[:40]!r}")


@dataclass(frozen=True)
class SystemSection:
    """`[system]`: host name, time zone, time servers, Wi-Fi and SSH of the board (applied at boot)."""

    hostname: str = opt("", "host name (letters, digits, '-'; up to 63 characters); empty = the image's "
                        "'rating-terminal'", pattern=r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)?$")
    timezone: str = opt("Asia/Shanghai", "time zone, a tz database name such as Asia/Shanghai",
                        pattern=r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$")
    ntp: tuple[str, ...] = opt((), "NTP servers (host names or addresses); empty = Debian's pool. The kiosk "
                               "never waits for time sync", check=check_ntp)
    wifi_ssid: str = opt("", "Wi-Fi network name; empty = no Wi-Fi (wired only)", check=check_ssid)
    wifi_psk: str = opt("", "Wi-Fi passphrase (8 to 63 printable ASCII characters, or 64 hex digits); empty "
                        "= an open network", secret=True, pattern=r"^([\x20-\x7e]{8,63}|[0-9A-Fa-f]{64})?$")
    wifi_country: str = opt("CN", "Wi-Fi regulatory country (ISO 3166 two capital letters)", pattern=r"^[A-Z]{2}$")
    wifi_hidden: bool = opt(False, "the Wi-Fi network does not broadcast its name")
    ssh_authorized_keys: tuple[str, ...] = opt((), "OpenSSH public keys allowed to log in as root; empty = no "
                                               "SSH server at all", check=check_keys)


def problems(system: SystemSection) -> list[str]:
    """What the keys are fine alone but wrong together."""
    out = []
    if system.wifi_psk and not system.wifi_ssid:
        out.append("system.wifi_psk: given without system.wifi_ssid (which network is it for?)")
    if system.wifi_hidden and not system.wifi_ssid:
        out.append("system.wifi_hidden: given without system.wifi_ssid")
    return out
