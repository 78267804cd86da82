"""Where the kiosk runs and the environment Kivy must see before it is imported.

Kivy reads its settings at import time (command line, log mode, window provider, `config.ini` under
`$KIVY_HOME`), so `python -m ui`, the tests and the benchmark call one of the `prepare_*` functions
first. Nothing here imports Kivy.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import MutableMapping

FONT = Path(__file__).with_name("fonts") / "wqy-microhei.ttc"
KIOSK_CONFIG_ENV = "RATING_KIVY_CONFIG"  # a config.ini to install into $KIVY_HOME (kiosk boot)

# Always: no argv parsing by Kivy, logging through Python's `logging`, no log files.
BASE = {"KIVY_NO_ARGS": "1", "KIVY_LOG_MODE": "PYTHON", "KIVY_NO_FILELOG": "1"}
# Off the kiosk (desktop, tests, bench) the kiosk config.ini's main choices are given as KCFG_ overrides.
LIKE_KIOSK = {"KCFG_KIVY_KIVY_CLOCK": "free_only",  # free events (core → UI) run even while the loop sleeps
              "KCFG_KIVY_EXIT_ON_ESCAPE": "0", "KCFG_INPUT_MOUSE": "mouse,disable_multitouch",
              "KCFG_GRAPHICS_MULTISAMPLES": "0"}


def display_kind(env: MutableMapping[str, str] | None = None, dev: Path = Path("/dev")) -> str | None:
    """'wayland', 'x11' or 'kmsdrm' (a DRM device and no desktop), else None (run headless)."""
    env = os.environ if env is None else env
    if env.get("SDL_VIDEODRIVER") == "offscreen":
        return "offscreen"
    if env.get("WAYLAND_DISPLAY"):
        return "wayland"
    if env.get("DISPLAY"):
        return "x11"
    if env.get("SDL_VIDEODRIVER") == "kmsdrm" or any((dev / "dri").glob("card*")):
        return "kmsdrm"
    return None


def is_raspberry_pi(model: Path = Path("/proc/device-tree/model")) -> bool:
    try:
        return model.read_bytes().startswith(b"Raspberry Pi")
    except OSError:
        return False


def pick_kms_card(sysfs: Path = Path("/sys/class/drm")) -> int | None:
    """Index of the DRM card driving a connected display.

    On a Pi 5 there are several cards (v3d renders, vc4/rp1 scan out) and their numbering changes
    between boots: take the first card with a connected connector, else the first with any connector.
    """
    cards: dict[int, list[str]] = {}
    try:
        entries = sorted(sysfs.iterdir())
    except OSError:
        return None
    for entry in entries:
        m = re.fullmatch(r"card(\d+)-.+", entry.name)
        if not m:
            continue
        try:
            status = (entry / "status").read_text().strip()
        except OSError:
            status = "unknown"
        cards.setdefault(int(m.group(1)), []).append(status)
    for idx in sorted(cards):
        if "connected" in cards[idx]:
            return idx
    return min(cards) if cards else None


def _apply(env: MutableMapping[str, str], values: dict[str, str]) -> None:
    for k, v in values.items():
        env.setdefault(k, v)


def prepare_offscreen(width: int = 800, height: int = 480, home: str | None = None,
                      env: MutableMapping[str, str] | None = None) -> str:
    """Tests and benchmarks: SDL's offscreen driver (EGL on Mesa llvmpipe; no X server)."""
    env = os.environ if env is None else env
    home = home or tempfile.mkdtemp(prefix="kivy-home-")
    _apply(env, BASE)
    _apply(env, LIKE_KIOSK)
    env.update({"SDL_VIDEODRIVER": "offscreen", "KIVY_HOME": home, "KIVY_METRICS_DENSITY": "1",
                "KCFG_GRAPHICS_WIDTH": str(width), "KCFG_GRAPHICS_HEIGHT": str(height),
                "KCFG_GRAPHICS_FULLSCREEN": "0", "KCFG_GRAPHICS_MAXFPS": "60"})
    env.pop("KIVY_WINDOW", None)
    return home


def prepare_desktop(width: int, height: int, fullscreen: bool, rotation: int,
                    env: MutableMapping[str, str] | None = None) -> None:
    """A window on an X11/Wayland desktop (`make run`)."""
    env = os.environ if env is None else env
    _apply(env, BASE)
    _apply(env, LIKE_KIOSK)
    _apply(env, {"KIVY_METRICS_DENSITY": "1"})
    env.update({"KCFG_GRAPHICS_WIDTH": str(width), "KCFG_GRAPHICS_HEIGHT": str(height),
                "KCFG_GRAPHICS_FULLSCREEN": "auto" if fullscreen else "0",
                "KCFG_GRAPHICS_ROTATION": str(rotation), "KCFG_GRAPHICS_RESIZABLE": "0"})


def prepare_kiosk(rotation: int | None = None, env: MutableMapping[str, str] | None = None,
                  sysfs: Path = Path("/sys/class/drm")) -> None:
    """The Pi with no desktop: SDL on KMSDRM, full screen. Settings come from the kiosk env file and
    the kiosk `config.ini` (image-build/kiosk/), installed here into `$KIVY_HOME` if asked to."""
    env = os.environ if env is None else env
    _apply(env, BASE)
    _apply(env, {"KIVY_WINDOW": "sdl2", "SDL_VIDEODRIVER": "kmsdrm", "SDL_TOUCH_MOUSE_EVENTS": "0",
                 "KIVY_METRICS_DENSITY": "1"})
    if "SDL_KMSDRM_DEVICE_INDEX" not in env:
        card = pick_kms_card(sysfs)
        if card is not None:
            env["SDL_KMSDRM_DEVICE_INDEX"] = str(card)
    source = env.get(KIOSK_CONFIG_ENV, "")
    if source:
        install_kivy_config(Path(source), Path(env.get("KIVY_HOME") or Path.home() / ".kivy"))
    if rotation is not None:
        env.setdefault("KCFG_GRAPHICS_ROTATION", str(rotation))


def install_kivy_config(source: Path, home: Path) -> None:
    """Copy the shipped kiosk config.ini into Kivy's home (which must be writable) when it differs."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "config.ini"
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
