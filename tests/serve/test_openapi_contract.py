"""/openapi.json as a contract: every real answer, refusals included, has the shape the spec declares.

A generated client reads answers by the spec, so an undeclared key, a missing required one, a
value outside an enum or an error in another shape breaks it. The checker below walks the spec's
JSON Schema subset (refs, objects, arrays, anyOf, enums, scalar types).
"""

from __future__ import annotations

from typing import Any

import pytest

from helpers.serving import encoded_image, noisy_image

httpx = pytest.importorskip("httpx")

TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict, "array": list,
         "null": type(None)}


def problems(value: Any, schema: dict, spec: dict, where: str = "$") -> list[str]:
    if "$ref" in schema:
        return problems(value, spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]], spec, where)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            found = [problems(value, s, spec, where) for s in schema[key]]
            return [] if any(not f for f in found) else [f"{where}: fits none of {key}: {found}"]
    if "const" in schema and value != schema["const"]:
        return [f"{where}: {value!r} is not {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    kind = schema.get("type")
    if kind is not None:
        if isinstance(value, bool) and kind in ("integer", "number"):
            return [f"{where}: a boolean where {kind} is declared"]
        if not isinstance(value, TYPES[kind]):
            return [f"{where}: {type(value).__name__} where {kind} is declared"]
    found: list[str] = []
    if isinstance(value, dict) and ("properties" in schema or kind == "object"):
        declared = schema.get("properties", {})
        found += [f"{where}: required {k!r} missing" for k in schema.get("required", []) if k not in value]
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in declared:
                found += problems(v, declared[k], spec, f"{where}.{k}")
            elif extra is False or (not declared and extra is True and "properties" in schema):
                found.append(f"{where}: {k!r} is not declared")
            elif isinstance(extra, dict):
                found += problems(v, extra, spec, f"{where}.{k}")
            elif declared:
                found.append(f"{where}: {k!r} is not declared")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += problems(item, schema["items"], spec, f"{where}[{i}]")
    return found


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def declared(spec: dict, path: str, method: str, status: int) -> dict:
    responses = spec["paths"][path][method]["responses"]
    entry = responses.get(str(status))
    assert entry is not None, f"{method.upper()} {path} answers {status}, which the spec does not declare"
    return entry["content"]["application/json"]["schema"]


def test_the_checker_finds_what_breaks_a_client():
    spec = {"components": {"schemas": {"E": {"type": "object", "required": ["error"],
                                              "properties": {"error": {"enum": ["a"]}}}}}}
    ref = {"$ref": "#/components/schemas/E"}
    assert problems({"error": "a"}, ref, spec) == []
    assert problems({"detail": [1]}, ref, spec)  # FastAPI's own 422 shape
    assert problems({"error": "b"}, ref, spec) and problems({"error": "a", "x": 1}, ref, spec)


def test_every_answer_has_the_declared_shape(client):
    spec = client.get("/openapi.json").json()
    image = encoded_image(noisy_image(40, seed=3))
    answers = [
        ("/health", "get", client.get("/health")),
        ("/model", "get", client.get("/model")),
        ("/predict", "post", client.post("/predict", files={"file": ("a.png", image, "image/png")})),
        ("/predict/batch", "post", client.post("/predict/batch", params={"overlay": "false"},
                                               files=[("files", ("a.png", image, "image/png"))] * 2)),
        ("/predict", "post", client.post("/predict", params={"overlay_format": "jpeg"},
                                         files={"file": ("a.png", image, "image/png")})),
        ("/predict", "post", client.post("/predict", params={"overlay": "maybe"},
                                         files={"file": ("a.png", image, "image/png")})),
        ("/predict", "post", client.post("/predict", files={"file": ("a.png", b"", "image/png")})),
        ("/predict", "post", client.post("/predict", files={"file": ("a.png", b"not an image", "image/png")})),
        ("/predict", "post", client.post("/predict", json={"path": "/etc/passwd"})),
    ]
    seen = set()
    for path, method, answer in answers:
        seen.add(answer.status_code)
        found = problems(answer.json(), declared(spec, path, method, answer.status_code), spec)
        assert not found, f"{method.upper()} {path} → {answer.status_code}: {found}"
    assert {200, 400, 415, 422} <= seen  # the refusals were really exercised
    assert {op["operationId"] for p in spec["paths"].values() for op in p.values()} >= {
        "health", "model_info", "predict", "predict_batch"}
    unknown = client.get("/no/such/path")
    assert unknown.status_code == 404 and set(unknown.json()) == {"error", "detail"}
