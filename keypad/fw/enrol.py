# Enrolment and pairing on the keypad (docs/protocol.md §11), as device/pairing.py does it on the Pi:
# an X25519 key of its own, the center-wide enrolment account to announce itself (`hello`), a pairing
# code sealed to it (blinked on LED 1), then its own account (credentials.json) and its binding
# (binding.json: window, or retired / unpaired / revoked). Rotated passwords are kept beside the
# current one until the broker takes the new one. Files live in `data_dir` (the board's filesystem).
import json
import os

import seal
import wire
from clock import urandom


def _write(path, data):
    """Replace a file as a whole: write a temporary one, then rename it over (atomic on LittleFS)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _forget(path):
    try:
        os.remove(path)
    except OSError:
        pass


class Enrolment:
    """What the keypad knows of its pairing; `mode` is "enrolling" or "paired"."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.device, self.center = cfg["device"], cfg["center"]
        d = cfg.get("data_dir") or ""
        self.paths = {k: (d + "/" + k if d else k) for k in ("enrolment.key", "credentials.json", "binding.json")}
        key = _read(self.paths["enrolment.key"])
        if key is None or len(key) != 32:
            key = urandom(32)
            _write(self.paths["enrolment.key"], key)
        self.key = key
        self.public = seal.public_key(key)
        self.key_id = seal.key_id(self.public)
        self.creds = self._load("credentials.json")
        if self.creds is not None and (self.creds.get("device") != self.device or self.creds.get("center") != self.center):
            self.forget()
        self.binding = self._load("binding.json") if self.creds else None
        self.code, self.code_until = "", 0
        self.refusals = 0

    def _load(self, name):
        raw = _read(self.paths[name])
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    @property
    def mode(self):
        return "paired" if self.creds else "enrolling"

    def answer_topic(self):
        return "%s/%s/enrol/%s/%s/answer" % (wire.PREFIX, self.center, self.device, self.key_id)

    def hello_topic(self):
        return "%s/%s/enrol/%s/hello" % (wire.PREFIX, self.center, self.device)

    def own_topics(self):
        d = "%s/%s/device/%s/" % (wire.PREFIX, self.center, self.device)
        return d + "binding", d + "credentials"

    def account(self):
        """(user, password, client id, clean session) to connect with now."""
        if self.mode == "enrolling":
            e = self.cfg["enrolment"]
            return e["username"], e["password"], "enrol-%s-%s" % (self.device, seal.b64(urandom(16))), True
        c = self.creds
        return c["username"], c["password"], c["client_id"], False

    def window(self):
        b = self.binding or {}
        return b.get("window") or (self.creds or {}).get("window") or self.cfg.get("window") or "-"

    def serving(self):
        return self.mode == "paired" and (self.binding is None or self.binding["state"] == "active")

    def state(self):
        """"code" (show it), "enrolling" (no code yet), "active", "retired", "unpaired" or "revoked"."""
        if self.mode == "enrolling":
            return "code" if self.code else "enrolling"
        return (self.binding or {}).get("state", "active")

    def hello(self, fw):
        return wire.hello(self.center, self.device, seal.b64(self.public), fw)

    def _grant(self, topic, payload):
        env = wire.decode("sealed", payload)
        if env["device"] != self.device:
            raise wire.MessageError("wrong_device", env["device"])
        try:
            inner = seal.unseal(self.key, env["box"], topic)
        except seal.SealError as e:
            raise wire.MessageError("unsealable", str(e))
        g = wire.decode("grant", inner)
        if g["device"] != self.device:
            raise wire.MessageError("wrong_device", g["device"])
        if g["center"] != self.center:
            raise wire.MessageError("wrong_center", g["center"])
        return g

    def on_answer(self, topic, payload, now):
        """A sealed answer while enrolling: "code" (blink it) or "paired" (reconnect with the new account)."""
        g = self._grant(topic, payload)
        if g["grant"] == "code":
            self.code, self.code_until = g["code"], now + g["ttl_s"]
            return "code"
        self.creds = {"center": g["center"], "device": g["device"], "window": g.get("window", ""),
                      "username": g["username"], "password": g["password"], "client_id": g["client_id"],
                      "cred": g["cred"], "next_password": "", "next_cred": 0}
        self._save()
        self.code, self.refusals = "", 0
        return "paired"

    def on_binding(self, payload):
        """The retained binding (paired): returns it; saved for the next start."""
        b = wire.decode("binding", payload)
        if b["device"] != self.device:
            raise wire.MessageError("wrong_device", b["device"])
        if b["center"] != self.center:
            raise wire.MessageError("wrong_center", b["center"])
        b.pop("qr", None)  # the QR signing key: a keypad shows no QR code
        _write(self.paths["binding.json"], wire.encode(b))
        self.binding = b
        if b["state"] == "active" and self.creds.get("window") != b["window"]:
            self.creds["window"] = b["window"]
            self._save()
        return b

    def on_rotation(self, topic, payload):
        """A rotated password: kept beside the current one; True when it is new (report `cred`)."""
        g = self._grant(topic, payload)
        c = self.creds
        if g["grant"] != "credentials" or g["username"] != c["username"] or g["cred"] <= self.newest():
            return False
        c["next_password"], c["next_cred"] = g["password"], g["cred"]
        self._save()
        return True

    def newest(self):
        c = self.creds or {}
        return max(c.get("cred", 0), c.get("next_cred", 0))

    def refused(self):
        """The broker refused the account: try the other password, if one is held."""
        self.refusals += 1
        c = self.creds
        if c and c.get("next_password"):
            c["password"], c["next_password"] = c["next_password"], c["password"]
            c["cred"], c["next_cred"] = c["next_cred"], c["cred"]
            self._save()

    def accepted(self):
        self.refusals = 0
        c = self.creds
        if c and c.get("next_password") and c["next_cred"] < c["cred"]:
            c["next_password"], c["next_cred"] = "", 0  # the older password is no longer needed
            self._save()

    def forget(self):
        """Unpaired and drained (or credentials for someone else): enrol again."""
        for name in ("credentials.json", "binding.json"):
            _forget(self.paths[name])
        self.creds, self.binding = None, None

    def _save(self):
        _write(self.paths["credentials.json"], json.dumps(self.creds).encode())
