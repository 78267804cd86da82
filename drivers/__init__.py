"""Hardware drivers for rating terminals: keys, lights and buzzer, backlight, thermal printer, small display.

Start them around a Terminal with `attach(terminal)` (the profile comes from ``[hardware] profile``);
check a board with ``python -m drivers.selftest``. See drivers/README.md.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from drivers.attachment import Attachment
    from drivers.profile import Profile
    from drivers.rig import Rig

__all__ = ["attach", "check", "Attachment", "Rig", "load_profile", "Profile", "ProfileError"]


def __getattr__(name: str) -> Any:
    """Import lazily: `import drivers` stays cheap for a terminal without hardware."""
    if name in ("attach", "check", "Attachment"):
        from drivers import attachment
        return getattr(attachment, name)
    if name == "Rig":
        from drivers.rig import Rig
        return Rig
    if name in ("load_profile", "Profile", "ProfileError"):
        from drivers import profile
        return getattr(profile, name)
    raise AttributeError(name)
