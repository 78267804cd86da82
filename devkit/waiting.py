"""Waiting on a condition, with a timeout that guards against a hang (never a speed assertion)."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(pred: Callable[[], T], timeout: float = 20, what: str = "condition", every: float = 0.02) -> T:
    """Poll every `every` s until `pred()` is truthy and return its value; AssertionError after `timeout` s."""
    end = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)
