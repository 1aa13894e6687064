"""The node's image store: content-addressed blobs as an OCI image layout (blobs/sha256/<hex>), references
naming manifests (refs.json), and each image's root filesystem unpacked once. Images arrive by
`kubeclass image import` (an OCI image layout tarball or a docker-archive) or by a pull from an OCI
registry over the distribution API (anonymous, basic, or bearer tokens; credentials from a pull secret).

Unpacking is safe against hostile layers: every path is joined to the root filesystem component by
component with symbolic links resolved inside it (never on the host), so no entry can write outside it;
whiteouts (`.wh.<name>`, `.wh..wh..opq`) remove what lower layers left; hard links may only point inside.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import threading
from dataclasses import dataclass

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
REF_ANNOTATION = "org.opencontainers.image.ref.name"


class ImageError(Exception):
    """An image that cannot be had or used; the message says why (shown in events, as kubelet's)."""


class UnsafeLayer(ImageError):
    pass


# ------------------------------------------------------------------------------------ references

_REF = re.compile(r"^(?:(?P<domain>[a-zA-Z0-9.-]+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)/)?(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
                  r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str
    digest: str

    @property
    def full(self) -> str:
        out = f"{self.domain}/{self.path}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_reference(ref: str) -> Reference:
    """As docker and containerd normalize: `busybox` is docker.io/library/busybox:latest."""
    first, _, rest = ref.partition("/")
    has_domain = bool(rest) and ("." in first or ":" in first or first == "localhost" or first.startswith("["))
    m = _REF.match(ref if has_domain else f"docker.io/{ref}")
    if not m or any(c.isupper() for c in (m.group("path") or "")):
        raise ImageError(f'couldn\'t parse image name "{ref}": invalid reference format')
    domain, path = m.group("domain"), m.group("path")
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    tag = m.group("tag") or ("" if m.group("digest") else "latest")
    return Reference(domain, path, tag, m.group("digest") or "")


# ------------------------------------------------------------------------------------ safe unpacking

def secure_join(root: str, rel: str) -> str:
    """root + rel with every intermediate symbolic link resolved inside root (an absolute link target is
    taken from root, `..` stops at root). The last component is not followed: it is what gets written."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    cur: list[str] = []
    hops = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if cur:
                cur.pop()
            continue
        full = os.path.join(root, *cur, p)
        if parts and os.path.islink(full):
            hops += 1
            if hops > 255:
                raise UnsafeLayer(f"too many levels of symbolic links in {rel!r}")
            target = os.readlink(full)
            if target.startswith("/"):
                cur = []
            parts = [x for x in target.split("/") if x not in ("", ".")] + parts
            continue
        cur.append(p)
    return os.path.join(root, *cur)


def _remove(path: str) -> None:
    if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _open_layer(f) -> tarfile.TarFile:
    head = f.read(4)
    f.seek(0)
    if head[:4] == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard  # type: ignore[import-not-found]
        except ImportError:
            raise ImageError("the layer is zstd-compressed; install the zstandard package to unpack it") from None
        return tarfile.open(fileobj=zstandard.ZstdDecompressor().stream_reader(f), mode="r|")
    return tarfile.open(fileobj=f, mode="r|*")


def unpack_layer(f, root: str) -> None:
    """Apply one layer (a tar, gzip or zstd stream) onto root."""
    with _open_layer(f) as tf:
        for m in tf:
            name = posixpath.normpath("/" + m.name).lstrip("/")
            if not name or name == ".":
                continue
            d, base = posixpath.split(name)
            if base == ".wh..wh..opq":                       # opaque directory: hide everything below
                target = secure_join(root, d)
                if os.path.isdir(target) and not os.path.islink(target):
                    for child in os.listdir(target):
                        _remove(os.path.join(target, child))
                continue
            if base.startswith(".wh."):
                _remove(secure_join(root, posixpath.join(d, base[4:])))
                continue
            target = secure_join(root, name)
            parent = os.path.dirname(target)
            if not os.path.isdir(parent):
                os.makedirs(secure_join(root, d), exist_ok=True)
            if m.isdir():
                if os.path.lexists(target) and not (os.path.isdir(target) and not os.path.islink(target)):
                    _remove(target)
                os.makedirs(target, exist_ok=True)
                os.chmod(target, m.mode & 0o7777)
            elif m.isreg():
                if os.path.lexists(target):
                    _remove(target)
                src = tf.extractfile(m)
                with open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                os.chmod(target, m.mode & 0o7777)
            elif m.issym():
                if os.path.lexists(target):
                    _remove(target)
                os.symlink(m.linkname, target)
            elif m.islnk():
                src = secure_join(root, posixpath.normpath("/" + m.linkname).lstrip("/"))
                if not os.path.isfile(src) or os.path.islink(src):
                    raise UnsafeLayer(f"hard link {m.name!r} -> {m.linkname!r} does not point to a file in the image")
                if os.path.lexists(target):
                    _remove(target)
                os.link(src, target)
            elif m.isfifo():
                if os.path.lexists(target):
                    _remove(target)
                os.mkfifo(target, m.mode & 0o777)
            else:
                continue   # device nodes: the runtime provides /dev
            try:
                os.chown(target, m.uid, m.gid, follow_symlinks=False)
                if not m.issym():
                    os.utime(target, (m.mtime, m.mtime), follow_symlinks=False)
            except OSError:
                pass


# ------------------------------------------------------------------------------------ the store

class ImageStore:
    def __init__(self, root: str):
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")
        self.unpacked = os.path.join(root, "unpacked")
        os.makedirs(self.blobs, exist_ok=True)
        os.makedirs(self.unpacked, exist_ok=True)
        self._refs_path = os.path.join(root, "refs.json")
        self._lock = threading.Lock()
        layout = os.path.join(root, "oci-layout")
        if not os.path.exists(layout):
            with open(layout, "w") as f:
                json.dump({"imageLayoutVersion": "1.0.0"}, f)

    # ---- references
    def refs(self) -> dict[str, str]:
        try:
            with open(self._refs_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def tag(self, ref: str, manifest_digest: str) -> None:
        with self._lock:
            refs = self.refs()
            refs[ref] = manifest_digest
            try:
                refs[parse_reference(ref).full] = manifest_digest
            except ImageError:
                pass
            tmp = self._refs_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(refs, f, indent=1, sort_keys=True)
            os.replace(tmp, self._refs_path)

    def lookup(self, ref: str) -> str | None:
        """The manifest digest a reference names here: exactly as written, or normalized."""
        refs = self.refs()
        if ref in refs:
            return refs[ref]
        try:
            r = parse_reference(ref)
        except ImageError:
            return None
        if r.digest and self.has_blob(r.digest):
            return r.digest
        return refs.get(r.full)

    # ---- blobs
    def blob_path(self, digest: str) -> str:
        algo, _, hexd = digest.partition(":")
        if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexd):
            raise ImageError(f"unsupported digest {digest!r}")
        return os.path.join(self.blobs, hexd)

    def has_blob(self, digest: str) -> bool:
        return os.path.exists(self.blob_path(digest))

    def read_blob(self, digest: str) -> bytes:
        with open(self.blob_path(digest), "rb") as f:
            return f.read()

    def write_blob(self, data: bytes, expect: str | None = None) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if expect and expect != digest:
            raise ImageError(f"digest mismatch: wanted {expect}, content is {digest}")
        path = self.blob_path(digest)
        if not os.path.exists(path):
            fd, tmp = tempfile.mkstemp(dir=self.blobs)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        return digest

    def write_blob_stream(self, chunks, expect: str) -> str:
        """Store a blob from an iterable of byte chunks, verifying its digest."""
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self.blobs)
        try:
            with os.fdopen(fd, "wb") as f:
                for c in chunks:
                    h.update(c)
                    f.write(c)
            digest = "sha256:" + h.hexdigest()
            if digest != expect:
                raise ImageError(f"digest mismatch: wanted {expect}, content is {digest}")
            os.replace(tmp, self.blob_path(digest))
            return digest
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # ---- images
    def manifest(self, digest: str) -> dict:
        return json.loads(self.read_blob(digest))

    def config(self, manifest_digest: str) -> dict:
        m = self.manifest(manifest_digest)
        return json.loads(self.read_blob(m["config"]["digest"]))

    def rootfs(self, manifest_digest: str) -> str:
        """The image's root filesystem, unpacked once (layers applied in order)."""
        dest = os.path.join(self.unpacked, manifest_digest.split(":", 1)[1], "rootfs")
        if os.path.isdir(dest):
            return dest
        m = self.manifest(manifest_digest)
        work = tempfile.mkdtemp(dir=self.unpacked)
        try:
            rootfs = os.path.join(work, "rootfs")
            os.makedirs(rootfs)
            for layer in m.get("layers", []):
                with open(self.blob_path(layer["digest"]), "rb") as f:
                    unpack_layer(f, rootfs)
            final = os.path.dirname(dest)
            try:
                os.rename(work, final)
            except OSError:
                if not os.path.isdir(dest):   # lost a race to another unpack of the same image: use that one
                    raise
        finally:
            if os.path.isdir(work):
                shutil.rmtree(work, ignore_errors=True)
        return dest

    # ---- import
    def import_archive(self, path: str) -> list[str]:
        """An OCI image layout tarball (index.json names references in org.opencontainers.image.ref.name)
        or a docker-archive (manifest.json with RepoTags). Returns the references imported."""
        try:
            tf = tarfile.open(path, "r:*")
        except (OSError, tarfile.TarError) as e:
            raise ImageError(f"{path}: not an image archive: {e}") from e
        with tf:
            names = {posixpath.normpath(n).lstrip("./"): n for n in tf.getnames()}

            def read(name: str) -> bytes:
                member = names.get(posixpath.normpath(name).lstrip("./"))
                if member is None:
                    raise ImageError(f"{path}: {name} is missing from the archive")
                f = tf.extractfile(member)
                if f is None:
                    raise ImageError(f"{path}: {name} is not a file")
                return f.read()

            if "index.json" in names and "oci-layout" in names:
                return self._import_oci(path, read)
            if "manifest.json" in names:
                return self._import_docker(path, read)
        raise ImageError(f"{path}: neither an OCI image layout (index.json, oci-layout) nor a docker-archive (manifest.json)")

    def _import_oci(self, path: str, read) -> list[str]:
        index = json.loads(read("index.json"))
        out = []
        for desc in index.get("manifests", []):
            digest = self._copy_tree(desc, read)
            ref = (desc.get("annotations") or {}).get(REF_ANNOTATION)
            if ref:
                self.tag(ref, digest)
                out.append(ref)
        if not out:
            raise ImageError(f"{path}: index.json names no image ({REF_ANNOTATION} annotation)")
        return out

    def _copy_tree(self, desc: dict, read) -> str:
        """Copy a manifest (or an index, resolved to this platform's manifest) and its blobs; returns the
        image manifest's digest."""
        blob = lambda d: read("blobs/" + d.replace(":", "/"))   # noqa: E731
        data = blob(desc["digest"])
        self.write_blob(data, desc["digest"])
        doc = json.loads(data)
        if desc.get("mediaType") in INDEX_TYPES or doc.get("mediaType") in INDEX_TYPES:
            return self._copy_tree(pick_platform(doc), read)
        self.write_blob(blob(doc["config"]["digest"]), doc["config"]["digest"])
        for layer in doc.get("layers", []):
            if not self.has_blob(layer["digest"]):
                self.write_blob(blob(layer["digest"]), layer["digest"])
        return desc["digest"]

    def _import_docker(self, path: str, read) -> list[str]:
        out = []
        for entry in json.loads(read("manifest.json")):
            cfg = read(entry["Config"])
            cfg_digest = self.write_blob(cfg)
            layers = []
            for name in entry.get("Layers", []):
                data = read(name)
                layers.append({"mediaType": MT_OCI_LAYER + (".gzip" if data[:2] == b"\x1f\x8b" else ""),
                               "digest": self.write_blob(data), "size": len(data)})
            manifest = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                        "config": {"mediaType": MT_OCI_CONFIG, "digest": cfg_digest, "size": len(cfg)}, "layers": layers}
            digest = self.write_blob(json.dumps(manifest, separators=(",", ":")).encode())
            for ref in entry.get("RepoTags") or []:
                self.tag(ref, digest)
                out.append(ref)
        if not out:
            raise ImageError(f"{path}: manifest.json names no image (RepoTags)")
        return out


def pick_platform(index: dict, os_name: str = "linux", arch: str | None = None) -> dict:
    import platform as _p
    arch = arch or {"x86_64": "amd64", "aarch64": "arm64"}.get(_p.machine(), _p.machine())
    for m in index.get("manifests", []):
        p = m.get("platform") or {}
        if p.get("os", os_name) == os_name and p.get("architecture", arch) == arch:
            return m
    raise ImageError(f"no manifest for {os_name}/{arch} in the image index")


def docker_auth(dockerconfig: dict, host: str) -> tuple[str, str] | None:
    """(username, password) for a registry host from a .dockerconfigjson document."""
    auths = dockerconfig.get("auths") or {}
    for key, v in auths.items():
        k = re.sub(r"^https?://", "", key).split("/")[0]
        if k == host or (host == "docker.io" and k in ("index.docker.io", "registry-1.docker.io")):
            if v.get("username"):
                return v["username"], v.get("password", "")
            if v.get("auth"):
                user, _, pw = base64.b64decode(v["auth"]).decode().partition(":")
                return user, pw
    return None


def make_layer(files: dict[str, bytes | str | tuple], compress: bool = True) -> bytes:
    """A layer tarball from {path: content | ("symlink", target) | ("dir",) | ("hardlink", target)} —
    used by tests and `kubeclass image` to build small images."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, content in files.items():
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            if isinstance(content, tuple):
                kind = content[0]
                if kind == "dir":
                    ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                elif kind == "symlink":
                    ti.type, ti.linkname = tarfile.SYMTYPE, content[1]
                elif kind == "hardlink":
                    ti.type, ti.linkname = tarfile.LNKTYPE, content[1]
                elif kind == "file":
                    data = content[1] if isinstance(content[1], bytes) else content[1].encode()
                    ti.size, ti.mode = len(data), content[2] if len(content) > 2 else 0o644
                    tf.addfile(ti, io.BytesIO(data))
                    continue
                tf.addfile(ti)
            else:
                data = content if isinstance(content, bytes) else content.encode()
                ti.size, ti.mode = len(data), 0o755 if name.startswith(("bin/", "usr/bin/")) else 0o644
                tf.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


def is_executable(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode) and os.access(path, os.X_OK)
    except OSError:
        return False


def write_oci_archive(path: str, ref: str, layers: list[bytes], config: dict) -> str:
    """An OCI image layout tarball holding one image named `ref` (index.json's ref.name annotation).
    Returns the manifest digest."""
    blobs: dict[str, bytes] = {}

    def add(data: bytes) -> str:
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return d
    diff_ids = ["sha256:" + hashlib.sha256(gzip.decompress(l) if l[:2] == b"\x1f\x8b" else l).hexdigest() for l in layers]
    config = {"architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
              "os": "linux", **config, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cfg = json.dumps(config, separators=(",", ":")).encode()
    manifest = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                "config": {"mediaType": MT_OCI_CONFIG, "digest": add(cfg), "size": len(cfg)},
                "layers": [{"mediaType": MT_OCI_LAYER + (".gzip" if l[:2] == b"\x1f\x8b" else ""), "digest": add(l), "size": len(l)}
                           for l in layers]}
    mdata = json.dumps(manifest, separators=(",", ":")).encode()
    mdigest = add(mdata)
    index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
             "manifests": [{"mediaType": MT_OCI_MANIFEST, "digest": mdigest, "size": len(mdata),
                            "annotations": {REF_ANNOTATION: ref}}]}
    with tarfile.open(path, "w") as tf:
        def put(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
            tf.addfile(ti, io.BytesIO(data))
        put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        put("index.json", json.dumps(index).encode())
        for d, data in blobs.items():
            put("blobs/" + d.replace(":", "/"), data)
    return mdigest


BUSYBOX_APPLETS = ("sh", "ls", "cat", "echo", "sleep", "uname", "dmesg", "head", "tail", "id", "env", "hostname",
                   "ps", "touch", "mkdir", "rm", "wc", "grep", "true", "false", "date", "pwd", "printf", "test", "kill", "wget", "nc", "ip",
                   "tar", "stty", "tty", "httpd", "cp", "mv", "ln", "chmod", "sed", "seq", "md5sum", "ifconfig", "route", "nslookup")


def busybox_layer(busybox: str = "/bin/busybox") -> bytes:
    """A layer holding the host's static busybox with its common applets linked, plus the directories a
    container expects (tests build their images from it: no registry on the internet is needed)."""
    with open(busybox, "rb") as f:
        data = f.read()
    files: dict = {"bin/": ("dir",), "bin/busybox": ("file", data, 0o755)}
    for a in BUSYBOX_APPLETS:
        files[f"bin/{a}"] = ("symlink", "busybox")
    for d in ("etc", "tmp", "proc", "sys", "dev", "root", "var", "home"):
        files[f"{d}/"] = ("dir",)
    files["etc/passwd"] = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
    files["etc/group"] = "root:x:0:\nnogroup:x:65534:\n"
    return make_layer(files)
