"""What the tests, the bench and `make run` share to run the whole kit on one machine.

No room imports it: nothing a terminal or a center runs depends on it (it is installed with the package
only so that `python -m devkit.demo` runs from anywhere). It may import the rooms it runs (protocol, device,
center, provisioning; the demo also ui); only tests/ and bench/ import it (tests/test_import_rules.py).
"""
