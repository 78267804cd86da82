"""The center ledger: the record (`record.py`, the one door every rating goes through) and its MQTT
intake (`intake.py`). `python -m center.ledger --center-file center.toml`; `python -m center.ledger gaps`."""
from center.ledger.intake import Ledger, LedgerError, gaps, main, query, receipt_chunks
from center.ledger.record import Record, Stored

__all__ = ["Ledger", "LedgerError", "Record", "Stored", "gaps", "main", "query", "receipt_chunks"]
