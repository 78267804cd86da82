"""The JSON Schemas as files, for other implementations: a stock validator (`jsonschema` with a
`referencing` registry) resolves them as they are, agrees with the project's own path
(fastjsonschema on `protocol.codec.schema`) on every golden vector, and every integer is bounded."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import fastjsonschema
import jsonschema
import jsonschema.validators
import pytest
from hypothesis import given, settings, strategies as st
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from protocol import GOLDEN_DIR, SCHEMA_DIR, codec
from protocol.codec import KINDS

MAX_INT = 2**53 - 1  # the largest integer every JSON parser (IEEE double) holds exactly
FILES = {p.name: json.loads(p.read_text("utf-8")) for p in sorted(SCHEMA_DIR.glob("*.json"))}
REGISTRY = Registry().with_resources(
    (schema["$id"], Resource.from_contents(schema, default_specification=DRAFT7)) for schema in FILES.values())


def stock(kind: str, cls: type = jsonschema.Draft7Validator) -> jsonschema.Draft7Validator:
    """A stock validator on the schema file as published, refs resolved through the registry only."""
    return cls(FILES[f"{kind}.schema.json"], registry=REGISTRY)


# Schema patterns are ECMA-262, where `$` is the end of the input; `jsonschema` uses Python's re.search,
# whose `$` also matches before one final "\n" (docs/protocol.md §1). The only tolerated disagreement:
_DOLLAR = re.compile(r"(?<!\\)\$")


def _ecma_pattern(validator, pattern: str, instance: Any, schema: dict):
    if validator.is_type(instance, "string") and not re.search(_DOLLAR.sub(r"\\Z", pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


Ecma = jsonschema.validators.extend(jsonschema.Draft7Validator, {"pattern": _ecma_pattern})


def _ends_in_newline(node: Any) -> bool:
    return any(isinstance(v, str) and v.endswith("\n") for _, v in _values(node))


def project_ok(kind: str, message: Any) -> bool:
    try:
        codec._validator(kind)(message)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def goldens() -> Iterator[tuple[str, str, Any, str | None]]:
    """(file, kind, message, expected reason or None for valid) for every golden message that is JSON."""
    for path in sorted((GOLDEN_DIR / "valid").glob("*.json")):
        yield path.stem, path.stem.split("-", 1)[0], json.loads(path.read_text("utf-8")), None
    for path in sorted((GOLDEN_DIR / "invalid").glob("*.json")):
        w = json.loads(path.read_text("utf-8"))
        if w["kind"] not in KINDS:
            continue
        if "message" in w:
            yield path.stem, w["kind"], w["message"], w["reason"]
            continue
        try:  # a raw payload that still parses (e.g. a duplicate key) is checked as Python reads it
            yield path.stem, w["kind"], json.loads(w["raw"], parse_constant=lambda c: float(c)), w["reason"]
        except ValueError:
            pass


GOLDENS = list(goldens())


def test_every_schema_has_an_id_and_every_ref_resolves():
    for name, schema in FILES.items():
        assert schema["$id"].endswith("/" + name)
        jsonschema.Draft7Validator.check_schema(schema)
    for kind in KINDS:
        resolver = REGISTRY.resolver(base_uri=FILES[f"{kind}.schema.json"]["$id"])
        for ref in _refs(FILES[f"{kind}.schema.json"]):
            resolver.lookup(ref)  # raises (PointerToNowhere, Unresolvable) if it points nowhere


@pytest.mark.parametrize("name,kind,message,reason", GOLDENS, ids=[g[0] for g in GOLDENS])
def test_the_stock_validator_and_the_project_agree_on_every_golden(name, kind, message, reason):
    ok = stock(kind).is_valid(message)
    if ok != project_ok(kind, message):
        assert _ends_in_newline(message), name  # Python's `$`, nothing else
        ok = stock(kind, Ecma).is_valid(message)
    assert ok == project_ok(kind, message), name
    if reason is None:
        assert ok, [e.message for e in stock(kind).iter_errors(message)]
    elif reason in ("schema", "not_object", "wrong_version", "wrong_type"):
        assert not ok, name  # what the schema refuses, both refuse


def test_every_integer_in_every_schema_is_bounded():
    found = []
    for name, schema in FILES.items():
        for path, node in _nodes(schema):
            if node.get("type") == "integer":
                found.append(f"{name}:{path}")
                assert "minimum" in node and node.get("maximum", MAX_INT + 1) <= MAX_INT, f"{name}:{path}"
    assert len(found) >= 10  # (the walk reaches them all)


INTEGER_FIELDS = [  # (golden file, path to an integer) for each integer a message can carry
    ("rating-case-good", ("seq",)), ("event-unrated", ("seq",)), ("status-online", ("outbox", "pending")),
    ("status-online", ("outbox", "quarantined")), ("status-online", ("outbox", "capacity")),
    ("status-online", ("rejected_inputs",)), ("grant-credentials", ("cred",)), ("config-rating",
                                                                              ("rating", "case_timeout_s"))]


@pytest.mark.parametrize("golden,path", INTEGER_FIELDS, ids=lambda x: x if isinstance(x, str) else ".".join(x))
def test_an_integer_beyond_its_bounds_is_refused_by_both(golden, path):
    base = json.loads((GOLDEN_DIR / "valid" / f"{golden}.json").read_text("utf-8"))
    kind = golden.split("-", 1)[0]

    @settings(max_examples=40, deadline=None)
    @given(st.one_of(st.integers(min_value=MAX_INT + 1), st.integers(max_value=-1),
                     st.sampled_from([2**53, 2**63, 2**64, -(2**63) - 1])))
    def check(value):
        message = json.loads(json.dumps(base))
        node = message
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        assert not stock(kind).is_valid(message)
        assert not project_ok(kind, message)
        with pytest.raises(codec.MessageError) as e:
            codec.decode(kind, json.dumps(message))
        assert e.value.reason == "schema"

    check()


def _nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict]]:
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _nodes(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _nodes(v, f"{path}/{i}")


def _values(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _values(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _values(v, f"{path}/{i}")
    else:
        yield path, node


def _refs(schema: dict) -> set[str]:
    return {n["$ref"] for _, n in _nodes(schema) if isinstance(n.get("$ref"), str)}


def test_the_old_local_refs_are_gone():
    """`#/definitions/x` in a message schema pointed nowhere for any standard validator."""
    for name, schema in FILES.items():
        if name != "defs.json":
            assert all(r.startswith("defs.json#/definitions/") for r in _refs(schema)), name
    assert Path(SCHEMA_DIR / "defs.json").exists()
