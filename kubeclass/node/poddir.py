"""The layout of a Pod's directory on the node (DATA/pods/<uid>/): containers/<name>/<attempt>/ hold an
attempt's runtime files (meta.json, config.json, pid, exits/<cid>, runtime.log), logs/<name>/<attempt>.log
its CRI-format log, sandbox.json what the sandbox needs to be found again after an agent restart."""
from __future__ import annotations

import json
import os


def glob_workdirs(pod_dir: str) -> list[str]:
    """Every container attempt's directory under a Pod's directory."""
    out = []
    base = os.path.join(pod_dir, "containers")
    if os.path.isdir(base):
        for name in os.listdir(base):
            for a in os.listdir(os.path.join(base, name)):
                out.append(os.path.join(base, name, a))
    return out


def read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def write_exit(path: str, code: int) -> None:
    """An exit file, as conmon writes it (atomically)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(str(code))
    os.rename(path + ".tmp", path)
