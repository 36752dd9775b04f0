"""S3 URIs through a real HTTP endpoint (moto's server on 127.0.0.1): round trips, atomicity, sizes."""

from __future__ import annotations

import io
import json

import pytest
from infra_fixtures import moto_endpoint, s3_bucket  # noqa: F401  (fixtures)

from raserec_core.storage import download, export, is_s3, join, local_input, local_output, split_uri, upload
from raserec_core.storage import s3 as s3mod


def _keys(bucket: str) -> list[str]:
    return sorted(s3mod._list(s3mod.client(), bucket, ""))


def _tree(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_uri_helpers():
    assert is_s3("s3://b/k") and not is_s3("/tmp/x") and not is_s3(None)
    assert split_uri("s3://bucket/a/b/") == ("bucket", "a/b")
    assert split_uri("s3://bucket") == ("bucket", "")
    assert join("s3://b/runs/", "x", "/model") == "s3://b/runs/x/model"
    with pytest.raises(ValueError, match="not an s3:// URI"):
        split_uri("/local/path")
    with pytest.raises(ValueError, match="no bucket"):
        split_uri("s3:///key")


def test_client_endpoint_precedence(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:2")
    assert s3mod.client().meta.endpoint_url == "http://127.0.0.1:1"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert s3mod.client().meta.endpoint_url == "http://127.0.0.1:2"
    assert s3mod.client("http://127.0.0.1:3").meta.endpoint_url == "http://127.0.0.1:3"
    assert s3mod.client().meta.config.retries["mode"] == "adaptive"


@pytest.mark.integration
def test_folder_round_trip(s3_bucket, tmp_path):
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "encoder.pt").write_bytes(b"\x00\x01" * 1000)
    (src / "model.json").write_text('{"kind": "encoder"}')
    (src / "sub" / "empty.bin").write_bytes(b"")
    uri = f"s3://{s3_bucket}/runs/r1/model"

    report = upload(src, uri)

    assert report["files"] == {"encoder.pt": 2000, "model.json": 19, "sub/empty.bin": 0}
    assert _keys(s3_bucket) == [
        "runs/r1/model/_MANIFEST.json", "runs/r1/model/encoder.pt", "runs/r1/model/model.json",
        "runs/r1/model/sub/empty.bin",
    ]  # no staging objects left behind
    back = download(uri, tmp_path / "back")
    assert _tree(back) == _tree(src)


@pytest.mark.integration
def test_file_round_trip_and_overwrite(s3_bucket, tmp_path):
    f = tmp_path / "top50.parquet"
    f.write_bytes(b"abc" * 10)
    uri = f"s3://{s3_bucket}/dumps/top50.parquet"
    upload(f, uri)
    f.write_bytes(b"xyz")
    upload(f, uri)
    (tmp_path / "dl").mkdir()
    got = download(uri, tmp_path / "dl")  # into an existing folder: keeps the object's name
    assert got == tmp_path / "dl" / "top50.parquet"
    assert got.read_bytes() == b"xyz"
    assert _keys(s3_bucket) == ["dumps/top50.parquet"]


@pytest.mark.integration
def test_download_prefix_without_manifest_skips_staging(s3_bucket, tmp_path):
    c = s3mod.client()
    c.put_object(Bucket=s3_bucket, Key="raw/beauty.txt", Body=b"u1 i1 i2\n")
    c.put_object(Bucket=s3_bucket, Key="raw/.half.staging-123/x", Body=b"partial")
    got = download(f"s3://{s3_bucket}/raw", tmp_path / "raw")
    assert _tree(got) == {"beauty.txt": b"u1 i1 i2\n"}
    with pytest.raises(FileNotFoundError, match="no such object or prefix"):
        download(f"s3://{s3_bucket}/missing", tmp_path / "m")


class _FailingReader(io.RawIOBase):
    """A file whose read fails after ``fail_after`` bytes, as a disk error or a vanished mount would."""

    def __init__(self, data: bytes, fail_after: int):
        self._buf = io.BytesIO(data)
        self._fail_after = fail_after

    def readable(self):
        return True

    def readinto(self, b):
        if self._buf.tell() >= self._fail_after:
            raise OSError(5, "Input/output error (simulated)")
        n = self._buf.readinto(memoryview(b)[: max(1, min(len(b), self._fail_after - self._buf.tell()))])
        return n

    def seek(self, *a):
        return self._buf.seek(*a)

    def tell(self):
        return self._buf.tell()


@pytest.mark.integration
def test_folder_upload_failing_midway_leaves_nothing_under_final_prefix(s3_bucket, tmp_path, monkeypatch):
    src = tmp_path / "bank"
    src.mkdir()
    for name in ("a.bin", "b.bin", "c.bin"):
        (src / name).write_bytes(name.encode() * 100)
    real_open = open

    def failing_open(path, mode="r", *a, **kw):
        if str(path).endswith("b.bin"):
            return _FailingReader(b"b.bin" * 100, fail_after=150)
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr(s3mod, "open", failing_open, raising=False)
    with pytest.raises(OSError, match="simulated"):
        upload(src, f"s3://{s3_bucket}/runs/r2/bank")
    assert _keys(s3_bucket) == []  # neither final objects nor staging leftovers


@pytest.mark.integration
def test_file_upload_failing_midway_leaves_no_object(s3_bucket, tmp_path, monkeypatch):
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (9 << 20))  # above the multipart threshold: several parts, the 2nd fails
    real_open = open

    def failing_open(path, mode="r", *a, **kw):
        if str(path) == str(big):
            return _FailingReader(big.read_bytes(), fail_after=8 << 20)
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr(s3mod, "open", failing_open, raising=False)
    with pytest.raises(OSError, match="simulated"):
        upload(big, f"s3://{s3_bucket}/big.bin")
    assert _keys(s3_bucket) == []
    c = s3mod.client()
    assert c.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


@pytest.mark.integration
def test_size_mismatch_is_an_error(s3_bucket, tmp_path, monkeypatch):
    f = tmp_path / "x.bin"
    f.write_bytes(b"12345")
    monkeypatch.setattr(s3mod, "_object_size", lambda *a: 4)
    with pytest.raises(s3mod.S3Error, match="4 bytes after upload, expected 5"):
        upload(f, f"s3://{s3_bucket}/x.bin")


@pytest.mark.integration
def test_local_input_and_output_context_managers(s3_bucket, tmp_path):
    uri = f"s3://{s3_bucket}/exports/dataset"
    with local_output(uri) as out:
        out.mkdir()
        (out / "stats.json").write_text(json.dumps({"users": 3}))
    with local_input(uri) as p:
        assert json.loads((p / "stats.json").read_text()) == {"users": 3}
        staged = p
    assert not staged.exists()  # the temp copy is gone afterwards

    with pytest.raises(RuntimeError, match="boom"):
        with local_output(f"s3://{s3_bucket}/exports/failed") as out:
            out.write_text("half")
            raise RuntimeError("boom")
    assert not any(k.startswith("exports/failed") for k in _keys(s3_bucket))

    # local paths pass straight through
    with local_output(tmp_path / "plain") as p:
        assert p == tmp_path / "plain"
    with local_input(str(tmp_path)) as p:
        assert p == tmp_path


def test_export_to_a_local_folder(tmp_path):
    src = tmp_path / "m"
    src.mkdir()
    (src / "a.txt").write_text("a")
    report = export(src, str(tmp_path / "out" / "m"))
    assert report["files"] == {"a.txt": 1}
    assert (tmp_path / "out" / "m" / "a.txt").read_text() == "a"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_endpoint_down_is_one_error_naming_the_endpoint(tmp_path, monkeypatch, moto_endpoint):
    from infra_fixtures import DUMMY_AWS

    for k, v in DUMMY_AWS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    down = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    f = tmp_path / "x.bin"
    f.write_bytes(b"12345")
    for call in (lambda: upload(f, "s3://b/x.bin", endpoint_url=down), lambda: upload(tmp_path, "s3://b/d", endpoint_url=down),
                 lambda: download("s3://b/x.bin", tmp_path / "y", endpoint_url=down)):
        with pytest.raises(s3mod.S3Error) as info:
            call()
        assert f"cannot reach the S3 endpoint {down}" in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__  # no clean-up failure chained


@pytest.mark.integration
def test_missing_bucket_is_named(s3_bucket, tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"12345")
    with pytest.raises(s3mod.S3Error, match="the bucket 'no-such-bucket-here' does not exist"):
        upload(f, "s3://no-such-bucket-here/x.bin")
    with pytest.raises(s3mod.S3Error, match="the bucket 'no-such-bucket-here' does not exist"):
        download("s3://no-such-bucket-here/x", tmp_path / "y")


def test_s3_errors_are_one_line_in_the_cli(tmp_path, monkeypatch, capsys):
    from infra_fixtures import DUMMY_AWS

    from raserec_core.cli.main import main

    for k, v in DUMMY_AWS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    assert main(["preprocess", "--input", "s3://b/in.txt", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("raserec preprocess: error: s3://b/in.txt: cannot reach the S3 endpoint http://127.0.0.1:")
    assert not any("Traceback" in line for line in err)


@pytest.mark.integration
def test_upload_removes_staging_objects_of_dead_writers_only(s3_bucket, tmp_path):
    import subprocess
    import sys

    from raserec_core.storage.locks import writer_tag

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_tag = writer_tag().replace(str(__import__("os").getpid()), dead.stdout.strip(), 1)
    c = s3mod.client()
    leftovers = {
        f"runs/r/.model.staging-aaaaaaaaaaaa-{dead_tag}/a.bin": True,  # a dead writer's folder: removed
        f"runs/r/.model.staging-aaaaaaaaaaaa-{dead_tag}/b.bin": True,
        f"runs/r/.x.bin.staging-bbbbbbbbbbbb-{dead_tag}": True,
        f"runs/r/.y.bin.staging-cccccccccccc-{writer_tag()}": False,  # a live writer (this process): kept
        "runs/r/.z.bin.staging-dddddddddddd-1@some-other-host": False,  # another host, recent: kept
    }
    for key in leftovers:
        c.put_object(Bucket=s3_bucket, Key=key, Body=b"x")
    f = tmp_path / "x.bin"
    f.write_bytes(b"12345")
    upload(f, f"s3://{s3_bucket}/runs/r/x.bin")
    kept = [k for k, gone in leftovers.items() if not gone]
    assert _keys(s3_bucket) == sorted([*kept, "runs/r/x.bin"])
