"""The node's image store: OCI layout and docker-archive imports, references, and layer unpacking that no
hostile layer can escape (symlinked parents, `..`, absolute links, hard links), with whiteouts."""
from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from kubeclass.node import images as I


def unpack(root, *layers):
    for layer in layers:
        I.unpack_layer(io.BytesIO(layer), str(root))


def test_references_normalize_as_docker():
    assert I.parse_reference("busybox").full == "docker.io/library/busybox:latest"
    assert I.parse_reference("127.0.0.1:5000/busybox:test").domain == "127.0.0.1:5000"
    assert I.parse_reference("kubeclass.test/busybox:1.36").full == "kubeclass.test/busybox:1.36"
    with pytest.raises(I.ImageError, match='couldn\'t parse image name "Bad/Name": invalid reference format'):
        I.parse_reference("Bad/Name")


def test_layers_apply_with_whiteouts(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    unpack(root, I.make_layer({"etc/": ("dir",), "etc/a": "1", "etc/b": "2", "opt/x/": ("dir",), "opt/x/y": "y",
                               "bin/tool": "#!", "bin/alias": ("symlink", "tool"), "bin/hard": ("hardlink", "bin/tool")}),
           I.make_layer({"etc/.wh.a": "", "opt/x/.wh..wh..opq": "", "opt/x/z": "z"}, compress=False))
    assert not (root / "etc/a").exists() and (root / "etc/b").read_text() == "2"
    assert sorted(os.listdir(root / "opt/x")) == ["z"]
    assert os.readlink(root / "bin/alias") == "tool"
    assert os.stat(root / "bin/hard").st_ino == os.stat(root / "bin/tool").st_ino


@pytest.mark.parametrize("escape", [
    {"evil": ("symlink", "/"), "evil/ESCAPED": "x"},                       # absolute symlinked parent
    {"evil": ("symlink", "../../../../.."), "evil/ESCAPED": "x"},          # relative symlinked parent
    {"a/": ("dir",), "a/b": ("symlink", "../../.."), "a/b/ESCAPED": "x"},
    {"../../ESCAPED": "x"},                                                # .. in the entry name
    {"/ESCAPED": "x"},
])
def test_no_entry_writes_outside_the_rootfs(tmp_path, escape):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = outside / "deep" / "rootfs"
    root.mkdir(parents=True)
    unpack(root, I.make_layer(escape))
    assert not list(outside.glob("ESCAPED")) and not (tmp_path / "ESCAPED").exists() and not os.path.exists("/ESCAPED")
    assert any(p.name == "ESCAPED" for p in root.rglob("ESCAPED"))   # it landed inside instead


def test_hard_link_outside_is_refused(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    (tmp_path / "secret").write_text("s")
    with pytest.raises(I.UnsafeLayer, match="does not point to a file in the image"):
        unpack(root, I.make_layer({"x": ("hardlink", "../secret")}))


def test_whiteout_cannot_delete_outside(tmp_path):
    (tmp_path / "keep").write_text("k")
    root = tmp_path / "rootfs"
    root.mkdir()
    unpack(root, I.make_layer({"l": ("symlink", "/"), "l/.wh.keep": "", "../.wh.keep": ""}))
    assert (tmp_path / "keep").exists()


def test_import_oci_layout_and_unpack(tmp_path):
    store = I.ImageStore(str(tmp_path / "store"))
    archive = str(tmp_path / "img.tar")
    digest = I.write_oci_archive(archive, "kubeclass.test/tiny:1", [I.make_layer({"hello": "world"})],
                                 {"config": {"Cmd": ["/hello"], "Env": ["A=1"]}})
    assert store.import_archive(archive) == ["kubeclass.test/tiny:1"]
    assert store.lookup("kubeclass.test/tiny:1") == digest
    assert store.config(digest)["config"]["Cmd"] == ["/hello"]
    rootfs = store.rootfs(digest)
    assert open(os.path.join(rootfs, "hello")).read() == "world"
    assert store.rootfs(digest) == rootfs            # unpacked once


def test_import_docker_archive(tmp_path):
    layer = I.make_layer({"etc/os": "busy"}, compress=False)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Entrypoint": ["/bin/sh"]},
                      "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    archive = tmp_path / "docker.tar"
    with tarfile.open(archive, "w") as tf:
        for name, data in (("abc/layer.tar", layer), ("cfg.json", cfg),
                           ("manifest.json", json.dumps([{"Config": "cfg.json", "RepoTags": ["busybox:test"],
                                                          "Layers": ["abc/layer.tar"]}]).encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    store = I.ImageStore(str(tmp_path / "store"))
    assert store.import_archive(str(archive)) == ["busybox:test"]
    d = store.lookup("docker.io/library/busybox:test")          # normalized form finds it too
    assert d == store.lookup("busybox:test")
    assert open(os.path.join(store.rootfs(d), "etc/os")).read() == "busy"


def test_bad_archives(tmp_path):
    store = I.ImageStore(str(tmp_path / "store"))
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all")
    with pytest.raises(I.ImageError, match="not an image archive"):
        store.import_archive(str(junk))
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    with pytest.raises(I.ImageError, match="neither an OCI image layout"):
        store.import_archive(str(empty))


def test_docker_auth_from_pull_secret():
    cfg = {"auths": {"https://127.0.0.1:5000": {"auth": "dXNlcjpwYXNz"}, "index.docker.io": {"username": "u", "password": "p"}}}
    assert I.docker_auth(cfg, "127.0.0.1:5000") == ("user", "pass")
    assert I.docker_auth(cfg, "docker.io") == ("u", "p")
    assert I.docker_auth(cfg, "quay.io") is None
