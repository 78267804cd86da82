"""The on-terminal updater: install on trial, health check, commit or rollback, power cuts between steps,
and the kiosk's launcher — on a temporary root (`RATING_ROOT`), with systemd answered by a fake.

Releases here are tiny: release.json and a venv whose `bin/python` is a shell script that says which
release ran (`-m ui`) or hands over to this Python with the project on its path (the outbox migration).
"""
from __future__ import annotations

import configparser
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE_BUILD = REPO / "image-build"
if str(IMAGE_BUILD) not in sys.path:
    sys.path.insert(0, str(IMAGE_BUILD))

from rtimage import bundle, update  # noqa: E402
from rtimage.update import Crash, Updater, UpdateError  # noqa: E402

LIB = IMAGE_BUILD / "rootfs/usr/lib/rating-terminal"


def _system_python() -> str:
    """The scripts run under the image's /usr/bin/python3 (stdlib + python3-cryptography): use it if it can."""
    ok = Path("/usr/bin/python3").exists() and subprocess.run(
        ["/usr/bin/python3", "-c", "import cryptography.hazmat.primitives.asymmetric.ed25519"],
        capture_output=True).returncode == 0
    return "/usr/bin/python3" if ok else sys.executable


PY = _system_python()
UNITS = IMAGE_BUILD / "rootfs/etc/systemd/system"


def fake_release(d: Path, version: str, schema: int = 1) -> Path:
    (d / "venv/bin").mkdir(parents=True)
    (d / "release.json").write_text(json.dumps({"version": version, "outbox_schema": schema,
                                                "built": "2026-11-30T12:00:00Z"}))
    py = d / "venv/bin/python"
    py.write_text(f'#!/bin/sh\nif [ "$1 $2" = "-m ui" ]; then echo "ran {version} in $PWD as $RATING_RELEASE"; '
                  f'exit 0; fi\nPYTHONPATH={REPO} exec {sys.executable} "$@"\n')
    py.chmod(0o755)
    return d


class FakeSystemd:
    """Answers `systemctl show` from a script of states; records restarts and starts."""

    def __init__(self, states=None):
        self.states = list(states or [])
        self.last = {"ActiveState": "active", "NRestarts": "0", "Result": "success", "InvocationID": "a"}
        self.calls: list[tuple] = []

    def show(self, unit=update.UNIT):
        if self.states:
            self.last = dict(self.last, **self.states.pop(0))
        return self.last

    def restart(self, unit=update.UNIT, only_if_running=False):
        self.calls.append(("restart", unit))

    def start(self, unit):
        self.calls.append(("start", unit))


class Rig:
    """A terminal's root in a temp dir: factory release 0.1.0, a trusted key, bundles on demand."""

    def __init__(self, tmp: Path):
        self.tmp, self.root = tmp, tmp / "root"
        fake_release(self.root / "opt/rating-terminal/releases/0.1.0", "0.1.0")
        self.keys = self.root / "etc/rating-terminal/update-keys"
        self.keys.mkdir(parents=True)
        bundle.make_key(tmp / "release.key", self.keys / "release.pub")
        self.data = self.root / "var/lib/rating-terminal"
        self.data.mkdir(parents=True)
        self.systemd = FakeSystemd()
        self.migrated: list[str] = []
        self.t = 0.0

    def bundle(self, version: str, schema: int = 1) -> Path:
        out = self.tmp / f"{version}-{schema}.bundle"
        if not out.exists():
            src = fake_release(self.tmp / "src" / f"{version}-{schema}", version, schema)
            bundle.make(src, self.tmp / "release.key", out)
        return out

    def updater(self, **kw) -> Updater:
        def migrate(release, data):
            self.migrated.append(release.name)

        def sleep(s):
            self.t += s

        kw.setdefault("migrate", migrate)
        return Updater(self.root, systemd=self.systemd, clock=lambda: self.t, sleep=sleep, **kw)

    @property
    def releases(self) -> Path:
        return self.data / "releases"

    def state(self) -> dict:
        return json.loads((self.releases / "update-state.json").read_text())

    def installed(self) -> list[str]:
        return sorted(p.name for p in self.releases.iterdir() if p.is_dir() and not p.is_symlink())

    def link(self, name):
        p = self.releases / name
        return os.readlink(p) if p.is_symlink() else None

    def launch(self, **env) -> subprocess.CompletedProcess:
        """The kiosk unit's start: root's `ExecStartPre=+rating-update started`, then `launch` (as rating)."""
        pre = self.run_script("rating-update", "started", **env)
        assert pre.returncode == 0, pre.stderr
        r = self.run_script("launch", **env)
        r.stderr = pre.stderr + r.stderr
        return r

    def run_script(self, name: str, *args: str, **env) -> subprocess.CompletedProcess:
        e = dict(os.environ, RATING_ROOT=str(self.root), **env)
        e.pop("JOURNAL_STREAM", None)
        return subprocess.run([PY, str(LIB / name), *args], capture_output=True, text=True, env=e, timeout=60)


@pytest.fixture
def rig(tmp_path):
    return Rig(tmp_path)


def leftovers(rig: Rig) -> list[str]:
    return sorted(p.name for p in rig.releases.iterdir() if p.name.endswith((".tmp", ".del", ".lnk"))) \
        if rig.releases.exists() else []


# ---- install, trial, commit ----------------------------------------------------------------------------

def test_install_trial_healthy_commit(rig):
    up = rig.updater()
    assert up.running()[0] == "0.1.0"  # nothing installed: the factory release
    assert up.install(rig.bundle("0.2.0")) == "0.2.0"
    assert rig.link("current") == "0.2.0" and rig.link("previous") is None  # previous: the factory release
    st = rig.state()
    assert (st["trying"], st["previous"], st["attempts"]) == ("0.2.0", "0.1.0", 0)
    assert rig.systemd.calls == [("restart", update.UNIT), ("start", update.CHECK_UNIT)]
    assert rig.migrated == []  # the trial never migrates
    assert up.check(hold_s=120) == "committed"
    assert rig.t >= 120  # it waited the hold time (on the fake clock)
    assert rig.migrated == ["0.2.0"]
    st = rig.state()
    assert st["trying"] is None and st["good"] == "0.2.0"
    assert up.check() == ""  # nothing on trial any more


def test_older_releases_are_pruned_beyond_two(rig):
    up = rig.updater()
    for v in ("0.2.0", "0.3.0", "0.4.0"):
        up.install(rig.bundle(v))
        assert up.check(hold_s=10) == "committed"
    assert rig.installed() == ["0.3.0", "0.4.0"]
    assert (rig.link("current"), rig.link("previous")) == ("0.4.0", "0.3.0")
    assert leftovers(rig) == []


def test_restarts_from_before_the_check_are_not_the_trials(rig):
    rig.systemd.states = [{"ActiveState": "active", "NRestarts": "7"}]  # the old release's, before the install
    up = rig.updater()
    up.install(rig.bundle("0.2.0"))
    assert up.check(hold_s=10) == "committed"


def test_the_hold_starts_again_when_the_kiosk_restarts(rig):
    rig.systemd.states = [{"ActiveState": "active"}] * 5 + [{"ActiveState": "activating", "NRestarts": "1"}] + \
                         [{"ActiveState": "active", "NRestarts": "1", "InvocationID": "b"}] * 100
    up = rig.updater()
    up.install(rig.bundle("0.2.0"))
    assert up.check(hold_s=20, poll_s=2) == "committed"
    assert rig.t >= 10 + 2 + 20  # up for 10 s, down, then a full 20 s hold


# ---- failed health -> rollback -------------------------------------------------------------------------

@pytest.mark.parametrize("states, why", [
    ([{"ActiveState": "activating", "NRestarts": str(n), "Result": "exit-code"} for n in range(6)],
     "restarted 4 times"),
    ([{"ActiveState": "activating", "NRestarts": "1", "Result": "watchdog"}], "watchdog fired"),
    ([{"ActiveState": "activating", "NRestarts": "0"}] * 1000, "not up for 120 s within 300 s"),
    ([{"ActiveState": "active"}, {"ActiveState": "failed", "Result": "exit-code", "NRestarts": "0"}] * 1000,
     "not up for 120 s"),
])
def test_failed_health_rolls_back(rig, states, why):
    up = rig.updater()
    rig.systemd.states = list(states)
    up.install(rig.bundle("0.2.0"))
    assert up.check(hold_s=120, grace_s=180) == "rolled back"
    st = rig.state()
    assert st["trying"] is None and st["good"] == "0.1.0"
    assert st["last_failure"]["version"] == "0.2.0" and why in st["last_failure"]["reason"]
    assert rig.link("current") is None and up.running()[0] == "0.1.0"  # back on the factory release
    assert rig.installed() == [] and leftovers(rig) == []  # the failed release is gone
    assert rig.migrated == []  # the outbox was never migrated
    assert rig.systemd.calls[-1] == ("restart", update.UNIT)


def test_rollback_goes_to_the_previous_data_release(rig):
    up = rig.updater()
    up.install(rig.bundle("0.2.0"))
    up.check(hold_s=1)
    rig.systemd.states = [{"ActiveState": "activating", "NRestarts": "0"}, {"ActiveState": "failed", "NRestarts": "9"}]
    up.install(rig.bundle("0.3.0"))
    assert (rig.link("current"), rig.link("previous")) == ("0.3.0", "0.2.0")
    assert up.check() == "rolled back"
    assert rig.link("current") == "0.2.0" and rig.installed() == ["0.2.0"]


def test_a_failed_migration_at_commit_rolls_back(rig):
    def broken(release, data):
        raise UpdateError("outbox migration by 0.2.0 failed: disk I/O error")

    up = rig.updater(migrate=broken)
    up.install(rig.bundle("0.2.0"))
    assert up.check(hold_s=1) == "rolled back"
    assert "migration" in rig.state()["last_failure"]["reason"] and up.running()[0] == "0.1.0"


def test_the_real_migration_command_runs_from_the_new_release(rig):
    """The default seam: `<release>/venv/bin/python -m device.outbox migrate DATA_DIR`."""
    db = sqlite3.connect(rig.data / "outbox.db")
    db.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY)")
    db.close()
    up = Updater(rig.root, systemd=rig.systemd, clock=lambda: rig.t, sleep=lambda s: None)
    up.install(rig.bundle("0.2.0"))
    assert up.check(hold_s=0) == "committed"
    assert update.outbox_version(rig.data) == 1
    db = sqlite3.connect(rig.data / "outbox.db")
    db.execute("PRAGMA user_version=7")  # newer than the release: its migrate command refuses
    db.close()
    with pytest.raises(UpdateError, match="migration by 0.2.0 failed.*schema 7"):
        update.migrate_outbox(rig.releases / "0.2.0", rig.data, None)


# ---- refusals: nothing switched -----------------------------------------------------------------------

def refused(rig: Rig, path: Path, match: str, **kw) -> None:
    before = (rig.link("current"), rig.link("previous"),
              (rig.releases / "update-state.json").read_text() if (rig.releases / "update-state.json").exists()
              else None, rig.installed() if rig.releases.exists() else [])
    with pytest.raises((UpdateError, bundle.BundleError), match=match):
        rig.updater().install(path, **kw)
    after = (rig.link("current"), rig.link("previous"),
             (rig.releases / "update-state.json").read_text() if (rig.releases / "update-state.json").exists()
             else None, rig.installed() if rig.releases.exists() else [])
    assert after == before and leftovers(rig) == []


def test_tampered_bundle_wrong_key_and_downgrade_are_refused(rig, tmp_path):
    data = bytearray(rig.bundle("0.2.0").read_bytes())
    data[-40] ^= 0x10
    (tmp_path / "tampered.bundle").write_bytes(bytes(data))
    refused(rig, tmp_path / "tampered.bundle", "damaged|sha256|signature")
    other = tmp_path / "other"
    other.mkdir()
    bundle.make_key(tmp_path / "other.key", other / "other.pub")
    fake_release(tmp_path / "o", "0.2.0")
    bundle.make(tmp_path / "o", tmp_path / "other.key", tmp_path / "other.bundle")
    refused(rig, tmp_path / "other.bundle", "signature does not match any trusted key")
    up = rig.updater()
    up.install(rig.bundle("0.3.0"))
    refused(rig, rig.bundle("0.4.0"), "0.3.0 is on trial")
    up.check(hold_s=1)
    refused(rig, rig.bundle("0.2.0"), "older than the running 0.3.0")
    refused(rig, rig.bundle("0.3.0"), "already running")
    assert rig.updater().install(rig.bundle("0.2.0"), allow_downgrade=True) == "0.2.0"


def test_an_install_never_eats_the_outboxs_space(rig, monkeypatch):
    real = os.statvfs
    monkeypatch.setattr(os, "statvfs", lambda p: os.statvfs_result(
        (4096, 4096, 1 << 20, 1 << 14, 1 << 14, 1 << 20, 1 << 19, 1 << 19, real(p).f_flag, 255)))
    with pytest.raises(UpdateError, match="not enough space on the data partition for 0.2.0"):
        rig.updater(reserve=(1 << 26) - 4096).install(rig.bundle("0.2.0"))  # 64 MiB free, less a block
    assert rig.link("current") is None and rig.installed() == [] and leftovers(rig) == []


def test_many_tiny_files_count_by_blocks_and_inodes(rig, monkeypatch):
    """A signed release of 3,000 one-byte files is 3 kB by its sizes but 12 MB of blocks and 3,000 inodes."""
    src = fake_release(rig.tmp / "src/tiny", "0.2.0")
    (src / "venv/many").mkdir()
    for i in range(3000):
        (src / f"venv/many/{i}").write_bytes(b"x")
    bundle.make(src, rig.tmp / "release.key", rig.tmp / "tiny.bundle")
    real = os.statvfs

    def statvfs(path, blocks=(64 << 20) // 4096 + 2000, inodes=100_000):
        st = real(path)
        return os.statvfs_result((4096, 4096, blocks * 2, blocks, blocks, inodes * 2, inodes, inodes,
                                  st.f_flag, st.f_namemax))

    monkeypatch.setattr(os, "statvfs", statvfs)  # 64 MiB + 8 MB free: the sizes fit, the blocks do not
    with pytest.raises(UpdateError, match="not enough space on the data partition for 0.2.0"):
        rig.updater().install(rig.tmp / "tiny.bundle")
    monkeypatch.setattr(os, "statvfs", lambda p: statvfs(p, blocks=1 << 30, inodes=5000))
    with pytest.raises(UpdateError, match="not enough inodes on the data partition for 0.2.0"):
        rig.updater().install(rig.tmp / "tiny.bundle")
    assert rig.link("current") is None and rig.installed() == [] and leftovers(rig) == []
    monkeypatch.setattr(os, "statvfs", real)
    assert rig.updater().install(rig.tmp / "tiny.bundle") == "0.2.0"


def test_a_hash_mismatch_during_unpack_leaves_no_staging(rig, tmp_path):
    import io
    import lzma
    import tarfile
    src = rig.bundle("0.2.0")
    with tarfile.open(src, "r:xz") as tin, lzma.open(tmp_path / "bad.bundle", "wb") as xz, \
            tarfile.open(fileobj=xz, mode="w", format=tarfile.PAX_FORMAT) as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isreg() else None
            if m.name == "release/venv/bin/python":
                data = data.replace(b"echo", b"ECHO")
            tout.addfile(m, io.BytesIO(data) if data is not None else None)
    refused(rig, tmp_path / "bad.bundle", "sha256")


def test_outbox_schema_rules_at_install_and_rollback(rig):
    db = sqlite3.connect(rig.data / "outbox.db")
    db.execute("PRAGMA user_version=2")
    db.close()
    refused(rig, rig.bundle("0.2.0", schema=1), "reads outbox schema 0..1, the outbox is already at 2")
    refused(rig, rig.bundle("0.2.0", schema=4), "install the release in between first")
    up = rig.updater()
    up.install(rig.bundle("0.2.0", schema=3))
    up.check(hold_s=1)
    db = sqlite3.connect(rig.data / "outbox.db")
    db.execute("PRAGMA user_version=3")  # what the commit's migration did
    db.close()
    with pytest.raises(UpdateError, match="rollback refused"):
        up.rollback("by hand")  # the factory release (schema 1) cannot read schema 3
    assert rig.link("current") == "0.2.0"


# ---- power cuts between any two steps -----------------------------------------------------------------

INSTALL_POINTS = ["unpacked", "renamed", "state-trying", "previous-linked", "switched"]
COMMIT_POINTS = ["committing", "migrated", "committed", "pruned"]
ROLLBACK_POINTS = ["rolling-back", "switched-back", "previous-unlinked", "rolled-back", "removed"]


def consistent(rig: Rig, up: Updater) -> None:
    assert leftovers(rig) == []
    st = up.read_state()
    run = up.running()
    assert run is not None and update.valid_release(run[1]) == run[0]
    if st.get("trying"):
        assert rig.link("current") == st["trying"] and not st.get("committing") and not st.get("rolling_back")
    for name in ("current", "previous"):
        v = rig.link(name)
        assert v is None or update.valid_release(rig.releases / v) == v


@pytest.mark.parametrize("point", INSTALL_POINTS)
def test_power_cut_during_install(rig, point):
    up = rig.updater()
    up.install(rig.bundle("0.2.0"))
    up.check(hold_s=1)
    with pytest.raises(Crash):
        rig.updater(crash_at=point).install(rig.bundle("0.3.0"))
    up = rig.updater()
    up.recover()
    consistent(rig, up)
    if point == "switched":  # the switch happened: the trial goes on, and can pass or fail
        assert rig.state()["trying"] == "0.3.0" and up.running()[0] == "0.3.0"
        assert up.check(hold_s=1) == "committed"
    else:  # before the switch: abandoned, everything as before the install
        assert rig.state().get("trying") is None and up.running()[0] == "0.2.0"
        assert rig.link("previous") is None and rig.installed() == ["0.2.0"]
        assert up.install(rig.bundle("0.3.0")) == "0.3.0"  # and it can be installed again


@pytest.mark.parametrize("point", COMMIT_POINTS)
def test_power_cut_during_commit(rig, point):
    up = rig.updater()
    up.install(rig.bundle("0.2.0"))
    up.check(hold_s=1)
    up.install(rig.bundle("0.3.0"))
    rig.migrated.clear()
    with pytest.raises(Crash):
        rig.updater(crash_at=point).check(hold_s=1)
    up = rig.updater()
    up.recover()
    consistent(rig, up)
    st = rig.state()
    assert st["trying"] is None and st["good"] == "0.3.0" and up.running()[0] == "0.3.0"
    assert "0.3.0" in rig.migrated  # the commit was finished: migrated (again, harmlessly, if it had been)
    assert rig.installed() == ["0.2.0", "0.3.0"]


@pytest.mark.parametrize("point", ROLLBACK_POINTS)
def test_power_cut_during_rollback(rig, point):
    up = rig.updater()
    up.install(rig.bundle("0.2.0"))
    up.check(hold_s=1)
    up.install(rig.bundle("0.3.0"))
    rig.systemd.states = [{"ActiveState": "activating", "NRestarts": "0"}, {"ActiveState": "failed", "NRestarts": "9"}]
    with pytest.raises(Crash):
        rig.updater(crash_at=point).check()
    up = rig.updater()
    up.recover()
    consistent(rig, up)
    st = rig.state()
    assert st["trying"] is None and up.running()[0] == "0.2.0" and rig.link("current") == "0.2.0"
    assert st["last_failure"]["version"] == "0.3.0" and "restarted 9 times" in st["last_failure"]["reason"]
    assert rig.installed() == ["0.2.0"] and rig.migrated == ["0.2.0"]


def test_a_trial_whose_release_went_bad_is_abandoned_in_one_recovery(rig):
    up = rig.updater()
    up.install(rig.bundle("0.2.0"))
    up.check(hold_s=1)
    up.install(rig.bundle("0.3.0"))
    shutil.rmtree(rig.releases / "0.3.0/venv")  # a card error under the trial
    assert "abandoned the interrupted install of 0.3.0" in up.recover()
    consistent(rig, up)
    assert rig.link("current") == "0.2.0" and up.running()[0] == "0.2.0" and rig.installed() == ["0.2.0"]


def test_power_cut_in_the_middle_of_unpacking(rig, monkeypatch):
    up = rig.updater()
    real = bundle.Opened._one
    seen = []

    def cut(self, member, path, dest):
        seen.append(path)
        if len(seen) == 3:
            raise Crash("unpacking")
        return real(self, member, path, dest)

    monkeypatch.setattr(bundle.Opened, "_one", cut)
    with pytest.raises(Crash):
        up.install(rig.bundle("0.2.0"))
    assert (rig.releases / "0.2.0.tmp").exists()
    monkeypatch.undo()
    up.recover()
    consistent(rig, up)
    assert rig.installed() == [] and up.running()[0] == "0.1.0"


# ---- the launcher ------------------------------------------------------------------------------------

def test_launch_runs_factory_then_trial_then_rolls_back_after_too_many_attempts(rig):
    r = rig.launch()
    assert r.returncode == 0 and "ran 0.1.0" in r.stdout and "as 0.1.0" in r.stdout, r.stderr
    assert not rig.releases.exists()  # the launcher of the factory release writes nothing
    up = rig.updater()
    up.install(rig.bundle("0.2.0"))
    for n in (1, 2, 3):
        r = rig.launch()
        assert f"ran 0.2.0 in {rig.releases / '0.2.0'}" in r.stdout and rig.state()["attempts"] == n
    r = rig.launch()  # a fourth start without passing the check: back to the factory release
    assert "ran 0.1.0" in r.stdout and "launched 4 times" in r.stderr
    st = rig.state()
    assert st["trying"] is None and "launched 4 times" in st["last_failure"]["reason"]
    assert up.check() == ""  # the check finds nothing left on trial


def test_the_launcher_only_reads_roots_state(rig):
    """`launch` runs as the kiosk's user: were it to write the updater's state (or need it group-writable),
    that user could steer root's updater (paths to remove, links to follow). Root counts in ExecStartPre."""
    up = rig.updater()
    up.install(rig.bundle("0.2.0"))
    before = {p.name: (p.lstat().st_mtime_ns, p.lstat().st_mode) for p in rig.releases.iterdir()}
    for _ in range(5):
        r = rig.run_script("launch")
        assert r.returncode == 0 and "ran 0.2.0" in r.stdout, r.stderr
    assert {p.name: (p.lstat().st_mtime_ns, p.lstat().st_mode) for p in rig.releases.iterdir()} == before
    assert rig.state()["attempts"] == 0
    for p in [rig.releases, *rig.releases.iterdir()]:
        assert p.is_symlink() or not p.lstat().st_mode & 0o022, p  # root's alone
    drop_in = UNITS / "rating-terminal-ui.service.d/50-update.conf"
    assert "ExecStartPre=-+/usr/lib/rating-terminal/rating-update started" in drop_in.read_text()


def test_a_releases_dir_the_service_user_planted_is_moved_aside(rig, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    rig.releases.symlink_to(tmp_path / "elsewhere")  # made by the kiosk's user before the first install
    up = rig.updater()
    up.install(rig.bundle("0.2.0"))
    assert not rig.releases.is_symlink() and (rig.data / "releases.untrusted").is_symlink()
    assert list((tmp_path / "elsewhere").iterdir()) == [] and up.running()[0] == "0.2.0"
    up.check(hold_s=1)
    os.chmod(rig.releases, 0o775)  # group-writable (as the first version made it): not trusted either
    up.install(rig.bundle("0.3.0"))
    assert (rig.data / "releases.untrusted" / "0.2.0").is_dir()
    assert rig.releases.stat().st_mode & 0o777 == 0o755 and up.running()[0] == "0.3.0"


def test_a_releases_dir_planted_before_any_install_is_not_acted_on(rig):
    """Boot recovery and the kiosk's start (both root) ignore a `releases/` the kiosk's user made."""
    rig.releases.mkdir()
    os.chmod(rig.releases, 0o777)
    (rig.releases / "update-state.json").write_text(json.dumps({"rolling_back": True, "from": "0.9.0",
                                                                "rollback_to": None, "reason": "x"}))
    assert rig.updater().recover() == []
    assert not rig.releases.exists() and (rig.data / "releases.untrusted/update-state.json").exists()
    rig.releases.symlink_to(rig.data / "releases.untrusted")
    r = rig.launch()
    assert "ran 0.1.0" in r.stdout and not rig.releases.exists()


def test_a_state_file_naming_paths_is_not_followed(rig):
    up = rig.updater()
    up.install(rig.bundle("0.2.0"))
    victim = rig.data / "victim"
    (victim / "venv/bin").mkdir(parents=True)
    st = rig.state()
    st.update(trying="../victim")
    (rig.releases / "update-state.json").write_text(json.dumps(st))
    up.recover()
    assert victim.is_dir() and rig.state()["trying"] is None
    st = rig.state()
    st.update(rolling_back=True, rollback_to="../../../..", reason="x", **{"from": "../victim"})
    (rig.releases / "update-state.json").write_text(json.dumps(st))
    with pytest.raises(UpdateError):
        up.recover()
    assert victim.is_dir()


def test_rollback_when_the_previous_release_was_pruned_goes_to_the_factory(rig):
    up = rig.updater()
    up.install(rig.bundle("0.2.0"))
    up.check(hold_s=1)
    up.install(rig.bundle("0.3.0"))
    assert rig.link("previous") == "0.2.0"
    shutil.rmtree(rig.releases / "0.2.0")  # pruned by hand, or lost to a card error
    assert up.rollback("failed health check") == "0.1.0"
    assert rig.link("current") is None and up.running()[0] == "0.1.0"
    assert rig.state()["trying"] is None and rig.installed() == []


def test_launch_runs_a_committed_release_without_counting(rig):
    up = rig.updater()
    up.install(rig.bundle("0.2.0"))
    up.check(hold_s=1)
    for _ in range(5):
        assert "ran 0.2.0" in rig.launch().stdout
    assert rig.state()["attempts"] == 0


def test_launch_skips_a_broken_current_release(rig):
    up = rig.updater()
    up.install(rig.bundle("0.2.0"))
    up.check(hold_s=1)
    up.install(rig.bundle("0.3.0"))
    up.check(hold_s=1)
    shutil.rmtree(rig.releases / "0.3.0/venv")  # say, a card error
    r = rig.launch()
    assert "ran 0.2.0" in r.stdout and "not a valid release" in r.stderr
    shutil.rmtree(rig.releases / "0.2.0")
    assert "ran 0.1.0" in rig.launch().stdout
    shutil.rmtree(rig.root / "opt/rating-terminal/releases/0.1.0")
    r = rig.launch()
    assert r.returncode == 1 and "no release to run" in r.stderr


# ---- the command line and the units --------------------------------------------------------------------

def test_rating_update_command_line(rig, tmp_path):
    log = tmp_path / "systemctl.log"
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(f'#!/bin/sh\necho "$@" >> {log}\n'
                         'if [ "$1" = show ]; then printf "ActiveState=active\\nNRestarts=0\\nResult=success\\n'
                         'InvocationID=x\\n"; fi\n')
    systemctl.chmod(0o755)
    env = dict(os.environ, RATING_ROOT=str(rig.root), RATING_SYSTEMCTL=str(systemctl))
    env.pop("JOURNAL_STREAM", None)
    run = lambda *a: subprocess.run([PY, str(LIB / "rating-update"), *map(str, a)], capture_output=True,
                                    text=True, env=env, timeout=120)
    r = run("install", rig.bundle("0.2.0"))
    assert r.returncode == 0 and "installed 0.2.0" in r.stdout, r.stderr
    assert f"restart --no-block {update.UNIT}" in log.read_text()
    assert f"start --no-block {update.CHECK_UNIT}" in log.read_text()
    st = json.loads(run("status").stdout)
    assert st["running"] == "0.2.0" and st["state"]["trying"] == "0.2.0" and st["factory"] == "0.1.0"
    r = run("check", "--hold", "0.2", "--poll", "0.05")
    assert r.returncode == 0 and r.stdout.strip() == "committed", r.stderr
    r = run("install", rig.bundle("0.1.5"))
    assert r.returncode == 1 and "older than the running 0.2.0" in r.stderr
    r = run("rollback")
    assert r.returncode == 0 and "rolled back to 0.1.0" in r.stdout, r.stderr
    r = run("rollback")
    assert r.returncode == 1 and "factory release is running" in r.stderr


def units():
    return sorted(UNITS.glob("*update*"))


def test_update_units_pass_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    assert {u.name for u in units()} >= {"rating-update-boot.service", "rating-update-check.service"}
    for unit in units():
        local = tmp_path / unit.name
        local.write_text(unit.read_text().replace("/usr/lib/rating-terminal/", f"{LIB}/"))
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(local)], capture_output=True, text=True)
        assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(units()[0].read_text().replace("Type=", "Typo="))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(broken)], capture_output=True, text=True)
    assert "Typo" in r.stdout + r.stderr


def test_boot_recovery_runs_before_the_kiosk_and_the_check_after():
    def read(name):
        c = configparser.ConfigParser(strict=False, interpolation=None)
        c.optionxform = str
        c.read(UNITS / name)
        return c
    boot, check = read("rating-update-boot.service"), read("rating-update-check.service")
    assert update.UNIT in boot["Unit"]["Before"] and boot["Service"]["ExecStart"].endswith("rating-update recover")
    assert update.UNIT in check["Unit"]["After"] and check["Service"]["ExecStart"].endswith("rating-update check")
    for script in ("launch", "rating-update"):
        assert os.access(LIB / script, os.X_OK) and (LIB / script).read_text().startswith("#!/usr/bin/python3\n")


def test_the_updater_needs_only_the_stdlib_and_cryptography():
    """It must not depend on the release it switches: no project module, no PyPI package but cryptography."""
    import ast
    for path in (IMAGE_BUILD / "rtimage/update.py", IMAGE_BUILD / "rtimage/bundle.py", LIB / "launch",
                 LIB / "rating-update"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in ("cryptography", "rtimage", "__future__"), \
                    f"{path.name} imports {name}"
