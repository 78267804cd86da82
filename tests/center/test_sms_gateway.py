"""The SMS gateways against real parts: a spool directory on disk, and a real HTTP receiver (Starlette on
uvicorn, on a free loopback port) that checks the signature as a center's adapter must."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from center.sms.gateway import Delivery, FileGateway, Outgoing, WebhookGateway, idempotency_key, mask
from devkit.broker import free_port
from center.web.server import WebServer

SECRET = b"adapter-shared-secret"
PHONE = "13812345678"


def outgoing(job_id: int = 7, case_id: str = "SH77") -> Outgoing:
    return Outgoing(job_id, "C1", case_id, PHONE, "【浦东市民中心】您的事项已办结，请评价：http://x/s/T",
                    idempotency_key("C1", case_id))


# ---- the file gateway ---------------------------------------------------------------------------------

def test_file_gateway_spools_one_private_file_per_key(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    gw = FileGateway(spool)
    job = outgoing()
    assert gw.send(job) == Delivery("sent", provider_id=f"{job.idempotency_key}.json")
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700
    files = sorted(spool.iterdir())
    assert [f.name for f in files] == [f"{job.idempotency_key}.json"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    data = json.loads(files[0].read_text("utf-8"))
    assert data == {"id": 7, "center": "C1", "case": "SH77", "phone": PHONE, "text": job.text,
                    "key": job.idempotency_key}

    # The same key again (a retry after a crash): same file, untouched, no second message.
    before = files[0].stat().st_mtime_ns
    again = Outgoing(8, "C1", "SH77", PHONE, "another text", job.idempotency_key)
    assert gw.send(again).status == "sent"
    assert sorted(spool.iterdir()) == files
    assert files[0].stat().st_mtime_ns == before
    assert json.loads(files[0].read_text("utf-8"))["text"] == job.text

    assert gw.send(outgoing(9, "SH78")).status == "sent"
    assert len(list(spool.iterdir())) == 2


def test_file_gateway_many_threads_one_key_one_file(tmp_path: Path) -> None:
    gw = FileGateway(tmp_path / "spool")
    results: list[Delivery] = []
    threads = [threading.Thread(target=lambda: results.append(gw.send(outgoing()))) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r.status for r in results} == {"sent"}
    assert [p.name for p in (tmp_path / "spool").iterdir()] == [f"{outgoing().idempotency_key}.json"]


def test_file_gateway_refuses_keys_that_are_paths_and_retries_when_it_cannot_write(tmp_path: Path) -> None:
    gw = FileGateway(tmp_path / "spool")
    for key in ("../escape", ".hidden", "a/b", ""):
        bad = Outgoing(1, "C1", "SH1", PHONE, "t", key)
        assert gw.send(bad).status == "failed"
    assert list((tmp_path / "spool").iterdir()) == []
    assert not (tmp_path / "escape.json").exists()

    if os.geteuid() != 0:   # root writes anywhere
        os.chmod(tmp_path / "spool", 0o500)
        try:
            result = gw.send(outgoing())
            assert result.status == "retry" and PHONE not in result.error
        finally:
            os.chmod(tmp_path / "spool", 0o700)


def test_mask_hides_the_middle_of_a_number() -> None:
    assert mask(PHONE) == "138****5678"
    assert mask("110") == "****"


# ---- the webhook gateway against a real receiver ------------------------------------------------------

class Receiver:
    """A center's SMS adapter: checks what the contract says (signature, timestamp age), records each
    request, and answers with the scripted statuses in turn ('slow' answers after `slow_s`)."""

    def __init__(self, script: list[int | str], slow_s: float = 3.0):
        self.script, self.slow_s = list(script), slow_s
        self.requests: list[dict] = []
        app = Starlette(routes=[Route("/sms", self.handle, methods=["POST"])])
        self.server = WebServer(app)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        stamp = request.headers.get("x-hcp-timestamp", "")
        expected = "sha256=" + hmac.new(SECRET, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        valid = hmac.compare_digest(expected, request.headers.get("x-hcp-signature", "")) and \
            stamp.isdigit() and abs(time.time() - int(stamp)) <= 300
        self.requests.append({"body": json.loads(body), "key": request.headers.get("idempotency-key"),
                              "valid": valid, "type": request.headers.get("content-type")})
        if not valid:
            return JSONResponse({"error": "bad signature"}, status_code=401)
        step = self.script.pop(0) if self.script else 200
        if step == "slow":
            await asyncio.sleep(self.slow_s)
            step = 200
        return JSONResponse({"id": f"prov-{len(self.requests)}"}, status_code=int(step))

    def __enter__(self) -> "Receiver":
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url + "/sms"


def test_webhook_retries_on_server_errors_then_sends_signed() -> None:
    with Receiver([500, 500, 200]) as rx:
        gw = WebhookGateway(rx.url, SECRET)
        job = outgoing()
        results = [gw.send(job) for _ in range(3)]
        gw.close()
    assert [r.status for r in results] == ["retry", "retry", "sent"]
    assert results[0].error == "webhook: adapter answered HTTP 500"
    assert results[2].provider_id == "prov-3"
    assert all(r["valid"] for r in rx.requests)
    assert {r["key"] for r in rx.requests} == {job.idempotency_key}
    assert rx.requests[0]["body"] == {"id": 7, "center": "C1", "case": "SH77", "phone": PHONE, "text": job.text}
    assert rx.requests[0]["type"].startswith("application/json")
    assert all(PHONE not in r.error for r in results)


@pytest.mark.parametrize("status, outcome", [(429, "retry"), (408, "retry"), (503, "retry"), (400, "failed"),
                                             (404, "failed"), (202, "sent")])
def test_webhook_status_decides_retry_or_failed(status: int, outcome: str) -> None:
    with Receiver([status]) as rx:
        gw = WebhookGateway(rx.url, SECRET)
        result = gw.send(outgoing())
        gw.close()
    assert result.status == outcome
    assert (result.error == "") == (outcome == "sent")
    assert PHONE not in result.error


def test_webhook_with_the_wrong_secret_is_refused_by_the_adapter() -> None:
    with Receiver([]) as rx:
        gw = WebhookGateway(rx.url, b"not-the-secret")
        result = gw.send(outgoing())
        gw.close()
    assert rx.requests and not rx.requests[0]["valid"]
    assert result == Delivery("failed", error="webhook: adapter refused the message, HTTP 401")


def test_webhook_with_an_old_timestamp_is_refused_by_the_adapter() -> None:
    with Receiver([]) as rx:
        gw = WebhookGateway(rx.url, SECRET, clock=lambda: time.time() - 3600)
        result = gw.send(outgoing())
        gw.close()
    assert not rx.requests[0]["valid"] and result.status == "failed"


def test_webhook_to_a_closed_port_is_a_retry() -> None:
    gw = WebhookGateway(f"http://127.0.0.1:{free_port()}/sms", SECRET, timeout_s=5)
    result = gw.send(outgoing())
    gw.close()
    assert result.status == "retry"
    assert result.error == "webhook: cannot reach the adapter (ConnectError)"


def test_webhook_timeout_is_a_retry() -> None:
    with Receiver(["slow"], slow_s=2.0) as rx:
        gw = WebhookGateway(rx.url, SECRET, timeout_s=0.2)
        result = gw.send(outgoing())
        gw.close()
    assert result == Delivery("retry", error="webhook: no answer within the timeout")
    assert len(rx.requests) == 1


def test_webhook_url_and_secret_are_checked_at_start() -> None:
    for url in ("ftp://127.0.0.1/sms", "127.0.0.1/sms", "http:///sms"):
        with pytest.raises(ValueError):
            WebhookGateway(url, SECRET)
    with pytest.raises(ValueError):
        WebhookGateway("http://127.0.0.1/sms", b"")
