"""Where an SMS goes: the seam between the center and its SMS provider.

`FileGateway` writes each message to a spool directory (the demo, the tests, a center whose provider
picks files up). `WebhookGateway` POSTs it, HMAC-signed, to an adapter the center runs in front of its
provider (the contract is in README.md). Both are idempotent by `Outgoing.idempotency_key`: the worker
may hand the same message over twice (a crash between send and record), the citizen gets one SMS.

Errors are described for an operator and never carry the phone number.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Protocol

import httpx

DeliveryStatus = Literal["sent", "retry", "failed"]
_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
_RETRY_STATUS = {408, 425, 429}


@dataclass(frozen=True)
class Outgoing:
    """One SMS to send."""
    job_id: int
    center: str
    case_id: str
    phone: str
    text: str
    idempotency_key: str


@dataclass(frozen=True)
class Delivery:
    """What the gateway made of it: `sent`; `retry` (try again later); `failed` (do not retry)."""
    status: DeliveryStatus
    provider_id: str = ""
    error: str = ""


class Gateway(Protocol):
    def send(self, job: Outgoing) -> Delivery: ...


def idempotency_key(center: str, case_id: str) -> str:
    """The key of a case's one follow-up SMS: stable across retries and restarts, safe as a file name."""
    return "sms-" + hashlib.sha256(f"{center}\x00{case_id}".encode()).hexdigest()[:32]


def mask(phone: str) -> str:
    """A phone number as logs may show it: 138****0000."""
    digits = phone.strip()
    return f"{digits[:3]}****{digits[-4:]}" if len(digits) >= 8 else "****"


class FileGateway:
    """One JSON file per message, `<spool_dir>/<idempotency_key>.json` (mode 0600, directory 0700),
    written whole or not at all; a key already spooled is not written again."""

    def __init__(self, spool_dir: str | Path):
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.spool_dir, 0o700)   # mkdir's mode is filtered by the umask, and skipped if it exists

    def path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError("idempotency key must be 1-128 of [A-Za-z0-9_.-], not starting with '.'")
        return self.spool_dir / f"{key}.json"

    def send(self, job: Outgoing) -> Delivery:
        try:
            final = self.path(job.idempotency_key)
        except ValueError as e:
            return Delivery("failed", error=f"file gateway: {e}")
        if final.exists():
            return Delivery("sent", provider_id=final.name)
        body = json.dumps({"id": job.job_id, "center": job.center, "case": job.case_id, "phone": job.phone,
                           "text": job.text, "key": job.idempotency_key}, ensure_ascii=False).encode()
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.spool_dir)   # mode 0600
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(body)
                    f.flush()
                    os.fsync(f.fileno())
                try:
                    os.link(tmp, final)   # like rename, but never replaces: two senders, one file
                except FileExistsError:
                    pass
            finally:
                os.unlink(tmp)
            _fsync_dir(self.spool_dir)
        except OSError as e:
            return Delivery("retry", error=f"file gateway: cannot write the spool ({type(e).__name__}: "
                                           f"{e.strerror or 'error'})")
        return Delivery("sent", provider_id=final.name)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`, the X-HCP-Signature header value."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookGateway:
    """POST each message as JSON to the center's SMS adapter, signed with a shared secret."""

    def __init__(self, url: str, secret: bytes, timeout_s: float = 10, *,
                 signature_header: str = "X-HCP-Signature", clock: Callable[[], float] = time.time):
        if not secret:
            raise ValueError("the webhook secret must not be empty")
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"the webhook URL must be http(s)://host/..., got scheme {parsed.scheme!r}")
        self.url, self.secret, self.signature_header, self.clock = url, secret, signature_header, clock
        self.client = httpx.Client(timeout=timeout_s, follow_redirects=False)

    def send(self, job: Outgoing) -> Delivery:
        body = json.dumps({"id": job.job_id, "center": job.center, "case": job.case_id, "phone": job.phone,
                           "text": job.text}, ensure_ascii=False, separators=(",", ":")).encode()
        stamp = str(int(self.clock()))
        headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": job.idempotency_key,
                   "X-HCP-Timestamp": stamp, self.signature_header: signature(self.secret, stamp, body)}
        try:
            resp = self.client.post(self.url, content=body, headers=headers)
        except httpx.UnsupportedProtocol as e:   # retrying will not help
            return Delivery("failed", error=f"webhook: request refused ({type(e).__name__})")
        except httpx.TimeoutException:
            return Delivery("retry", error="webhook: no answer within the timeout")
        except httpx.TransportError as e:
            return Delivery("retry", error=f"webhook: cannot reach the adapter ({type(e).__name__})")
        except httpx.HTTPError as e:    # a bad URL and the like: retrying will not help
            return Delivery("failed", error=f"webhook: request refused ({type(e).__name__})")
        code = resp.status_code
        if 200 <= code < 300:
            return Delivery("sent", provider_id=_provider_id(resp))
        if code in _RETRY_STATUS or code >= 500:
            return Delivery("retry", error=f"webhook: adapter answered HTTP {code}")
        return Delivery("failed", error=f"webhook: adapter refused the message, HTTP {code}")

    def close(self) -> None:
        self.client.close()


def _provider_id(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return ""
    value = data.get("id") if isinstance(data, dict) else None
    return str(value)[:128] if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
