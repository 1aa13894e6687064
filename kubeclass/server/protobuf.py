"""Protobuf request bodies (`application/vnd.kubernetes.protobuf`), which kubectl >= 1.32 sends for
`kubectl create <generator>` and `kubectl auth can-i`."""
from __future__ import annotations


class ProtobufError(ValueError):
    pass


def decode(body: bytes) -> dict:
    raise ProtobufError("protobuf bodies are not supported yet")
