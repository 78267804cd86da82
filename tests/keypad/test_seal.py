"""The keypad's sealed boxes (keypad/fw/seal.py): the golden boxes open under real MicroPython, and boxes
made by protocol.sealed (the `cryptography` package) open with it and the other way round."""
from __future__ import annotations

import json

from hypothesis import given, settings, strategies as st

from protocol import sealed
from tests.keypad.mpy import ROOT, on_cpython, run

VALID = ROOT / "protocol" / "golden" / "valid"
DEVICE = "rpi-1000000a3f9c2b7e"


def test_the_golden_boxes_open_under_micropython(tmp_path):
    cases = [
        [json.loads((VALID / "sealed-code.json").read_text())["box"],
         f"hcp/v1/pudong/enrol/{DEVICE}/9doSSrtjpHbOQ1Mp/answer"],
        [json.loads((VALID / "sealed-credentials.json").read_text())["box"], f"hcp/v1/pudong/device/{DEVICE}/credentials"],
        [json.loads((VALID / "binding-active.json").read_text())["qr"]["key"], f"hcp/v1/pudong/device/{DEVICE}/binding"],
    ]
    out = run(f"""
import json, hashlib, time, seal
priv = hashlib.sha256(b"hcp golden device key").digest()
t = time.ticks_ms()
pub = seal.public_key(priv)
print("@" + json.dumps([seal.key_id(pub), seal.b64(pub)]))
for box, topic in json.loads({json.dumps(json.dumps(cases))}):
    print("@" + json.dumps(seal.unseal(priv, box, topic).hex()))
    try:
        seal.unseal(priv, box, topic + "x")
        print("@" + json.dumps("opened on another topic"))
    except seal.SealError as e:
        print("@" + json.dumps(str(e)))
print("@" + json.dumps(time.ticks_diff(time.ticks_ms(), t)))
""", tmp_path)
    assert out[0] == ["9doSSrtjpHbOQ1Mp", json.loads((VALID / "hello-full.json").read_text())["key"]]
    code, creds, qr = (bytes.fromhex(out[i]) for i in (1, 3, 5))
    assert json.loads(code) == json.loads((VALID / "grant-code.json").read_text())
    creds = json.loads(creds)
    assert (creds["grant"], creds["device"], creds["center"]) == ("credentials", DEVICE, "pudong")
    assert qr == b"demo-only-not-for-production-use", "the demo QR key (docs/protocol.md §10)"
    assert out[2] == out[4] == out[6] == "box does not open with this key and context"
    print(f"\nkeypad: opening three boxes under MicroPython (WebAssembly) took {out[7]} ms")


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=300), st.text(max_size=80), st.binary(min_size=32, max_size=32),
       st.binary(min_size=12, max_size=12))
def test_boxes_interoperate_with_the_terminals_implementation(private, plaintext, context, eph, nonce):
    on_cpython()
    import seal
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    key = X25519PrivateKey.from_private_bytes(private)
    pub = sealed.public_bytes(key)
    assert seal.public_key(private) == pub
    assert seal.unseal(private, sealed.seal(pub, plaintext, context), context) == plaintext
    mine = seal.seal(pub, plaintext, context, eph, nonce)
    assert sealed.unseal(key, mine, context) == plaintext
    tampered = mine[:-3] + ("A" if mine[-3] != "A" else "B") + mine[-2:]
    try:
        seal.unseal(private, tampered, context)
        opened = True
    except seal.SealError:
        opened = False
    assert not opened or sealed.unseal(key, tampered, context) == plaintext
    assert seal.key_id(pub) == sealed.key_id(pub)


def test_x25519_rfc7748_vector():
    on_cpython()
    import seal
    k = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    u = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    assert seal.x25519(k, u).hex() == "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
