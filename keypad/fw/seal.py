# Sealed boxes for enrolment (docs/protocol.md §11) in plain MicroPython: X25519 (RFC 7748), HKDF-SHA256
# (RFC 5869), ChaCha20-Poly1305 (RFC 8439). MicroPython has none of them built in; this is the keypad's
# copy of protocol/sealed.py's seal/unseal, held to the golden sealed boxes and to the `cryptography`
# package (tests/keypad/test_seal.py). Slow but small: one box is a few hundred bytes.
import hashlib
from binascii import a2b_base64, b2a_base64

P = 2**255 - 19
A24 = 121665
INFO = b"hcp/v1 sealed box"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class SealError(ValueError):
    pass


# ---- base64url without padding, strict ----------------------------------------------------------------

def b64(data):
    return b2a_base64(data).strip().decode().replace("+", "-").replace("/", "_").rstrip("=")


def unb64(text):
    if not isinstance(text, str) or len(text) % 4 == 1 or any(c not in _B64 for c in text):
        raise SealError("not base64url")
    raw = a2b_base64((text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4)).encode())
    if b64(raw) != text:
        raise SealError("non-canonical base64url")
    return raw


# ---- X25519 --------------------------------------------------------------------------------------------

def _le(b):
    n = 0
    for i in range(len(b) - 1, -1, -1):
        n = (n << 8) | b[i]
    return n


def _bytes(n):
    return bytes((n >> (8 * i)) & 0xFF for i in range(32))


def x25519(k, u):
    """The X25519 function on 32-byte strings (RFC 7748 §5)."""
    k = bytearray(k)
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    s = _le(k)
    x1 = _le(u) & ((1 << 255) - 1)
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in range(254, -1, -1):
        bit = (s >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % P, (x2 - z2) % P
        aa, bb = a * a % P, b * b % P
        e = (aa - bb) % P
        c, d = (x3 + z3) % P, (x3 - z3) % P
        da, cb = d * a % P, c * b % P
        x3 = (da + cb) % P
        x3 = x3 * x3 % P
        z3 = (da - cb) % P
        z3 = x1 * (z3 * z3 % P) % P
        x2 = aa * bb % P
        z2 = e * ((aa + A24 * e) % P) % P
    if swap:
        x2, z2 = x3, z3
    return _bytes(x2 * pow(z2, P - 2, P) % P)


def public_key(private):
    return x25519(private, b"\x09" + b"\x00" * 31)


def key_id(public):
    return b64(hashlib.sha256(public).digest())[:16]


# ---- HMAC, HKDF ----------------------------------------------------------------------------------------

def hmac_sha256(key, msg):
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + msg).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in key) + inner).digest()


def hkdf(ikm, salt, info, n=32):
    prk = hmac_sha256(salt, ikm)
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac_sha256(prk, t + info + bytes([i]))
        out += t
        i += 1
    return out[:n]


# ---- ChaCha20-Poly1305 ---------------------------------------------------------------------------------

M32 = 0xFFFFFFFF


def _rotl(v, n):
    return ((v << n) & M32) | (v >> (32 - n))


def _block(key_words, counter, nonce_words):
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574] + key_words + [counter] + nonce_words
    x = list(s)
    for _ in range(10):
        for a, b, c, d in ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15),
                           (0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14)):
            x[a] = (x[a] + x[b]) & M32
            x[d] = _rotl(x[d] ^ x[a], 16)
            x[c] = (x[c] + x[d]) & M32
            x[b] = _rotl(x[b] ^ x[c], 12)
            x[a] = (x[a] + x[b]) & M32
            x[d] = _rotl(x[d] ^ x[a], 8)
            x[c] = (x[c] + x[d]) & M32
            x[b] = _rotl(x[b] ^ x[c], 7)
    out = bytearray(64)
    for i in range(16):
        v = (x[i] + s[i]) & M32
        out[4 * i:4 * i + 4] = bytes((v >> (8 * j)) & 0xFF for j in range(4))
    return out


def _words(b):
    return [_le(b[i:i + 4]) for i in range(0, len(b), 4)]


def chacha20(key, counter, nonce, data):
    kw, nw = _words(key), _words(nonce)
    out = bytearray(len(data))
    for i in range(0, len(data), 64):
        ks = _block(kw, counter + i // 64, nw)
        for j in range(min(64, len(data) - i)):
            out[i + j] = data[i + j] ^ ks[j]
    return bytes(out)


def poly1305(key, msg):
    r = _le(key[:16]) & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = _le(key[16:32])
    p = (1 << 130) - 5
    acc = 0
    for i in range(0, len(msg), 16):
        block = msg[i:i + 16]
        acc = (acc + _le(block + b"\x01")) * r % p
    acc = (acc + s) & ((1 << 128) - 1)
    return bytes((acc >> (8 * i)) & 0xFF for i in range(16))


def _pad16(n):
    return b"\x00" * (-n % 16)


def _tag(key, nonce, aad, ct):
    otk = chacha20(key, 0, nonce, b"\x00" * 32)
    mac = aad + _pad16(len(aad)) + ct + _pad16(len(ct))
    mac += bytes((len(aad) >> (8 * i)) & 0xFF for i in range(8)) + bytes((len(ct) >> (8 * i)) & 0xFF for i in range(8))
    return poly1305(otk, mac)


def aead_encrypt(key, nonce, plaintext, aad):
    ct = chacha20(key, 1, nonce, plaintext)
    return ct + _tag(key, nonce, aad, ct)


def aead_decrypt(key, nonce, box, aad):
    if len(box) < 16:
        raise SealError("box does not open with this key and context")
    ct, tag = box[:-16], box[-16:]
    want = _tag(key, nonce, aad, ct)
    diff = 0
    for a, b in zip(want, tag):
        diff |= a ^ b
    if diff:
        raise SealError("box does not open with this key and context")
    return chacha20(key, 1, nonce, ct)


# ---- sealed boxes --------------------------------------------------------------------------------------

def _aead_key(shared, epk, recipient, context):
    return hkdf(shared, epk + recipient, INFO + b"|" + context.encode())


def unseal(private, box, context):
    """Open a box `1.<epk>.<nonce>.<ciphertext>` made for this key and context (the topic)."""
    parts = box.split(".") if isinstance(box, str) else []
    if len(parts) != 4 or parts[0] != "1" or len(parts[1]) != 43 or len(parts[2]) != 16 or \
            not 22 <= len(parts[3]) <= 8000:
        raise SealError("malformed box")
    epk, nonce, body = unb64(parts[1]), unb64(parts[2]), unb64(parts[3])
    shared = x25519(private, epk)
    if shared == b"\x00" * 32:
        raise SealError("box does not open with this key and context")
    return aead_decrypt(_aead_key(shared, epk, public_key(private), context), nonce, body, context.encode())


def seal(recipient, plaintext, context, eph, nonce):
    """The sender's side (the tests; a keypad never seals): `eph` and `nonce` are the caller's random bytes."""
    epk = public_key(eph)
    shared = x25519(eph, recipient)
    return "1.%s.%s.%s" % (b64(epk), b64(nonce), b64(aead_encrypt(_aead_key(shared, epk, recipient, context), nonce,
                                                                  plaintext, context.encode())))
