"""Is a document, or the index template, ECS? Every field is an ECS 8.11 field of its ECS type,
or lives under `shipper.*`; event.kind/category/type take ECS's allowed values, and a
category's types are among that category's expected event types.

ECS's flat definitions come from ../shared/corpora/ecs/ecs_flat.yml (not copied here).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ECS_FLAT = Path(__file__).resolve().parents[1].parent / "shared" / "corpora" / "ecs" / "ecs_flat.yml"

# Mapping types that stand for an ECS type (a specialisation, or the fallback on clusters
# without the mapper-extras module): the field keeps ECS's meaning.
SAME_FAMILY = {
    "keyword": {"keyword", "constant_keyword", "wildcard"},
    "constant_keyword": {"constant_keyword", "keyword"},
    "wildcard": {"wildcard", "keyword"},
    "match_only_text": {"match_only_text", "text"},
    "date": {"date", "date_nanos"},
    "scaled_float": {"scaled_float", "float"},
    "object": {"object", "flattened"},  # labels: flattened, so `app` and `app.kubernetes.io` never collide
}
VALUE_TYPES = {
    "keyword": (str,), "constant_keyword": (str,), "wildcard": (str,), "match_only_text": (str,), "text": (str,),
    "date": (str,), "ip": (str,), "long": (int,), "integer": (int,), "float": (int, float),
    "scaled_float": (int, float), "boolean": (bool,), "object": (dict,), "flattened": (dict,),
}


@lru_cache(maxsize=1)
def ecs() -> dict[str, Any]:
    if not ECS_FLAT.is_file():
        pytest.skip(f"the ECS definitions are not there ({ECS_FLAT.parent}: ../shared/corpora/ecs)")
    return yaml.safe_load(ECS_FLAT.read_text())


def template_problems(fields: dict[str, Any]) -> list[str]:
    problems = []
    for name, mapping in fields.items():
        kind = mapping if isinstance(mapping, str) else mapping.get("type")
        if name.startswith("shipper."):
            continue
        definition = ecs().get(name)
        if definition is None:
            problems.append(f"template: {name} is not ECS and not under shipper.*")
        elif kind not in SAME_FAMILY.get(definition["type"], {definition["type"]}):
            problems.append(f"template: {name} is {kind}, ECS says {definition['type']}")
    return problems


def _leaves(doc: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in doc.items():
        name = f"{prefix}{key}"
        definition = ecs().get(name)
        if isinstance(value, dict) and not (definition and definition["type"] in ("object", "flattened")):
            yield from _leaves(value, name + ".")
        else:
            yield name, value


def document_problems(doc: dict[str, Any], what: str = "document") -> list[str]:
    problems = []
    for name, value in _leaves(doc):
        if name == "shipper" or name.startswith("shipper."):
            continue
        definition = ecs().get(name)
        if definition is None:
            problems.append(f"{what}: {name} is not ECS and not under shipper.*")
            continue
        values = value if isinstance(value, list) else [value]
        allowed = VALUE_TYPES.get(definition["type"], (object,))
        wrong = [v for v in values if v is not None and (not isinstance(v, allowed)
                                                          or (bool not in allowed and isinstance(v, bool)))]
        if wrong:
            problems.append(f"{what}: {name} holds {wrong[0]!r}, ECS type {definition['type']}")
    return problems + categorization_problems(doc, what)


def categorization_problems(doc: dict[str, Any], what: str = "document") -> list[str]:
    event = doc.get("event") or {}
    problems = []
    kinds = {v["name"] for v in ecs()["event.kind"]["allowed_values"]}
    categories = {v["name"]: set(v.get("expected_event_types") or ()) for v in ecs()["event.category"]["allowed_values"]}
    types = {v["name"] for v in ecs()["event.type"]["allowed_values"]}
    if event.get("kind") not in kinds:
        problems.append(f"{what}: event.kind {event.get('kind')!r} is not one of ECS's")
    doc_categories = event.get("category") or []
    doc_types = event.get("type") or []
    for category in doc_categories:
        if category not in categories:
            problems.append(f"{what}: event.category {category!r} is not one of ECS's")
    for kind in doc_types:
        if kind not in types:
            problems.append(f"{what}: event.type {kind!r} is not one of ECS's")
        elif doc_categories and not any(kind in categories.get(c, ()) for c in doc_categories):
            problems.append(f"{what}: event.type {kind!r} is not expected with event.category {doc_categories}")
    if doc_types and not doc_categories:
        problems.append(f"{what}: event.type without event.category")
    return problems
