"""A small JSON-Schema checker for the OpenAPI 3.1 subset BFL's document uses.

It answers the way FastAPI does (a list of `{loc, msg, type}` details), so the BFL
sandbox can return the same 422 bodies as the real API. Supported keywords: `$ref`,
`type`, `anyOf`, `enum`, `required`, `properties`, `items`, `minimum`, `maximum`,
`multipleOf`, `minLength`, `maxLength`. Unknown keys are allowed (no schema in the
document sets `additionalProperties: false`).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["bfl_openapi", "request_schema", "validate"]

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


@cache
def bfl_openapi() -> dict[str, Any]:
    """BFL's OpenAPI document (api.bfl.ai/openapi.json, snapshot 2026-04), bundled as data."""
    text = resources.files("portrait_studio.testing").joinpath("assets/bfl-openapi.json").read_text()
    return json.loads(text)


def request_schema(path: str) -> dict[str, Any] | None:
    """The JSON body schema of `POST path` (e.g. '/v1/flux-pro-1.1'), or None if no such endpoint."""
    op = bfl_openapi()["paths"].get(path, {}).get("post")
    if op is None or "requestBody" not in op:
        return None
    return op["requestBody"]["content"]["application/json"]["schema"]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = bfl_openapi()["components"]["schemas"][name]
    return schema


def _type_ok(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    if name == "integer" and isinstance(value, float) and value.is_integer():
        return True
    return isinstance(value, _TYPES[name])


def validate(value: Any, schema: dict[str, Any], loc: tuple[str | int, ...] = ("body",)) -> list[dict[str, Any]]:
    """Every problem with `value` against `schema`, FastAPI-style. Empty when valid."""
    schema = _resolve(schema)
    if "anyOf" in schema:
        results = [validate(value, option, loc) for option in schema["anyOf"]]
        if any(not r for r in results):
            return []
        # report the branch that is not the null branch, as FastAPI does for Optional[...]
        non_null = [r for r, o in zip(results, schema["anyOf"]) if _resolve(o).get("type") != "null"]
        return non_null[0] if non_null else results[0]
    errors: list[dict[str, Any]] = []
    kind = schema.get("type")
    if kind and not _type_ok(value, kind):
        word = {"integer": "a valid integer", "number": "a valid number", "string": "a valid string",
                "boolean": "a valid boolean", "object": "a valid dictionary", "array": "a valid list",
                "null": "None"}[kind]
        return [{"loc": list(loc), "msg": f"Input should be {word}", "type": f"{kind}_type", "input": value}]
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(repr(v) for v in schema["enum"])
        return [{"loc": list(loc), "msg": f"Input should be {choices}", "type": "enum", "input": value}]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append({"loc": list(loc), "msg": f"Input should be greater than or equal to {_num(schema['minimum'])}",
                           "type": "greater_than_equal", "input": value})
        if "maximum" in schema and value > schema["maximum"]:
            errors.append({"loc": list(loc), "msg": f"Input should be less than or equal to {_num(schema['maximum'])}",
                           "type": "less_than_equal", "input": value})
        if "multipleOf" in schema and value % schema["multipleOf"] != 0:
            errors.append({"loc": list(loc), "msg": f"Input should be a multiple of {_num(schema['multipleOf'])}",
                           "type": "multiple_of", "input": value})
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append({"loc": list(loc), "msg": f"String should have at least {schema['minLength']} character",
                           "type": "string_too_short", "input": value})
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append({"loc": list(loc), "msg": f"String should have at most {schema['maxLength']} characters",
                           "type": "string_too_long", "input": value})
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errors.append({"loc": [*loc, name], "msg": "Field required", "type": "missing", "input": value})
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                errors += validate(value[name], sub, (*loc, name))
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += validate(item, schema["items"], (*loc, i))
    return errors


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
