"""The case system's door for what only the center may hold: the applicant's phone number per case.

`PUT /api/v1/contacts/{center}/{case}` with `{"phone": "13800138000"}` and `Authorization: Bearer <key>`
(the center file's `[web] feed_key_file`). 204 when kept; 400 with a reason when the number or the case id
is not acceptable; 401 without the key. The number is never echoed back or logged. (The full case and duty
feed, with per-system keys, is the next step of the center service: issue "Center service, part 2".)
"""
from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from center.contacts import ContactError, set_contact
from center.ledger.record import Record

log = logging.getLogger("feed")
MAX_BODY = 1024


def feed_router(record: Record, key: bytes) -> APIRouter:
    router = APIRouter()
    token = key.hex().encode()

    @router.put("/api/v1/contacts/{center}/{case_id}")
    async def put_contact(center: str, case_id: str, request: Request) -> Response:
        given = request.headers.get("authorization", "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].strip().encode(), token):
            return JSONResponse({"error": "unauthorized"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "too_big"}, status_code=413)
        try:
            phone = (await request.json()).get("phone")
            if not isinstance(phone, str):
                raise ContactError("phone: a string is needed")
            scheduled = set_contact(record, center, case_id, phone)
        except (ValueError, AttributeError) as e:
            reason = str(e) if isinstance(e, ContactError) else "body: JSON object with a phone string expected"
            return JSONResponse({"error": reason}, status_code=400)
        log.info("contact kept for %s/%s%s", center, case_id, " (follow-up scheduled)" if scheduled else "")
        return Response(status_code=204)

    return router
