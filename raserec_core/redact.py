"""Credentials in URIs never reach what we write: ``scheme://user:password@host`` becomes
``scheme://***@host`` in log lines (``RedactingFilter``), result JSON (``redact_tree``) and MLflow params
and tags (``tracking.secrets.safe_params``).

Light on purpose (``re`` and ``logging`` only): the command line installs the filter before it imports
anything heavy.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"
# The userinfo of a URI: everything between "scheme://" and the authority's last "@" (a password may
# itself hold an unescaped "@"); the authority ends at "/", whitespace or a quote.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s'\"<>]*@")


def redact(text: str) -> str:
    """``text`` with the credentials of every URI in it replaced by ``***``."""
    return _USERINFO.sub(rf"\g<scheme>{MASK}@", text) if "@" in text else text


def redact_tree(value: Any) -> Any:
    """``redact`` applied to every string in nested dicts, lists and tuples (keys included)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_tree(k): redact_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_tree(v) for v in value)
    return value


class RedactingFilter(logging.Filter):
    """Rewrites a record whose formatted message holds URI credentials; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001  (a malformed record is the handler's business, not ours)
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:  # tracebacks quote URIs too
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_filter() -> None:
    """Add a ``RedactingFilter`` to every handler of the root logger and of each logger that has its own
    handlers and does not propagate (MLflow's): every line those handlers write is redacted. Idempotent."""
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
