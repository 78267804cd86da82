"""Views read one published snapshot, never the core's insides (issue 9, item 3).

- Through a real pairing and a move (center broker with Dynamic Security, the real pairing service),
  every snapshot a view receives and every frame the kiosk draws holds a window id, its name, its
  staff and the hall QR that belong together (the stale title, QR and count users saw came from views
  reading each of these at a different moment).
- The Kivy thread never takes the outbox lock (held across SQLite commits) while it renders.
"""
from __future__ import annotations

import threading

from device.machine import Phase
from protocol import codec
from protocol.values import Level
from tests.provisioning.conftest import code_of, enrol, paired_idle, pki, site  # noqa: F401 (fixtures)
from tests.provisioning.helpers import CENTER
from tests.provisioning.test_lifecycle import case, rate_open_case
from tests.ui.test_kiosk import open_case, rate, ready
from ui.present import Screen

NAMES = {"W01": "W01 综合受理", "W02": "W02 社保"}
ROSTER = {"W01": {"S0101", "S0102"}, "W02": {"S0201"}}


def coherent(window: str, name: str, staff_id: str | None, hall: str, expected_hall: str) -> str:
    """Why these do not belong together ("" when they do)."""
    if window not in NAMES:
        return f"unknown window {window}"
    if name not in ("", NAMES[window]):
        return f"{window} titled {name!r}"
    if staff_id is not None and staff_id not in ROSTER[window]:
        return f"{window} with staff {staff_id} of another window"
    if name and hall != expected_hall:
        return f"{window} without the binding's hall QR ({hall!r})"
    return ""


def test_every_snapshot_and_frame_during_a_pair_and_a_move_belongs_to_one_window(site, enrol, open_kiosk):
    t = enrol("snap1", HCP_UI_TOUCH_GUARD_MS="0")
    d = open_kiosk.on(t)
    snaps, frames = [], []
    lock = threading.Lock()

    def seen(snap) -> None:
        with lock:
            snaps.append(snap)

    t.watch(seen)
    d.k.on_rendered(lambda k: frames.append((k.snap, k.window_id, k.window_name, k.ui.hall_qr_url,
                                             k.state.staff.id if k.state.staff else None,
                                             getattr(getattr(k.shown_widget, "bar", None), "title", None))))
    d.on(Screen.UNPAIRED)
    site.prov.pair(code_of(t), "W01", "tester")
    paired_idle(t, "W01")
    sys_ = site.service("centersys")  # a rating no ledger receipts: it stays counted as pending
    try:
        sys_.publish(f"hcp/v1/{CENTER}/window/W01/case", case("W01", "SN1"), retain=True)
        rate_open_case(t, "SN1")
        rid = t.state.last_rating_id
        sys_.publish(f"hcp/v1/{CENTER}/window/W01/case", case("W01", "SN1", "closed"), retain=True)
        site.prov.move("snap1", "W02", "tester")
        d.until(lambda: d.k.window_id == "W02" and d.k.state.staff is not None and d.k.shown == Screen.IDLE,
                what="idle at W02 with its roster's staff")
        sys_.publish(f"hcp/v1/{CENTER}/window/W02/duty", codec.encode(
            {"v": 1, "type": "duty", "center": CENTER, "window": "W02", "staff": None}), retain=True)
        d.until(lambda: d.k.state.staff is None, what="nobody on duty at W02")
    finally:
        sys_.close()
    with lock:
        received = list(snaps)
    assert {s.window for s in received if s.pairing is None} == {"W01", "W02"}
    hall = site.cfg.center.hall_qr_url
    problems = [why for s in received if s.pairing is None and (why := coherent(
        s.window, s.window_name, s.state.staff.id if s.state.staff else None, s.ui.hall_qr_url, hall))]
    thanked = [s for s in received if s.state.last_rating_id == rid and s.state.phase == Phase.THANKS]
    assert thanked and all(s.pending >= 1 for s in thanked)  # the count shown with "thank you" includes it
    for snap, window, name, hall_url, staff, title in frames:
        assert (window, name, hall_url) == (snap.window, snap.window_name, snap.ui.hall_qr_url)
        if snap.pairing is None:
            problems += [why for why in [coherent(window, name, staff, hall_url, hall)] if why]
            if title is not None and name:
                problems += [] if title.text in (name, snap.state.window_name) else [f"{window} titled {title.text}"]
    assert not problems, problems
    assert any(f[1] == "W02" for f in frames) and any(f[1] == "W01" for f in frames)


class RecordingLock:
    """The outbox's own lock, recording which threads take it."""

    def __init__(self, lock):
        self._lock = lock
        self.takers: set[str] = set()

    def __enter__(self):
        self.takers.add(threading.current_thread().name)
        return self._lock.__enter__()

    def __exit__(self, *exc):
        return self._lock.__exit__(*exc)

    def acquire(self, *a, **kw):
        self.takers.add(threading.current_thread().name)
        return self._lock.acquire(*a, **kw)

    def release(self):
        return self._lock.release()


def test_the_kivy_thread_never_takes_the_outbox_lock_while_rendering(open_kiosk, center):
    d = open_kiosk(HCP_RATING_THANKS_S="1")
    lock = RecordingLock(d.t.outbox._lock)
    d.t.outbox._lock = lock
    ready(d, center)
    open_case(d, center, "LK1")
    rate(d, center, "LK2", Level.DISSATISFIED)
    d.on(Screen.IDLE, Phase.IDLE)
    d.k.refresh()
    d.settle()
    kivy_thread = threading.current_thread().name  # the tests pump the Kivy loop on this thread
    assert lock.takers and kivy_thread not in lock.takers, lock.takers
    assert d.k.rendered_state is d.t.state and d.k.status.online
