"""Delivery to the city platform: the ledger is the source of truth (see README.md)."""
