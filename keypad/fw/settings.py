# The keypad's settings file (settings.json on the board): read, fill defaults, check; every problem
# is reported in words, all at once, before anything starts.
import json
import wire

DEFAULTS = {
    "utc_offset_min": 480,
    "case_max_age_h": 12,
    "reason_keys": [],
    "rating": {},
    "mqtt": {"port": 1883, "keepalive_s": 30, "username": None, "password": None, "client_id": None, "ca": None},
    "outbox": {"sectors": 16, "file": "ratings.bin", "partition": None, "receipt_timeout_s": 30,
               "retry_max_s": 600, "alarm_after_offers": 10, "window": 20},
    "pins": {"buzzer": None},
    "wifi": None,
    "enrolment": None,
    "data_dir": "",
}
RATING_LIMITS = {"case_timeout_s": (10, 3600), "reasons_timeout_s": (10, 600), "thanks_s": (1, 30),
                 "repeat_guard_s": (0, 600)}


class SettingsError(ValueError):
    pass


def load(path="settings.json"):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise SettingsError("cannot read %s: %s" % (path, e))
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise SettingsError("%s is not JSON: %s" % (path, e))
    return check(raw)


def check(raw):
    """The settings with defaults filled in; SettingsError listing every problem."""
    if not isinstance(raw, dict):
        raise SettingsError("settings must be a JSON object")
    cfg = {}
    for k, v in DEFAULTS.items():
        cfg[k] = dict(v) if isinstance(v, dict) else v
    problems = []
    for k, v in raw.items():
        if k not in DEFAULTS and k not in ("device", "center", "window"):  # window: the binding's when enrolled
            problems.append("unknown setting %r" % k)
        elif isinstance(cfg.get(k), dict) and isinstance(v, dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    e = cfg["enrolment"]
    if e is not None and not (isinstance(e, dict) and isinstance(e.get("username"), str) and e.get("username")
                              and isinstance(e.get("password"), str)):
        problems.append("enrolment needs the center-wide enrolment account: username and password")
    for k in ("device", "center") + (() if e else ("window",)):
        if not wire.is_id(cfg.get(k)):
            problems.append("%s must be an id ([A-Za-z0-9_-], 1-32 characters), not %r" % (k, cfg.get(k)))
    m = cfg["mqtt"]
    if not isinstance(m.get("host"), str) or not m.get("host"):
        problems.append("mqtt.host is required")
    if not isinstance(m.get("port"), int) or not 0 < m["port"] < 65536:
        problems.append("mqtt.port must be 1-65535")
    if (m.get("username") is None) != (m.get("password") is None):
        problems.append("mqtt.username and mqtt.password go together")
    if m.get("ca") is not None:
        try:
            open(m["ca"]).close()
        except (OSError, TypeError):
            problems.append("mqtt.ca: cannot read the CA certificate file %r" % (m["ca"],))
    if m.get("client_id") is not None and not (isinstance(m["client_id"], str) and 0 < len(m["client_id"]) <= 64):
        problems.append("mqtt.client_id must be 1-64 characters")
    pins = cfg["pins"]
    for k in ("keys", "leds"):
        if not (isinstance(pins.get(k), list) and len(pins[k]) == 5):
            problems.append("pins.%s must list 5 pins" % k)
    rk = cfg["reason_keys"]
    if not (isinstance(rk, list) and len(rk) <= 4 and all(isinstance(c, str) and 0 < len(c) <= 8 for c in rk)):
        problems.append("reason_keys must list up to 4 reason codes (keys 1-4 in the reasons step)")
    r = cfg["rating"]
    for k, v in r.items():
        if k == "staff_rating_when_idle":
            if not isinstance(v, bool):
                problems.append("rating.staff_rating_when_idle must be true or false")
        elif k not in RATING_LIMITS:
            problems.append("unknown setting rating.%s" % k)
        elif not (isinstance(v, int) and RATING_LIMITS[k][0] <= v <= RATING_LIMITS[k][1]):
            problems.append("rating.%s must be %d-%d" % ((k,) + RATING_LIMITS[k]))
    ob = cfg["outbox"]
    if not (isinstance(ob.get("sectors"), int) and 3 <= ob["sectors"] <= 1024):
        problems.append("outbox.sectors must be 3-1024")
    for k in ("receipt_timeout_s", "retry_max_s", "alarm_after_offers", "window"):
        if not (isinstance(ob.get(k), (int, float)) and ob[k] > 0):
            problems.append("outbox.%s must be a positive number" % k)
    if not (isinstance(cfg["utc_offset_min"], int) and -720 <= cfg["utc_offset_min"] <= 840):
        problems.append("utc_offset_min must be -720..840")
    if problems:
        raise SettingsError("; ".join(problems))
    return cfg
