"""The demo's fault injection, served beside a service's own API in its process
(serve.py): what the workload does on purpose that a well-behaved client of
the API cannot, through the process's first App.

    POST /_demo/publish  {"topic": "t", "type": "x.y", "data": {...}, "key": "k", "id": "..."}
                         -> 201 {"id": event id}   (a producer's retry: the same id again)
    POST /_demo/publish  {"topic": "t", "raw_b64": "...", "headers": {...}, "key": "k"}
                         -> 201 {"id": null}       (bytes as they are: a redelivery, garbage)
    GET  /_demo/dead-letters?topic=t
                         -> 200 {"dead_letters": [{"group", "reason", "event_id", "headers"}, ...]}
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from herald import App, DeadLetters, HeraldError, Message

PUBLISH_PATH = "/_demo/publish"
DEAD_LETTERS_PATH = "/_demo/dead-letters"


def _text(body: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ValueError(f"{name} must be a non-empty string of at most 200 characters, got {value!r}"[:200])
    return value


def routes(app: App) -> list[Route]:
    async def publish(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            return JSONResponse({"error": f"body is not valid JSON: {exc}"}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be a JSON object"}, 400)
        try:
            topic = _text(body, "topic", required=True)
            assert topic is not None
            key = _text(body, "key")
            if "raw_b64" in body:
                headers = body.get("headers", {})
                if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
                    raise ValueError("headers must be an object of strings")
                data = base64.b64decode(str(body["raw_b64"]), validate=True)
                await app.broker.publish([Message(topic, data, headers, key)])
                return JSONResponse({"id": None}, 201)
            event_type, data_json = _text(body, "type", required=True), body.get("data")
            if not isinstance(data_json, dict):
                raise ValueError(f"data must be a JSON object, got {data_json!r}"[:200])
            event_id = await app.publish(topic, data_json, type=event_type, key=key, id=_text(body, "id"))
        except (ValueError, binascii.Error, HeraldError) as exc:
            return JSONResponse({"error": str(exc)}, 422)
        return JSONResponse({"id": event_id}, 201)

    async def dead_letters(request: Request) -> JSONResponse:
        topic = request.query_params.get("topic")
        if not topic:
            return JSONResponse({"error": "topic is required: ?topic=feed_event"}, 400)
        try:
            found = await DeadLetters(app.broker).list(topic, limit=10_000)
        except HeraldError as exc:
            return JSONResponse({"error": str(exc)}, 422)
        return JSONResponse({"dead_letters": [
            {"group": d.group, "reason": d.reason, "event_id": d.event_id, "headers": d.headers}
            for d in found]})

    return [Route(PUBLISH_PATH, publish, methods=["POST"]),
            Route(DEAD_LETTERS_PATH, dead_letters, methods=["GET"])]
