"""The wire contract shared by the terminal, the center and the keypad (README.md lists the modules).

`codec` loads the schemas; tests and MicroPython code read the golden files. Imports nothing of ours.
"""
from pathlib import Path

SCHEMA_DIR = Path(__file__).with_name("schemas")
GOLDEN_DIR = Path(__file__).with_name("golden")
VERSION = 1
