"""What the three instrumentations share: argument checks and what a Context says."""

from __future__ import annotations

import weakref

from herald.app import App
from herald.context import Context
from herald.errors import ConfigError


def check_app(app: object, what: str, done: weakref.WeakSet[App]) -> App:
    """The App to instrument, or a ConfigError saying what is wrong.

    `done` holds the Apps this instrumentation already wrapped: a second call
    would time, trace or log every event twice.
    """
    if not isinstance(app, App):
        raise ConfigError(f"{what} takes a herald App, got {type(app).__name__}")
    if app.consumers:
        # Consumers take the middleware list when they start; a middleware
        # added later would silently miss them.
        raise ConfigError(f"{what}: App {app.name!r} is running; instrument it before start()")
    if app in done:
        raise ConfigError(f"{what}: App {app.name!r} is instrumented already; call it once per App")
    return app


def event_type_of(ctx: Context) -> str:
    """The event type of a handled event; for a batch of several types, "mixed"."""
    if len(ctx.envelopes) > 1:
        types = {envelope.type for envelope in ctx.envelopes}
        return ctx.envelope.type if len(types) == 1 else "mixed"
    return ctx.envelope.type


def messaging_system(app: App, topic: str, group: str) -> str:
    """The broker name ("kafka", "sqlite", ...) of the subscriber handling (topic, group)."""
    for sub in app.subscribers:
        if sub.topic == topic and sub.group == group:
            return app.cluster(sub.cluster).name
    return app.broker.name
