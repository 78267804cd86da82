"""A schema as Markdown: one table per section (key, default, limits, meaning), for the generated
references (docs/configuration.md, docs/center-file.md) that tests keep equal to the rendering."""
from __future__ import annotations

from dataclasses import Field, is_dataclass
from pathlib import Path
from typing import Any, Mapping

from configuration.schema import declared, default_of, item_type, toml_name


def default_text(f: Field) -> str:
    value = default_of(f)
    if value is None or (f.metadata.get("required") and value in ("", Path())):
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, Path)):
        return f'`"{value}"`' if str(value) else '`""`'
    if isinstance(value, tuple):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    return f"`{value}`"


def limits_text(meta: Mapping) -> str:
    parts = []
    if meta.get("required"):
        parts.append("required")
    if meta.get("choices"):
        parts.append(" / ".join(f"`{c}`" for c in meta["choices"]))
    if meta.get("min") is not None or meta.get("max") is not None:
        parts.append(f"{meta.get('min')} … {meta.get('max')}")
    if meta.get("secret"):
        parts.append("secret")
    return "; ".join(parts)


def table(cls: type) -> str:
    rows = ["| key | default | limits | meaning |", "|---|---|---|---|"]
    for f, typ in declared(cls):
        if is_dataclass(typ) or item_type(typ):
            continue
        doc = str(f.metadata.get("doc", "")).replace("|", "\\|")
        rows.append(f"| `{toml_name(f)}` | {default_text(f)} | {limits_text(f.metadata)} | {doc} |")
    return "\n".join(rows)


def render(root: type, head: str, notes: Mapping[str, str] | None = None) -> str:
    """`head`, then a `## [section]` (or `## [[array]]`) table for each section of `root`, nested arrays
    after their section; `notes[name]` is a paragraph put under that section's heading."""
    out = [head]
    for heading, cls in _sections(root):
        out.append(f"\n## {heading}\n")
        note = (notes or {}).get(heading.strip("[]"))
        if note:
            out.append(note + "\n")
        out.append(table(cls))
    return "\n".join(out) + "\n"


def _sections(cls: type, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for f, typ in declared(cls):
        name = prefix + toml_name(f)
        if is_dataclass(typ):
            out += [(f"[{name}]", typ)] + _sections(typ, name + ".")
        elif item_type(typ):
            out += [(f"[[{name}]]", item_type(typ))] + _sections(item_type(typ), name + ".")
    return out
