"""The terminal's updater: application-level A/B over versioned release directories.

Layout (under the data partition, `/var/lib/rating-terminal`):

    releases/<version>/          an installed release (release.json + venv/)
    releases/current -> <ver>    what the kiosk runs (absent: the factory release on the read-only root)
    releases/previous -> <ver>   where a rollback goes (absent: the factory release)
    releases/update-state.json   {"trying", "previous", "attempts", ...}: written atomically (+ fsync)

Every step is one atomic rename (a directory, a symlink or the state file) and `recover()` turns any
crash between two steps into a consistent state: a half-unpacked release is removed, an interrupted
install is abandoned, an interrupted commit or rollback is finished. The outbox schema moves forward
only in `commit`, after the trial proved healthy, and a release only ever meets its own schema or the
one before it.

Runs under the system python3 (stdlib + python3-cryptography): it never imports the release it switches.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pwd
import shutil
import stat
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from rtimage import bundle

log = logging.getLogger("rating-update")

UNIT = "rating-terminal-ui.service"
CHECK_UNIT = "rating-update-check.service"
STATE = "update-state.json"
HOLD_S = 120          # the trial must stay up this long
MAX_RESTARTS = 3      # more automatic restarts than this during the trial: rolled back
MAX_ATTEMPTS = 3      # more launches of the trial than this (restarts, reboots): rolled back by `launch`
GRACE_S = 180         # beyond HOLD_S, how long the trial may take to come up at all
POLL_S = 2.0
SERVICE_USER = "rating"
RESERVE = 64 << 20    # bytes of the data partition an install leaves free: the outbox must never run out
RESERVE_INODES = 4096  # and inodes


class UpdateError(Exception):
    """Refused or failed; the message says why. Nothing was switched."""


class Crash(BaseException):
    """Tests: raised at a named point to simulate a power cut between two steps."""


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "var/lib/rating-terminal"

    @property
    def releases(self) -> Path:
        return self.data / "releases"

    @property
    def state(self) -> Path:
        return self.releases / STATE

    @property
    def current(self) -> Path:
        return self.releases / "current"

    @property
    def previous(self) -> Path:
        return self.releases / "previous"

    @property
    def factory(self) -> Path:
        return self.root / "opt/rating-terminal/releases"

    @property
    def keys(self) -> Path:
        return self.root / "etc/rating-terminal/update-keys"


def root_from_env() -> Path:
    """`RATING_ROOT` (tests, or a mounted card) or `/`."""
    return Path(os.environ.get("RATING_ROOT") or "/")


class Systemd:
    """The seam to systemd: what the health check asks and the restarts it orders."""

    def __init__(self, systemctl: str | None = None):
        self.systemctl = systemctl or os.environ.get("RATING_SYSTEMCTL") or "systemctl"

    def show(self, unit: str = UNIT) -> dict[str, str]:
        out = subprocess.run([self.systemctl, "show", "-p", "ActiveState,SubState,NRestarts,Result,InvocationID", unit],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            return {"ActiveState": "unknown", "Error": out.stderr.strip()}
        return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)

    def restart(self, unit: str = UNIT, only_if_running: bool = False) -> None:
        verb = "try-restart" if only_if_running else "restart"
        out = subprocess.run([self.systemctl, verb, "--no-block", unit], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            log.warning("systemctl %s %s failed: %s", verb, unit, out.stderr.strip())

    def start(self, unit: str) -> None:
        subprocess.run([self.systemctl, "start", "--no-block", unit], capture_output=True, timeout=30)


def migrate_outbox(release: Path, data: Path, user: str | None) -> None:
    """Run the release's own migration (`python -m device.outbox migrate`) as the service user."""
    cmd = [str(release / "venv/bin/python"), "-m", "device.outbox", "migrate", str(data)]
    if user and os.geteuid() == 0:
        cmd = ["runuser", "-u", user, "--"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=release)
    if out.returncode != 0:
        raise UpdateError(f"outbox migration by {release.name} failed: {(out.stderr or out.stdout).strip()[-500:]}")
    if out.stdout.strip():
        log.info("%s", out.stdout.strip())


def outbox_version(data: Path) -> int:
    """The outbox's schema (PRAGMA user_version; 0, i.e. unset, is 1); 0 when there is no outbox yet."""
    path = data / "outbox.db"
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return db.execute("PRAGMA user_version").fetchone()[0] or 1
        finally:
            db.close()
    except sqlite3.Error as e:
        raise UpdateError(f"cannot read the outbox's schema version from {path}: {e}") from None


class Updater:
    def __init__(self, root: Path | None = None, systemd: Systemd | None = None,
                 migrate: Callable[[Path, Path], None] | None = None, service_user: str | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 crash_at: str | None = None, reserve: int = RESERVE):
        self.paths = Paths(root if root is not None else root_from_env())
        self.systemd = systemd or Systemd()
        self.service_user = service_user
        self.migrate = migrate or (lambda release, data: migrate_outbox(release, data, self.service_user))
        self.clock, self.sleep = clock, sleep
        self.crash_at = crash_at
        self.reserve = reserve

    @contextlib.contextmanager
    def lock(self, wait_s: float | None = None) -> Iterator[bool]:
        """One updater step at a time (install, check's decisions, launch's count): flock on releases/.lock.

        With `wait_s`, gives up after that long and yields False (the launcher then only reads).
        """
        if not self.paths.releases.is_dir():
            yield True
            return
        path = self.paths.releases / ".lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except PermissionError:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            got = True
            if wait_s is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                end = time.monotonic() + wait_s
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= end:
                            got = False
                            break
                        time.sleep(0.1)
            yield got
        finally:
            os.close(fd)

    def _point(self, name: str) -> None:
        if self.crash_at == name:
            raise Crash(name)

    # ---- state, links, releases ----------------------------------------------------------------

    def read_state(self) -> dict:
        try:
            doc = json.loads(self.paths.state.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.error("%s unreadable (%s): treated as no update in progress", self.paths.state, e)
            return {}
        return doc if isinstance(doc, dict) else {}

    def write_state(self, state: dict) -> None:
        write_atomic(self.paths.state, json.dumps(state, indent=1, sort_keys=True).encode() + b"\n")

    def _link(self, name: str, target: str | None) -> None:
        """Point releases/<name> at `target` (a version) atomically; None removes the link."""
        link = self.paths.releases / name
        if target is None:
            try:
                os.unlink(link)
            except FileNotFoundError:
                return
        else:
            tmp = self.paths.releases / f".{name}.lnk"
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            os.symlink(target, tmp)
            os.replace(tmp, link)
        bundle.fsync_dir(self.paths.releases)

    def linked(self, name: str) -> str | None:
        """The version a link names, or None when it is absent."""
        try:
            return Path(os.readlink(self.paths.releases / name)).name
        except (FileNotFoundError, OSError):
            return None

    def release_dir(self, version: str) -> Path | None:
        """The valid release of this version: on the data partition, else the factory one; None if neither."""
        for base in (self.paths.releases, self.paths.factory):
            d = base / version
            if valid_release(d) == version:
                return d
        return None

    def factory(self) -> tuple[str, Path] | None:
        """The newest valid release on the read-only root."""
        found = []
        if self.paths.factory.is_dir():
            for d in self.paths.factory.iterdir():
                v = valid_release(d)
                if v is not None and v == d.name:
                    found.append((bundle.version_key(v), v, d))
        if not found:
            return None
        _, v, d = max(found)
        return v, d

    def running(self) -> tuple[str, Path] | None:
        """What `launch` runs: `current`, else `previous`, else the factory release."""
        for name in ("current", "previous"):
            v = self.linked(name)
            if v is not None:
                d = self.paths.releases / v
                if valid_release(d) == v:
                    return v, d
                log.error("releases/%s -> %s is not a valid release; skipped", name, v)
        return self.factory()

    def _secure_releases(self, create: bool = True) -> None:
        """releases/ must be root's and writable by root only: the service user owns the data partition's
        top directory, so a `releases` it made before the first install (a directory of its own, a symlink)
        is moved aside, never used: root's updater must not act on paths the kiosk's user controls."""
        rel = self.paths.releases
        try:
            st = os.lstat(rel)
        except FileNotFoundError:
            st = None
        if st is not None and (not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o022
                               or (os.geteuid() == 0 and st.st_uid != 0)):
            aside = rel.with_name("releases.untrusted")
            remove_tree(aside, quiet=True)
            os.rename(rel, aside)
            log.error("%s was not root's own directory (uid %d, mode %o): moved aside to %s",
                      rel, st.st_uid, stat.S_IMODE(st.st_mode), aside.name)
        if create:
            rel.mkdir(mode=0o755, parents=True, exist_ok=True)
            os.chmod(rel, 0o755)

    # ---- install -------------------------------------------------------------------------------

    def install(self, bundle_path: Path, allow_downgrade: bool = False, restart: bool = True) -> str:
        """Verify, unpack, switch. The new version then runs on trial until `check` commits or rolls it back."""
        self.recover()
        state = self.read_state()
        if state.get("trying"):
            raise UpdateError(f"version {state['trying']} is on trial: wait for its check, or run "
                              f"`rating-update commit` / `rollback` first")
        now = self.running()
        with bundle.open_bundle(Path(bundle_path), self.paths.keys) as opened:
            m = opened.manifest
            if now is not None:
                if m.version == now[0]:
                    raise UpdateError(f"version {m.version} is already running")
                if bundle.version_key(m.version) < bundle.version_key(now[0]) and not allow_downgrade:
                    raise UpdateError(f"bundle {m.version} is older than the running {now[0]} "
                                      f"(downgrade refused; --allow-downgrade to force)")
            db = outbox_version(self.paths.data)
            if db and db > m.outbox_schema:
                raise UpdateError(f"bundle {m.version} reads outbox schema {m.outbox_schema - 1}..{m.outbox_schema},"
                                  f" the outbox is already at {db}")
            if db and db < m.outbox_schema - 1:
                raise UpdateError(f"bundle {m.version} reads outbox schema {m.outbox_schema - 1}.."
                                  f"{m.outbox_schema}, the outbox is at {db}: install the release in between first")
            self._secure_releases()
            fs = os.statvfs(self.paths.releases)
            free, need = fs.f_bavail * fs.f_frsize, m.disk_bytes(max(fs.f_frsize, 1024))
            if free - need < self.reserve:
                raise UpdateError(f"not enough space on the data partition for {m.version}: it needs {_mib(need)},"
                                  f" {_mib(free)} free, and {_mib(self.reserve)} stay free for the outbox")
            if fs.f_files and fs.f_favail - m.entries < RESERVE_INODES:
                raise UpdateError(f"not enough inodes on the data partition for {m.version}: it needs {m.entries},"
                                  f" {fs.f_favail} free, and {RESERVE_INODES} stay free for the outbox")
            final = self.paths.releases / m.version
            staging = self.paths.releases / f"{m.version}.tmp"
            for leftover in (staging, final):  # a failed trial of the same version, or an abandoned install
                if leftover.exists() or leftover.is_symlink():
                    remove_tree(leftover)
            try:
                opened.unpack(staging)
                self._point("unpacked")
            except Crash:
                raise
            except BaseException:
                remove_tree(staging)
                raise
        os.rename(staging, final)
        bundle.fsync_dir(self.paths.releases)
        self._point("renamed")
        previous = now[0] if now else None
        self.write_state({"trying": m.version, "previous": previous, "attempts": 0, "since": _now(),
                          "signer": opened.signer, "previous_link": self.linked("previous"),
                          "last_failure": state.get("last_failure")})
        self._point("state-trying")
        # previous: a release on the data partition by name; the factory release by having no link.
        self._link("previous", previous if previous and (self.paths.releases / previous).is_dir() else None)
        self._point("previous-linked")
        self._link("current", m.version)
        self._point("switched")
        log.info("installed %s (signed by %s); on trial, previous %s", m.version, opened.signer, previous)
        if restart:
            self.start_trial()
        return m.version

    def start_trial(self) -> None:
        """Restart the kiosk into the trial and start the check (outside the lock: `launch` counts then)."""
        self.systemd.restart(UNIT)
        self.systemd.start(CHECK_UNIT)

    # ---- the trial: check, commit, rollback ---------------------------------------------------

    def check(self, hold_s: float = HOLD_S, max_restarts: int = MAX_RESTARTS, max_attempts: int = MAX_ATTEMPTS,
              grace_s: float = GRACE_S, poll_s: float = POLL_S) -> str:
        """Watch a trial until it is healthy (commit) or not (rollback); "" when no trial is on.

        Takes the lock itself, only around its decisions: `launch` must be able to count meanwhile.
        """
        with self.lock():
            self.recover()
        state = self.read_state()
        trying = state.get("trying")
        if not trying:
            return ""
        deadline = self.clock() + hold_s + grace_s
        up_since: float | None = None
        last = None  # (InvocationID, NRestarts): a new run of the kiosk starts the hold again
        base = None  # NRestarts when the check began: restarts before it are the launcher's to count
        while True:
            state = self.read_state()
            if state.get("trying") != trying:
                return "rolled back" if state.get("last_failure", {}) and \
                    state["last_failure"].get("version") == trying else "ended"
            if state.get("attempts", 0) > max_attempts:
                return self._fail(f"started {state['attempts']} times (limit {max_attempts})")
            p = self.systemd.show(UNIT)
            now = self.clock()
            if base is None:
                base = _int(p.get("NRestarts"))
            restarts = _int(p.get("NRestarts")) - base
            if p.get("Result") == "watchdog":
                return self._fail("the kiosk's watchdog fired (no WATCHDOG=1 in time: hung UI or dead core)")
            if restarts > max_restarts:
                return self._fail(f"the kiosk restarted {restarts} times (limit {max_restarts}), "
                                  f"last result {p.get('Result', '?')}")
            run = (p.get("InvocationID", ""), restarts)
            if p.get("ActiveState") == "active":
                if up_since is None or run != last:
                    up_since = now
                if now - up_since >= hold_s:
                    try:
                        with self.lock():
                            self.commit()
                    except UpdateError as e:
                        log.error("%s", e)
                        return "rolled back"
                    return "committed"
            else:
                up_since = None
            last = run
            if now >= deadline:
                return self._fail(f"not up for {hold_s:g} s within {hold_s + grace_s:g} s "
                                  f"(ActiveState={p.get('ActiveState')}, NRestarts={restarts})")
            self.sleep(poll_s)

    def _fail(self, reason: str) -> str:
        with self.lock():
            self.rollback(reason)
        return "rolled back"

    def commit(self) -> str:
        """The trial is good: migrate the outbox forward, mark it good, keep two releases."""
        state = self.read_state()
        version = state.get("trying")
        if not version:
            raise UpdateError("no version is on trial: nothing to commit")
        if not state.get("committing"):
            state["committing"] = True
            self.write_state(state)
        self._point("committing")
        release = self.release_dir(version)
        if release is None:
            raise UpdateError(f"release {version} vanished during its commit")
        before = outbox_version(self.paths.data)
        try:
            self.migrate(release, self.paths.data)
        except Exception as e:  # noqa: BLE001 - a failed migration left the outbox as it was: roll back
            state.pop("committing", None)
            self.write_state(state)
            self.rollback(f"outbox migration failed: {e}")
            raise UpdateError(f"commit of {version} failed, rolled back: {e}") from e
        self._point("migrated")
        after = outbox_version(self.paths.data)
        self.write_state({"trying": None, "good": version, "previous": state.get("previous"), "attempts": 0,
                          "committed": _now(), "last_failure": state.get("last_failure")})
        self._point("committed")
        self.prune()
        self._point("pruned")
        log.info("committed %s (outbox schema %s -> %s)", version, before or "-", after or "-")
        if before != after:
            self.systemd.restart(UNIT, only_if_running=True)  # the release opens its own schema now
        return version

    def rollback(self, reason: str, restart: bool = True) -> str:
        """Back to the previous release (or the factory one). After a commit only if it reads the outbox."""
        state = self.read_state()
        from_version = state.get("from") or state.get("trying") or self.linked("current")
        if not from_version:
            raise UpdateError("nothing to roll back: the factory release is running")
        # where to: decided once and kept in the state, so that a re-run after a crash goes the same way
        from_version = _version(from_version)
        if from_version is None:
            raise UpdateError(f"{self.paths.state}: the release to roll back from is not a version")
        prev = state.get("rollback_to") if state.get("rolling_back") else self.linked("previous")
        prev = _version(prev)
        if prev is not None and valid_release(self.paths.releases / prev) != prev:
            # pruned, or damaged on the card: the factory release is still a release that ran before
            log.error("previous release %s is not there or not valid: rolling back to the factory release", prev)
            prev = None
        target = (prev, self.paths.releases / prev) if prev else self.factory()
        if target is None or valid_release(target[1]) is None:
            raise UpdateError(f"no release to roll back to (previous {prev or 'factory'} is not valid)")
        if not state.get("rolling_back"):
            if not state.get("trying"):  # a committed release: the outbox may have moved on since
                db = outbox_version(self.paths.data)
                schema = bundle.read_release_json(target[1] / "release.json")["outbox_schema"]
                if db > schema:
                    raise UpdateError(f"{target[0]} reads outbox schema up to {schema}, the outbox is at {db}: "
                                      f"rollback refused")
            state.update({"rolling_back": True, "reason": reason, "rollback_to": prev, "from": from_version})
            self.write_state(state)
        self._point("rolling-back")
        self._link("current", prev)  # None: no link, i.e. the factory release
        self._point("switched-back")
        self._link("previous", None)
        self._point("previous-unlinked")
        failure = {"version": from_version, "reason": state.get("reason", reason), "at": _now()}
        self.write_state({"trying": None, "good": target[0], "previous": None, "attempts": 0,
                          "last_failure": failure})
        self._point("rolled-back")
        remove_tree(self.paths.releases / from_version, quiet=True)
        self._point("removed")
        log.error("rolled back from %s to %s: %s", from_version, target[0], failure["reason"])
        if restart:
            self.systemd.restart(UNIT)
        return target[0]

    def prune(self) -> None:
        """Keep `current` and `previous` (two releases); remove the others and leftovers."""
        keep = {self.linked("current"), self.linked("previous"), self.read_state().get("trying")}
        if not self.paths.releases.is_dir():
            return
        for d in self.paths.releases.iterdir():
            if d.is_dir() and not d.is_symlink() and d.name not in keep:
                remove_tree(d, quiet=True)

    # ---- after a power cut -----------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Make a consistent state out of whatever a crash left; what was done, in words."""
        done: list[str] = []
        rel = self.paths.releases
        self._secure_releases(create=False)
        if not rel.is_dir():
            return done
        for p in rel.iterdir():
            if p.name.endswith((".tmp", ".del", ".lnk")):
                remove_tree(p, quiet=True)
                done.append(f"removed {p.name}")
        state = self.read_state()
        trying = _version(state.get("trying"))
        if state.get("trying") and trying is None:
            log.error("%s names %r on trial, not a version: state reset", self.paths.state, state.get("trying"))
            self.write_state({"trying": None, "attempts": 0, "last_failure": state.get("last_failure")})
            state = self.read_state()
        if state.get("rolling_back"):
            self.rollback(state.get("reason", "interrupted rollback"), restart=False)
            done.append(f"finished the rollback from {trying}")
        elif state.get("committing"):
            self.commit()
            done.append(f"finished the commit of {trying}")
        elif trying and (self.linked("current") != trying or valid_release(rel / trying) != trying):
            # the install stopped before its switch (the running release never changed), or the trial's
            # release is not there any more: back to what ran before, as before
            if self.linked("current") == trying:
                before = _version(state.get("previous"))
                self._link("current", before if before and valid_release(rel / before) == before else None)
            self._link("previous", _version(state.get("previous_link")))
            self.write_state({"trying": None, "good": state.get("previous"), "previous": None, "attempts": 0,
                              "last_failure": {"version": trying, "reason": "install interrupted", "at": _now()}})
            remove_tree(rel / trying, quiet=True)
            done.append(f"abandoned the interrupted install of {trying}")
        if not self.read_state().get("trying"):
            cur = self.linked("current")
            if cur is not None and valid_release(rel / cur) != cur:
                prev = self.linked("previous")
                self._link("current", prev if prev and valid_release(rel / prev) == prev else None)
                done.append(f"current -> {cur} was not valid; now {self.linked('current') or 'factory'}")
        self.prune()
        for line in done:
            log.warning("recovery: %s", line)
        return done

    # ---- the launcher --------------------------------------------------------------------------

    def count_start(self, max_attempts: int = MAX_ATTEMPTS) -> str:
        """Root, just before each start of the kiosk (its unit's `ExecStartPre=+`): count a trial's starts
        and roll back past `max_attempts`. The launcher itself runs as the service user and writes nothing."""
        self._secure_releases(create=False)
        with self.lock(wait_s=5) as got:
            state = self.read_state()
            trying = state.get("trying")
            if got and trying and not state.get("committing") and not state.get("rolling_back") \
                    and self.linked("current") == trying:
                state["attempts"] = int(state.get("attempts", 0)) + 1
                self.write_state(state)
                if state["attempts"] > max_attempts:
                    self.rollback(f"launched {state['attempts']} times without passing the health check "
                                  f"(limit {max_attempts})", restart=False)
        target = self.running()
        return target[0] if target else "none"

    def launch_target(self) -> tuple[str, Path]:
        """The release the kiosk starts now (reads only: `count_start` did the counting as root)."""
        target = self.running()
        if target is None:
            raise UpdateError(f"no release to run: none in {self.paths.releases} or {self.paths.factory}")
        return target

    # ---- status --------------------------------------------------------------------------------

    def status(self) -> dict:
        run = self.running()
        return {"running": run[0] if run else None, "current": self.linked("current"),
                "previous": self.linked("previous"), "factory": (self.factory() or (None,))[0],
                "outbox_schema": outbox_version(self.paths.data) or None, "state": self.read_state(),
                "installed": sorted(d.name for d in self.paths.releases.iterdir()
                                    if d.is_dir() and not d.is_symlink()) if self.paths.releases.is_dir() else []}


def valid_release(d: Path) -> str | None:
    """The version of a release directory that has a readable release.json and venv/bin/python."""
    if d.is_symlink() or not d.is_dir():
        return None
    try:
        info = bundle.read_release_json(d / "release.json")
    except bundle.BundleError:
        return None
    return info["version"] if (d / "venv/bin/python").exists() else None


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file, fsync, rename over `path`, fsync the directory: old or new, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        bundle._write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    bundle.fsync_dir(path.parent)


def remove_tree(path: Path, quiet: bool = False) -> None:
    """Rename to `<name>.del` first (one atomic step: a half-removed release never looks valid), then delete."""
    if not path.exists() and not path.is_symlink():
        return
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
            return
        doomed = path if path.name.endswith(".del") else path.with_name(path.name + ".del")
        if doomed != path:
            if doomed.exists():
                shutil.rmtree(doomed)
            os.rename(path, doomed)
            bundle.fsync_dir(path.parent)
        shutil.rmtree(doomed)
    except OSError as e:
        if not quiet:
            raise
        log.warning("could not remove %s (%s); removed at the next recovery", path, e)


def _version(name) -> str | None:
    """`name` when it is a version (so a safe name under releases/), else None."""
    try:
        bundle.version_key(name)
    except bundle.BundleError:
        return None
    return name


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def setup_logging() -> None:
    """Under systemd (JOURNAL_STREAM set) lines carry a syslog priority prefix the journal understands."""
    journal = bool(os.environ.get("JOURNAL_STREAM"))
    prio = {logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}

    class Fmt(logging.Formatter):
        def format(self, record):
            msg = super().format(record)
            return f"<{prio.get(record.levelno, 6)}>{msg}" if journal else f"rating-update: {msg}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Fmt("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def default_user() -> str | None:
    try:
        pwd.getpwnam(SERVICE_USER)
        return SERVICE_USER
    except KeyError:
        return None
