"""`GET /openapi.json`: built from the route table (`functions/http/routes.py`) and the pydantic models
named there (the job's is the domain's `JobSummary`, the request models are the domain's own). A route
is documented with exactly the statuses its row lists: those it can answer."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from functions.http.routes import PATH_PARAMS, REQUEST_MODELS, ROUTES, Answer, Route


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _answer(answer: Answer) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if answer.model is not None:
        content[answer.content_type] = {"schema": _ref(answer.model)}
    content.update(answer.also)
    return {"description": answer.description, "content": content}


def _operation(route: Route) -> dict[str, Any]:
    path_params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": f"^{PATH_PARAMS[name]}$"}} for name in route.path_params
    ]
    op: dict[str, Any] = {}
    if not route.auth:
        op["security"] = []
    params = [*route.headers, *path_params, *route.query]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = route.body
    op["responses"] = {str(status): _answer(answer) for status, answer in sorted(route.answers.items())}
    return op


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    models: dict[str, type[BaseModel]] = {m.__name__: m for m in REQUEST_MODELS}
    for route in ROUTES:
        for answer in route.answers.values():
            if answer.model is not None:
                models.setdefault(answer.model.__name__, answer.model)
    _, defs = models_json_schema([(m, "validation") for m in models.values()], ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Training platform API", "version": "1.0.0"},
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
