"""What the tests, the bench and `make run` share to run the whole kit on one machine (not shipped).

It may import the rooms it runs (protocol, device, center, provisioning; the demo also ui); no room
imports it, only tests/ and bench/ (tests/test_import_rules.py).
"""
