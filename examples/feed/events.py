"""The feed's typed events and topics (seed 000).

Two topics reach the feed service:

- `article_feed_event`: `ArticlePublished`, what the article service says
  when an author publishes (F7: a typed event with the author id and the
  article id as separate fields; the seed used the author id for both and
  could not decode its own payload);
- `feed_event`: `FeedEventCreated`, the seed's generic `FeedEvent` (a type
  and string extension fields, F1) that other services send for follows
  and likes (and articles, if they like).

An unknown type, or missing extension fields, fail while the payload is
decoded, so herald dead-letters the message at once with the reason (F2
FIX: `unknown-type` or `schema`) instead of retrying something that can
never succeed.
"""

from __future__ import annotations

from herald import Event, UnknownEventType

ARTICLE_TOPIC = "article_feed_event"
FEED_TOPIC = "feed_event"

ARTICLE = "article"
FOLLOW = "follow"
LIKE = "like"

# Extension fields each type needs, as integers (user and article ids).
REQUIRED_IDS: dict[str, tuple[str, ...]] = {
    ARTICLE: ("uid", "aid"),
    FOLLOW: ("follower", "followee"),
    LIKE: ("liker", "liked"),
}
FEED_TYPES = tuple(REQUIRED_IDS)


class FeedEventError(ValueError):
    """A feed event whose extension fields are wrong; it can never be handled.

    A ValueError, so msgspec reports it as a validation error while decoding
    and herald dead-letters the message with reason `schema`.
    """


class UnknownFeedEventType(UnknownEventType):
    """A feed event of a type no handler takes (F2 FIX: an error, not a fallback).

    herald's own UnknownEventType, so a message that carries one is dead-lettered
    at once with reason `unknown-type` (msgspec lets it through unchanged).
    """

    def __init__(self, event_type: object) -> None:
        super().__init__(
            f"unknown feed event type {event_type!r}; known types: {', '.join(REQUIRED_IDS)}"
        )
        self.event_type = event_type


BadFeedEvent = (FeedEventError, UnknownFeedEventType)


def check_feed_event(event_type: object, ext: object) -> None:
    """Raise UnknownFeedEventType or FeedEventError saying what is wrong; the same
    check for the broker and the API."""
    if not isinstance(event_type, str) or event_type not in REQUIRED_IDS:
        raise UnknownFeedEventType(event_type)
    if not isinstance(ext, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in ext.items()
    ):
        raise FeedEventError("ext must map strings to strings (the seed's ExtendFields)")
    problems = [name for name in REQUIRED_IDS[event_type] if not _is_id(ext.get(name))]
    if problems:
        raise FeedEventError(
            f"a {event_type} feed event needs positive integer ext field(s) {', '.join(problems)}"
        )
    if event_type == FOLLOW and int(ext["follower"]) == int(ext["followee"]):
        raise FeedEventError("a user cannot follow themselves")


def _is_id(value: str | None) -> bool:
    """A positive integer of at most 18 digits (fits a BIGINT), ASCII digits only."""
    return (value is not None and value.isascii() and value.isdigit() and 0 < len(value) <= 18
            and int(value) > 0)


class FeedEventCreated(Event, type="feed.event_created", version=1):
    """The seed's FeedEvent as it travels: `type` picks the handler, `ext` holds its fields.

    - article: uid (author), aid, title
    - follow: follower, followee (the followed user is notified)
    - like: liker, liked, biz, biz_id (the liked user is notified)
    """

    type: str
    ext: dict[str, str] = {}

    def __post_init__(self) -> None:
        # Raised while decoding, both errors are poison to herald: straight to
        # dead letters with their message, never retried.
        check_feed_event(self.type, self.ext)

    def id_field(self, name: str) -> int:
        return int(self.ext[name])


class ArticlePublished(Event, type="feed.article_published", version=1, subject="aid"):
    """An author published an article (topic `article_feed_event`)."""

    uid: int
    aid: int
    title: str = ""

    def __post_init__(self) -> None:
        if self.uid <= 0 or self.aid <= 0:
            raise FeedEventError(f"uid and aid must be positive, got uid={self.uid} aid={self.aid}")

    def as_feed_event(self) -> FeedEventCreated:
        return FeedEventCreated(
            type=ARTICLE, ext={"uid": str(self.uid), "aid": str(self.aid), "title": self.title}
        )
