"""The wire contract shared by the terminal, the center and the keypad: JSON Schemas and golden messages.

Nothing here runs; `device.messages` loads the schemas, tests and MicroPython code read the golden files.
"""
from pathlib import Path

SCHEMA_DIR = Path(__file__).with_name("schemas")
GOLDEN_DIR = Path(__file__).with_name("golden")
VERSION = 1
