"""Upcasters: old versions of an event are read as the current one."""

from __future__ import annotations

from typing import Any

import pytest

from herald import ConfigError, DecodeError, Envelope, Event, PayloadDecoder, upcaster
from herald.upcasting import Upcasters


class ProfileUpdated(Event, type="test.upcasting.profile.updated", version=3):
    """v1: {"name"}; v2: {"full_name"}; v3: {"full_name", "emails": [...]}."""

    user_id: int
    full_name: str
    emails: list[str]


def v(version: int, payload: bytes, type: str = "test.upcasting.profile.updated") -> Envelope:
    return Envelope(id="e", source="test", type=type, data=payload, datacontenttype="application/json",
                    dataversion=version)


def profile_upcasters() -> Upcasters:
    chain = Upcasters()

    @chain.register("test.upcasting.profile.updated", from_version=1)
    def rename(payload: dict[str, Any]) -> dict[str, Any]:
        payload["full_name"] = payload.pop("name")
        return payload

    @chain.register("test.upcasting.profile.updated", from_version=2)
    def emails_become_a_list(payload: dict[str, Any]) -> dict[str, Any]:
        email = payload.pop("email", None)
        return {**payload, "emails": [email] if email else []}

    return chain


def test_v1_is_upcast_through_v2_to_v3_before_validation() -> None:
    decoder = PayloadDecoder([ProfileUpdated], upcast=profile_upcasters())

    event = decoder.decode(v(1, b'{"user_id": 7, "name": "Ann Lee", "email": "ann@example.com"}'))

    assert event == ProfileUpdated(user_id=7, full_name="Ann Lee", emails=["ann@example.com"])


def test_v2_takes_only_the_last_step_and_v3_none() -> None:
    decoder = PayloadDecoder([ProfileUpdated], upcast=profile_upcasters())

    assert decoder.decode(v(2, b'{"user_id": 7, "full_name": "Ann"}')) == ProfileUpdated(
        user_id=7, full_name="Ann", emails=[]
    )
    assert decoder.decode(v(3, b'{"user_id": 7, "full_name": "Ann", "emails": []}')) == ProfileUpdated(
        user_id=7, full_name="Ann", emails=[]
    )


def test_no_dataversion_means_version_1() -> None:
    decoder = PayloadDecoder([ProfileUpdated], upcast=profile_upcasters())
    envelope = Envelope(id="e", source="other-tool", type="test.upcasting.profile.updated",
                        data=b'{"user_id": 1, "name": "Bo"}')

    assert decoder.decode(envelope) == ProfileUpdated(user_id=1, full_name="Bo", emails=[])


def test_the_upcast_result_is_validated() -> None:
    decoder = PayloadDecoder([ProfileUpdated], upcast=profile_upcasters())

    with pytest.raises(DecodeError, match="ProfileUpdated") as info:
        decoder.decode(v(1, b'{"user_id": "seven", "name": "Ann"}'))

    assert info.value.kind == "schema"


def test_a_missing_step_is_a_version_error_naming_the_step() -> None:
    only_first = Upcasters()
    only_first.register("test.upcasting.profile.updated", from_version=1)(lambda p: p)
    decoder = PayloadDecoder([ProfileUpdated], upcast=only_first)

    with pytest.raises(DecodeError, match="from version 2 to 3") as info:
        decoder.decode(v(1, b'{"user_id": 7, "name": "Ann"}'))

    assert info.value.kind == "version"
    assert "from_version=2" in str(info.value)  # tells how to register it


def test_no_upcasters_at_all_is_a_version_error() -> None:
    decoder = PayloadDecoder([ProfileUpdated], upcast=Upcasters())

    with pytest.raises(DecodeError, match="from version 1 to 2") as info:
        decoder.decode(v(1, b"{}"))

    assert info.value.kind == "version"


def test_a_newer_version_than_the_code_knows_is_a_version_error() -> None:
    decoder = PayloadDecoder([ProfileUpdated], upcast=profile_upcasters())

    with pytest.raises(DecodeError, match="version 4 is newer than this code knows") as info:
        decoder.decode(v(4, b'{"user_id": 7, "full_name": "Ann", "emails": []}'))

    assert info.value.kind == "version"


def test_an_old_payload_that_is_not_an_object_is_a_schema_error() -> None:
    decoder = PayloadDecoder([ProfileUpdated], upcast=profile_upcasters())

    with pytest.raises(DecodeError, match="not an object") as info:
        decoder.decode(v(1, b'["user_id", 7]'))

    assert info.value.kind == "schema"


def test_an_old_payload_that_is_not_json_is_a_decode_error() -> None:
    decoder = PayloadDecoder([ProfileUpdated], upcast=profile_upcasters())

    with pytest.raises(DecodeError) as info:
        decoder.decode(v(1, b"\x00\x01"))

    assert info.value.kind == "decode"


def test_a_failing_upcaster_is_poison_not_a_crash() -> None:
    # the v1 payload lacks "name": the rename step raises KeyError
    decoder = PayloadDecoder([ProfileUpdated], upcast=profile_upcasters())

    with pytest.raises(DecodeError, match=r"upcaster .* from version 1 failed: KeyError") as info:
        decoder.decode(v(1, b'{"user_id": 7}'))

    assert info.value.kind == "upcast"


def test_an_upcaster_may_reject_a_payload_with_its_own_decode_error() -> None:
    chain = Upcasters()

    @chain.register("test.upcasting.profile.updated", from_version=1)
    def strict(payload: dict[str, Any]) -> dict[str, Any]:
        raise DecodeError("v1 without a name cannot be read", kind="schema")

    with pytest.raises(DecodeError, match="without a name") as info:
        PayloadDecoder([ProfileUpdated], upcast=chain).decode(v(1, b"{}"))
    assert info.value.kind == "schema"


def test_private_chains_do_not_leak_into_each_other() -> None:
    profile_upcasters()  # registered on its own instance only

    with pytest.raises(DecodeError, match="no upcaster"):
        PayloadDecoder([ProfileUpdated], upcast=Upcasters()).decode(v(1, b'{"user_id": 1, "name": "x"}'))


def test_from_version_below_1_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="from_version must be >= 1"):
        Upcasters().register("x", from_version=0)


# -- the process-wide chain, through the public decorator ---------------------
class CartCheckedOut(Event, type="test.upcasting.cart.checked-out", version=2):
    cart_id: str
    total_cents: int


@upcaster("test.upcasting.cart.checked-out", from_version=1)
def total_in_cents(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 carried `total` in euros as a float."""
    return {"cart_id": payload["cart_id"], "total_cents": round(payload.pop("total") * 100)}


def test_global_upcaster_decorator_is_used_by_default() -> None:
    decoder = PayloadDecoder.for_annotation(CartCheckedOut)  # default chain: the global one

    old = v(1, b'{"cart_id": "c-1", "total": 12.34}', type="test.upcasting.cart.checked-out")

    event = decoder.decode(old)

    assert event == CartCheckedOut(cart_id="c-1", total_cents=1234)


def test_global_upcaster_decorator_returns_the_function() -> None:
    assert total_in_cents({"cart_id": "c", "total": 1.0}) == {"cart_id": "c", "total_cents": 100}


def test_a_private_chain_ignores_global_upcasters() -> None:
    decoder = PayloadDecoder([CartCheckedOut], upcast=Upcasters())

    with pytest.raises(DecodeError, match="no upcaster") as info:
        decoder.decode(v(1, b'{"cart_id": "c-1", "total": 1}', type="test.upcasting.cart.checked-out"))
    assert info.value.kind == "version"
