"""Maintenance actions that other parts of the firmware provide (test keys, printer).

The maintenance screen shows one button per known action; a button is disabled until something
registers a hook for it (the kiosk registers the core's own: `requeue` re-offers quarantined
records, `re_enrol` forgets an enrolled terminal's pairing and announces again):

    hooks = MaintenanceHooks()
    hooks.register("print_test_page", printer.print_test_page)

A hook runs on the UI thread and should return quickly (start a thread for anything slow); its
return value, if a string, is shown to the technician.
"""
from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger(__name__)

# action name → i18n key of its button label, in screen order
ACTIONS: dict[str, str] = {
    "requeue": "maint.requeue",
    "test_keys": "maint.test_keys",
    "print_test_page": "maint.print_test",
    "re_enrol": "maint.re_enrol",
}

Hook = Callable[[], "str | None"]


class MaintenanceHooks:
    def __init__(self) -> None:
        self._hooks: dict[str, Hook] = {}

    def register(self, action: str, fn: Hook) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown maintenance action {action!r} (known: {', '.join(ACTIONS)})")
        self._hooks[action] = fn

    def unregister(self, action: str) -> None:
        self._hooks.pop(action, None)

    def available(self, action: str) -> bool:
        return action in self._hooks

    def run(self, action: str) -> tuple[bool, str]:
        """Call the hook; (ok, message). A failing hook never takes the UI down."""
        fn = self._hooks.get(action)
        if fn is None:
            return False, "no hook"
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - reported on screen and in the log
            log.exception("maintenance action %s failed", action)
            return False, f"{type(e).__name__}: {e}"
        return True, result if isinstance(result, str) else ""
