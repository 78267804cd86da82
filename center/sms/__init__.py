"""The SMS follow-up: a case closed unrated gets one SMS, within sending hours, with a single-use link.

schedule.py (when: pure), message.py (the text), gateway.py (where it goes: file spool or signed
webhook), jobs.py (the outbox and links in the store), worker.py (drains the outbox). See README.md.
"""
from center.sms.gateway import (Delivery, FileGateway, Gateway, Outgoing, WebhookGateway, idempotency_key,
                                mask)
from center.sms.schedule import SmsPolicy, due_at, in_window, next_open, retry_at
from center.sms.worker import SmsWorker

__all__ = ["Delivery", "FileGateway", "Gateway", "Outgoing", "SmsPolicy", "SmsWorker", "WebhookGateway",
           "due_at", "idempotency_key", "in_window", "mask", "next_open", "retry_at"]
