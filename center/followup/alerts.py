"""Alerts to a window's supervisors: a follow-up opened, a follow-up's clock ran out. An outbox: `enqueue`
writes an `alerts` row in the caller's transaction (the one that opens the follow-up, or the overdue
sweep's), the worker (`center.followup.worker`) drains it through a gateway.

Gateways (the `AlertGateway` seam):
- `WebhookAlerts(url, secret)`: the alert's JSON, POSTed and signed exactly like the SMS webhook
  (center/sms/gateway.py: `Idempotency-Key`, `X-HCP-Timestamp`, `X-HCP-Signature: sha256=HMAC(secret,
  "<timestamp>.<raw body>")`), with the same answers: 2xx sent; 408/425/429/5xx/no answer retry; else failed.
- `SmsAlerts(sms_gateway, phones, signature)`: one short SMS per supervisor with a configured number,
  through the SMS seam (`FileGateway` or `WebhookGateway`).

The alert names the center, window, staff id, level, clock and deadline and the console path — never
the applicant, the case or the citizen's words.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Mapping, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from center.sms.gateway import Delivery, Outgoing, WebhookGateway, signature
from center.store.tables import alerts, users

KINDS = ("opened", "overdue")
LEVEL_ZH = {"dissatisfied": "不满意", "very_dissatisfied": "非常不满意"}
CLOCK_ZH = {"contact": "联系核实", "answer": "答复", "rectify": "整改"}
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Alert:
    id: int
    key: str          # stable across retries and restarts: the receiver's idempotency key
    kind: str
    center: str
    window: str
    body: dict
    attempts: int
    next_try: float


class AlertGateway(Protocol):
    def send(self, alert: Alert) -> Delivery: ...


def alert_key(kind: str, rating_id: str, clock: str = "") -> str:
    return f"fu-{kind}-{clock + '-' if clock else ''}{rating_id}"


def supervisors(conn: Connection, window: str) -> list[str]:
    """The names of the enabled supervisors whose windows include `window`."""
    rows = conn.execute(select(users.c.name, users.c.windows)
                        .where(users.c.role == "supervisor", users.c.disabled == 0).order_by(users.c.name))
    return [r.name for r in rows if r.windows and window in r.windows.split(",")]


def enqueue(conn: Connection, kind: str, fu: Mapping, now: float, clock: str = "") -> bool:
    """Queue one alert about follow-up `fu` (a `followups` row as a mapping); once per (kind, clock,
    follow-up): a second call is a no-op. Whether it was queued."""
    if kind not in KINDS:
        raise ValueError(f"alert kind: one of {KINDS}")
    key = alert_key(kind, fu["rating_id"], clock)
    if conn.execute(select(alerts.c.id).where(alerts.c.key == key)).first() is not None:
        return False
    body = {"kind": kind, "center": fu["center"], "window": fu["window"], "staff": fu.get("staff"),
            "followup": fu["rating_id"], "level": fu["level"], "opened": fu["opened"],
            "clock": clock or None, "due": fu[f"due_{clock}"] if clock else fu["due_contact"],
            "supervisors": supervisors(conn, fu["window"]), "path": f"/console/followups/{fu['rating_id']}"}
    try:
        with conn.begin_nested():   # the key decides between concurrent sweeps
            conn.execute(insert(alerts).values(key=key, kind=kind, center=fu["center"], window=fu["window"],
                                               rating_id=fu["rating_id"], body=json.dumps(body, ensure_ascii=False),
                                               state="pending", attempts=0, next_try=now, created=now))
    except IntegrityError:
        return False
    return True


def due(conn: Connection, now: float, limit: int = 50) -> list[Alert]:
    rows = conn.execute(select(alerts).where(alerts.c.state == "pending", alerts.c.next_try <= now)
                        .order_by(alerts.c.next_try, alerts.c.id).limit(limit))
    return [Alert(r.id, r.key, r.kind, r.center, r.window, json.loads(r.body), r.attempts, r.next_try) for r in rows]


def claim(conn: Connection, alert: Alert, now: float, lease_s: float) -> bool:
    """Lease a due alert right before sending (another worker, or this one after a crash, retries it when
    the lease runs out without a result)."""
    done = conn.execute(update(alerts).where(alerts.c.id == alert.id, alerts.c.state == "pending",
                                             alerts.c.attempts == alert.attempts,
                                             alerts.c.next_try == alert.next_try)
                        .values(next_try=now + lease_s))
    return done.rowcount == 1


def backoff_s(attempt: int) -> float:
    return min(30.0 * 2 ** max(attempt - 1, 0), 3600.0)


def mark(conn: Connection, alert: Alert, delivery: Delivery, now: float, max_attempts: int = MAX_ATTEMPTS) -> str:
    """Record the gateway's answer: `sent`, `failed`, or `pending` again with a backoff. The new state."""
    attempts = alert.attempts + 1
    if delivery.status == "sent":
        values = dict(state="sent", sent_at=now, provider_id=delivery.provider_id[:128] or None, last_error=None)
    elif delivery.status == "retry" and attempts < max_attempts:
        values = dict(state="pending", next_try=now + backoff_s(attempts), last_error=delivery.error[:500])
    else:
        values = dict(state="failed", last_error=(delivery.error or "gave up")[:500])
    conn.execute(update(alerts).where(alerts.c.id == alert.id).values(attempts=attempts, **values))
    return values["state"]


# ---- gateways ----------------------------------------------------------------------------------------

class WebhookAlerts(WebhookGateway):
    """The alert's JSON body POSTed, signed and answered like center/sms/gateway.py's WebhookGateway."""

    def send(self, alert: Alert) -> Delivery:   # type: ignore[override]
        body = json.dumps({"id": alert.id, **alert.body}, ensure_ascii=False, separators=(",", ":")).encode()
        return self.post(body, alert.key)

    def post(self, body: bytes, key: str) -> Delivery:
        import httpx
        stamp = str(int(self.clock()))
        headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": key,
                   "X-HCP-Timestamp": stamp, self.signature_header: signature(self.secret, stamp, body)}
        try:
            resp = self.client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Delivery("retry", error="alert webhook: no answer within the timeout")
        except httpx.TransportError as e:
            return Delivery("retry", error=f"alert webhook: cannot reach the receiver ({type(e).__name__})")
        except httpx.HTTPError as e:
            return Delivery("failed", error=f"alert webhook: request refused ({type(e).__name__})")
        code = resp.status_code
        if 200 <= code < 300:
            return Delivery("sent")
        if code in (408, 425, 429) or code >= 500:
            return Delivery("retry", error=f"alert webhook: receiver answered HTTP {code}")
        return Delivery("failed", error=f"alert webhook: receiver refused the alert, HTTP {code}")


def alert_text(sign: str, body: Mapping, tz: str = "Asia/Shanghai") -> str:
    """The SMS to a supervisor: 【签名】新差评待整改：窗口W1，非常不满意，请于12月1日内联系核实 (no applicant)."""
    # the deadline is the midnight ending a working day: name that day
    due = datetime.fromtimestamp(body["due"] - 1, ZoneInfo(tz)) if body.get("due") else None
    when = f"{due.month}月{due.day}日" if due else ""
    level = LEVEL_ZH.get(body.get("level", ""), body.get("level", ""))
    if body.get("kind") == "overdue":
        head = f"差评整改超期：窗口{body['window']}，{level}，{CLOCK_ZH.get(body.get('clock') or '', '')}已超期"
    else:
        head = f"新差评待整改：窗口{body['window']}，{level}，请于{when}内联系核实"
    return f"【{sign}】{head}"


class SmsAlerts:
    """Each alert as one SMS per supervisor with a number in `phones` (user name → phone), through an SMS
    gateway; the idempotency key is the alert's plus the supervisor's name. No supervisor with a number:
    the alert fails (an operator fixes the configuration)."""

    def __init__(self, gateway, phones: Mapping[str, str], sign: str, tz: str = "Asia/Shanghai"):
        self.gateway, self.phones, self.sign, self.tz = gateway, dict(phones), sign, tz

    def send(self, alert: Alert) -> Delivery:
        names = [n for n in alert.body.get("supervisors", []) if self.phones.get(n)]
        if not names:
            return Delivery("failed", error=f"no supervisor of window {alert.window} has an alert phone number")
        text = alert_text(self.sign, alert.body, self.tz)
        results = [self.gateway.send(Outgoing(alert.id, alert.center, alert.body.get("followup", ""),
                                              self.phones[name], text, f"{alert.key}-{name}"[:128]))
                   for name in names]
        # A retry sends to everyone again: each supervisor's own key keeps that to one SMS each.
        for status in ("retry", "failed"):
            for d in results:
                if d.status == status:
                    return d
        return Delivery("sent", provider_id=results[0].provider_id)
