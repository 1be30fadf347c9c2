"""`herald dlq`: list, show, replay and discard dead letters made by a failing handler."""

from __future__ import annotations

import asyncio
import json

from herald import App
from tests.cli.conftest import invoke, make_dead_letters


def ids(url: str, *topic: str) -> list[str]:
    out = invoke("dlq", "list", *topic, "--json", "-b", url)
    assert out.code == 0, out.stderr
    return [json.loads(line)["id"] for line in out.stdout.splitlines()]


def test_list_and_show(url: str) -> None:
    make_dead_letters(url, 2)
    listed = invoke("dlq", "list", "-b", url)
    assert listed.code == 0, listed.stderr
    assert "2 dead letter(s)" in listed.stdout
    letters = [json.loads(line) for line in invoke("dlq", "list", "--json", "-b", url).stdout.splitlines()]
    assert [x["data"] for x in letters] == [{"n": 0}, {"n": 1}]
    first = letters[0]
    assert first["id"].startswith("fail-orders@") and first["id"] in listed.stdout
    assert (first["original_topic"], first["group"]) == ("orders", "billing")
    assert first["reason"] == "handler-error"
    assert (first["error_type"], first["error_message"], first["attempts"]) == ("RuntimeError", "boom 0", 1)
    assert ids(url, "orders") == ids(url, "fail-orders") == [x["id"] for x in letters]
    assert ids(url, "other") == []
    assert len(invoke("dlq", "list", "--limit", "1", "--json", "-b", url).stdout.splitlines()) == 1

    shown = invoke("dlq", "show", first["id"], "-b", url)
    assert shown.code == 0, shown.stderr
    for text in (first["id"], "billing", "RuntimeError: boom 0", "order.placed", first["event_id"], '"n": 0'):
        assert text in shown.stdout
    assert json.loads(invoke("dlq", "show", first["id"], "--json", "-b", url).stdout) == first


def test_replay_one_brings_it_back_to_the_group_that_failed(url: str) -> None:
    make_dead_letters(url, 2)
    first, second = ids(url)
    out = invoke("dlq", "replay", first, "-b", url)
    assert out.code == 0, out.stderr
    assert out.stdout.strip() == f"replayed {first} (order.placed) to group billing of orders"
    assert ids(url) == [second]

    async def handled_by_billing() -> list[object]:
        seen: list[object] = []
        handled = asyncio.Event()
        app = App("fixed", broker=url)

        @app.subscriber("orders", group="billing")
        async def handle(event: dict[str, object]) -> None:
            seen.append(event["n"])
            handled.set()

        async with app:
            await asyncio.wait_for(handled.wait(), 10)
            await asyncio.sleep(0.2)  # and nothing else comes
        return seen

    assert asyncio.run(handled_by_billing()) == [0]


def test_replay_all_to_topic_and_discard(url: str) -> None:
    make_dead_letters(url, 3)
    make_dead_letters(url, 1, topic="payments")
    out = invoke("dlq", "replay", "--all", "--topic", "orders", "--to-topic", "-b", url)
    assert (out.code, out.stdout.strip()) == (0, "replayed 3 dead letter(s) of orders"), out.stderr
    assert len(ids(url)) == 1
    records = invoke("tail", "orders", "--json", "-b", url).stdout.splitlines()
    assert len(records) == 6  # the 3 originals and the 3 replayed on the topic itself

    [payment] = ids(url)
    out = invoke("dlq", "discard", payment, "-b", url)
    assert (out.code, out.stdout.strip()) == (0, f"discarded {payment} (order.placed)")
    assert ids(url) == []
    out = invoke("dlq", "discard", "--all", "-b", url)
    assert (out.code, out.stdout.strip()) == (0, "no dead letters to discard")


def test_discard_all(url: str) -> None:
    make_dead_letters(url, 2)
    out = invoke("dlq", "discard", "--all", "--yes", "-b", url)
    assert (out.code, out.stdout.strip()) == (0, "discarded 2 dead letter(s)")
    listed = invoke("dlq", "list", "-b", url)
    assert (listed.code, listed.stdout, listed.stderr) == (0, "", "no dead letters\n")


def test_bad_ids_and_arguments(url: str) -> None:
    make_dead_letters(url, 1)
    [real] = ids(url)
    cases = [
        (("show", "nope"), 2, "error: bad dead letter id 'nope': expected <topic>@<offset>"),
        (("show", "x@notanumber"), 2, "error: bad dead letter id 'x@notanumber'"),
        (("show", "fail-orders@999999"), 1, "error: no dead letter 'fail-orders@999999'"),
        (("replay", "fail-orders@999999"), 1, "error: no dead letter 'fail-orders@999999'"),
        (("discard", "@1"), 2, "error: bad dead letter id '@1'"),
        (("replay",), 2, "error: give a dead letter ID (see `herald dlq list`) or --all"),
        (("discard", real, "--all"), 2, "error: give a dead letter ID or --all, not both"),
        (("replay", real, "--topic", "orders"), 2, "error: --topic goes with --all"),
        (("list", "--limit", "0"), 2, "error: Invalid value for '--limit'"),
        (("show",), 2, "error: Missing argument 'ID'"),
        (("frobnicate",), 2, "error: No such command 'frobnicate'"),
    ]
    for args, code, message in cases:
        out = invoke("dlq", *args, "-b", url)
        assert out.code == code, (args, out.stderr)
        assert out.error_line().startswith(message), args
    assert ids(url) == [real]  # nothing was touched
