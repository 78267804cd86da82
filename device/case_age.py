"""Which open cases are too old to show: the terminal's own guard against retained cases from the past.

Two ways an old case reaches a terminal although the center has moved on:
- a center on MQTT 3.1.1 cannot give the retained case an expiry, so a case opened two days ago is
  delivered at boot: refused when `opened_at` is older than `case.max_age_h` by this terminal's clock;
- a broker restored from an older snapshot delivers an earlier case again: refused when it was
  opened before the newest case this terminal has already seen at that window.

The newest `opened_at` per window survives restarts in `case_seen.json` on the data partition
(window → time; no case id, no personal data), written atomically.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path

from device.enrolment import write_private
from protocol.codec import MessageError

log = logging.getLogger(__name__)
FILE = "case_seen.json"


class CaseAge:
    def __init__(self, data_dir: Path, max_age_h: float):
        self.path = Path(data_dir) / FILE
        self.max_age = timedelta(hours=max_age_h)
        self.newest: dict[str, str] = self._load()

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
            if isinstance(data, dict) and all(isinstance(v, str) for v in data.values()):
                for v in data.values():
                    datetime.fromisoformat(v)
                return data
            log.warning("ignoring %s: not a table of times", self.path)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            log.warning("ignoring %s: %s", self.path, e)
        return {}

    def check(self, data: dict, now: datetime | None = None) -> None:
        """Raise MessageError(stale_case | older_case) for an open case not to be shown; remember the newest."""
        stamp = data.get("opened_at")
        if stamp is None:  # closed and rated messages may leave it out: they only act on the open case
            return
        opened, window, case_id = datetime.fromisoformat(stamp), data["window"], data["case"]["id"]
        now = now or datetime.now().astimezone()
        newest = self.newest.get(window)
        if data["state"] == "open":
            if now - opened > self.max_age:
                raise MessageError("stale_case", f"case {case_id} opened {stamp}, more than "
                                                 f"case.max_age_h={self.max_age / timedelta(hours=1):g} ago")
            if newest is not None and opened < datetime.fromisoformat(newest):
                raise MessageError("older_case", f"case {case_id} opened {stamp}, before a case already seen "
                                                 f"at {window} ({newest})")
        if opened - now > self.max_age:
            # Not remembered: one case stamped far in the future (a wrong clock somewhere) would
            # otherwise make every real case at this window "older" until that time.
            log.warning("case %s opened %s: far ahead of this terminal's clock; not remembered", case_id, stamp)
        elif newest is None or opened > datetime.fromisoformat(newest):
            self.newest[window] = stamp
            self._save()

    def _save(self) -> None:
        try:
            write_private(self.path, json.dumps(self.newest).encode("utf-8"))
        except OSError as e:  # the check still works from memory until the next restart
            log.warning("cannot save %s: %s", self.path, e)
