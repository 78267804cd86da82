# A stand-in for MicroPython's `machine` on the WebAssembly port (tests only): pins are the host twins.
from twin import Pin  # noqa: F401
