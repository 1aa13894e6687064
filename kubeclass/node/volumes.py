"""ConfigMaps, Secrets and the downward API as a kubelet serves them to containers: environment variables
(`env[].valueFrom.configMapKeyRef / secretKeyRef`, `envFrom`) and volumes (`configMap`, `secret`,
`downwardAPI`, `projected`).

Volume files are written the way kubelet's AtomicWriter lays them out, so applications that watch for
changes see one consistent switch: the payload goes into a fresh timestamped directory, `..data` is a
symlink to it (renamed into place atomically) and every top-level name is a symlink through `..data`.
Secret volumes live on a tmpfs, so secret data never reaches the node's disk. Errors carry kubelet's
texts (`configmap "x" not found`, `couldn't find key k in Secret ns/x`, ...)."""
from __future__ import annotations

import base64
import datetime
import os
import shutil
import subprocess
import time

from ..client import ApiError, Client, path_for

KINDS = {"configMap": "configmaps", "secret": "secrets"}
SINGULAR = {"configmaps": "configmap", "secrets": "secret"}


class SourceError(Exception):
    """A referenced ConfigMap / Secret / key is missing; str() is kubelet's message."""


class TokenCache:
    """Service account tokens of the node's Pods (projected `serviceAccountToken` sources), requested through
    TokenRequest bound to the Pod and asked again, as kubelet does, once 80 % of the requested lifetime has
    passed or the token is a day old."""

    def __init__(self):
        self._tokens: dict[tuple, tuple[str, float, int]] = {}

    async def get(self, client: Client, pod: dict, src: dict) -> str:
        md, spec = pod["metadata"], pod.get("spec") or {}
        sa = spec.get("serviceAccountName") or "default"
        seconds = int(src.get("expirationSeconds") or 3600)
        audiences = [src["audience"]] if src.get("audience") else []
        key = (md.get("uid"), sa, tuple(audiences), seconds)
        now = time.monotonic()
        cur = self._tokens.get(key)
        if cur is not None and now - cur[1] < min(0.8 * cur[2], 24 * 3600):
            return cur[0]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": audiences or None, "expirationSeconds": seconds,
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": md["name"], "uid": md.get("uid")}}}
        try:
            tr = await client.create(path_for("", "v1", "serviceaccounts", md.get("namespace"), sa) + "/token", body)
        except ApiError as e:
            raise SourceError(f'failed to fetch token: {e.body.get("message", e)}') from e
        token = (tr.get("status") or {}).get("token") or ""
        self._tokens[key] = (token, now, seconds)
        return token

    def forget(self, uid: str) -> None:
        for k in [k for k in self._tokens if k[0] == uid]:
            del self._tokens[k]


class Sources:
    """The ConfigMaps and Secrets of one namespace, each fetched once per Sources object."""

    def __init__(self, client: Client, namespace: str, tokens: TokenCache | None = None):
        self.client, self.namespace = client, namespace
        self.tokens = tokens or TokenCache()
        self._cache: dict[tuple[str, str], dict | None] = {}

    async def get(self, plural: str, name: str) -> dict | None:
        key = (plural, name)
        if key not in self._cache:
            try:
                self._cache[key] = await self.client.get(path_for("", "v1", plural, self.namespace, name))
            except ApiError as e:
                if e.status != 404:
                    raise
                self._cache[key] = None
        return self._cache[key]

    async def require(self, plural: str, name: str, optional: bool) -> dict | None:
        obj = await self.get(plural, name)
        if obj is None and not optional:
            raise SourceError(f'{SINGULAR[plural]} "{name}" not found')
        return obj


def payload(obj: dict, plural: str) -> dict[str, bytes]:
    """Key -> bytes of a ConfigMap (data + binaryData) or Secret (data)."""
    out: dict[str, bytes] = {}
    if plural == "configmaps":
        for k, v in (obj.get("data") or {}).items():
            out[k] = str(v).encode()
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = base64.b64decode(v)
    else:
        for k, v in (obj.get("data") or {}).items():
            out[k] = base64.b64decode(v)
    return out


# ------------------------------------------------------------------ environment

async def env_values(sources: Sources, container: dict) -> dict[tuple[str, str, str], str | None]:
    """Everything the container's env / envFrom takes from ConfigMaps and Secrets, resolved up front:
    (plural, name, key) -> value (None for an optional miss); ("envFrom", i, "") -> the prefixed map."""
    out: dict = {}
    for i, ef in enumerate(container.get("envFrom") or []):
        for field, plural in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
            ref = ef.get(field)
            if ref is None:
                continue
            obj = await sources.require(plural, ref.get("name", ""), bool(ref.get("optional")))
            prefix = ef.get("prefix", "")
            out[("envFrom", str(i), "")] = {prefix + k: v.decode("utf-8", "replace")
                                            for k, v in (payload(obj, plural) if obj else {}).items()}
    for e in container.get("env") or []:
        vf = e.get("valueFrom") or {}
        for field, plural, kind in (("configMapKeyRef", "configmaps", "ConfigMap"), ("secretKeyRef", "secrets", "Secret")):
            ref = vf.get(field)
            if ref is None:
                continue
            name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
            obj = await sources.require(plural, name, optional)
            value = payload(obj, plural).get(key) if obj else None
            if value is None and not optional:
                raise SourceError(f"couldn't find key {key} in {kind} {sources.namespace}/{name}")
            out[(plural, name, key)] = None if value is None else value.decode("utf-8", "replace")
    return out


# ------------------------------------------------------------------ volumes

def is_projected_kind(volume: dict) -> bool:
    return any(k in volume for k in ("configMap", "secret", "downwardAPI", "projected"))


async def volume_files(sources: Sources, volume: dict, pod: dict, field_value) -> dict[str, tuple[bytes, int]]:
    """relative path -> (content, mode) for one configMap / secret / downwardAPI / projected volume."""
    files: dict[str, tuple[bytes, int]] = {}
    if "projected" in volume:
        default = volume["projected"].get("defaultMode", 0o644)
        for src in volume["projected"].get("sources") or []:
            for kind in ("configMap", "secret"):
                if kind in src:
                    files.update(await _object_files(sources, KINDS[kind], src[kind], default))
            if "downwardAPI" in src:
                files.update(_downward_files(src["downwardAPI"].get("items") or [], default, field_value))
            if "serviceAccountToken" in src:
                tok = src["serviceAccountToken"]
                files[tok.get("path") or "token"] = ((await sources.tokens.get(sources.client, pod, tok)).encode(),
                                                     tok.get("mode", default) if isinstance(tok.get("mode"), int) else default)
        return files
    for kind in ("configMap", "secret"):
        if kind in volume:
            v = volume[kind]
            default = v.get("defaultMode", 0o644)
            ref = dict(v, name=v.get("name") if kind == "configMap" else v.get("secretName"))
            return await _object_files(sources, KINDS[kind], ref, default)
    if "downwardAPI" in volume:
        v = volume["downwardAPI"]
        return _downward_files(v.get("items") or [], v.get("defaultMode", 0o644), field_value)
    return files


async def _object_files(sources: Sources, plural: str, ref: dict, default: int) -> dict[str, tuple[bytes, int]]:
    optional = bool(ref.get("optional"))
    obj = await sources.require(plural, ref.get("name", ""), optional)
    if obj is None:
        return {}
    data = payload(obj, plural)
    items = ref.get("items")
    if not items:
        return {k: (v, default) for k, v in data.items()}
    out = {}
    for it in items:
        key = it.get("key", "")
        if key not in data:
            if optional:
                continue
            what = "configmap references non-existent config key" if plural == "configmaps" \
                else "references non-existent secret key"
            raise SourceError(f"{what}: {key}")
        out[it.get("path") or key] = (data[key], it.get("mode", default))
    return out


def _downward_files(items: list[dict], default: int, field_value) -> dict[str, tuple[bytes, int]]:
    out = {}
    for it in items:
        if "fieldRef" in it:
            value = field_value(it["fieldRef"].get("fieldPath", ""))
        elif "resourceFieldRef" in it:
            value = field_value("resource:" + it["resourceFieldRef"].get("resource", ""), it["resourceFieldRef"])
        else:
            continue
        out[it.get("path", "")] = (value.encode(), it.get("mode", default))
    return out


def write_atomic(target: str, files: dict[str, tuple[bytes, int]], tmpfs: bool = False) -> bool:
    """Write a volume's payload into `target` as AtomicWriter does; returns True when it changed."""
    os.makedirs(target, exist_ok=True)
    if tmpfs and not os.path.ismount(target):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", target], capture_output=True)
    data_link = os.path.join(target, "..data")
    current = os.path.join(target, os.readlink(data_link)) if os.path.islink(data_link) else None
    if current and _same(current, files):
        return False
    for rel in files:
        _inside(target, rel)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    fresh = os.path.join(target, stamp)
    os.makedirs(fresh)
    for rel, (content, mode) in files.items():
        path = _inside(fresh, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
        os.chmod(path, mode & 0o7777)
    os.chmod(fresh, 0o755)
    tmp_link = os.path.join(target, "..data_tmp")
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.symlink(stamp, tmp_link)
    os.rename(tmp_link, data_link)
    tops = {rel.split("/", 1)[0] for rel in files}
    for name in os.listdir(target):
        if name.startswith(".."):
            continue
        if name not in tops:
            p = os.path.join(target, name)
            os.unlink(p) if os.path.islink(p) else shutil.rmtree(p, ignore_errors=True)
    for top in tops:
        link = os.path.join(target, top)
        if not os.path.islink(link):
            os.symlink(os.path.join("..data", top), link)
    if current and os.path.isdir(current):
        shutil.rmtree(current, ignore_errors=True)
    return True


def _inside(base: str, rel: str) -> str:
    path = os.path.normpath(os.path.join(base, rel))
    if not path.startswith(base + os.sep) or ".." in rel.split("/"):
        raise SourceError(f"invalid path {rel!r}")
    return path


def _same(current: str, files: dict[str, tuple[bytes, int]]) -> bool:
    have = {}
    for root, _, names in os.walk(current):
        for n in names:
            p = os.path.join(root, n)
            have[os.path.relpath(p, current)] = p
    if set(have) != set(files):
        return False
    for rel, (content, mode) in files.items():
        st = os.stat(have[rel])
        if st.st_mode & 0o7777 != mode & 0o7777:
            return False
        with open(have[rel], "rb") as f:
            if f.read() != content:
                return False
    return True


def unmount_all(pod_dir: str) -> None:
    base = os.path.join(pod_dir, "volumes")
    if not os.path.isdir(base):
        return
    for name in os.listdir(base):
        p = os.path.join(base, name)
        if os.path.ismount(p):
            subprocess.run(["umount", "-l", p], capture_output=True)
