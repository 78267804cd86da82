"""The pure pairing step (`device.pairing`): examples and hypothesis invariants, no I/O."""
from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from device import pairing
from device.enrolment import Credentials
from device.pairing import (Announce, BindingReceived, CodeGranted, Connected, CredentialsGranted, Forget,
                            PairingState, PublishStatus, Reconnect, ReEnrolAsked, Refused, RotationGranted,
                            SaveBinding, SaveCredentials, SwitchWindow, Tick, UsePassword, step)

DEV, CENTER = "t1", "C1"
CREDS = Credentials(CENTER, DEV, "W01", DEV, "pw1", "hcp-t1", 1)


def fresh(**kw) -> PairingState:
    return PairingState(DEV, CENTER, True, 30, **kw)


def binding(state: str = "active", window: str = "W01", device: str = DEV, **kw) -> dict:
    return {"v": 1, "type": "binding", "center": CENTER, "device": device, "state": state, "window": window,
            "window_name": f"{window} 窗口", **kw}


def test_configured_by_hand_nothing_applies():
    p = PairingState(DEV, CENTER, False)
    for e in (CredentialsGranted(CREDS), BindingReceived(binding(), None), Refused(0x87), ReEnrolAsked(),
              Tick(True, 0)):
        assert step(p, e, 1.0) == (p, [])
    assert p.mode == "plain" and pairing.shown(p, 1.0, "") is None


def test_enrolling_announces_on_connect_and_again_later_then_shows_the_code():
    p, fx = step(fresh(), Connected(), 100.0)
    assert fx == [Announce()] and p.last_hello == 100.0
    assert step(p, Tick(True, 0), 110.0)[1] == []
    assert step(p, Tick(False, 0), 200.0)[1] == []  # offline: nothing to announce on
    assert step(p, Tick(True, 0), 130.0)[1] == [Announce()]
    p, fx = step(p, CodeGranted("482913", 600, 1_790_000_000.0), 140.0)
    shown = pairing.shown(p, 141.0, "https://c.example/pair")
    assert fx == [] and shown.state == "code" and shown.code == "482913" and shown.qr_url.endswith("?device=t1") and "482913" not in shown.qr_url
    assert pairing.shown(p, 740.0, "").state == "connecting"  # the code expired


def test_credentials_answer_saves_and_reconnects_once():
    p, fx = step(fresh(code="482913", code_until=999.0), CredentialsGranted(CREDS), 1.0)
    assert fx == [SaveCredentials(CREDS), Reconnect()] and p.mode == "paired" and p.code == ""
    assert step(p, CredentialsGranted(CREDS), 2.0) == (p, [])  # a retained answer delivered twice


def test_a_binding_moves_the_account_window_and_a_rotation_keeps_it():
    p = fresh(creds=CREDS)
    p, fx = step(p, BindingReceived(binding(window="W02"), b"k" * 32), 1.0)
    moved = replace(CREDS, window="W02")
    assert fx == [SaveBinding(binding(window="W02")), SaveCredentials(moved), SwitchWindow(), PublishStatus()]
    assert pairing.window(p, "W09") == "W02" and p.window_name == "W02 窗口" and p.qr_key == b"k" * 32
    p, fx = step(p, RotationGranted(DEV, "pw2", 2), 2.0)
    assert fx == [SaveCredentials(replace(moved, next_password="pw2", next_cred=2)), PublishStatus()]
    assert p.creds.window == "W02"  # the rotation did not undo the move
    assert step(p, RotationGranted(DEV, "pw2", 2), 3.0) == (p, [])  # not newer: ignored


def test_refused_tries_the_other_password_and_connected_settles():
    p = fresh(creds=replace(CREDS, next_password="pw2", next_cred=2))
    p, fx = step(p, Refused(0x86), 1.0)
    assert fx[1] == UsePassword(DEV, "pw2") and p.creds.password == "pw2" and p.refusals == 1
    p, fx = step(p, Connected(), 2.0)
    assert p.refusals == 0 and fx == [SaveCredentials(p.creds)] and p.creds.next_password == ""
    p, _ = step(p, Refused(0x87), 3.0)
    p, _ = step(p, Refused(0x87), 4.0)
    assert pairing.shown(p, 5.0, "").state == "refused"
    assert step(p, Refused(0x80), 5.0)[0].refusals == 2  # not an account refusal: not counted


def test_unpaired_and_drained_forgets_the_account_and_enrols_again():
    p = fresh(creds=CREDS, binding=binding("unpaired"))
    assert step(p, Tick(True, 3), 1.0) == (p, [])  # still holding ratings: keeps its account
    p, fx = step(p, Tick(True, 0), 2.0)
    assert fx == [Forget(pairing.FORGET_ACCOUNT), Reconnect()] and p.mode == "enrolling" and p.binding is None


def test_re_enrol_forgets_only_a_paired_account():
    assert step(fresh(creds=CREDS), ReEnrolAsked(), 1.0)[1] == [Forget(pairing.FORGET_ACCOUNT), Reconnect()]
    assert step(fresh(code="1", code_until=5.0), ReEnrolAsked(), 1.0) == (fresh(), [Reconnect()])


# ---- invariants over any sequence of events ------------------------------------------------------

others = st.sampled_from(["t1", "t2"])
windows = st.sampled_from(["W01", "W02"])
creds = st.builds(lambda dev, center, win, pw, gen: Credentials(center, dev, win, dev, pw, f"hcp-{dev}", gen),
                  others, st.sampled_from(["C1", "C2"]), windows, st.sampled_from(["a", "b"]), st.integers(1, 4))
events = st.one_of(
    st.builds(CodeGranted, st.sampled_from(["111222", "333444"]), st.integers(1, 600), st.just(0.0)),
    st.builds(CredentialsGranted, creds),
    st.builds(RotationGranted, others, st.sampled_from(["x", "y"]), st.integers(1, 5)),
    st.builds(lambda s, w, d: BindingReceived(binding(s, w, d), None),
              st.sampled_from(["active", "retired", "unpaired", "revoked"]), windows, others),
    st.builds(Refused, st.sampled_from([0x80, 0x86, 0x87, 0x8C])),
    st.just(Connected()), st.just(ReEnrolAsked()),
    st.builds(Tick, st.booleans(), st.integers(0, 2)))


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=25))
def test_invariants(seq):
    p, now = fresh(), 0.0
    for e in seq:
        now += 7.0
        before = p
        p, effects = step(p, e, now)
        for fx in effects:
            if isinstance(fx, SaveCredentials):
                # credentials are only ever ours, and a new account only comes from a sealed answer to us
                assert (fx.creds.device, fx.creds.center) == (DEV, CENTER) and fx.creds == p.creds
                if before.creds is None or before.creds.username != fx.creds.username:
                    assert isinstance(e, CredentialsGranted) and before.mode == "enrolling"
            if isinstance(fx, SaveBinding):
                assert fx.binding["device"] == DEV and p.mode == "paired"
        if p.binding is not None and p.binding["state"] != "active":
            # a retired, unpaired or revoked binding never serves a window
            assert not p.serving and p.window_name == "" and pairing.shown(p, now, "") is not None
        if p.mode == "enrolling":
            assert p.binding is None and p.creds is None and pairing.window(p, "W09") == "W09"
        assert p.refusals >= 0 and (p.mode == "paired") == (p.creds is not None)
