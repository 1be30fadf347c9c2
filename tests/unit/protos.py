"""Protobuf message classes built at test time, without protoc.

A `FileDescriptorProto` written by hand, added to a private descriptor pool,
and turned into a class by `message_factory`: the same class protoc's
generated `_pb2` module would give.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_Field = descriptor_pb2.FieldDescriptorProto


def user_sync_class() -> Any:
    """`package herald.test; message UserSync { int64 user_id = 1; string name = 2; }`"""
    proto = descriptor_pb2.FileDescriptorProto(
        name="herald_test_user_sync.proto", package="herald.test", syntax="proto3"
    )
    message = proto.message_type.add(name="UserSync")
    message.field.add(name="user_id", number=1, type=_Field.TYPE_INT64, label=_Field.LABEL_OPTIONAL)
    message.field.add(name="name", number=2, type=_Field.TYPE_STRING, label=_Field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("herald.test.UserSync"))


UserSync = user_sync_class()
