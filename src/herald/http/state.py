"""What every endpoint of one gateway shares: the App, the tokens, the store, the limits."""

from __future__ import annotations

from dataclasses import dataclass

from herald.app import App
from herald.deadletters import DeadLetters
from herald.errors import HeraldError
from herald.http.auth import Tokens
from herald.http.errors import HttpError
from herald.store.base import EventStore


@dataclass(slots=True)
class GatewayState:
    app: App
    tokens: Tokens
    store: EventStore | None
    max_body: int
    max_batch: int

    def policies_prefixes(self) -> tuple[set[str], set[str]]:
        """(retry prefixes, dead-letter prefixes) of the App and of every subscriber."""
        policies = [self.app.retry, *(sub.retry for sub in self.app.subscribers)]
        return {p.retry_prefix for p in policies}, {p.dead_letter_prefix for p in policies}

    def reserved_prefixes(self) -> set[str]:
        retry, dead = self.policies_prefixes()
        return retry | dead

    def dead_letters(self) -> DeadLetters:
        try:
            return DeadLetters(self.app.broker, self.app.retry)
        except HeraldError as exc:
            raise HttpError(501, "not-supported", str(exc)) from None
