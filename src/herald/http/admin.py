"""Read-only views of the broker (topics, groups, lag) and dead-letter actions."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from herald.brokers.base import LogAdmin, TopicInfo
from herald.deadletters import DeadLetter, parse_id
from herald.errors import DeadLetterNotFound, HeraldError
from herald.http.cloudevents_http import data_fields
from herald.http.errors import HttpError, bad_request
from herald.http.inputs import MAX_TOPIC, bool_param, check_text, check_topic, int_param, query_of
from herald.http.state import GatewayState


def _admin(state: GatewayState) -> LogAdmin:
    try:
        return state.app.admin()
    except HeraldError as exc:
        raise HttpError(501, "not-supported", str(exc)) from None


def topic_json(info: TopicInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "partitions": info.partitions,
        "messages": info.messages,
        "delayed": info.delayed,
        "groups": [{"group": g.group, "committed": g.committed, "lag": g.lag} for g in info.groups],
    }


async def topics(request: Request, state: GatewayState) -> Response:
    query_of(request.query_params.multi_items(), ())
    infos = await _admin(state).topics()
    return JSONResponse({"topics": [topic_json(t) for t in infos]})


async def topic(request: Request, state: GatewayState) -> Response:
    query_of(request.query_params.multi_items(), ())
    name = check_topic(request.path_params["topic"])
    for info in await _admin(state).topics():
        if info.name == name:
            return JSONResponse(topic_json(info))
    raise HttpError(404, "not-found", f"no topic {name!r}: nothing was published to it yet")


def _groups(infos: list[TopicInfo]) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for info in infos:
        for position in info.groups:
            entry = groups.setdefault(position.group, {"group": position.group, "lag": 0, "topics": []})
            entry["lag"] += position.lag
            entry["topics"].append(
                {"topic": info.name, "committed": position.committed, "lag": position.lag}
            )
    return groups


async def groups(request: Request, state: GatewayState) -> Response:
    query_of(request.query_params.multi_items(), ())
    found = _groups(await _admin(state).topics())
    return JSONResponse({"groups": [found[name] for name in sorted(found)]})


async def group(request: Request, state: GatewayState) -> Response:
    query_of(request.query_params.multi_items(), ())
    name = check_text(request.path_params["group"], "group", MAX_TOPIC, "bad-group")
    found = _groups(await _admin(state).topics()).get(name)
    if found is None:
        raise HttpError(404, "not-found", f"no consumer group {name!r} has read any topic yet")
    return JSONResponse(found)


def letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "topic": letter.topic,
        "offset": letter.offset,
        "original_topic": letter.original_topic,
        "group": letter.group,
        "reason": letter.reason,
        "error_type": letter.error_type,
        "error_message": letter.error_message,
        "attempts": letter.attempts,
        "first_failure": letter.first_failure,
        "last_failure": letter.last_failure,
        "event_id": letter.event_id,
        "event_type": letter.event_type,
        "key": letter.key,
        "headers": letter.headers,
        **data_fields(letter.body, letter.headers.get("content-type")),
    }


async def dead_letters(request: Request, state: GatewayState) -> Response:
    query = query_of(request.query_params.multi_items(), ("topic", "limit"))
    limit = int_param(query, "limit", 100, 1, 1000)
    name = query.get("topic")
    if name is not None:
        check_topic(name)
    letters = await state.dead_letters().list(name, limit=limit)
    return JSONResponse({"dead_letters": [letter_json(x) for x in letters]})


def _letter_id(request: Request, state: GatewayState) -> str:
    """The id from the path; only ids of dead-letter topics: the admin API can delete
    records, and must never be pointed at an ordinary topic."""
    letter_id: str = request.path_params["id"]
    try:
        topic_name, _ = parse_id(letter_id)
    except HeraldError as exc:
        raise bad_request(str(exc), "bad-id") from None
    check_topic(topic_name)
    _, dead_prefixes = state.policies_prefixes()
    if not any(topic_name.startswith(p) for p in dead_prefixes):
        raise HttpError(404, "not-found", f"{topic_name!r} is not a dead-letter topic "
                        f"(they start with {', '.join(sorted(dead_prefixes))})")
    return letter_id


async def dead_letter(request: Request, state: GatewayState) -> Response:
    query_of(request.query_params.multi_items(), ())
    letter_id = _letter_id(request, state)
    return JSONResponse(letter_json(await _found(state.dead_letters().show(letter_id))))


async def replay(request: Request, state: GatewayState) -> Response:
    query = query_of(request.query_params.multi_items(), ("to_topic",))
    to_topic = bool_param(query, "to_topic")
    letter_id = _letter_id(request, state)
    letter = await _found(state.dead_letters().replay(letter_id, to_topic=to_topic))
    every_group = to_topic or not letter.group
    return JSONResponse({
        "replayed": letter.id,
        "topic": letter.original_topic,
        "group": None if every_group else letter.group,
        "event_id": letter.event_id,
    })


async def discard(request: Request, state: GatewayState) -> Response:
    query_of(request.query_params.multi_items(), ())
    letter_id = _letter_id(request, state)
    letter = await _found(state.dead_letters().discard(letter_id))
    return JSONResponse({"discarded": letter.id, "event_id": letter.event_id})


async def _found(pending: Awaitable[DeadLetter]) -> DeadLetter:
    try:
        letter: DeadLetter = await pending
    except DeadLetterNotFound as exc:
        raise HttpError(404, "not-found", str(exc)) from None
    return letter
