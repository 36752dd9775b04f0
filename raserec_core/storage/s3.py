"""``s3://bucket/key`` URIs wherever a path is accepted: download, upload, and local stand-ins.

boto3 is imported here and nowhere else. The client takes boto3's standard configuration (``AWS_*``
variables, shared config files) plus, for MinIO-style endpoints, ``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL`` or ``MLFLOW_S3_ENDPOINT_URL`` (first one set wins; an explicit ``endpoint_url``
argument beats them all), with adaptive retries.

Uploads are atomic from a reader's point of view, like ``storage.local``:

- a file goes to a staging key beside the target (``.<name>.staging-<id>``), its size is checked, and
  only then is it copied server-side to the final key; the staging object is deleted either way;
- a folder's files all go to a staging prefix first (``.<name>.staging-<id>/``); only when every one
  of them is there with the right size are they copied to their final keys, and a manifest object
  (``_MANIFEST.json``: every file with its size) is written last. A reader that finds the manifest
  finds every file it lists; ``download`` of a folder with a manifest fetches exactly those files.

If anything fails before the copy phase (a local file that cannot be read, the network), no object
appears under the final key or prefix. Staging names carry their writer (``<pid>@<host>``): an upload
first removes the staging objects beside its target that a dead writer of this host left, and any older
than ``STAGING_MAX_AGE_S``.

Errors: an unreachable endpoint, a missing bucket or a refused request is one ``S3Error`` naming the
URI and the endpoint (or the bucket), never chained over a failed clean-up. ``AWS_MAX_ATTEMPTS``, when
set, replaces the default of 10 attempts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import RaSeRecError
from .locks import writer_is_dead, writer_tag

log = logging.getLogger("raserec.storage")

SCHEME = "s3://"
MANIFEST = "_MANIFEST.json"
ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")
STAGING_MAX_AGE_S = 24 * 3600  # an upload never stages for a day: older staging objects are leftovers


class S3Error(OSError, RaSeRecError):
    """An S3 transfer failed or left an object of the wrong size; the message names the URI (the CLI
    prints it as one line)."""


@contextlib.contextmanager
def _errors(s3, uri: str) -> Iterator[None]:
    """Turn botocore's errors inside the block into one ``S3Error`` naming ``uri`` and the endpoint."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    try:
        yield
    except Exception as exc:
        cause = exc
        while cause is not None and not isinstance(cause, (BotoCoreError, ClientError)):
            cause = cause.__cause__ or cause.__context__  # boto3's transfer errors wrap botocore's
        if cause is None or isinstance(exc, S3Error):
            raise
        endpoint = s3.meta.endpoint_url
        bucket = split_uri(uri)[0]
        if isinstance(cause, BotoConnectionError):
            msg = f"{uri}: cannot reach the S3 endpoint {endpoint} ({cause})"
        elif isinstance(cause, ClientError):
            err = cause.response.get("Error", {})
            code = str(err.get("Code", ""))
            if code == "NoSuchBucket":
                msg = f"{uri}: the bucket '{bucket}' does not exist at {endpoint}"
            else:
                msg = f"{uri}: S3 at {endpoint} refused the request: {code} {err.get('Message', '')}".rstrip()
        else:
            msg = f"{uri}: {cause} (endpoint {endpoint})"
        raise S3Error(msg) from None


def is_s3(uri: str | os.PathLike | None) -> bool:
    return isinstance(uri, str) and uri.startswith(SCHEME)


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``; trailing slashes are dropped from the key."""
    if not is_s3(uri):
        raise ValueError(f"{uri!r}: not an s3:// URI")
    bucket, _, key = uri[len(SCHEME):].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r}: no bucket name")
    return bucket, key.strip("/")


def join(uri: str, *parts: str) -> str:
    """``join("s3://b/runs", "x", "model")`` -> ``s3://b/runs/x/model`` (also for local paths)."""
    if not is_s3(uri):
        return str(Path(uri, *parts))
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts if p.strip("/"))])


def client(endpoint_url: str | None = None):
    """An S3 client from boto3's standard configuration, with adaptive retries."""
    import boto3
    from botocore.config import Config

    if endpoint_url is None:
        endpoint_url = next((os.environ[v] for v in ENDPOINT_VARS if os.environ.get(v)), None)
    retries = {"mode": "adaptive"} if os.environ.get("AWS_MAX_ATTEMPTS") else {"mode": "adaptive", "max_attempts": 10}
    return boto3.client("s3", endpoint_url=endpoint_url or None, config=Config(retries=retries))


def _staging_key(key: str) -> str:
    parent, _, name = key.rpartition("/")
    staged = f".{name}.staging-{uuid.uuid4().hex[:12]}-{writer_tag()}"
    return f"{parent}/{staged}" if parent else staged


def remove_dead_staging(s3, bucket: str, key: str) -> list[str]:
    """Delete the staging objects beside ``key`` left by a dead writer of this host, or older than
    ``STAGING_MAX_AGE_S``; returns the deleted keys."""
    parent = key.rpartition("/")[0]
    prefix = f"{parent}/" if parent else ""
    stale: list[str] = []
    now = time.time()
    groups: dict[str, list[tuple[str, float]]] = {}  # staging name -> its objects (a folder has several)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "."):
        for obj in page.get("Contents", []):
            name = obj["Key"][len(prefix):].split("/")[0]
            if ".staging-" in name:
                groups.setdefault(name, []).append((obj["Key"], obj["LastModified"].timestamp()))
    for name, objects in groups.items():
        newest = max(t for _, t in objects)
        if writer_is_dead(name) or now - newest > STAGING_MAX_AGE_S:
            stale += [k for k, _ in objects]
    if stale:
        _delete(s3, bucket, stale)
        log.warning("removed %d staging objects of dead writers under s3://%s/%s", len(stale), bucket, prefix)
    return stale


def _object_size(s3, bucket: str, key: str) -> int | None:
    from botocore.exceptions import ClientError

    try:
        return int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _check_size(s3, bucket: str, key: str, expected: int) -> None:
    size = _object_size(s3, bucket, key)
    if size != expected:
        raise S3Error(f"s3://{bucket}/{key}: {size} bytes after upload, expected {expected}")


def _put(s3, local: Path, bucket: str, key: str) -> int:
    """Upload one local file to ``key`` (no atomicity here) and check its size; returns the size."""
    size = local.stat().st_size
    with open(local, "rb") as f:
        s3.upload_fileobj(f, bucket, key)
    _check_size(s3, bucket, key, size)
    return size


def _copy(s3, bucket: str, src: str, dst: str, size: int) -> None:
    s3.copy({"Bucket": bucket, "Key": src}, bucket, dst)  # managed: multipart copy above 5 GB
    _check_size(s3, bucket, dst, size)


def _delete(s3, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        if chunk:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})


def _list(s3, bucket: str, prefix: str) -> dict[str, int]:
    """Every key under ``prefix`` (a folder: ends with '/') with its size."""
    out: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = int(obj["Size"])
    return out


def _is_staging(rel: str) -> bool:
    return any(part.startswith(".") and ".staging-" in part for part in rel.split("/"))


def upload(local_path: str | Path, uri: str, *, endpoint_url: str | None = None, s3=None) -> dict[str, Any]:
    """Upload a file or a whole folder to ``uri`` atomically (see the module docstring).

    Returns ``{"uri", "files": {relative path: size}, "bytes"}``.
    """
    local = Path(local_path)
    bucket, key = split_uri(uri)
    if not key:
        raise ValueError(f"{uri!r}: upload needs a key, not just a bucket")
    if not local.exists():
        raise FileNotFoundError(f"{local}: no such file or folder to upload")
    s3 = s3 or client(endpoint_url)
    with _errors(s3, uri):
        remove_dead_staging(s3, bucket, key)
        if local.is_dir():
            files = _upload_folder(s3, local, bucket, key)
        else:
            files = {local.name: _upload_file(s3, local, bucket, key)}
    log.info("uploaded %s -> %s (%d files)", local, uri, len(files))
    return {"uri": uri, "files": files, "bytes": sum(files.values())}


def _delete_staging(s3, bucket: str, keys: list[str]) -> None:
    """Best effort: a failed clean-up must not hide the upload's own error (the next upload beside
    these keys removes them once this writer is gone)."""
    try:
        _delete(s3, bucket, keys)
    except Exception as exc:  # noqa: BLE001  (logged; the caller's outcome stands)
        log.warning("could not delete %d staging objects in s3://%s: %s", len(keys), bucket, exc)


def _upload_file(s3, local: Path, bucket: str, key: str) -> int:
    staging = _staging_key(key)
    try:
        size = _put(s3, local, bucket, staging)
        _copy(s3, bucket, staging, key, size)
        return size
    finally:
        _delete_staging(s3, bucket, [staging])


def _upload_folder(s3, local: Path, bucket: str, key: str) -> dict[str, int]:
    files = sorted(p for p in local.rglob("*") if p.is_file())
    rels = [p.relative_to(local).as_posix() for p in files]
    if MANIFEST in rels:
        raise ValueError(f"{local}: holds a file named {MANIFEST}, which is reserved for the upload manifest")
    staging = _staging_key(key)
    staged: list[str] = []
    sizes: dict[str, int] = {}
    try:
        for path, rel in zip(files, rels):  # phase 1: everything to the staging prefix
            staged.append(f"{staging}/{rel}")
            sizes[rel] = _put(s3, path, bucket, staged[-1])
        # A reader holding an older manifest must not see new files under it.
        _delete(s3, bucket, [f"{key}/{MANIFEST}"])
        for rel in rels:  # phase 2: server-side copies to the final keys
            _copy(s3, bucket, f"{staging}/{rel}", f"{key}/{rel}", sizes[rel])
        manifest = json.dumps({"format_version": 1, "files": sizes}, indent=1, sort_keys=True).encode()
        s3.put_object(Bucket=bucket, Key=f"{key}/{MANIFEST}", Body=manifest)  # phase 3: the manifest last
        _check_size(s3, bucket, f"{key}/{MANIFEST}", len(manifest))
        return sizes
    finally:
        _delete_staging(s3, bucket, staged)


def exists(uri: str, *, endpoint_url: str | None = None, s3=None) -> bool:
    bucket, key = split_uri(uri)
    s3 = s3 or client(endpoint_url)
    with _errors(s3, uri):
        if key and _object_size(s3, bucket, key) is not None:
            return True
        return bool(_list(s3, bucket, f"{key}/" if key else ""))


def download(uri: str, local_path: str | Path, *, endpoint_url: str | None = None, s3=None) -> Path:
    """Download an object to a file, or a prefix to a folder; returns the local path written.

    An object goes to ``local_path`` (or inside it, under its own name, if ``local_path`` is an
    existing folder). A prefix goes to the folder ``local_path``, replaced as a whole; with a manifest
    exactly the files it lists are fetched, otherwise every object under the prefix.
    """
    s3 = s3 or client(endpoint_url)
    with _errors(s3, uri):
        return _download(s3, uri, Path(local_path))


def _download(s3, uri: str, local: Path) -> Path:
    from .local import atomic_dir

    bucket, key = split_uri(uri)
    size = _object_size(s3, bucket, key) if key else None
    if size is not None:
        target = local / key.rpartition("/")[2] if local.is_dir() else local
        _download_file(s3, bucket, key, target, size)
        return target
    prefix = f"{key}/" if key else ""
    listed = _list(s3, bucket, prefix)
    if not listed:
        raise FileNotFoundError(f"{uri}: no such object or prefix")
    if prefix + MANIFEST in listed:
        body = s3.get_object(Bucket=bucket, Key=prefix + MANIFEST)["Body"].read()
        wanted = {rel: int(n) for rel, n in json.loads(body)["files"].items()}
    else:
        wanted = {k[len(prefix):]: n for k, n in listed.items() if not _is_staging(k[len(prefix):])}
    with atomic_dir(local, replace=True) as tmp:
        for rel, n in sorted(wanted.items()):
            _download_file(s3, bucket, prefix + rel, tmp / rel, n)
    log.info("downloaded %s -> %s (%d files)", uri, local, len(wanted))
    return local


def _download_file(s3, bucket: str, key: str, target: Path, size: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".{writer_tag()}.tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            s3.download_fileobj(bucket, key, f)
        got = Path(tmp).stat().st_size
        if got != size:
            raise S3Error(f"s3://{bucket}/{key}: downloaded {got} bytes, expected {size}")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _name(uri: str) -> str:
    return split_uri(uri)[1].rpartition("/")[2] or "object"


@contextlib.contextmanager
def local_input(uri: str | Path, *, endpoint_url: str | None = None) -> Iterator[Path]:
    """A local path holding ``uri``: the path itself, or an s3:// object/prefix downloaded to a temp folder."""
    if not is_s3(uri):
        yield Path(uri)
        return
    tmp = Path(tempfile.mkdtemp(prefix="raserec-s3-in-"))
    try:
        yield download(str(uri), tmp / _name(str(uri)), endpoint_url=endpoint_url)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def local_output(uri: str | Path, *, endpoint_url: str | None = None) -> Iterator[Path]:
    """A local path to write ``uri`` to: the path itself, or for s3:// a temp path uploaded on success.

    Whatever the block writes there (a file or a folder) is uploaded atomically when it exits without
    an exception; on an exception nothing is uploaded.
    """
    if not is_s3(uri):
        yield Path(uri)
        return
    tmp = Path(tempfile.mkdtemp(prefix="raserec-s3-out-"))
    try:
        local = tmp / _name(str(uri))
        yield local
        if not local.exists():
            raise FileNotFoundError(f"{uri}: nothing was written to its local stand-in {local}")
        upload(local, str(uri), endpoint_url=endpoint_url)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export(local_path: str | Path, uri: str, *, endpoint_url: str | None = None) -> dict[str, Any]:
    """Copy a finished file or folder to ``uri``: uploaded atomically for s3://, else copied atomically."""
    from .local import atomic_dir, atomic_write_bytes

    if is_s3(uri):
        return upload(local_path, uri, endpoint_url=endpoint_url)
    src, dest = Path(local_path), Path(uri)
    if src.is_dir():
        with atomic_dir(dest, replace=True) as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        files = {p.relative_to(dest).as_posix(): p.stat().st_size for p in dest.rglob("*") if p.is_file()}
    else:
        atomic_write_bytes(dest, src.read_bytes())
        files = {dest.name: dest.stat().st_size}
    return {"uri": str(dest), "files": files, "bytes": sum(files.values())}
