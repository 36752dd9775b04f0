"""Every path the CLI takes may be an s3:// URI (moto's HTTP server on 127.0.0.1)."""

import json

import boto3
import pytest
from infra_fixtures import moto_endpoint, s3_bucket  # noqa: F401

from raserec_core.cli.main import main
from raserec_core.data import read_dataset

pytestmark = pytest.mark.integration


def _keys(bucket: str, prefix: str) -> set[str]:
    s3 = boto3.client("s3")
    return {o["Key"][len(prefix):] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])}


def test_preprocess_evaluate_from_and_to_s3(s3_bucket, tmp_path, trained_model_dir, wide_dataset_dir, capsys):
    raw = (tmp_path / "log.txt")
    raw.write_text("".join(f"u{u} " + " ".join(str(1 + (u + j) % 9) for j in range(6)) + "\n" for u in range(12)))
    boto3.client("s3").upload_file(str(raw), s3_bucket, "raw/log.txt")

    assert main(["preprocess", "--input", f"s3://{s3_bucket}/raw/log.txt", "--output", f"s3://{s3_bucket}/ds",
                 "--k-core", "0"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["instances"] == {"train": 36, "valid": 12, "test": 12}
    assert {"stats.json", "train.parquet", "valid.parquet", "test.parquet", "items.parquet", "users.parquet",
            "_MANIFEST.json"} <= _keys(s3_bucket, "ds/")

    # the dataset read back from the bucket is the one that was written
    from raserec_core.storage import download

    ds = read_dataset(download(f"s3://{s3_bucket}/ds", tmp_path / "back"))
    assert ds.fingerprint == stats["fingerprint"]

    # a model and its dataset from the bucket, the top-K dump and metrics into it
    from raserec_core.storage import upload

    upload(wide_dataset_dir, f"s3://{s3_bucket}/wide")
    upload(trained_model_dir, f"s3://{s3_bucket}/model")
    assert main(["evaluate", "--data", f"s3://{s3_bucket}/wide", "--model", f"s3://{s3_bucket}/model",
                 "--split", "test", "--topk-output", f"s3://{s3_bucket}/eval/top.parquet",
                 "--metrics-output", f"s3://{s3_bucket}/eval/metrics.json", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    body = boto3.client("s3").get_object(Bucket=s3_bucket, Key="eval/metrics.json")["Body"].read()
    assert json.loads(body) == printed and "test/ndcg@10" in printed
    assert "top.parquet" in _keys(s3_bucket, "eval/")


def test_a_data_parallel_run_reads_and_writes_s3_once(s3_bucket, small_dataset_dir, tiny_args, capsys):
    """--nproc-per-node with s3:// paths: the launching process fetches the data and uploads the model
    folder once; its workers share the local copies (rank 0 writes, and prints the result)."""
    from raserec_core.storage import upload

    upload(small_dataset_dir, f"s3://{s3_bucket}/ds")
    assert main(["pretrain", "--data", f"s3://{s3_bucket}/ds", "--output", f"s3://{s3_bucket}/model",
                 "--nproc-per-node", "2", *tiny_args("pretrain.epochs=1")]) == 0
    assert {"encoder.pt", "metrics.json", "history.json"} <= _keys(s3_bucket, "model/")
    body = boto3.client("s3").get_object(Bucket=s3_bucket, Key="model/metrics.json")["Body"].read()
    assert "test/ndcg@10" in json.loads(body)
