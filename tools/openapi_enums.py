"""Regenerate kubeclass/api/openapi_upstream.json: the OpenAPI v3 details kube-apiserver serves that the pinned
kubernetes-validate definitions lack — the `enum` of enumerated string fields with their "Possible enum values"
descriptions, and the v3 shapes of Quantity and IntOrString (oneOf, which `kubectl explain` prints as
`Quantity` / `IntOrString`). Read from upstream's generated OpenAPI v3 documents as kubernetes/kubectl keeps them
under testdata/openapi/v3 (api/v1, apps/v1, autoscaling/v1 and v2); kept only for fields the 1.32 definitions
have. Usage: python tools/openapi_enums.py KUBECTL_CHECKOUT"""
from __future__ import annotations

import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from kubeclass.api import schema  # noqa: E402

MARK = "\n\nPossible enum values:"


def main(checkout: str) -> None:
    ours = schema.definitions()
    enums: dict[str, dict] = {}
    special: dict[str, dict] = {}
    for path in sorted(glob.glob(os.path.join(checkout, "testdata", "openapi", "v3", "**", "*.json"), recursive=True)):
        with open(path) as f:
            schemas = json.load(f)["components"]["schemas"]
        for name, s in schemas.items():
            if name in ("io.k8s.apimachinery.pkg.api.resource.Quantity", "io.k8s.apimachinery.pkg.util.intstr.IntOrString"):
                special[name] = s
            for prop, ps in (s.get("properties") or {}).items():
                if "enum" not in ps or prop not in ((ours.get(name) or {}).get("properties") or {}):
                    continue
                desc = ps.get("description", "")
                enums.setdefault(name, {})[prop] = {"enum": ps["enum"],
                                                    "possible": desc[desc.index(MARK):] if MARK in desc else ""}
    out = os.path.join(ROOT, "kubeclass", "api", "openapi_upstream.json")
    with open(out, "w") as f:
        json.dump({"enums": dict(sorted(enums.items())), "schemas": special}, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{out}: {sum(len(v) for v in enums.values())} enumerated fields, {len(special)} schemas")


if __name__ == "__main__":
    main(sys.argv[1])
