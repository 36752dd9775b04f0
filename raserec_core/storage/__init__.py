"""Where artifacts are written: local folders (atomic) and S3 URIs (boto3 lives here only)."""

from .local import atomic_dir, atomic_write_bytes, atomic_write_text, may_replace, read_json
from .s3 import S3Error, download, export, is_s3, join, local_input, local_output, split_uri, upload

__all__ = [
    "S3Error",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_text",
    "download",
    "export",
    "is_s3",
    "join",
    "local_input",
    "local_output",
    "may_replace",
    "read_json",
    "split_uri",
    "upload",
]
