"""The kiosk's small seams, each against the real thing: the systemd notify datagram socket, a DRM sysfs
tree, the voice player command, the maintenance hook registry, the network summary, the photo fetch."""
from __future__ import annotations

import array
import http.server
import math
import os
import socket
import stat
import sys
import threading
import time
import wave
from pathlib import Path

import pytest

from devkit.waiting import wait_for
from ui import audio, env, netinfo, sdnotify
from ui.hooks import ACTIONS, MaintenanceHooks
from ui.i18n import LANGUAGES
from ui.photos import PhotoCache

PNG_1PX = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a3b0cd6e0000000049454e44ae426082")


# ---- systemd notify ---------------------------------------------------------------------------------

@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(5)
    yield path, s
    s.close()


def test_notify_sends_a_datagram_to_notify_socket(notify_socket):
    path, s = notify_socket
    assert sdnotify.notify("READY=1\nSTATUS=up", {"NOTIFY_SOCKET": path})
    assert s.recv(4096) == b"READY=1\nSTATUS=up"


def test_notify_reaches_an_abstract_socket():
    name = f"hcp-test-{os.getpid()}-{time.monotonic_ns()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(5)
    try:
        assert sdnotify.notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert s.recv(100) == b"WATCHDOG=1"
    finally:
        s.close()


def test_notify_without_systemd_is_a_quiet_no_op(tmp_path):
    assert not sdnotify.notify("READY=1", {})
    assert not sdnotify.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})


def test_watchdog_interval_is_half_of_watchdog_sec():
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}) == 10.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert sdnotify.watchdog_interval({}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


# ---- display and environment -------------------------------------------------------------------------

def _drm(tmp_path: Path, connectors: dict[str, str]) -> Path:
    root = tmp_path / "drm"
    for name, status in connectors.items():
        (root / name).mkdir(parents=True)
        (root / name / "status").write_text(status + "\n")
    (root / "renderD128").mkdir(parents=True, exist_ok=True)
    (root / "card0").mkdir(exist_ok=True)
    return root


def test_kms_card_is_the_one_with_a_connected_display(tmp_path):
    # a Pi 5 boot where the scan-out card came up second
    root = _drm(tmp_path, {"card1-DSI-1": "connected", "card1-HDMI-A-1": "disconnected",
                           "card2-Writeback-1": "unknown"})
    assert env.pick_kms_card(root) == 1
    assert env.pick_kms_card(_drm(tmp_path / "b", {"card3-HDMI-A-1": "disconnected"})) == 3
    assert env.pick_kms_card(tmp_path / "nothing") is None


def test_display_kind(tmp_path):
    dev = tmp_path / "dev"
    assert env.display_kind({}, dev) is None
    assert env.display_kind({"DISPLAY": ":0"}, dev) == "x11"
    assert env.display_kind({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, dev) == "wayland"
    (dev / "dri").mkdir(parents=True)
    (dev / "dri" / "card0").touch()
    assert env.display_kind({}, dev) == "kmsdrm"


def test_kiosk_environment(tmp_path):
    e = {"KIVY_HOME": str(tmp_path / "home"), env.KIOSK_CONFIG_ENV: str(env.FONT.parents[2] / "image-build" /
                                                                      "kiosk" / "config.ini")}
    env.prepare_kiosk(rotation=90, env=e, sysfs=_drm(tmp_path, {"card1-DSI-1": "connected"}))
    assert e["SDL_VIDEODRIVER"] == "kmsdrm" and e["KIVY_WINDOW"] == "sdl2"
    assert e["SDL_KMSDRM_DEVICE_INDEX"] == "1"
    assert e["SDL_TOUCH_MOUSE_EVENTS"] == "0" and e["KIVY_NO_ARGS"] == "1"
    assert "KIVY_GL_BACKEND" not in e
    assert (tmp_path / "home" / "config.ini").read_bytes() == Path(e[env.KIOSK_CONFIG_ENV]).read_bytes()


# ---- voice ------------------------------------------------------------------------------------------

def _player(tmp_path: Path) -> tuple[str, Path]:
    log = tmp_path / "played.txt"
    script = tmp_path / "player"
    script.write_text(f"#!{sys.executable}\nimport sys\nopen({str(log)!r}, 'a').write(sys.argv[-1] + '\\n')\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script), log


def test_voice_plays_the_recorded_prompt_with_the_player(tmp_path):
    player, log = _player(tmp_path)
    (tmp_path / "voice" / "zh").mkdir(parents=True)
    (tmp_path / "voice" / "zh" / "case.prompt.wav").write_bytes(b"RIFF")
    cards = tmp_path / "cards"
    cards.write_text(" 0 [vc4hdmi0       ]: vc4-hdmi - vc4-hdmi-0\n")
    v = audio.make_voice(str(tmp_path / "voice"), "zh", player, cards)
    assert isinstance(v, audio.WavPlayer)
    v.say("case.prompt")  # the center's own recording
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) == 1, what="player ran")
    v.say("thanks.title")  # not recorded by the center: the shipped one
    wait_for(lambda: len(log.read_text().splitlines()) == 2, what="player ran again")
    v.stop()
    assert log.read_text().splitlines() == [str(tmp_path / "voice" / "zh" / "case.prompt.wav"),
                                            str(audio.SHIPPED / "zh" / "thanks.title.wav")]
    bare = audio.WavPlayer(tmp_path / "voice", "zh", player, fallback=None)
    assert not bare.path("thanks.title").exists()  # without the shipped ones: nothing to play
    builtin = audio.make_voice(audio.BUILTIN, "en", player, cards)
    assert isinstance(builtin, audio.WavPlayer) and builtin.path("case.prompt") == audio.SHIPPED / "en" / \
        "case.prompt.wav"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_prompt_the_seam_can_play_ships_as_an_audible_wav(language):
    """ui/voice/ (rendered by tools/render-voices with espeak-ng): every prompt a screen asks for, in
    every language, is a WAV file the stdlib reads, long enough and not silent."""
    from ui.screens import PROMPTS as SCREEN_PROMPTS
    assert set(SCREEN_PROMPTS.values()) <= set(audio.PROMPTS)
    for prompt in audio.PROMPTS:
        path = audio.SHIPPED / language / f"{prompt}.wav"
        with wave.open(str(path)) as w:
            assert (w.getnchannels(), w.getsampwidth()) == (1, 2), path
            rate, frames = w.getframerate(), w.readframes(w.getnframes())
        samples = array.array("h", frames)
        assert len(samples) / rate >= 0.5, f"{path}: {len(samples) / rate:.2f} s"
        rms = math.sqrt(sum(v * v for v in samples) / len(samples))
        assert rms >= 500, f"{path}: RMS {rms:.0f} of 32767 is silence"


def test_voice_is_silent_without_folder_player_or_sound_card(tmp_path):
    player, _ = _player(tmp_path)
    (tmp_path / "voice").mkdir()
    cards = tmp_path / "cards"
    cards.write_text("--- no soundcards ---\n")
    assert isinstance(audio.make_voice("", "zh", player, cards), audio.Silent)
    assert isinstance(audio.make_voice(str(tmp_path / "voice"), "zh", player, cards), audio.Silent)
    assert isinstance(audio.make_voice(str(tmp_path / "voice"), "zh", "/nonexistent/aplay", cards), audio.Silent)
    assert isinstance(audio.make_voice(str(tmp_path / "voice"), "zh", player, tmp_path / "no-proc"), audio.Silent)


# ---- screenshots ------------------------------------------------------------------------------------

def test_screenshots_go_to_a_temp_dir_unless_make_screens_asks(monkeypatch, tmp_path):
    from tests import screenshots
    monkeypatch.delenv(screenshots.ENV, raising=False)
    repo = screenshots.DOCS.parents[1]
    assert not screenshots.screens_dir().is_relative_to(repo)
    monkeypatch.setenv(screenshots.ENV, "docs/screens")  # what `make screens` sets
    assert screenshots.screens_dir() == screenshots.DOCS
    monkeypatch.setenv(screenshots.ENV, str(tmp_path / "shots"))
    assert screenshots.screens_dir() == tmp_path / "shots" and (tmp_path / "shots").is_dir()


# ---- hooks ------------------------------------------------------------------------------------------

def test_hooks_registry():
    h = MaintenanceHooks()
    assert not any(h.available(a) for a in ACTIONS)
    assert h.run("print_test_page") == (False, "no hook")
    h.register("print_test_page", lambda: "printed")
    assert h.run("print_test_page") == (True, "printed")
    h.register("test_keys", lambda: 1 / 0)
    ok, msg = h.run("test_keys")
    assert not ok and "ZeroDivisionError" in msg
    with pytest.raises(ValueError):
        h.register("format_disk", lambda: None)


# ---- network summary --------------------------------------------------------------------------------

def test_network_summary_reads_sysfs(tmp_path):
    for name, state in (("lo", "unknown"), ("eth0", "up"), ("wlan0", "down")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "operstate").write_text(state + "\n")
    lines = netinfo.summary(tmp_path)
    assert lines[0].startswith("eth0 up") and lines[1].startswith("wlan0 down")
    assert not any(line.startswith("lo") for line in lines)
    assert lines[-1].startswith("host ")
    assert netinfo.ipv4("lo") == "127.0.0.1"


# ---- staff photos ----------------------------------------------------------------------------------

@pytest.fixture
def photo_server(tmp_path):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "S0101.png").write_bytes(PNG_1PX)
    (tmp_path / "www" / "evil.png").write_bytes(b"<html>not an image</html>")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path / "www"), **kw)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_photo_is_fetched_once_and_kept(tmp_path, photo_server):
    ready: list[str] = []
    cache = PhotoCache(tmp_path / "photos", on_ready=ready.append)
    url = f"{photo_server}/S0101.png"
    assert cache.get(url) is None
    wait_for(lambda: ready == [url], what="photo fetched")
    assert cache.get(url).read_bytes() == PNG_1PX
    assert PhotoCache(tmp_path / "photos").get(url) is not None  # kept across restarts


def test_a_bad_photo_keeps_the_avatar(tmp_path, photo_server):
    ready: list[str] = []
    cache = PhotoCache(tmp_path / "photos", on_ready=ready.append, timeout_s=2)
    for name in ("evil.png", "missing.png"):
        assert cache.get(f"{photo_server}/{name}") is None
    time.sleep(0.5)
    assert cache.get(f"{photo_server}/evil.png") is None and not ready


# ---- make run -----------------------------------------------------------------------------------------

def test_demo_opens_the_kivy_window_only_with_a_display(tmp_path):
    from devkit.demo import choose_view
    assert choose_view("auto", {}, on_pi=False) == "console"
    assert choose_view("auto", {"SDL_VIDEODRIVER": "kmsdrm"}, on_pi=True) == "kivy"
    assert choose_view("auto", {"SDL_VIDEODRIVER": "kmsdrm"}, on_pi=False) == "console"
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\0")
    assert env.is_raspberry_pi(model) and not env.is_raspberry_pi(tmp_path / "none")
    assert choose_view("auto", {"DISPLAY": ":0"}) == "kivy"
    assert choose_view("auto", {"WAYLAND_DISPLAY": "wayland-0"}) == "kivy"
    assert choose_view("console", {"DISPLAY": ":0"}) == "console"
    assert choose_view("kivy", {}) == "kivy"
