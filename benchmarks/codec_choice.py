"""Which JSON codec herald uses: decode + validate a 256-byte event payload
into a typed object, and encode it back, with each candidate.

python benchmarks/codec_choice.py     (also run by `benchmarks/run.py --cases codecs`)
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

N = 100_000


class AsStruct(msgspec.Struct, kw_only=True):
    order_id: str
    user_id: int
    amount: float
    note: str


@dataclasses.dataclass
class AsDataclass:
    order_id: str
    user_id: int
    amount: float
    note: str


def _payload() -> bytes:
    base = {"order_id": "order-12345", "user_id": 42, "amount": 19.99, "note": ""}
    base["note"] = "x" * (256 - len(json.dumps(base)))
    return json.dumps(base).encode()


def _candidates() -> dict[str, tuple[Callable[[bytes], Any], Callable[[Any], bytes]]]:
    struct_decoder = msgspec.json.Decoder(AsStruct)
    encoder = msgspec.json.Encoder()

    def orjson_dataclass(data: bytes) -> AsDataclass:
        raw = orjson.loads(data)
        if not isinstance(raw.get("user_id"), int):  # the least validation one would write
            raise ValueError("user_id")
        return AsDataclass(**raw)

    out: dict[str, tuple[Callable[[bytes], Any], Callable[[Any], bytes]]] = {
        "msgspec": (struct_decoder.decode, encoder.encode),
        "orjson+dataclass": (orjson_dataclass, orjson.dumps),
        "json+dataclass": (lambda d: AsDataclass(**json.loads(d)),
                           lambda o: json.dumps(dataclasses.asdict(o)).encode()),
    }
    try:
        import pydantic

        class AsModel(pydantic.BaseModel):
            order_id: str
            user_id: int
            amount: float
            note: str

        out["pydantic"] = (AsModel.model_validate_json, lambda m: m.model_dump_json().encode())
    except ImportError:  # the bench extra brings it; without it the row is left out
        pass
    return out


def measure(n: int = N) -> list[dict[str, Any]]:
    data = _payload()
    records = []
    for name, (decode, encode) in _candidates().items():
        obj = decode(data)
        for _ in range(1000):  # warm up
            encode(decode(data))
        start = time.perf_counter()
        for _ in range(n):
            obj = decode(data)
        decoded = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(n):
            encode(obj)
        encoded = time.perf_counter() - start
        records.append({
            "broker": "-", "system": name, "case": "codec-256B",
            "events_per_s": n / decoded, "encode_per_s": n / encoded,
            "decode_us": decoded / n * 1e6, "encode_us": encoded / n * 1e6,
        })
    return records


def main() -> None:
    records = measure()
    best = max(r["events_per_s"] for r in records)
    print(f"{'codec':<18} {'decode+validate/s':>18} {'us':>6} {'encode/s':>12} {'us':>6} {'vs best':>8}")
    for r in records:
        print(f"{r['system']:<18} {r['events_per_s']:>18,.0f} {r['decode_us']:>6.2f} "
              f"{r['encode_per_s']:>12,.0f} {r['encode_us']:>6.2f} {r['events_per_s'] / best:>7.2f}x")


if __name__ == "__main__":
    main()
