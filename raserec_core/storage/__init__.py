"""Where artifacts are written: local folders (atomic) and S3 URIs."""

from .local import atomic_dir, atomic_write_bytes, atomic_write_text

__all__ = ["atomic_dir", "atomic_write_bytes", "atomic_write_text"]
