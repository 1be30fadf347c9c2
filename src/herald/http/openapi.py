"""The gateway's OpenAPI 3.1 document, written by hand and checked against the routes.

`document()` takes the routes the gateway mounted and fails on one that is
not described here, so the document cannot fall behind the code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from herald.http.auth import Scope

_CONVERTER = re.compile(r"\{(\w+):\w+\}")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _param(name: str, where: str, description: str, schema: dict[str, Any],
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path",
            "description": description, "schema": schema}


_TOPIC = _param("topic", "path", "Topic: 1-249 ASCII letters, digits, '.', '_', '-'.",
                {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,249}$"})
_LETTER = _param("id", "path", "Dead letter id, <dead-letter topic>@<offset>.",
                 {"type": "string", "pattern": "^.+@[0-9]+$"})
_LIMIT = _param("limit", "query", "At most this many (1-1000).",
                {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})
_ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
}
_NOT_FOUND = {"404": {"$ref": "#/components/responses/NotFound"}}
_UNAVAILABLE = {"501": {"$ref": "#/components/responses/NotSupported"},
                "503": {"$ref": "#/components/responses/Unavailable"}}

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/health"): {
        "operationId": "health", "summary": "Liveness: the gateway answers.",
        "responses": {"200": _json({"type": "object"}, "Alive, with the App's name.")},
    },
    ("GET", "/openapi.json"): {
        "operationId": "openapi", "summary": "This document.",
        "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
    },
    ("POST", "/topics/{topic}/events"): {
        "operationId": "publish",
        "summary": "Publish CloudEvents to a topic.",
        "description": (
            "Binary mode: ce-specversion, ce-id, ce-source, ce-type (and other ce-* attributes, "
            "percent-encoded) as headers, the data as the body, its media type as Content-Type. "
            "Structured mode: Content-Type application/cloudevents+json. Batch: "
            "application/cloudevents-batch+json, a JSON array, published in one broker call. "
            "The key (same key, same order) is the key query parameter or the x-message-key "
            "header, else each event's partitionkey attribute."
        ),
        "parameters": [
            _TOPIC,
            _param("key", "query", "Ordering key of every event of the request.", {"type": "string"}),
            _param("x-message-key", "header", "Ordering key (percent-encoded), instead of ?key=.",
                   {"type": "string"}),
            _param("delay", "query", "Deliver after this many seconds.",
                   {"type": "number", "minimum": 0}),
        ],
        "requestBody": {"required": True, "content": {
            "application/cloudevents+json": {"schema": _ref("CloudEvent")},
            "application/cloudevents-batch+json": {"schema": {"type": "array", "items": _ref("CloudEvent")}},
            "*/*": {"schema": {"description": "Binary mode: the event's data."}},
        }},
        "responses": {
            "202": _json(_ref("Published"), "Stored by the broker; handlers run later."),
            **_ERRORS,
            "413": {"$ref": "#/components/responses/TooLarge"},
            "415": {"$ref": "#/components/responses/UnsupportedMediaType"},
            **_UNAVAILABLE,
        },
    },
    ("GET", "/topics"): {
        "operationId": "listTopics", "summary": "Topics with counts, and each group's position and lag.",
        "responses": {"200": _json({"type": "object", "properties": {
            "topics": {"type": "array", "items": _ref("Topic")}}}, "The topics."),
            **_ERRORS, **_UNAVAILABLE},
    },
    ("GET", "/topics/{topic}"): {
        "operationId": "getTopic", "summary": "One topic.", "parameters": [_TOPIC],
        "responses": {"200": _json(_ref("Topic"), "The topic."), **_ERRORS, **_NOT_FOUND, **_UNAVAILABLE},
    },
    ("GET", "/groups"): {
        "operationId": "listGroups", "summary": "Consumer groups with their lag per topic.",
        "responses": {"200": _json({"type": "object", "properties": {
            "groups": {"type": "array", "items": _ref("Group")}}}, "The groups."),
            **_ERRORS, **_UNAVAILABLE},
    },
    ("GET", "/groups/{group}"): {
        "operationId": "getGroup", "summary": "One consumer group.",
        "parameters": [_param("group", "path", "Group name.", {"type": "string"})],
        "responses": {"200": _json(_ref("Group"), "The group."), **_ERRORS, **_NOT_FOUND, **_UNAVAILABLE},
    },
    ("GET", "/deadletters"): {
        "operationId": "listDeadLetters", "summary": "Dead letters, oldest first.",
        "parameters": [
            _param("topic", "query", "Original topic (orders) or dead-letter topic (fail-orders).",
                   {"type": "string"}),
            _LIMIT,
        ],
        "responses": {"200": _json({"type": "object", "properties": {
            "dead_letters": {"type": "array", "items": _ref("DeadLetter")}}}, "The dead letters."),
            **_ERRORS, **_UNAVAILABLE},
    },
    ("GET", "/deadletters/{id}"): {
        "operationId": "getDeadLetter", "summary": "One dead letter with its reason, headers and data.",
        "parameters": [_LETTER],
        "responses": {"200": _json(_ref("DeadLetter"), "The dead letter."),
                      **_ERRORS, **_NOT_FOUND, **_UNAVAILABLE},
    },
    ("POST", "/deadletters/{id}/replay"): {
        "operationId": "replayDeadLetter",
        "summary": "Send a dead letter back to the group that failed it (or, with to_topic, to "
                   "every group), then remove it.",
        "parameters": [_LETTER, _param("to_topic", "query", "Republish on the original topic.",
                                       {"type": "boolean", "default": False})],
        "responses": {"200": _json({"type": "object"}, "Replayed."), **_ERRORS, **_NOT_FOUND,
                      **_UNAVAILABLE},
    },
    ("DELETE", "/deadletters/{id}"): {
        "operationId": "discardDeadLetter", "summary": "Remove a dead letter for good.",
        "parameters": [_LETTER],
        "responses": {"200": _json({"type": "object"}, "Discarded."), **_ERRORS, **_NOT_FOUND,
                      **_UNAVAILABLE},
    },
    ("GET", "/metrics"): {
        "operationId": "metrics", "summary": "Prometheus metrics (the text exposition format).",
        "responses": {"200": {"description": "The metrics.", "content": {"text/plain": {}}},
                      **_ERRORS},
    },
    ("GET", "/streams"): {
        "operationId": "listStreams", "summary": "Event-store streams with their versions.",
        "parameters": [_param("prefix", "query", "Only streams starting with this.", {"type": "string"}),
                       _LIMIT],
        "responses": {"200": _json({"type": "object"}, "The streams."), **_ERRORS},
    },
    ("GET", "/streams/{stream}"): {
        "operationId": "readStream", "summary": "A stream's events, as CloudEvents with versions.",
        "parameters": [
            _param("stream", "path", "Stream name (may contain '/').", {"type": "string"}),
            _param("from_version", "query", "First version (last, with backwards).",
                   {"type": "integer", "minimum": 0}),
            _param("backwards", "query", "Newest first.", {"type": "boolean", "default": False}),
            _LIMIT,
        ],
        "responses": {"200": _json({"type": "object"}, "The events."), **_ERRORS, **_NOT_FOUND},
    },
}


def _error_response(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


COMPONENTS: dict[str, Any] = {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    "responses": {
        "BadRequest": _error_response("Bad input: the detail says what and how to fix it."),
        "Unauthorized": _error_response("No token, or not a valid one."),
        "Forbidden": _error_response("The token lacks the scope."),
        "NotFound": _error_response("No such thing."),
        "TooLarge": _error_response("The body or the batch is over the limit."),
        "UnsupportedMediaType": _error_response("A CloudEvents format the gateway does not read."),
        "NotSupported": _error_response("The broker cannot do this (it has no admin API)."),
        "Unavailable": _error_response("The broker is not connected or not reachable."),
    },
    "schemas": {
        "Error": {"type": "object", "required": ["error", "detail"], "properties": {
            "error": {"type": "string", "description": "A stable code, e.g. bad-event."},
            "detail": {"type": "string", "description": "What was wrong, for a person."}}},
        "CloudEvent": {"type": "object", "required": ["specversion", "id", "source", "type"],
                       "properties": {
                           "specversion": {"const": "1.0"}, "id": {"type": "string"},
                           "source": {"type": "string"}, "type": {"type": "string"},
                           "time": {"type": "string", "format": "date-time"},
                           "subject": {"type": "string"}, "datacontenttype": {"type": "string"},
                           "dataversion": {"type": "integer", "minimum": 1},
                           "partitionkey": {"type": "string"},
                           "data": {}, "data_base64": {"type": "string", "contentEncoding": "base64"}},
                       "additionalProperties": {"type": ["string", "integer", "boolean"]}},
        "Published": {"type": "object", "properties": {
            "topic": {"type": "string"}, "ids": {"type": "array", "items": {"type": "string"}}}},
        "Topic": {"type": "object", "properties": {
            "name": {"type": "string"}, "partitions": {"type": "integer"},
            "messages": {"type": "integer"}, "delayed": {"type": "integer"},
            "groups": {"type": "array", "items": {"type": "object", "properties": {
                "group": {"type": "string"}, "committed": {"type": "integer"},
                "lag": {"type": "integer"}}}}}},
        "Group": {"type": "object", "properties": {
            "group": {"type": "string"}, "lag": {"type": "integer"},
            "topics": {"type": "array", "items": {"type": "object"}}}},
        "DeadLetter": {"type": "object", "properties": {
            name: {"type": "string"} for name in (
                "id", "topic", "original_topic", "group", "reason", "error_type", "error_message",
                "first_failure", "last_failure", "event_id", "event_type", "key", "data_base64")
        } | {"offset": {"type": "integer"}, "attempts": {"type": "integer"},
             "headers": {"type": "object"}, "data": {}}},
    },
}


def openapi_path(path: str) -> str:
    """Starlette's `/streams/{stream:path}` -> OpenAPI's `/streams/{stream}`."""
    return _CONVERTER.sub(r"{\1}", path)


def document(
    title: str, version: str, routes: Iterable[tuple[str, str, Scope | None]], secured: bool,
    more: Mapping[tuple[str, str], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The document for the mounted `routes` (method, path, scope). `more` describes
    routes of other modules (the dashboard's). Raises LookupError on a route
    described nowhere."""
    paths: dict[str, dict[str, Any]] = {}
    operations = {**OPERATIONS, **(more or {})}
    for method, path, scope in routes:
        path = openapi_path(path)
        described = operations.get((method, path))
        if described is None:
            raise LookupError(f"route {method} {path} is not described in herald.http.openapi")
        operation = dict(described)
        if scope is not None:
            operation["x-herald-scope"] = scope.value
            operation["security"] = [{"bearer": []}] if secured else []
        else:
            operation["security"] = []
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "herald HTTP gateway: publish CloudEvents, look into topics, "
                                "groups and dead letters. Errors are {\"error\", \"detail\"}."},
        "paths": paths,
        "components": COMPONENTS,
    }
