"""Pulling images from an OCI registry over the distribution API (v2): the manifest (an index resolved to
this platform), the config and the layers, each verified against its digest into the node's image store.
Anonymous, basic, or bearer-token auth (the WWW-Authenticate challenge), with credentials from the Pod's
imagePullSecrets (kubernetes.io/dockerconfigjson). Registries on localhost / 127.0.0.1 are tried over
plain HTTP when HTTPS fails, as docker and containerd treat them."""
from __future__ import annotations

import asyncio
import base64
import json
import re

import aiohttp

from ..client import ApiError, Client, path_for
from .images import (INDEX_TYPES, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST, ImageError,
                     ImageStore, docker_auth, parse_reference, pick_platform)

ACCEPT = ", ".join((MT_OCI_INDEX, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST))
LOCAL = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$")


class Puller:
    def __init__(self, store: ImageStore, client: Client | None = None):
        self.store = store
        self.client = client
        self._locks: dict[str, asyncio.Lock] = {}

    async def credentials(self, pod: dict | None, host: str) -> tuple[str, str] | None:
        if pod is None or self.client is None:
            return None
        ns = pod["metadata"].get("namespace", "default")
        for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []:
            try:
                secret = await self.client.get(path_for("", "v1", "secrets", ns, ref.get("name", "")))
            except ApiError:
                continue
            data = (secret.get("data") or {}).get(".dockerconfigjson")
            if not data:
                continue
            try:
                found = docker_auth(json.loads(base64.b64decode(data)), host)
            except ValueError:
                continue
            if found:
                return found
        return None

    async def pull(self, image: str, pod: dict | None = None) -> tuple[str, int]:
        """(manifest digest, bytes fetched). Raises ImageError with the registry's reason."""
        ref = parse_reference(image)
        lock = self._locks.setdefault(ref.full, asyncio.Lock())
        async with lock:
            creds = await self.credentials(pod, ref.domain)
            host = "registry-1.docker.io" if ref.domain == "docker.io" else ref.domain
            schemes = ["https", "http"] if LOCAL.match(host) else ["https"]
            last: Exception | None = None
            for scheme in schemes:
                try:
                    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600, sock_connect=10)) as s:
                        return await _Session(s, f"{scheme}://{host}", ref.path, creds, self.store).fetch(ref, image)
                except aiohttp.ClientConnectorError as e:
                    last = e
                except aiohttp.ClientError as e:
                    if scheme == "https" and "http" in schemes:
                        last = e
                        continue
                    raise ImageError(f"{image}: {e}") from e
            raise ImageError(f"failed to do request: {last}")


class _Session:
    def __init__(self, s: aiohttp.ClientSession, base: str, repo: str, creds, store: ImageStore):
        self.s, self.base, self.repo, self.creds, self.store = s, base, repo, creds, store
        self.auth: str | None = None

    async def _get(self, path: str, accept: str | None = None) -> aiohttp.ClientResponse:
        headers = {"Accept": accept} if accept else {}
        for _ in range(2):
            if self.auth:
                headers["Authorization"] = self.auth
            r = await self.s.get(self.base + path, headers=headers)
            if r.status == 401 and self.auth is None:
                challenge = r.headers.get("WWW-Authenticate", "")
                r.release()
                self.auth = await self._authorize(challenge)
                continue
            return r
        return r

    async def _authorize(self, challenge: str) -> str:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not self.creds:
                raise ImageError("pull access denied: the registry requires credentials (imagePullSecrets)")
            return "Basic " + base64.b64encode(f"{self.creds[0]}:{self.creds[1]}".encode()).decode()
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.pop("realm", "")
        if not realm:
            raise ImageError(f"unsupported auth challenge: {challenge}")
        fields.setdefault("scope", f"repository:{self.repo}:pull")
        auth = aiohttp.BasicAuth(*self.creds) if self.creds else None
        async with self.s.get(realm, params=fields, auth=auth) as r:
            if r.status != 200:
                raise ImageError(f"pull access denied, repository does not exist or may require authorization: "
                                 f"token request failed: {r.status}")
            body = await r.json(content_type=None)
        return "Bearer " + (body.get("token") or body.get("access_token") or "")

    async def fetch(self, ref, image: str) -> tuple[str, int]:
        target = ref.digest or ref.tag
        r = await self._get(f"/v2/{self.repo}/manifests/{target}", ACCEPT)
        async with r:
            if r.status == 404:
                raise ImageError(f"{image}: not found")
            if r.status in (401, 403):
                raise ImageError("pull access denied, repository does not exist or may require authorization")
            if r.status != 200:
                raise ImageError(f"{image}: unexpected status from the registry: {r.status}")
            data = await r.read()
            mtype = r.headers.get("Content-Type", "").split(";")[0]
        doc = json.loads(data)
        digest = self.store.write_blob(data, ref.digest or None)
        size = len(data)
        if mtype in INDEX_TYPES or doc.get("mediaType") in INDEX_TYPES or "manifests" in doc:
            m = pick_platform(doc)
            r = await self._get(f"/v2/{self.repo}/manifests/{m['digest']}", ACCEPT)
            async with r:
                if r.status != 200:
                    raise ImageError(f"{image}: manifest {m['digest']}: status {r.status}")
                data = await r.read()
            digest = self.store.write_blob(data, m["digest"])
            doc = json.loads(data)
            size += len(data)
        for blob in [doc["config"]] + list(doc.get("layers", [])):
            if self.store.has_blob(blob["digest"]):
                continue
            r = await self._get(f"/v2/{self.repo}/blobs/{blob['digest']}")
            async with r:
                if r.status != 200:
                    raise ImageError(f"{image}: blob {blob['digest']}: status {r.status}")
                chunks = []
                async for chunk in r.content.iter_chunked(1 << 20):
                    chunks.append(chunk)
            await asyncio.to_thread(self.store.write_blob_stream, chunks, blob["digest"])
            size += sum(len(c) for c in chunks)
        self.store.tag(image, digest)
        return digest, size
