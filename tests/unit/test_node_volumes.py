"""AtomicWriter layout of API-backed volumes, payload decoding, env resolution errors (kubelet's texts)."""
from __future__ import annotations

import asyncio
import base64
import os

import pytest

from kubeclass.node import bundle, volumes


def test_atomic_layout_and_swap(tmp_path):
    t = str(tmp_path / "vol")
    assert volumes.write_atomic(t, {"a": (b"1", 0o644), "dir/b": (b"2", 0o400)})
    names = sorted(os.listdir(t))
    assert "..data" in names and "a" in names and "dir" in names
    assert os.readlink(os.path.join(t, "a")) == "..data/a"
    assert open(os.path.join(t, "dir", "b"), "rb").read() == b"2"
    assert oct(os.stat(os.path.join(t, "dir", "b")).st_mode & 0o777) == "0o400"
    first = os.readlink(os.path.join(t, "..data"))
    assert not volumes.write_atomic(t, {"a": (b"1", 0o644), "dir/b": (b"2", 0o400)})   # unchanged: no swap
    assert volumes.write_atomic(t, {"a": (b"changed", 0o644)})
    assert os.readlink(os.path.join(t, "..data")) != first
    assert not os.path.exists(os.path.join(t, first))            # the old payload is gone
    assert not os.path.lexists(os.path.join(t, "dir"))           # and so is its top-level link
    assert open(os.path.join(t, "a")).read() == "changed"


def test_paths_may_not_escape(tmp_path):
    with pytest.raises(volumes.SourceError):
        volumes.write_atomic(str(tmp_path / "v"), {"../x": (b"", 0o644)})


class FakeSources(volumes.Sources):
    def __init__(self, objs):
        self.namespace = "ns1"
        self._cache = objs


def test_env_values_and_kubelet_messages():
    cm = {"data": {"a": "1"}, "binaryData": {"b": base64.b64encode(b"2").decode()}}
    src = FakeSources({("configmaps", "cm"): cm, ("secrets", "gone"): None})
    c = {"envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "P_"}],
         "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a"}}},
                 {"name": "O", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": True}}}]}
    refs = asyncio.run(volumes.env_values(src, c))
    env = bundle.environment({"metadata": {"name": "p"}}, c, {}, "n", "1.2.3.4", refs)
    assert env["P_a"] == "1" and env["P_b"] == "2" and env["A"] == "1" and "O" not in env
    bad = {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "zz"}}}]}
    with pytest.raises(volumes.SourceError, match="^couldn't find key zz in ConfigMap ns1/cm$"):
        asyncio.run(volumes.env_values(src, bad))
    bad = {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]}
    with pytest.raises(volumes.SourceError, match='^secret "gone" not found$'):
        asyncio.run(volumes.env_values(src, bad))


def test_volume_items_and_missing_keys():
    src = FakeSources({("configmaps", "cm"): {"data": {"a": "1"}}})
    files = asyncio.run(volumes.volume_files(src, {"configMap": {"name": "cm", "items": [{"key": "a", "path": "x/y", "mode": 0o600}]}}, {}, None))
    assert files == {"x/y": (b"1", 0o600)}
    with pytest.raises(volumes.SourceError, match="^configmap references non-existent config key: b$"):
        asyncio.run(volumes.volume_files(src, {"configMap": {"name": "cm", "items": [{"key": "b", "path": "b"}]}}, {}, None))
    assert asyncio.run(volumes.volume_files(src, {"configMap": {"name": "cm", "optional": True, "items": [{"key": "b", "path": "b"}]}}, {}, None)) == {}


def test_downward_labels_format():
    pod = {"metadata": {"name": "p", "labels": {"b": "2", "a": 'q"x'}}}
    assert bundle.field_ref(pod, "metadata.labels", "n", "h") == 'a="q\\"x"\nb="2"'
