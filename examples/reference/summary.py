"""What the demo prints: one progress bar over the whole workload while it
runs, then per service its topics, herald's counts and its own figures, and
at the end whether everything agrees."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from .parts import CLUSTER_MARK, Part, Progress, Stats, Summary

COUNTS = ("handled", "retried", "dead_lettered", "skipped")


class GroupInfo(Protocol):
    group: str
    committed: int
    lag: int


class TopicInfo(Protocol):
    """What `app.admin().topics()` lists (herald does not export the class by name)."""

    name: str
    messages: int

    @property
    def groups(self) -> Sequence[GroupInfo]: ...


class WorkloadProgress:
    """One bar for every part's workload: the sum of what each reported so far."""

    def __init__(self, console: Console, names: Sequence[str]) -> None:
        self.figures = {name: (0, 0) for name in names}
        self.bar = RichProgress(TextColumn("[bold]workload[/bold]"), BarColumn(bar_width=24),
                                MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"),
                                console=console, transient=False)
        self.task = self.bar.add_task("", total=None)

    def __enter__(self) -> WorkloadProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.bar.__exit__(kind, exc, tb)

    def callback(self, name: str) -> Progress:
        def report(done: int, total: int) -> None:
            self.figures[name] = (done, max(total, done))
            self._show()

        return report

    def _show(self) -> None:
        done = sum(d for d, _ in self.figures.values())
        total = sum(t for _, t in self.figures.values())
        parts = "  ".join(f"{name} {d}/{t}" if t else f"{name} -" for name, (d, t) in self.figures.items())
        self.bar.update(self.task, completed=done, total=total or None, description=parts)


def topic_table(topics: Sequence[TopicInfo]) -> Table:
    table = Table(title="events per topic", title_justify="left")
    for column, justify in (("topic", "left"), ("records", "right"), ("group", "left"),
                            ("handled", "right"), ("lag", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for topic in topics:
        if not topic.groups:
            table.add_row(topic.name, str(topic.messages), "-", "-", "-")
        for n, group in enumerate(topic.groups):
            table.add_row(topic.name if n == 0 else "", str(topic.messages) if n == 0 else "",
                          group.group, str(group.committed), str(group.lag))
    return table


def stats_table(stats: Stats) -> Table:
    table = Table(title="herald's counts per subscriber", title_justify="left")
    table.add_column("app")
    table.add_column("group")
    table.add_column("topic")
    table.add_column("cluster")
    for name in COUNTS:
        table.add_column(name.replace("_", "-"), justify="right")
    for app, subscribers in stats.items():
        for n, (subscriber, counts) in enumerate(subscribers.items()):
            name, _, cluster = subscriber.partition(CLUSTER_MARK)
            group, topic, *_ = [*name.split(":"), "", ""]  # group:topic:handler
            table.add_row(app if n == 0 else "", group, topic, cluster or "default",
                          *(str(counts.get(name, 0)) for name in COUNTS))
    return table


def topics_of(part: Part, topics: Sequence[TopicInfo]) -> list[TopicInfo]:
    """The part's topics and their retry- and fail- companions, in that order."""
    names = [f"{prefix}{topic}" for topic in part.topics for prefix in ("", "retry-", "fail-")]
    by_name = {topic.name: topic for topic in topics}
    return [by_name[name] for name in names if name in by_name]


def render_part(console: Console, part: Part, summary: Summary, topics: Sequence[TopicInfo]) -> None:
    console.rule(f"[bold]{part.name}[/bold]: " + ", ".join(part.services))
    mine = topics_of(part, topics)
    if mine:
        console.print(topic_table(mine))
    if part.stats:
        console.print(stats_table(part.stats))
    for table in summary.tables:
        console.print(table)
    for line in summary.lines:
        console.print(line, highlight=False, markup=False)


def render_others(console: Console, parts: Sequence[Part], topics: Sequence[TopicInfo]) -> None:
    """Topics on the broker no part claims (earlier runs, other programs)."""
    claimed = {topic.name for part in parts for topic in topics_of(part, topics)}
    others = [topic for topic in topics if topic.name not in claimed]
    if others:
        console.rule("other topics on this broker")
        console.print(topic_table(others))


def render_verdict(console: Console, problems: Sequence[str], elapsed: float, services: int) -> None:
    console.rule()
    if problems:
        for problem in problems:
            console.print(f"[red]disagrees:[/red] {problem}", highlight=False)
        console.print(f"[red]{len(problems)} disagreement(s)[/red] after {elapsed:.1f} s")
    else:
        console.print(f"[green]all figures agree[/green]: {services} services, nothing lost, nothing "
                      f"counted twice ({elapsed:.1f} s)", highlight=False)
