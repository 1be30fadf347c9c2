"""Interactive events (seed 001, I1): reading an article publishes a read event."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from herald import Event

READ_TOPIC = "article_read_event"  # the seed's topic name
BIZ_ARTICLE = "article"

PositiveId = Annotated[int, Meta(gt=0, le=2**62)]


class ArticleRead(Event, type="article.read", version=1, subject="aid", aggregate="article"):
    """User `uid` read article `aid`. Ids must be positive: anything else is a
    schema error, which herald sends to the dead letters without retrying."""

    aid: PositiveId
    uid: PositiveId
