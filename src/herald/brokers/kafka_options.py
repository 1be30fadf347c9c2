"""URL and options of the Kafka broker (used by brokers/kafka.py; documented in
docs/brokers/kafka.md)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from herald.brokers import typed_options
from herald.errors import ConfigError

DEFAULT_PORT = 9092
LEGAL_NAME = re.compile(r"^[A-Za-z0-9._-]*$")
_COMPRESSION = ("none", "gzip", "snappy", "lz4", "zstd")
_PARTITIONERS = ("murmur2_random", "murmur2", "consistent_random", "consistent", "fnv1a_random",
                 "fnv1a", "random")
_OPTIONS: dict[str, type] = {
    "namespace": str, "partitions": int, "replication": int, "publish_timeout": float,
    "connect_timeout": float, "session_timeout": float, "heartbeat_interval": float,
    "commit_interval": float, "revoke_timeout": float, "join_timeout": float, "rejoin_timeout": float,
    "max_message_bytes": int, "compression": str, "linger_ms": float, "partitioner": str,
    "client_id": str, "keep_prefix": str, "security_protocol": str, "sasl_mechanism": str,
    "ssl_ca_location": str,
}


def parse_url(url: str) -> tuple[list[str], dict[str, Any]]:
    """(bootstrap servers, options) of `kafka://[user:password@]host[:port][,host:port...]?...`."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    servers = []
    for host in hosts.split(","):
        host = host.strip()
        if not host:
            continue
        if host.startswith("["):  # [::1]:9092
            name, _, port = host[1:].partition("]")
            port = port.removeprefix(":")
            name = f"[{name}]"
        else:
            name, _, port = host.rpartition(":") if ":" in host else (host, "", "")
        if port and not port.isdigit():
            raise ConfigError(f"bad port {port!r} in {url!r}: expected kafka://host:9092")
        servers.append(f"{name}:{port or DEFAULT_PORT}")
    if not servers:
        raise ConfigError(f"no host in {url!r}: expected kafka://host:9092[,host2:9092]")
    options = typed_options(dict(parse_qsl(parts.query, keep_blank_values=True)), _OPTIONS, url)
    if userinfo:
        user, _, password = userinfo.partition(":")
        options["sasl_username"] = unquote(user)
        options["sasl_password"] = unquote(password)
    return servers, options


def check(
    *, namespace: str, partitions: int, replication: int, publish_timeout: float,
    connect_timeout: float, session_timeout: float, heartbeat_interval: float,
    commit_interval: float, revoke_timeout: float, join_timeout: float, max_message_bytes: int,
    compression: str, linger_ms: float, partitioner: str, rejoin_timeout: float | None = None,
) -> None:
    """A ConfigError naming every problem at once, so one fix round is enough."""
    problems = []
    if not LEGAL_NAME.match(namespace) or len(namespace) > 100:
        problems.append(f"namespace may hold only letters, digits, '.', '_' and '-', got {namespace!r}")
    if not 1 <= partitions <= 1024:
        problems.append(f"partitions must be 1..1024, got {partitions}")
    if replication == 0 or replication < -1:
        problems.append(f"replication must be >= 1 (or -1: the broker's default), got {replication}")
    for label, value in (("publish_timeout", publish_timeout), ("connect_timeout", connect_timeout),
                         ("commit_interval", commit_interval), ("join_timeout", join_timeout)):
        if not value > 0:
            problems.append(f"{label} must be > 0 seconds, got {value}")
    if session_timeout < 1 or heartbeat_interval <= 0 or heartbeat_interval * 3 > session_timeout:
        problems.append("session_timeout must be >= 1 s and at least 3x heartbeat_interval")
    if rejoin_timeout is not None and not rejoin_timeout > 0:
        problems.append(f"rejoin_timeout must be > 0 seconds, got {rejoin_timeout}")
    if revoke_timeout < 0:
        problems.append(f"revoke_timeout must be >= 0, got {revoke_timeout}")
    if max_message_bytes < 1024:
        problems.append(f"max_message_bytes must be >= 1024, got {max_message_bytes}")
    if compression not in _COMPRESSION:
        problems.append(f"compression must be one of {', '.join(_COMPRESSION)}, got {compression!r}")
    if partitioner not in _PARTITIONERS:
        problems.append(f"partitioner must be one of {', '.join(_PARTITIONERS)}, got {partitioner!r}")
    if linger_ms < 0:
        problems.append(f"linger_ms must be >= 0, got {linger_ms}")
    if problems:
        raise ConfigError("kafka broker: " + "; ".join(problems))
