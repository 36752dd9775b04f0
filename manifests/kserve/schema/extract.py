"""Cut the OpenAPI schema of a KServe CRD down to the fields manifests/kserve uses, as JSON Schema.

    python manifests/kserve/schema/extract.py CRD.yaml OUT.json SOURCE

CRD.yaml: KServe's config/crd/full/serving.kserve.io_<plural>.yaml (the full CRDs, not the minimal ones,
whose spec is free-form). Kept: ``FIELDS[kind]``, whole subtrees where the value is True. Every object
that lists its properties is closed (``additionalProperties: false``): the API server would prune an
unknown field silently, so a misspelt one must fail the test instead. A manifest that needs a new field
adds it to ``FIELDS`` and re-runs this on the CRD of the KServe version named in OUT's ``$comment``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

FIELDS = {
    "InferenceService": {
        "apiVersion": True, "kind": True, "metadata": True,
        "spec": {"predictor": {
            "serviceAccountName": True, "minReplicas": True, "maxReplicas": True, "canaryTrafficPercent": True,
            "model": {"modelFormat": True, "runtime": True, "protocolVersion": True, "storageUri": True, "resources": True,
                      "env": True},
        }},
    },
    "ServingRuntime": {
        "apiVersion": True, "kind": True, "metadata": True,
        "spec": {"annotations": True, "supportedModelFormats": True, "protocolVersions": True, "containers": True},
    },
}


def prune(schema: dict, keep) -> dict:
    if keep is True:
        return close(schema)
    if schema.get("type") == "array":
        return {**schema, "items": prune(schema["items"], keep)}
    props = schema.get("properties", {})
    missing = set(keep) - set(props)
    if missing:
        raise KeyError(f"not in the CRD: {sorted(missing)}")
    out = {k: v for k, v in schema.items() if k not in ("properties", "required", "description")}
    out["properties"] = {name: prune(props[name], sub) for name, sub in keep.items()}
    out["required"] = [r for r in schema.get("required", []) if r in keep]
    out["additionalProperties"] = False
    return out


def close(schema):
    """Drop descriptions; close every object that lists its properties."""
    if isinstance(schema, list):
        return [close(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: close(v) for k, v in schema.items() if k != "description"}
    if "properties" in schema and "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if "properties" in schema:  # property names are data, not keywords: keep them all
        out["properties"] = {name: close(sub) for name, sub in schema["properties"].items()}
    return out


def main(crd_path: str, out_path: str, source: str) -> None:
    crd = yaml.safe_load(Path(crd_path).read_text())
    kind = crd["spec"]["names"]["kind"]
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    schema = prune(version["schema"]["openAPIV3Schema"], FIELDS[kind])
    schema["$comment"] = (
        f"{crd['spec']['group']}/{version['name']} {kind}: the fields manifests/kserve uses, cut from {source} "
        "by manifests/kserve/schema/extract.py (descriptions dropped, objects closed)."
    )
    Path(out_path).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
