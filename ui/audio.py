"""Optional voice prompts through a small seam: `voice.say("case.prompt")`.

Prompts are named by their i18n key and recorded beforehand as WAV files,
`<folder>/<language>/<key>.wav` (e.g. `voice/zh/case.prompt.wav`). The firmware ships them in
`ui/voice/` (rendered with espeak-ng's Mandarin voice by `make voices`; `[ui] voice = "builtin"`); a
center's own recordings in another folder of the same layout replace them prompt by prompt (a prompt
missing there is taken from the shipped ones). They are played by an external player (`aplay -q` by
default) in the background, so the UI loop never waits for the sound. Without a folder, a player or a
sound card the voice is silent, never an error.
"""
from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

PROMPTS = ("case.prompt", "reasons.title", "thanks.title", "elsewhere.title", "unavailable.title")
SHIPPED = Path(__file__).with_name("voice")  # the shipped recordings (tools/render-voices)
BUILTIN = "builtin"                          # `[ui] voice` value that selects them
NO_CARDS = "--- no soundcards ---"


class Voice(Protocol):
    def say(self, prompt: str) -> None: ...

    def stop(self) -> None: ...


class Silent:
    """The default: no sound."""

    def say(self, prompt: str) -> None:
        pass

    def stop(self) -> None:
        pass


class WavPlayer:
    """Plays recorded prompts with a command; a new prompt cuts the one still playing."""

    def __init__(self, folder: str | Path, language: str = "zh", player: str = "aplay -q",
                 fallback: Path | None = SHIPPED):
        self.folder = Path(folder)
        self.language = language
        self.command = shlex.split(player)
        self.fallback = fallback
        self._proc: subprocess.Popen | None = None

    def path(self, prompt: str) -> Path:
        """The center's recording when it has one, else the shipped one."""
        own = self.folder / self.language / f"{prompt}.wav"
        if own.is_file() or self.fallback is None:
            return own
        return self.fallback / self.language / f"{prompt}.wav"

    def say(self, prompt: str) -> None:
        path = self.path(prompt)
        if not path.is_file():
            return
        self.stop()
        try:
            self._proc = subprocess.Popen([*self.command, str(path)], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True)
        except OSError as e:
            log.warning("voice prompt %s not played: %s", prompt, e)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(1)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def sound_card_present(cards: Path = Path("/proc/asound/cards")) -> bool:
    try:
        text = cards.read_text().strip()
    except OSError:
        return False
    return bool(text) and NO_CARDS not in text


def make_voice(folder: str, language: str = "zh", player: str = "aplay -q",
               cards: Path = Path("/proc/asound/cards")) -> Voice:
    """The configured voice ("builtin", a folder, or empty), or `Silent` when anything it needs is missing."""
    if not folder:
        return Silent()
    if folder == BUILTIN:
        folder = str(SHIPPED)
    command = shlex.split(player)
    if not command or shutil.which(command[0]) is None:
        log.info("voice prompts off: player %r not found", player)
        return Silent()
    if not sound_card_present(cards):
        log.info("voice prompts off: no sound card")
        return Silent()
    if not Path(folder).is_dir():
        log.warning("voice prompts off: %s is not a folder", folder)
        return Silent()
    return WavPlayer(folder, language, player)
