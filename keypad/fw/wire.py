# Protocol v1 on the keypad (docs/protocol.md): topics, the records it sends, strict decoding of what
# it receives. Plain MicroPython (runs on CPython too). The JSON Schemas in protocol/schemas/ are the
# definition; this file checks the same rules by hand (MicroPython's `re` has no {m,n}), and the
# golden vectors in protocol/golden/ hold it to them (tests/keypad/).
import json

PREFIX = "hcp/v1"
MAX_INBOUND = 16384
LEVELS = ("very_satisfied", "satisfied", "basically_satisfied", "dissatisfied", "very_dissatisfied")
BAD = ("dissatisfied", "very_dissatisfied")
CHANNELS = ("touch", "keys", "qr", "sms", "staff_qr", "hall_qr", "other")
MAX_INT = 9007199254740991

_ID = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_ALNUM = _ID[:62]


class MessageError(ValueError):
    def __init__(self, reason, detail=""):
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason


class Topics:
    def __init__(self, center, window, device):
        self.center, self.window, self.device = center, window, device
        w = "%s/%s/window/%s/" % (PREFIX, center, window)
        d = "%s/%s/device/%s/" % (PREFIX, center, device)
        self.case, self.duty = w + "case", w + "duty"
        self.catalog = "%s/%s/catalog" % (PREFIX, center)
        self.config, self.receipt = d + "config", d + "receipt"
        self.rating, self.event, self.status = d + "rating", d + "event", d + "status"

    def inbound(self):
        """Topic -> kind, for everything the keypad subscribes to."""
        return {self.case: "case", self.duty: "duty", self.catalog: "catalog", self.config: "config",
                self.receipt: "receipt"}


def encode(msg):
    """Compact UTF-8 JSON (MicroPython writes non-ASCII as UTF-8, never as \\u escapes)."""
    return json.dumps(msg, separators=(",", ":")).encode()


# ---- records ---------------------------------------------------------------------------------------

def rating(draft, origin, rid, seq, ts):
    """A rating from the state machine's draft (dict: kind, level, channel, staff, case, reasons, catalog)."""
    m = {"v": 1, "type": "rating", "id": rid, "device": origin["device"], "center": origin["center"],
         "window": origin["window"], "seq": seq, "ts": ts, "kind": draft["kind"], "level": draft["level"],
         "channel": draft["channel"]}
    case = draft.get("case")
    if case is not None:
        m["case"] = case["id"]
        m["item_code"] = case["item_code"]
        m["applicant"] = case["token"]
    if draft.get("staff"):
        m["staff"] = draft["staff"]
    if draft.get("reasons"):
        m["reasons"] = {"catalog": draft["catalog"], "codes": list(draft["reasons"])}
    return m


def unrated(case, origin, rid, seq, ts):
    return {"v": 1, "type": "event", "id": rid, "device": origin["device"], "center": origin["center"],
            "window": origin["window"], "seq": seq, "ts": ts, "event": "unrated", "case": case["id"],
            "staff": case["staff"], "applicant": case["token"]}


def alarm(code, detail, origin, rid, ts, cleared=False):
    return {"v": 1, "type": "event", "id": rid, "device": origin["device"], "center": origin["center"],
            "window": origin["window"], "ts": ts, "event": "alarm_cleared" if cleared else "alarm",
            "alarm": code, "detail": detail[:500]}


def status(origin, state, ts=None, fw=None, pending=0, quarantined=0, capacity=1, alarms=(), rejected=0):
    m = {"v": 1, "type": "status", "device": origin["device"], "state": state}
    if state == "online":
        m.update(ts=ts, window=origin["window"], rejected_inputs=rejected, alarms=list(alarms)[:32],
                 outbox={"pending": pending, "quarantined": quarantined, "capacity": max(1, capacity)})
        if fw:
            m["fw"] = fw[:32]
    return m


def check_outbound(m):
    """The rules the schema puts on a record the keypad commits (a draft bug must not reach flash)."""
    for k in ("id", "device", "center", "window", "ts"):
        if not isinstance(m.get(k), str):
            raise MessageError("schema", k + " missing")
    if not (is_uuid(m["id"]) and is_id(m["device"]) and is_id(m["center"]) and is_id(m["window"])
            and is_time(m["ts"]) and _int(m.get("seq"), 1, MAX_INT)):
        raise MessageError("schema", "id, device, center, window, seq or ts")
    if m["type"] == "rating":
        kind = m["kind"]
        if m["level"] not in LEVELS or m["channel"] not in CHANNELS or kind not in ("case", "staff", "hall"):
            raise MessageError("schema", "kind, level or channel")
        if (kind == "case") != ("case" in m) or (kind == "case") != ("applicant" in m):
            raise MessageError("schema", "case and applicant go with kind case only")
        if (kind != "hall") != is_id(m.get("staff")):
            raise MessageError("schema", "staff goes with kind case and staff")
        if kind == "case" and not (is_case_id(m["case"]) and _token(m["applicant"])):
            raise MessageError("schema", "case or applicant")
        r = m.get("reasons")
        if m["level"] in BAD and not r:
            raise MessageError("schema", "a bad rating needs reasons")
        if r and not (_chars(r["catalog"], _ID + ".", 1, 32) and 1 <= len(r["codes"]) <= 32
                      and all(_chars(c, _ALNUM, 1, 8) for c in r["codes"]) and len(set(r["codes"])) == len(r["codes"])):
            raise MessageError("schema", "reasons")
    elif not (m.get("event") == "unrated" and is_case_id(m.get("case")) and is_id(m.get("staff"))
              and _token(m.get("applicant"))):
        raise MessageError("schema", "an unrated event needs case, staff and applicant")
    return m


# ---- decoding --------------------------------------------------------------------------------------

def decode(kind, payload, max_bytes=MAX_INBOUND):
    """Parse and check one inbound message; MessageError(reason) as protocol.codec gives it."""
    if kind not in _CHECKS:
        raise MessageError("unknown_kind", kind)
    if isinstance(payload, str):
        payload = payload.encode()
    if len(payload) > max_bytes:
        raise MessageError("oversized", "%d bytes" % len(payload))
    try:
        text = payload.decode()
    except UnicodeError:
        raise MessageError("bad_json", "not UTF-8")
    _strict(text)
    try:
        data = json.loads(text)
    except ValueError as e:
        raise MessageError("bad_json", str(e))
    if not isinstance(data, dict):
        raise MessageError("not_object")
    if data.get("v") is True or data.get("v") != 1:  # 1.0 is version 1, as for JSON Schema's const
        raise MessageError("wrong_version")
    if data.get("type") != kind:
        raise MessageError("wrong_type")
    _CHECKS[kind](data)
    _personal(kind, data)
    return data


def _strict(text):
    """What MicroPython's json lets through: repeated keys, NaN/Infinity, unpaired surrogate escapes."""
    stack = []  # per open container: a set of keys for an object, None for an array
    expect_key = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while text[j] != '"':
                if text[j] == "\\":
                    if text[j + 1] == "u":
                        _surrogate(text, j)
                        j += 6
                        continue
                    j += 2
                    continue
                j += 1
                if j >= n:
                    raise MessageError("bad_json", "unterminated string")
            if expect_key and stack and stack[-1] is not None:
                key = json.loads(text[i:j + 1]) if "\\" in text[i:j] else text[i + 1:j]
                if key in stack[-1]:
                    raise MessageError("duplicate_key", key[:32])
                stack[-1].add(key)
                expect_key = False
            i = j + 1
            continue
        if c == "{":
            stack.append(set())
            expect_key = True
        elif c == "[":
            stack.append(None)
        elif c in "}]":
            if stack:
                stack.pop()
            expect_key = False
        elif c == ",":
            expect_key = bool(stack) and stack[-1] is not None
        elif c in "NI":
            raise MessageError("bad_json", "NaN and Infinity are not JSON")
        i += 1


def _surrogate(text, j):
    try:
        u = int(text[j + 2:j + 6], 16)
    except (ValueError, IndexError):
        raise MessageError("bad_json", "bad \\u escape")
    if 0xD800 <= u <= 0xDBFF:
        if text[j + 6:j + 8] != "\\u":
            raise MessageError("bad_json", "unpaired surrogate")
        try:
            low = int(text[j + 8:j + 12], 16)
        except ValueError:
            low = 0
        if not 0xDC00 <= low <= 0xDFFF:
            raise MessageError("bad_json", "unpaired surrogate")
    elif 0xDC00 <= u <= 0xDFFF and text[j - 6:j - 4] != "\\u":
        raise MessageError("bad_json", "unpaired surrogate")


def _fail(what):
    raise MessageError("schema", what)


def _keys(d, allowed, required, where):
    if not isinstance(d, dict):
        _fail(where + " is not an object")
    for k in d:
        if k not in allowed:
            _fail("%s.%s is not allowed" % (where, k))
    for k in required:
        if k not in d:
            _fail("%s.%s is required" % (where, k))


def _chars(s, alphabet, lo, hi):
    return isinstance(s, str) and lo <= len(s) <= hi and all(c in alphabet for c in s)


def is_id(s):
    return _chars(s, _ID, 1, 32)


def is_case_id(s):
    return _chars(s, _ID + ".:", 1, 50)


def is_uuid(s):
    if not (isinstance(s, str) and len(s) == 36):
        return False
    for i, c in enumerate(s):
        if (c != "-") if i in (8, 13, 18, 23) else (c not in "0123456789abcdef"):
            return False
    return True


def is_time(s):
    """RFC 3339 as the schema's pattern has it: date T time [.1-6 digits] (Z | ±hh:mm)."""
    if not isinstance(s, str) or len(s) < 20:
        return False
    d = "0123456789"
    if not (all(s[i] in d for i in (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)) and s[4] == s[7] == "-"
            and s[10] == "T" and s[13] == s[16] == ":"):
        return False
    rest = s[19:]
    if rest[:1] == ".":
        k = 1
        while k < len(rest) and rest[k] in d:
            k += 1
        if not 2 <= k <= 7:
            return False
        rest = rest[k:]
    if rest == "Z":
        return True
    return (len(rest) == 6 and rest[0] in "+-" and rest[1] in d and rest[2] in d and rest[3] == ":"
            and rest[4] in d and rest[5] in d)


def _int(v, lo, hi):
    # 1.0 is an integer too (JSON has one number type; JSON Schema's "integer" accepts it), as in protocol.codec
    if isinstance(v, float) and v == v and v not in (float("inf"), float("-inf")) and v == int(v):
        v = int(v)
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _text(s, lo, hi):
    return isinstance(s, str) and lo <= len(s) <= hi


def _token(s):
    return _chars(s, _ID, 8, 128)


def _staff(st, where):
    _keys(st, ("id", "name", "number", "photo"), ("id", "name"), where)
    if not (is_id(st["id"]) and _text(st["name"], 1, 32) and _text(st.get("number", ""), 0, 16)):
        _fail(where)
    if "photo" in st and not (_text(st["photo"], 9, 512) and st["photo"].startswith("https://")):
        _fail(where + ".photo")


def _check_case(m):
    _keys(m, ("v", "type", "center", "window", "state", "case", "staff", "applicant", "rating_url",
              "rated_channel", "opened_at", "closed_at"), ("v", "type", "center", "window", "state", "case"), "case")
    if not (is_id(m["center"]) and is_id(m["window"]) and m["state"] in ("open", "closed", "rated")):
        _fail("center, window or state")
    c = m["case"]
    _keys(c, ("id", "item_code", "item_name"), ("id", "item_code", "item_name") if m["state"] == "open" else ("id",),
          "case.case")
    if not is_case_id(c["id"]) or ("item_code" in c and not _chars(c["item_code"], _ID + ".", 1, 64)) or \
            ("item_name" in c and not _text(c["item_name"], 1, 64)):
        _fail("case.case")
    if m["state"] == "open":
        for k in ("staff", "applicant", "opened_at"):
            if k not in m:
                _fail(k + " is required when open")
    if "staff" in m:
        _staff(m["staff"], "staff")
    if "applicant" in m:
        a = m["applicant"]
        _keys(a, ("token", "display"), ("token", "display"), "applicant")
        if not (_token(a["token"]) and _text(a["display"], 1, 16)):
            _fail("applicant")
    if "rating_url" in m:  # present means an https string: null is not "absent" (the schema refuses it too)
        url = m["rating_url"]
        if not (_text(url, 9, 508) and url.startswith("https://") and " " not in url):
            _fail("rating_url")
    if "rated_channel" in m and m["rated_channel"] not in CHANNELS:
        _fail("rated_channel")
    for k in ("opened_at", "closed_at"):
        if k in m and not is_time(m[k]):
            _fail(k)


def _check_duty(m):
    _keys(m, ("v", "type", "center", "window", "window_name", "staff"), ("v", "type", "center", "window", "staff"),
          "duty")
    if not (is_id(m["center"]) and is_id(m["window"])) or ("window_name" in m and not _text(m["window_name"], 1, 32)):
        _fail("center, window or window_name")
    if m["staff"] is not None:
        _staff(m["staff"], "staff")


def _check_catalog(m):
    _keys(m, ("v", "type", "center", "version", "reasons"), ("v", "type", "center", "version", "reasons"), "catalog")
    if not (is_id(m["center"]) and _chars(m["version"], _ID + ".", 1, 32)):
        _fail("center or version")
    rs = m["reasons"]
    if not (isinstance(rs, list) and 1 <= len(rs) <= 32):
        _fail("reasons")
    for r in rs:
        _keys(r, ("code", "group", "zh", "en"), ("code", "zh"), "reason")
        if not (_chars(r["code"], _ALNUM, 1, 8) and _text(r["zh"], 1, 64) and _text(r.get("en", "x"), 1, 64)
                and _text(r.get("group", ""), 0, 16)):
            _fail("reason")


def _check_config(m):
    _keys(m, ("v", "type", "device", "rating"), ("v", "type", "device"), "config")
    if not is_id(m["device"]):
        _fail("device")
    r = m.get("rating", {})
    _keys(r, ("case_timeout_s", "reasons_timeout_s", "thanks_s", "staff_rating_when_idle"), (), "rating")
    limits = {"case_timeout_s": (10, 3600), "reasons_timeout_s": (10, 600), "thanks_s": (1, 30)}
    for k, (lo, hi) in limits.items():
        if k in r and not _int(r[k], lo, hi):
            _fail("rating." + k)
    if "staff_rating_when_idle" in r and not isinstance(r["staff_rating_when_idle"], bool):
        _fail("rating.staff_rating_when_idle")


def _check_receipt(m):
    _keys(m, ("v", "type", "items"), ("v", "type", "items"), "receipt")
    items = m["items"]
    if not (isinstance(items, list) and 1 <= len(items) <= 250):
        _fail("items")
    for it in items:
        _keys(it, ("id", "status", "reason"), ("id", "status"), "item")
        if not (is_uuid(it["id"]) and it["status"] in ("stored", "duplicate", "rejected")
                and _text(it.get("reason", ""), 0, 200)):
            _fail("item")


_SPACE = " \t\n\r\f\v\xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff" + "".join(chr(c) for c in range(0x2000, 0x200B))


def _https(s, hi, must=None):
    """`^https://\\S+$`-style URL fields (with `must` inside, e.g. `{staff}`)."""
    return (_text(s, 9, hi) and s.startswith("https://") and not any(c in _SPACE for c in s)
            and (must is None or must in s))


def _box(s):
    parts = s.split(".") if isinstance(s, str) else []
    return (len(parts) == 4 and parts[0] == "1" and _chars(parts[1], _ID, 43, 43) and _chars(parts[2], _ID, 16, 16)
            and _chars(parts[3], _ID, 22, 8000))


def _check_binding(m):
    _keys(m, ("v", "type", "center", "device", "state", "window", "window_name", "staff", "hall_qr_url",
              "staff_qr_template", "qr", "issued"), ("v", "type", "center", "device", "state"), "binding")
    if not (is_id(m["center"]) and is_id(m["device"]) and m["state"] in ("active", "retired", "unpaired", "revoked")):
        _fail("center, device or state")
    if m["state"] == "active" and "window" not in m:
        _fail("an active binding needs a window")
    if "window" in m and not is_id(m["window"]):
        _fail("window")
    if "window_name" in m and not _text(m["window_name"], 1, 32):
        _fail("window_name")
    staff = m.get("staff", [])
    if not (isinstance(staff, list) and len(staff) <= 64):
        _fail("staff")
    for st in staff:
        _staff(st, "staff[]")
    if "hall_qr_url" in m and not _https(m["hall_qr_url"], 500):
        _fail("hall_qr_url")
    if "staff_qr_template" in m and not _https(m["staff_qr_template"], 500, "{staff}"):
        _fail("staff_qr_template")
    if "qr" in m:
        q = m["qr"]
        _keys(q, ("key_id", "key", "url_template", "ttl_s"), ("key_id", "key"), "qr")
        if not (_chars(q["key_id"], _ID, 1, 16) and _box(q["key"])):
            _fail("qr")
        if "url_template" in q and not _https(q["url_template"], 500, "{token}"):
            _fail("qr.url_template")
        if "ttl_s" in q and not _int(q["ttl_s"], 60, 2592000):
            _fail("qr.ttl_s")
    if "issued" in m and not is_time(m["issued"]):
        _fail("issued")


def _check_sealed(m):
    _keys(m, ("v", "type", "device", "box"), ("v", "type", "device", "box"), "sealed")
    if not (is_id(m["device"]) and _box(m["box"])):
        _fail("device or box")


def _check_grant(m):
    _keys(m, ("v", "type", "grant", "center", "device", "code", "ttl_s", "window", "username", "password",
              "client_id", "cred"), ("v", "type", "grant", "center", "device"), "grant")
    if not (is_id(m["center"]) and is_id(m["device"]) and m["grant"] in ("code", "credentials")):
        _fail("grant, center or device")
    if "code" in m and not (_chars(m["code"], "0123456789", 6, 6)):
        _fail("code")
    if "ttl_s" in m and not _int(m["ttl_s"], 10, 86400):
        _fail("ttl_s")
    for k, ok in (("window", is_id), ("username", is_id), ("password", lambda v: _chars(v, _ID, 32, 128)),
                  ("client_id", lambda v: _chars(v, _ID, 1, 64)), ("cred", lambda v: _int(v, 1, MAX_INT))):
        if k in m and not ok(m[k]):
            _fail(k)
    if m["grant"] == "code":
        if "code" not in m or "ttl_s" not in m or any(k in m for k in ("username", "password", "client_id", "cred",
                                                                       "window")):
            _fail("a code grant has code and ttl_s only")
    elif any(k not in m for k in ("username", "password", "client_id", "cred")) or "code" in m or "ttl_s" in m:
        _fail("a credentials grant has username, password, client_id and cred")


def hello(center, device, key, fw):
    return {"v": 1, "type": "hello", "center": center, "device": device, "key": key, "model": "MicroPython keypad",
            "fw": fw[:32]}


_CHECKS = {"case": _check_case, "duty": _check_duty, "catalog": _check_catalog, "config": _check_config,
           "receipt": _check_receipt, "binding": _check_binding, "sealed": _check_sealed, "grant": _check_grant}


# ---- personal data (docs/protocol.md §9) -----------------------------------------------------------

_ZH = "〇一二三四五六七八九"
_ZH2 = "零壹贰叁肆伍陆柒捌玖"
_ZERO = (0x30, 0xFF10, 0x660, 0x6F0, 0x966, 0x9E6, 0xE50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6)
_SEP = " \t\n-_.,:/\\|()[]·•‐‑‒–—―−~*#+\u3000"
_INVISIBLE = "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad"


def _digit(ch):
    o = ord(ch)
    for z in _ZERO:
        if z <= o <= z + 9:
            return chr(0x30 + o - z)
    k = _ZH.find(ch)
    if k < 0:
        k = _ZH2.find(ch)
    if k >= 0:
        return chr(0x30 + k)
    return "1" if ch == "幺" else None


def digit_view(text):
    """Digits as ASCII (full-width, Arabic-Indic, Devanagari, mathematical, Chinese numerals), invisible
    characters dropped, separators between digits dropped. A subset of protocol.codec.digit_view
    (MicroPython has no unicodedata); it covers the forms of the golden vectors."""
    chars = []
    for ch in text:
        if ch not in _INVISIBLE:
            d = _digit(ch)
            chars.append(ch if d is None else d)
    out = []
    i, n = 0, len(chars)
    while i < n:
        ch = chars[i]
        if ch in _SEP and out and "0" <= out[-1] <= "9":
            j = i
            while j < n and chars[j] in _SEP:
                j += 1
            if j < n and "0" <= chars[j] <= "9":
                i = j
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def _run(s, n):
    k = 0
    for ch in s:
        k = k + 1 if "0" <= ch <= "9" else 0
        if k >= n:
            return True
    return False


def _bare_number(s):
    v = "".join(c for c in digit_view(s) if c not in "-_ ")
    i, j = 0, len(v)
    while i < j and v[i].isalpha() and v[i] < "\x80":
        i += 1
    while j > i and v[j - 1].isalpha() and v[j - 1] < "\x80":
        j -= 1
    for end in range(j, len(v) + 1):  # a trailing letter may be an ID card's check digit X
        if _bare_core(v[i:end]):
            return True
    return False


def _bare_core(core):
    if all("0" <= c <= "9" for c in core):
        return (len(core) == 11 and core[0] == "1" and core[1] in "3456789") or len(core) in (15, 18)
    return len(core) == 18 and all("0" <= c <= "9" for c in core[:17]) and core[17] in "Xx"


def _personal(kind, m):
    texts, numbers = [], []
    staff = []
    if kind == "case":
        a = m.get("applicant") or {}
        if "token" in a and _bare_number(a["token"]):
            raise MessageError("personal_data", "the applicant token is a phone or ID-card number")
        texts += [m["case"].get("item_name", ""), a.get("display", "")]
        staff += [m["staff"]] if m.get("staff") else []
    elif kind == "duty":
        texts.append(m.get("window_name", ""))
        staff += [m["staff"]] if m.get("staff") else []
    elif kind == "binding":
        texts.append(m.get("window_name", ""))
        staff += m.get("staff", [])
    elif kind == "catalog":
        for r in m["reasons"]:
            texts += [r.get("zh", ""), r.get("en", ""), r.get("group", "")]
    for st in staff:
        texts.append(st["name"])
        numbers.append(st.get("number", ""))
    for t in texts:
        if _run(digit_view(t), 6):
            raise MessageError("personal_data", "display text holds a long digit run")
    for t in numbers:
        if _bare_number(t):
            raise MessageError("personal_data", "a staff number is a phone or ID-card number")
