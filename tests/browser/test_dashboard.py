"""The dashboard in headless Chromium: overview and rate chart, groups and lag,
dead letters inspected, replayed and discarded from the page, the stream
browser, and the trace of one correlation id across three services.

Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from herald.deadletters import DeadLetters
from tests.browser.conftest import ADMIN_TOKEN, FAST, READ_TOKEN, SCREENSHOTS, Shop

T = TypeVar("T")
WAIT = 10.0


def wait_for(driver: Any, check: Callable[[Any], T | None], what: str, timeout: float = WAIT) -> T:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        found = WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException]) \
            .until(check)
    except TimeoutException:
        shot(driver, "failed-" + what.replace(" ", "-")[:40])
        notice = driver.find_element("id", "notice").text
        raise AssertionError(f"timed out waiting for {what}; the page says: {notice!r}") from None
    assert found is not None  # until() returns only a true value
    return found


def shot(driver: Any, name: str) -> None:
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def css(driver: Any, selector: str) -> list[Any]:
    return list(driver.find_elements("css selector", selector))


def open_view(driver: Any, shop: Shop, hash_: str) -> None:
    """Go to a view of the dashboard (loading the page the first time)."""
    if not driver.current_url.startswith(shop.url + "/dashboard/"):
        driver.get(shop.url + "/dashboard/" + hash_)
        wait_for(driver, lambda d: d.find_element("tag name", "body").get_attribute("data-ready"), "the page")
    else:
        driver.execute_script("location.hash = arguments[0]", hash_)


def use_token(driver: Any, token: str) -> None:
    field = driver.find_element("id", "token")
    field.clear()
    field.send_keys(token)
    driver.find_element("id", "token-use").click()


@pytest.fixture(scope="module")
def page(browser: Any, shop: Shop) -> Any:
    """The dashboard, opened, asking for a token, then given the admin token."""
    browser.get(shop.url + "/dashboard/")
    wait_for(browser, lambda d: "paste one in the Token field" in d.find_element("id", "notice").text,
             "the page to ask for a token")
    shot(browser, "00-asks-for-a-token")
    use_token(browser, ADMIN_TOKEN)
    return browser


def test_overview_shows_topics_counts_and_a_rate_chart(page: Any, shop: Shop) -> None:
    open_view(page, shop, "#/overview")
    wait_for(page, lambda d: {"orders", "payments", "shipments", "clicks", "fail-invoices"}
             <= {row.get_attribute("data-topic") for row in css(d, ".topic-row")}, "the topics table")
    # a rate is the difference of two samples, one poll (2 s) apart; the heartbeat moves clicks
    def clicks(driver: Any) -> list[float] | None:
        values = [float(p.get_attribute("data-value")) for p in css(driver, "#rate-chart circle.point")
                  if p.get_attribute("data-series") == "clicks"]
        return values if len(values) >= 3 else None

    rates = wait_for(page, clicks, "three rate points of clicks", timeout=20)
    assert all(0 < rate < 50 for rate in rates), rates  # about 4 a second
    bars = {bar.get_attribute("data-label"): int(bar.get_attribute("data-value"))
            for bar in css(page, "#count-chart rect.bar")}
    assert bars["orders"] == 1 and bars["fail-invoices"] == 3
    assert "retry-invoices" not in bars  # retry stages are not charted
    assert page.find_element("css selector", "#dead-count .value").text == "3"
    shot(page, "01-overview")


def test_groups_show_their_lag(page: Any, shop: Shop) -> None:
    open_view(page, shop, "#/groups")
    row = wait_for(page, lambda d: next((r for r in css(d, ".group-row")
                                         if r.get_attribute("data-group") == "analytics"), None),
                   "the analytics group")
    assert int(row.get_attribute("data-lag")) > 0  # it stopped; the heartbeat goes on
    billing = next(r for r in css(page, ".group-row") if r.get_attribute("data-group") == "billing")
    assert billing.get_attribute("data-lag") == "0"
    assert css(page, "#lag-chart rect.bar")
    shot(page, "02-groups")


def _dead_letters(shop: Shop) -> list[str]:
    async def ids() -> list[str]:
        return [x.id for x in await DeadLetters(shop.checkout.broker, FAST).list("invoices")]

    return shop.run(ids())


def _dl_rows(driver: Any) -> list[str]:
    return [row.get_attribute("data-id") for row in css(driver, ".dl-row")]


def _confirm(driver: Any, screenshot: str | None = None) -> None:
    wait_for(driver, lambda d: d.find_element("id", "confirm").get_attribute("open") is not None,
             "the confirmation dialog")
    if screenshot:
        shot(driver, screenshot)
    driver.find_element("id", "confirm-ok").click()


def test_dead_letters_inspect_replay_and_discard(page: Any, shop: Shop) -> None:
    before = _dead_letters(shop)
    assert len(before) == 3
    open_view(page, shop, "#/deadletters")
    wait_for(page, lambda d: _dl_rows(d) == before, "three dead letters listed")
    shot(page, "03-dead-letters")

    # inspect the first: why it failed, its headers, its body
    first = before[0]
    css(page, ".dl-row .inspect")[0].click()
    error = wait_for(page, lambda d: d.find_element("id", "dl-error"), "the inspected dead letter")
    assert "ledger is closed: cannot book invoice 1" in error.text
    assert page.find_element("id", "dl-id").text == first
    assert '"invoice_id": 1' in page.find_element("id", "dl-body").text
    assert "herald-error-type" in page.find_element("id", "dl-headers").text
    shot(page, "04-dead-letter-inspected")

    # a read-only token may look, not replay: the page says so and nothing moves
    use_token(page, READ_TOKEN)
    wait_for(page, lambda d: d.find_element("id", "dl-id").text == first, "the dead letter again")
    page.find_element("id", "replay").click()
    _confirm(page)
    wait_for(page, lambda d: "Not allowed" in d.find_element("id", "notice").text, "a 403 notice")
    assert "admin" in page.find_element("id", "notice").text
    assert _dead_letters(shop) == before

    # replay with the admin token, once the ledger is fixed
    shop.ledger.healthy = True
    use_token(page, ADMIN_TOKEN)
    wait_for(page, lambda d: d.find_element("id", "dl-id").text == first, "the dead letter again")
    page.find_element("id", "replay").click()
    _confirm(page, "05-replay-confirmation")
    wait_for(page, lambda d: "Replayed " + first in d.find_element("id", "notice").text, "the replay notice")
    wait_for(page, lambda d: _dl_rows(d) == before[1:], "the replayed letter gone from the list")
    assert _dead_letters(shop) == before[1:]

    wait_for(page, lambda d: shop.invoice_ids[0] in shop.ledger.handled, "the ledger to book the replay")
    shot(page, "06-replayed")

    # discard the next one
    css(page, ".dl-row .inspect")[0].click()
    wait_for(page, lambda d: d.find_element("id", "dl-id").text == before[1], "the second dead letter")
    page.find_element("id", "discard").click()
    _confirm(page)
    wait_for(page, lambda d: "Discarded " + before[1] in d.find_element("id", "notice").text,
             "the discard notice")
    wait_for(page, lambda d: _dl_rows(d) == before[2:], "the discarded letter gone")
    assert _dead_letters(shop) == before[2:]
    offset = int(before[1].rsplit("@", 1)[1])
    records = shop.run(shop.checkout.admin().read_topic("fail-invoices", after=offset - 1, limit=1))
    assert not records or records[0].offset != offset  # deleted from the broker, not hidden
    assert shop.invoice_ids[1] not in shop.ledger.handled
    shot(page, "07-discarded")


def test_stream_browser_lists_streams_and_reads_one(page: Any, shop: Shop) -> None:
    open_view(page, shop, "#/streams")
    wait_for(page, lambda d: {"order-1", "order-2"}
             <= {r.get_attribute("data-stream") for r in css(d, ".stream-row")}, "the streams")
    next(r for r in css(page, ".stream-row") if r.get_attribute("data-stream") == "order-1") \
        .find_element("tag name", "a").click()
    events = wait_for(page, lambda d: css(d, ".stream-event") or None, "the events of order-1")
    assert [e.get_attribute("data-type") for e in events] == ["shop.order.placed", "shop.order.corrected"]
    shot(page, "08-stream")
    # the first event starts the order's chain: its correlation link opens the trace
    events[0].find_element("css selector", ".trace-link").click()
    wait_for(page, lambda d: len(css(d, ".trace-node")) == 3, "the trace from the stream's link")


def test_trace_view_shows_the_chain_as_a_tree_of_three_services(page: Any, shop: Shop) -> None:
    open_view(page, shop, "#/trace")
    field = wait_for(page, lambda d: d.find_element("id", "trace-id"), "the trace form")
    field.clear()
    field.send_keys(shop.correlation_id + "\n")
    nodes = wait_for(page, lambda d: css(d, ".trace-node") if len(css(d, ".trace-node")) == 3 else None,
                     "three events in the tree")
    chain = [(n.get_attribute("data-source"), n.get_attribute("data-type"), n.get_attribute("data-depth"))
             for n in nodes]
    assert chain == [("checkout", "shop.order.placed", "0"), ("billing", "shop.payment.charged", "1"),
                     ("shipping", "shop.shipment.sent", "2")]
    assert [n.get_attribute("data-parent") for n in nodes[1:]] == \
        [nodes[0].get_attribute("data-id"), nodes[1].get_attribute("data-id")]
    # each child says how long after its cause it happened; the root is also in the store
    assert [len(n.find_elements("css selector", ".since-parent")) for n in nodes] == [0, 1, 1]
    assert "after its cause" in nodes[2].text
    assert "order-1 v1" in nodes[0].text and "orders @" in nodes[0].text
    services = page.find_element("id", "trace-services").text
    assert all(name in services for name in ("checkout", "billing", "shipping"))
    shot(page, "09-trace")


def test_no_script_errors_or_blocked_resources(page: Any) -> None:
    """Nothing the page did was refused by its Content-Security-Policy or threw."""
    entries = page.get_log("browser")
    bad = [e["message"] for e in entries
           if "Content Security Policy" in e["message"] or "Uncaught" in e["message"]
           or "SyntaxError" in e["message"]]
    assert bad == []
