"""Extract the YAML documents from ../shared/seeds: ```yaml blocks and `kubectl apply -f - <<EOF` heredocs.
Seed 002 is a scraped page whose lines are interleaved with lone `|` lines; those are page residue, not YAML."""
from __future__ import annotations

import glob
import os
import re

import yaml

from conftest import SEEDS


def blocks() -> list[tuple[str, int, str]]:
    out = []
    for path in sorted(glob.glob(os.path.join(SEEDS, "*.txt"))):
        text = open(path, encoding="utf-8").read()
        name = os.path.basename(path)
        found = []
        for m in re.finditer(r"```ya?ml\n(.*?)```", text, re.S):
            found.append(m.group(1))
        for m in re.finditer(r"<<EOF\n(.*?)\nEOF", text, re.S):
            found.append(m.group(1))
        for i, b in enumerate(found):
            lines = [l for l in b.splitlines() if l.strip() != "|"]
            if any(l.strip() == "|" for l in b.splitlines()):
                lines = _reindent(lines)
            # blocks indented inside markdown lists keep their relative indentation
            indent = min((len(l) - len(l.lstrip()) for l in lines if l.strip()), default=0)
            out.append((name, i, "\n".join(l[indent:] for l in lines) + "\n"))
    return out


def documents(kind: str | None = None) -> list[tuple[str, int, str, dict]]:
    """(seed, block, block text, doc) for every complete object in the seeds."""
    out = []
    for name, i, text in blocks():
        try:
            docs = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError:
            continue
        for d in docs:
            if isinstance(d, dict) and d.get("apiVersion") and d.get("kind") and (kind is None or d["kind"] == kind):
                out.append((name, i, text, d))
    return out


_TOP = ("apiVersion:", "kind:", "metadata:", "spec:", "handler:", "overhead:", "scheduling:", "---")


def _reindent(lines: list[str]) -> list[str]:
    """Seed 002 was scraped from kubernetes.io with its indentation flattened; restore the upstream
    document's structure: lines after a `metadata:`/`spec:` header that are not top-level keys
    belong to that header."""
    out, nested = [], False
    for l in lines:
        s = l.strip()
        if s.startswith(_TOP):
            out.append(s)
            nested = s in ("metadata:", "spec:")
        elif nested and s:
            out.append("  " + s)
        else:
            out.append(s)
    return out


def block(seed: str, *contains: str, without: tuple[str, ...] = ()) -> str:
    """The first YAML block of seed file `seed` (its number, e.g. "001") containing every string in
    `contains` and none in `without`."""
    for name, _, text in blocks():
        if name.startswith(seed) and all(c in text for c in contains) and not any(w in text for w in without):
            return text
    raise LookupError(f"no block in seed {seed} with {contains} and without {without}")


# seed 001 blocks several tests use
def gvisor_with_overhead() -> str:
    return block("001", "overhead:", "name: gvisor", without=("---",))


def overhead_example_pod() -> str:
    return block("001", "name: overhead-example")


def config_blocks(seed: str) -> list[str]:
    """The runtime configuration blocks (fenced TOML, also under ```ini or a bare fence) of seed file
    `seed` that define runtime tables, with scraped-page residue (lone `|` lines) removed and the common
    indentation stripped."""
    out = []
    for path in sorted(glob.glob(os.path.join(SEEDS, f"{seed}*.txt"))):
        fenced, cur = False, []
        for line in open(path, encoding="utf-8").read().splitlines():
            if line.strip() == "|":
                continue
            if line.strip().startswith("```"):
                if fenced and any(l.lstrip().startswith("[") and "runtimes" in l for l in cur):
                    indent = min((len(l) - len(l.lstrip()) for l in cur if l.strip()), default=0)
                    out.append("\n".join(l[indent:] for l in cur if l.strip()) + "\n")
                fenced, cur = not fenced, []
                continue
            if fenced:
                cur.append(line)
    return out
