#!/usr/bin/env python
"""Turn a `benchmarks/run.py --json FILE` into a chart and a Markdown table.

    python benchmarks/plot.py benchmarks/results/latest.json --png docs/benchmarks-brokers.png

The chart shows events/s per broker, one bar per system (herald, the raw
client, FastStream), on a log scale so a 10x gap and a 1.2x gap both read.
The table (printed to stdout) has the same figures with herald's ratio to
each other system measured in the same run.

When the file holds event-store records (`--cases store-sqlite,store-postgres`),
a second chart and table show them: events/s per store and case (append-1,
append-10, read_stream, read_all), one bar per system (herald, the raw
floor, the raw floor behind a thread hop, eventsourcing). `--store-png`
names its file (default: beside `--png`, with `-store` added to the name).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

SYSTEMS = ("herald", "raw", "raw-ce", "faststream")  # raw-ce: Kafka's raw client with CloudEvents headers
COLOURS = {"herald": "#2b6cb0", "raw": "#718096", "raw-ce": "#a0aec0", "faststream": "#dd6b20"}


def load(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """broker -> system -> record, for the records of a broker run (throughput cases)."""
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: cannot read {path}: {exc}") from exc
    if not isinstance(records, list):
        raise SystemExit(f"error: {path} is not a list of benchmark records")
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for record in records:
        if not isinstance(record, dict) or record.get("system") not in SYSTEMS or "store" in record:
            continue
        if record.get("case") != "throughput":  # not steady, not sqlite-dedup (context, no raw)
            continue
        table.setdefault(str(record["broker"]), {})[record["system"]] = record
    return {broker: systems for broker, systems in table.items() if "herald" in systems}


def markdown(table: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "| broker | system | events/s | p50 ms | p99 ms | herald vs it |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for broker, systems in table.items():
        herald = systems["herald"]["events_per_s"]
        for system in SYSTEMS:
            record = systems.get(system)
            if record is None:
                continue
            ratio = "" if system == "herald" else f"{herald / record['events_per_s']:.2f}x"
            lines.append(
                f"| {broker} | {system} | {record['events_per_s']:,.0f} | {record['p50_ms']:.1f} "
                f"| {record['p99_ms']:.1f} | {ratio} |"
            )
    return "\n".join(lines)


def chart(table: dict[str, dict[str, dict[str, Any]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    brokers = list(table)
    width = 0.8 / len(SYSTEMS)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(brokers)), 4.0), dpi=120)
    for n, system in enumerate(SYSTEMS):
        xs = [i + (n - (len(SYSTEMS) - 1) / 2) * width for i, b in enumerate(brokers) if system in table[b]]
        ys = [table[b][system]["events_per_s"] for b in brokers if system in table[b]]
        if xs:
            ax.bar(xs, ys, width, label=system, color=COLOURS[system])
    ax.set_yscale("log")
    ax.set_xticks(range(len(brokers)), brokers)
    ax.set_ylabel("events/s, publish to handled (log scale)")
    ax.set_title("herald beside the raw client and FastStream, 256-byte events, acks on")
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


STORE_SYSTEMS = ("herald", "raw", "raw-thread", "eventsourcing")
STORE_COLOURS = {"herald": "#2b6cb0", "raw": "#718096", "raw-thread": "#a0aec0",
                 "eventsourcing": "#38a169"}
STORE_CASES = ("append-1", "append-10", "read_stream", "read_all")


def load_stores(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """"store case" -> system -> record, for the event-store records."""
    records = json.loads(path.read_text())  # load() has checked it reads
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for record in records if isinstance(records, list) else []:
        if isinstance(record, dict) and "store" in record and record.get("system") in STORE_SYSTEMS:
            table.setdefault(f"{record['store']} {record['case']}", {})[record["system"]] = record
    order = {case: n for n, case in enumerate(STORE_CASES)}
    keys = sorted(table, key=lambda k: (k.split()[0], order.get(k.split()[1], 99)))
    return {k: table[k] for k in keys if "herald" in table[k]}


def store_markdown(table: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "| store | case | system | events/s | p50 ms | p99 ms | herald vs it |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for key, systems in table.items():
        store, case = key.split()
        herald = systems["herald"]
        for system in STORE_SYSTEMS:
            record = systems.get(system)
            if record is None:
                continue
            # the run's own ratio (median over repeats) where run.py recorded it
            ratio = herald.get(f"vs_{system}", herald["events_per_s"] / record["events_per_s"])
            shown = "" if system == "herald" else f"{ratio:.2f}x"
            lines.append(
                f"| {store} | {case} | {system} | {record['events_per_s']:,.0f} | "
                f"{record['p50_ms']:.3f} | {record['p99_ms']:.3f} | {shown} |"
            )
    return "\n".join(lines)


def store_chart(table: dict[str, dict[str, dict[str, Any]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(table)
    present = [s for s in STORE_SYSTEMS if any(s in table[k] for k in keys)]
    width = 0.8 / len(present)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(keys)), 4.2), dpi=120)
    for n, system in enumerate(present):
        offset = (n - (len(present) - 1) / 2) * width
        xs = [i + offset for i, k in enumerate(keys) if system in table[k]]
        ys = [table[k][system]["events_per_s"] for k in keys if system in table[k]]
        ax.bar(xs, ys, width, label=system, color=STORE_COLOURS[system])
    ax.set_yscale("log")
    ax.set_xticks(range(len(keys)), [k.replace(" ", "\n") for k in keys])
    ax.set_ylabel("events/s (log scale)")
    ax.set_title("herald's event store beside a raw floor and eventsourcing, 256-byte events")
    ax.legend(fontsize="small")
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", type=Path, help="a file written by benchmarks/run.py --json")
    parser.add_argument("--png", type=Path, help="write the chart here")
    parser.add_argument("--store-png", type=Path, help="write the event-store chart here")
    args = parser.parse_args(argv)
    table = load(args.results)
    stores = load_stores(args.results)
    if not table and not stores:
        print(f"error: {args.results} has no broker or store records; run benchmarks/run.py with "
              "broker or store cases", file=sys.stderr)
        return 1
    if table:
        print(markdown(table))
        if args.png:
            chart(table, args.png)
            print(f"wrote {args.png}")
    if stores:
        if table:
            print()
        print(store_markdown(stores))
        store_png = args.store_png or (
            args.png.with_name(f"{args.png.stem}-store{args.png.suffix}") if args.png else None
        )
        if store_png:
            store_chart(stores, store_png)
            print(f"wrote {store_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
