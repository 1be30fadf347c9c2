"""Job events (seed 003, J2): each carries a message id for idempotency.

`UserSyncReq` is Protobuf, as in the seed (`userMqPb.UserSyncReq`); the class
is built here from a hand-written descriptor, the same class protoc's
generated `_pb2` module would give, so the example needs no protoc step.
`OrderNotified` is a JSON event, to show both codecs side by side.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from herald import Event

USER_TOPIC = "user_topic"  # the seed's topic names
ORDER_TOPIC = "order_topic"
DELAYED_ACTION = "resync-delayed"  # the action of the delayed user sync

_F = descriptor_pb2.FieldDescriptorProto


def _user_sync_class() -> Any:
    """`package herald.jobs; message UserSyncReq { int64 user_id = 1; string action = 2;
    string message_id = 3; int64 seq = 4; }`"""
    proto = descriptor_pb2.FileDescriptorProto(
        name="herald_jobs_user_event.proto", package="herald.jobs", syntax="proto3"
    )
    message = proto.message_type.add(name="UserSyncReq")
    for number, (name, kind) in enumerate(
        (("user_id", _F.TYPE_INT64), ("action", _F.TYPE_STRING),
         ("message_id", _F.TYPE_STRING), ("seq", _F.TYPE_INT64)), start=1
    ):
        message.field.add(name=name, number=number, type=kind, label=_F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("herald.jobs.UserSyncReq"))


UserSyncReq = _user_sync_class()
"""A user to synchronise. `seq` grows per user, so a consumer can see that
one user's events arrive in order (they share a key)."""


class OrderNotified(Event, type="jobs.order_notified", version=1, subject="order_id", aggregate="order"):
    """Tell user `user_id` about order `order_id`."""

    order_id: int
    user_id: int
    message: str
    message_id: str
