"""`python -m device.config_doc > docs/configuration.md`: the configuration reference, from the schema.

The schema in device/config.py is the only place keys are declared; this renders it, and a test
keeps docs/configuration.md equal to the rendering.
"""
from __future__ import annotations

import typing
from dataclasses import MISSING, fields

from device import config

HEAD = """# Configuration reference

Layers, later ones win: embedded defaults → `{main}` → `{enrol}` (the center's enrolment file,
see provisioning/README.md) → `{boot}` (on the FAT boot partition, so a
technician can edit it from any laptop) → environment variables `HCP_<SECTION>_<KEY>`
(e.g. `HCP_MQTT_PORT=8883`). `python -m device --check-config` validates everything and names every
wrong key with what was expected. Secret values are never echoed in error messages.

Generated from `device/config.py` by `python -m device.config_doc`; a test keeps it in step.
"""


def _default(f) -> str:
    value = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'`"{value}"`' if value else '`""`'
    return f"`{value}`"


def _limits(meta: typing.Mapping) -> str:
    parts = []
    if meta.get("choices"):
        parts.append(" / ".join(f"`{c}`" for c in meta["choices"]))
    if meta.get("min") is not None or meta.get("max") is not None:
        parts.append(f"{meta.get('min')} … {meta.get('max')}")
    if meta.get("secret"):
        parts.append("secret")
    return "; ".join(parts)


def render() -> str:
    out = [HEAD.format(main=config.MAIN_FILE, enrol=config.ENROLMENT_FILE, boot=config.BOOT_OVERRIDE)]
    for section in fields(config.Config):
        cls = section.default_factory  # type: ignore[misc]
        out.append(f"\n## [{section.name}]\n")
        out.append("| key | default | limits | meaning |\n|---|---|---|---|")
        for f in fields(cls):
            doc = str(f.metadata.get("doc", "")).replace("|", "\\|")
            out.append(f"| `{f.name}` | {_default(f)} | {_limits(f.metadata)} | {doc} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
