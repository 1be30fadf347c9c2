"""How a failing handler is tried again, and where a message goes after that.

Three steps, as in freedom's Kafka proxy (seed 004), never dropping anything:
1. in-process attempts with exponential backoff and jitter (the key waits);
2. delayed retry stages through `<retry_prefix><topic>` (later messages of
   the key go on meanwhile);
3. the dead-letter topic `<dead_letter_prefix><topic>` with the reason.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from herald.errors import ConfigError

# Headers herald sets on messages it moves. Values are strings.
RETRY_COUNT = "x-retry-count"  # freedom's name: stage number, 0 on first delivery
RETRY_GROUP = "herald-retry-group"
ORIGINAL_TOPIC = "herald-original-topic"
ORIGINAL_PARTITION = "herald-original-partition"
ORIGINAL_OFFSET = "herald-original-offset"
FIRST_FAILURE = "herald-first-failure"
LAST_FAILURE = "herald-last-failure"
ERROR_TYPE = "herald-error-type"
ERROR_MESSAGE = "herald-error-message"
ATTEMPTS = "herald-attempts"
REASON = "herald-reason"  # handler-error, or the poison kind: not-an-event, schema, ...
GROUP = "herald-group"
RETRY_TOPIC = "herald-retry-topic"  # where a replay goes back to the failing group

INTERNAL_HEADERS = frozenset({
    RETRY_COUNT, RETRY_GROUP, ORIGINAL_TOPIC, ORIGINAL_PARTITION, ORIGINAL_OFFSET,
    FIRST_FAILURE, LAST_FAILURE, ERROR_TYPE, ERROR_MESSAGE, ATTEMPTS, REASON, GROUP, RETRY_TOPIC,
})


def header_count(value: str | None) -> int:
    """A count from a header herald wrote earlier; anything else counts as 0."""
    try:
        return max(int(value or "0"), 0)
    except ValueError:  # also "²", which str.isdigit() accepts and int() does not
        return 0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`attempts` in-process tries (backoff between), then `stages` delayed
    redeliveries `stage_delay` seconds apart, then the dead-letter topic.

    `stages=0` turns the stages off: after the attempts, a dead letter. Key
    order then holds strictly, since nothing is set aside for later.
    """

    attempts: int = 3
    backoff: float = 0.05
    max_backoff: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.2
    stages: int = 3
    stage_delay: float = 5.0
    retry_prefix: str = "retry-"
    dead_letter_prefix: str = "fail-"

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError("RetryPolicy: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Every problem at once, so one fix round is enough."""
        out = []
        if self.attempts < 1:
            out.append(f"attempts must be >= 1, got {self.attempts}")
        if self.backoff < 0 or self.max_backoff < 0:
            out.append("backoff and max_backoff must be >= 0")
        if self.multiplier < 1:
            out.append(f"multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            out.append(f"jitter must be between 0 and 1, got {self.jitter}")
        if self.stages < 0:
            out.append(f"stages must be >= 0, got {self.stages}")
        if self.stage_delay < 0:
            out.append(f"stage_delay must be >= 0, got {self.stage_delay}")
        if not self.retry_prefix or not self.dead_letter_prefix:
            out.append("retry_prefix and dead_letter_prefix must not be empty")
        elif self.retry_prefix == self.dead_letter_prefix:
            out.append("retry_prefix and dead_letter_prefix must differ")
        return out

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before in-process attempt `attempt` (2, 3, ...)."""
        base = min(self.backoff * self.multiplier ** max(attempt - 2, 0), self.max_backoff)
        return base * (1 + random.uniform(-self.jitter, self.jitter))

    def retry_topic(self, topic: str) -> str:
        return self.retry_prefix + topic

    def dead_letter_topic(self, topic: str) -> str:
        return self.dead_letter_prefix + topic


NO_RETRY = RetryPolicy(attempts=1, stages=0)
