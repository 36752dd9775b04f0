"""What may reach MLflow: secrets dropped from parameters and tags, credentials masked or moved.

Parameters are the flattened resolved config; any key naming a secret (``SECRET``, ``PASSWORD``,
``TOKEN``, ``ACCESS_KEY``) is dropped and credentials in URLs are masked (``raserec_core.redact``), so
nothing secret reaches MLflow. The credentials of an ``http(s)://user:password@host`` tracking URI move
to ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (``credentials_to_env``), which MLflow
reads, so the URI that travels (pipeline parameters, kfp's executor input, MLflow's "View run" lines) has
none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..config import flatten

SENSITIVE = ("SECRET", "PASSWORD", "TOKEN", "ACCESS_KEY")


def is_sensitive(key: str) -> bool:
    upper = key.upper()
    return any(word in upper for word in SENSITIVE)


def scrub(value: str) -> str:
    """Mask ``user:password@`` in every URL in ``value`` (``redact.redact``)."""
    from ..redact import redact

    return redact(value)


def credentials_to_env(tracking_uri: str) -> str:
    """``http(s)://user:password@host/...`` -> ``http(s)://host/...``, the credentials moved to
    ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` of this process (and its children). Other
    URIs are returned as they are (a database URI needs its credentials inline; logs still mask them)."""
    import os
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return tracking_uri
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(user)
    if password:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(password)
    return urlunsplit(parts._replace(netloc=host))


def safe_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Flattened, secrets dropped, URL credentials stripped, values as strings."""
    out = {}
    for key, value in flatten(params).items():
        if is_sensitive(key):
            continue
        text = json.dumps(value) if isinstance(value, (list, tuple, bool)) or value is None else str(value)
        out[key] = scrub(text)[:6000]
    return out
