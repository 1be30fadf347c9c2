"""The AsyncAPI document generated from an App is valid AsyncAPI 3.0 and says what the App does."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from herald import App, Batch, Event
from herald.asyncapi import document
from herald.cli import main
from herald.errors import ConfigError

SCHEMA = json.loads((Path(__file__).parent.parent / "data" / "asyncapi-3.0.0.json").read_text())


class OrderPlaced(Event, type="shop.order.placed", version=2):
    """An order was placed."""

    order_id: str
    amount_cents: int
    items: list[str] = []


class OrderCancelled(Event, type="shop.order.cancelled"):
    order_id: str
    reason: str | None = None


def make_app() -> App:
    app = App("shop", broker="kafka://user:secret@broker:9092?namespace=x")

    @app.subscriber("orders", group="billing")
    async def bill(event: OrderPlaced | OrderCancelled) -> None: ...

    @app.subscriber("orders", group="mail", batch=Batch(size=10, timeout=1.0))
    async def mail(events: list[OrderPlaced]) -> None: ...

    @app.subscriber("audit/raw events")  # an address AsyncAPI keys cannot hold as is
    async def audit(event: dict[str, Any]) -> None: ...

    app.publishes("orders", OrderPlaced, OrderCancelled)
    return app


def validate(doc: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(doc)


def test_document_is_valid_asyncapi_3() -> None:
    validate(make_app_doc())


def make_app_doc() -> dict[str, Any]:
    return document(make_app(), version="2.1.0", description="the shop")


def test_document_says_what_the_app_receives_and_sends() -> None:
    doc = make_app_doc()
    assert doc["info"] == {"title": "shop", "version": "2.1.0", "description": "the shop"}
    ops = doc["operations"]
    assert ops["receive.orders.billing"]["action"] == "receive"
    assert ops["receive.orders.billing"]["summary"] == "consumer group billing"
    assert ops["send.orders"]["action"] == "send"
    billing = {m["$ref"].rsplit("/", 1)[1] for m in ops["receive.orders.billing"]["messages"]}
    assert billing == {"shop.order.placed.v2", "shop.order.cancelled.v1"}
    mail = {m["$ref"].rsplit("/", 1)[1] for m in ops["receive.orders.mail"]["messages"]}
    assert mail == {"shop.order.placed.v2"}
    # the topic's real name stays the address; the key is made safe
    assert doc["channels"]["audit_raw_events"]["address"] == "audit/raw events"
    assert doc["channels"]["audit_raw_events"]["messages"] == {}


def test_messages_carry_schemas_and_cloudevents_headers() -> None:
    doc = make_app_doc()
    message = doc["components"]["messages"]["shop.order.placed.v2"]
    assert message["name"] == "shop.order.placed"
    assert message["summary"] == "An order was placed."
    assert message["headers"] == {"$ref": "#/components/schemas/CloudEventsHeaders"}
    schema = doc["components"]["schemas"]["OrderPlaced"]
    assert set(schema["required"]) == {"order_id", "amount_cents"}
    assert schema["properties"]["amount_cents"]["type"] == "integer"
    headers = doc["components"]["schemas"]["CloudEventsHeaders"]
    assert {"ce_id", "ce_type", "ce_source", "ce_specversion"} <= set(headers["required"])


def test_servers_leave_out_credentials() -> None:
    doc = make_app_doc()
    assert doc["servers"] == {"default": {"host": "broker:9092", "protocol": "kafka"}}
    assert "secret" not in json.dumps(doc)


def test_an_app_with_nothing_declared_is_still_valid() -> None:
    doc = document(App("empty", broker="memory://"))
    validate(doc)
    assert doc["channels"] == {} and doc["operations"] == {}


def test_the_validator_catches_a_broken_document() -> None:
    doc = make_app_doc()
    doc["operations"]["send.orders"]["action"] = "shout"
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


@pytest.mark.parametrize("topic, classes", [("", (OrderPlaced,)), ("orders", ()), ("orders", ("x",))])
def test_publishes_refuses_garbage(topic: str, classes: tuple[Any, ...]) -> None:
    with pytest.raises(ConfigError, match="publishes"):
        App("a", broker="memory://").publishes(topic, *classes)


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "docs_app_mod.py").write_text(
        "from herald import App, Event\n"
        "class Ping(Event, type='ping'):\n    n: int\n"
        "app = App('pinger', broker='memory://')\n"
        "@app.subscriber('pings')\nasync def on_ping(e: Ping) -> None: ...\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "docs_app_mod"
    sys.modules.pop("docs_app_mod", None)


def test_cli_prints_a_valid_document(app_module: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs", "asyncapi", f"{app_module}:app"]) == 0
    doc = json.loads(capsys.readouterr().out)
    validate(doc)
    assert doc["channels"]["pings"]["address"] == "pings"


def test_cli_writes_a_file(app_module: str, tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    assert main(["docs", "asyncapi", f"{app_module}:app", "--out", str(out)]) == 0
    validate(json.loads(out.read_text()))


@pytest.mark.parametrize(
    "args, message",
    [
        (["docs", "asyncapi"], "Missing argument"),
        (["docs", "asyncapi", "no_such_module_xyz:app"], "no_such_module_xyz"),
        (["docs", "asyncapi", "docs_app_mod:nothing"], "nothing"),
        (["docs", "asyncapi", "docs_app_mod:app", "--out", "/no/such/dir/x.json"], "cannot write"),
        (["docs", "openapi"], "No such command"),
    ],
)
def test_cli_garbage_is_one_line(
    app_module: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) != 0
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
