"""The mechanism: declare keys with `opt()`, group them in frozen dataclass sections, compose the sections
into a root dataclass (one field per section, `section(Cls)`), and `load()` the root from layers.

A root's fields are sections (TOML tables, `[name]`), arrays of sections (`tuple[Cls, ...]`, TOML
`[[name]]`) or plain keys. Leaf types: bool, int, float, str, Path, `Path | None`, `tuple[str, ...]` and
`dict[str, int] | None`. A problem names the dotted key, where the value came from and what was expected;
secret values are shown as ***; a misspelt key or section gets a "did you mean".
"""
from __future__ import annotations

import difflib
import math
import re
import tomllib
import typing
from dataclasses import MISSING, Field, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

T = TypeVar("T")


# A plain-HTTP address a QR code may carry: only to loopback or private addresses (the demo, a LAN trial);
# anything a citizen scans in production is https://.
LOCAL_HTTP = r"http://(localhost|127\.[0-9.]+|10\.[0-9.]+|192\.168\.[0-9.]+|172\.(1[6-9]|2[0-9]|3[01])\.[0-9.]+)(:[0-9]+)?/"


def opt(default: Any, doc: str, *, min: float | None = None, max: float | None = None,
        choices: tuple | None = None, pattern: str | None = None, secret: bool = False,
        check: Callable[[Any], Any] | None = None, required: bool = False, key: str | None = None) -> Any:
    """One key. `check(value)` raises ValueError for a value the other limits let through (its message is
    shown); `required`: the default is only a placeholder and a value must be given; `key`: the TOML name
    when it differs from the attribute (a `[[window]]` array read into `windows`)."""
    return field(default=default, metadata=dict(doc=doc, min=min, max=max, choices=choices, pattern=pattern,
                                                secret=secret, check=check, required=required, key=key))


def section(cls: type[T]) -> T:
    """A section field of a root: its default is the section with every key at its default."""
    return field(default_factory=cls)  # type: ignore[return-value]


def internal(default: Any) -> Any:
    """A value the loader sets (e.g. the file's own path): not a key, never read from a file."""
    return field(default=default, metadata=dict(internal=True))


class ConfigurationError(Exception):
    """All problems found, one per line, each naming the key."""

    title = "invalid configuration"

    def __init__(self, problems: list[str]):
        super().__init__(f"{self.title}:\n  " + "\n  ".join(problems))
        self.problems = problems


# ---- introspection ----------------------------------------------------------------------------

def toml_name(f: Field) -> str:
    return f.metadata.get("key") or f.name


def item_type(typ: Any) -> type | None:
    """The section class of an array of sections (`tuple[Cls, ...]`), else None."""
    args = typing.get_args(typ)
    if typing.get_origin(typ) is tuple and len(args) == 2 and args[1] is Ellipsis and is_dataclass(args[0]):
        return args[0]
    return None


def declared(cls: type) -> Iterator[tuple[Field, Any]]:
    """(field, resolved type) of a dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if not f.metadata.get("internal"):
            yield f, hints[f.name]


def dotted_keys(cls: type, prefix: str = "") -> list[str]:
    """Every leaf key of a schema as `section.key` (arrays of sections as `window.id`)."""
    out = []
    for f, typ in declared(cls):
        sub = typ if is_dataclass(typ) else item_type(typ)
        out += dotted_keys(sub, f"{prefix}{toml_name(f)}.") if sub else [prefix + toml_name(f)]
    return out


def default_of(f: Field) -> Any:
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]


# ---- loading ----------------------------------------------------------------------------------

def read_toml(path: Path, problems: list[str]) -> dict | None:
    """The file's tables, or None with a problem (the parser's message: it never quotes the value)."""
    try:
        # utf-8-sig: Windows Notepad's "UTF-8 with BOM" (a technician edits the boot partition's file)
        return tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        problems.append(f"{path}: not UTF-8 (byte {e.start}); save it as UTF-8 (Notepad: 另存为 → 编码 UTF-8)")
    except tomllib.TOMLDecodeError as e:
        problems.append(f"{path}: not valid TOML: {e}")
    except OSError as e:
        problems.append(f"{path}: cannot read: {e.strerror or e}")
    return None


def load(root: type[T], files: list[Path], env: Mapping[str, str] | None = None, *, env_prefix: str = "",
         error: type[ConfigurationError] = ConfigurationError) -> T:
    """Merge the layers in order: defaults ← each existing file ← environment (`<env_prefix><SECTION>_<KEY>`,
    only if `env_prefix`); missing files are skipped, a broken one is a problem. Raises `error` with
    every problem, including required keys left unset."""
    problems: list[str] = []
    cfg = root()
    for path in files:
        if not path.exists():
            continue
        data = read_toml(path, problems)
        if data is not None:
            cfg = merge(cfg, data, str(path), problems)
    if env_prefix and env is not None:
        cfg = merge(cfg, env_layer(root, env, env_prefix, problems), "environment", problems, from_text=True)
    problems += missing(cfg, problems)
    if problems:
        raise error(problems)
    return cfg


def env_layer(root: type, env: Mapping[str, str], prefix: str, problems: list[str]) -> dict:
    """`<prefix><SECTION>_<KEY>=value` as {section: {key: value}}; an unknown section is a problem."""
    layer: dict[str, dict[str, str]] = {}
    sections = [toml_name(f) for f, typ in declared(root) if is_dataclass(typ)]
    for name, value in env.items():
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):].lower()
        sect = next((s for s in sections if rest.startswith(s + "_")), None)
        if sect is None:
            problems.append(f"{name}: no such section (sections: {', '.join(sections)})")
            continue
        layer.setdefault(sect, {})[rest[len(sect) + 1:]] = value
    return layer


def merge(obj: T, data: Mapping, origin: str, problems: list[str], *, from_text: bool = False,
          prefix: str = "", root: type | None = None) -> T:
    """`obj` with the values of `data` (a TOML table) applied; every problem is appended, named
    `prefix + key (origin)`. `from_text`: values are text (environment) and converted."""
    root = root or type(obj)
    known = {toml_name(f): (f, typ) for f, typ in declared(type(obj))}
    changes = {}
    for key, raw in data.items():
        if key not in known:
            problems.append(_unknown(key, raw, known, prefix, origin, root))
            continue
        f, typ = known[key]
        sub, items = (typ if is_dataclass(typ) else None), item_type(typ)
        if sub:
            if not isinstance(raw, dict):
                where = f"[{prefix}{key}]" if not prefix else f"{prefix}{key}"
                problems.append(f"{where} ({origin}): expected a table of keys")
                continue
            changes[f.name] = merge(getattr(obj, f.name), raw, origin, problems, from_text=from_text,
                                    prefix=f"{prefix}{key}.", root=root)
        elif items:
            if not isinstance(raw, list) or from_text:
                problems.append(f"{prefix}{key} ({origin}): expected an array of tables ([[{prefix}{key}]])")
                continue
            out = []
            for i, entry in enumerate(raw):
                if not isinstance(entry, dict):
                    problems.append(f"{prefix}{key}[{i}] ({origin}): expected a table of keys")
                    continue
                out.append(merge(items(), entry, origin, problems, prefix=f"{prefix}{key}[{i}].", root=root))
            changes[f.name] = tuple(out)
        else:
            try:
                changes[f.name] = coerce(raw, typ, f.metadata, from_text)
            except ValueError as e:
                problems.append(f"{prefix}{key} ({origin}): {e}")
    return replace(obj, **changes)  # type: ignore[type-var]


def _unknown(key: str, raw: Any, known: Mapping, prefix: str, origin: str, root: type) -> str:
    if not prefix and isinstance(raw, dict):
        return f"[{key}] ({origin}): unknown section{suggest(key, known)}"
    hint = suggest(key, known)
    if not prefix and "did you mean" not in hint:  # a key above every table: `prot` → `broker.port`
        leaves: dict[str, str] = {}
        for dotted in dotted_keys(root):
            leaves.setdefault(dotted.rsplit(".", 1)[-1], dotted)
        close = difflib.get_close_matches(key, list(leaves), n=1)
        hint = f" (did you mean {leaves[close[0]]!r}?)" if close else hint
    return f"{prefix}{key} ({origin}): unknown key{hint}"


def suggest(word: str, known: Mapping | list) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"


def coerce(raw: Any, typ: Any, meta: Mapping, from_text: bool = False) -> Any:
    """`raw` checked against the declared type and limits; ValueError says what was expected."""
    value = _typed(raw, typ, meta, from_text)
    if meta.get("check") and value not in ("", None):
        meta["check"](value)  # its ValueError is the message
    return value


def _typed(raw: Any, typ: Any, meta: Mapping, from_text: bool) -> Any:
    shown = "***" if meta.get("secret") else repr(raw)
    if typ is bool:
        if from_text and isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return raw.lower() in ("1", "true", "yes", "on")
        if not isinstance(raw, bool):
            raise ValueError(f"expected true or false, got {shown}")
        return raw
    if typ in (int, float):
        value = raw
        if from_text and isinstance(raw, str):
            try:
                value = typ(raw)
            except ValueError:
                raise ValueError(f"expected {'an integer' if typ is int else 'a number'}, got {shown}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (typ is int and not isinstance(value, int)):
            raise ValueError(f"expected {'an integer' if typ is int else 'a number'}, got {shown}")
        lo, hi = meta.get("min"), meta.get("max")
        if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"expected a value between {lo} and {hi}, got {shown}")
        if meta.get("choices") and value not in meta["choices"]:
            raise ValueError(f"expected one of {', '.join(map(str, meta['choices']))}, got {shown}")
        return typ(value)
    if typ is str:
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {shown}")
        if meta.get("choices") and raw not in meta["choices"]:
            raise ValueError(f"expected one of {', '.join(meta['choices'])}, got {shown}")
        if meta.get("pattern") and not re.fullmatch(meta["pattern"], raw):  # re.match's `$` allows a final "\n"
            raise ValueError(f"expected {meta['doc']}, got {shown}")
        return raw
    if typ in (Path, Path | None):
        if not isinstance(raw, str):
            raise ValueError(f"expected a path (a string), got {shown}")
        return Path(raw) if raw else (None if typ != Path else Path())
    if typ == tuple[str, ...]:
        if from_text or not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise ValueError(f"expected an array of strings, got {shown}")
        return tuple(raw)
    if typing.get_origin(typ) is dict or typ == (dict[str, int] | None):
        if from_text:
            raise ValueError("set this in a TOML file, not the environment")
        if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                                for k, v in raw.items()):
            raise ValueError(f"expected a table of name = integer, got {shown}")
        for name, value in raw.items():
            if meta.get("choices") and name not in meta["choices"]:
                raise ValueError(f"unknown name {name!r}{suggest(name, dict.fromkeys(meta['choices']))}")
            if not meta["min"] <= value <= meta["max"]:
                raise ValueError(f"{name}: expected a value between {meta['min']} and {meta['max']}, got {value}")
        return dict(raw)
    raise ValueError(f"unsupported type {typ}")  # pragma: no cover - a programming error


def missing(obj: Any, problems: list[str], prefix: str = "") -> list[str]:
    """`key: required` for every required key still at its placeholder default, unless one of `problems`
    already names it (a value was given but refused)."""
    out = []
    for f, typ in declared(type(obj)):
        value, name = getattr(obj, f.name), prefix + toml_name(f)
        if is_dataclass(typ):
            out += missing(value, problems, name + ".")
        elif item_type(typ):
            for i, entry in enumerate(value):
                out += missing(entry, problems, f"{name}[{i}].")
        elif (f.metadata.get("required") and value == default_of(f)
              and not any(p.startswith(name + " ") for p in problems)):
            out.append(f"{name}: required")
    return out


def resolve_paths(obj: T, base: Path) -> T:
    """Every relative path of `obj` (sections and arrays included) taken relative to `base`."""
    changes: dict[str, Any] = {}
    for f, typ in declared(type(obj)):
        value = getattr(obj, f.name)
        if is_dataclass(typ):
            changes[f.name] = resolve_paths(value, base)
        elif item_type(typ):
            changes[f.name] = tuple(resolve_paths(v, base) for v in value)
        elif isinstance(value, Path) and not value.is_absolute():
            changes[f.name] = base / value
    return replace(obj, **changes)  # type: ignore[type-var]
