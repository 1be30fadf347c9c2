#!/usr/bin/env python
"""Turn a `benchmarks/run.py --json FILE` into a chart and a Markdown table.

    python benchmarks/plot.py benchmarks/results/latest.json --png docs/benchmarks-brokers.png

The chart shows events/s per broker, one bar per system (herald, the raw
client, FastStream), on a log scale so a 10x gap and a 1.2x gap both read.
The table (printed to stdout) has the same figures with herald's ratio to
each other system measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

SYSTEMS = ("herald", "raw", "faststream")
COLOURS = {"herald": "#2b6cb0", "raw": "#718096", "faststream": "#dd6b20"}


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
        if not isinstance(record, dict) or record.get("system") not in SYSTEMS:
            continue
        if str(record.get("case", "")).startswith("steady"):
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
        xs = [i + (n - 1) * width for i, b in enumerate(brokers) if system in table[b]]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", type=Path, help="a file written by benchmarks/run.py --json")
    parser.add_argument("--png", type=Path, help="write the chart here")
    args = parser.parse_args(argv)
    table = load(args.results)
    if not table:
        print(f"error: {args.results} has no broker records; run benchmarks/run.py with broker cases",
              file=sys.stderr)
        return 1
    print(markdown(table))
    if args.png:
        chart(table, args.png)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
