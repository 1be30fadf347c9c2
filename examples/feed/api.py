"""The feed's HTTP API (Starlette): JSON in and out, a clear 4xx on bad input.

| method and path | does |
| --- | --- |
| `POST /follows` `{"follower": 1, "followee": 2}` | stores the follow now, notifies the followee; 201 |
| `GET /users/{uid}/followees` | everyone `uid` follows (through the cache) |
| `POST /articles` `{"uid": 1, "aid": 10, "title": "..."}` | publishes to `article_feed_event`; 202 |
| `POST /feed-events` `{"type": "like", "ext": {...}}` | publishes to `feed_event`; 202 |
| `GET /users/{uid}/feed?limit=20&cursor=...` | a page of the feed, newest first, and `next_cursor` |
| `GET /stats` | rows, follows and events applied |

The feed does not own users: any positive id is a user, and one nobody
follows or notified has an empty feed (as in the seed).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .events import BadFeedEvent, FeedEventCreated, check_feed_event
from .service import FeedService
from .storage import Cursor


class BadRequest(HTTPException):
    def __init__(self, detail: str, status: int = 422) -> None:
        super().__init__(status, detail)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", 400) from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object", 400)
    return body


def _user_id(value: object, name: str) -> int:
    """A positive integer id; JSON true is not 1 here."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**62:
        raise BadRequest(f"{name} must be a positive integer, got {value!r}")
    return value


def _path_id(request: Request, name: str = "uid") -> int:
    text = request.path_params[name]
    if not (text.isascii() and text.isdigit() and len(text) <= 18 and int(text) > 0):
        raise BadRequest(f"{name} in the path must be a positive integer, got {text!r}", 400)
    return int(text)


def _field(body: dict[str, Any], name: str) -> Any:
    if name not in body:
        raise BadRequest(f"missing field {name!r}")
    return body[name]


def make_api(service: FeedService) -> Starlette:
    """The HTTP API of one FeedService (whose App must be started)."""

    async def follow(request: Request) -> JSONResponse:
        body = await _body(request)
        follower = _user_id(_field(body, "follower"), "follower")
        followee = _user_id(_field(body, "followee"), "followee")
        if follower == followee:
            raise BadRequest("a user cannot follow themselves")
        added = await service.follow(follower, followee, event_id=f"api-{uuid.uuid4()}")
        return JSONResponse({"follower": follower, "followee": followee, "new": added}, 201)

    async def followees(request: Request) -> JSONResponse:
        uid = _path_id(request)
        return JSONResponse({"uid": uid, "followees": await service.followees(uid)})

    async def article(request: Request) -> JSONResponse:
        body = await _body(request)
        uid = _user_id(_field(body, "uid"), "uid")
        aid = _user_id(_field(body, "aid"), "aid")
        title = body.get("title", "")
        if not isinstance(title, str):
            raise BadRequest(f"title must be a string, got {title!r}")
        event_id = await service.publish_article(uid=uid, aid=aid, title=title)
        return JSONResponse({"event_id": event_id}, 202)

    async def feed_event(request: Request) -> JSONResponse:
        body = await _body(request)
        event_type, ext = _field(body, "type"), body.get("ext", {})
        try:
            check_feed_event(event_type, ext)
        except BadFeedEvent as exc:
            raise BadRequest(str(exc)) from exc
        event_id = await service.publish_feed_event(FeedEventCreated(type=event_type, ext=ext))
        return JSONResponse({"event_id": event_id}, 202)

    async def feed(request: Request) -> JSONResponse:
        uid = _path_id(request)
        params = request.query_params
        limit_text = params.get("limit", str(service.settings.page_limit))
        top = service.settings.max_page_limit
        if not (limit_text.isascii() and limit_text.isdigit() and 1 <= int(limit_text) <= top):
            raise BadRequest(f"limit must be an integer from 1 to {top}, got {limit_text!r}", 400)
        cursor = params.get("cursor")
        try:
            before = Cursor.parse(cursor) if cursor else None
        except ValueError as exc:
            raise BadRequest(str(exc), 400) from exc
        page = await service.feed(uid, limit=int(limit_text), before=before)
        return JSONResponse(page.to_json())

    async def stats(request: Request) -> JSONResponse:
        counts = await service.storage.counts()
        return JSONResponse({
            "follows": counts.follows, "push_rows": counts.push_rows,
            "pull_rows": counts.pull_rows, "events_applied": counts.processed,
            "this_process": dict(service.counts),
        })

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, exc.status_code)

    return Starlette(
        routes=[
            Route("/follows", follow, methods=["POST"]),
            Route("/users/{uid}/followees", followees, methods=["GET"]),
            Route("/articles", article, methods=["POST"]),
            Route("/feed-events", feed_event, methods=["POST"]),
            Route("/users/{uid}/feed", feed, methods=["GET"]),
            Route("/stats", stats, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
    )
