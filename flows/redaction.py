"""Every log record made in a seedfield process is redacted when it is made.

A record's message (and its traceback, when it has one) passes through
:func:`pipeline.secrets.redact_text` in the log-record factory, so the console, Prefect's API
log handler (its database and UI) and any handler added later all see only redacted text, however
the logging is configured. Installed once, when the ``flows`` package is imported.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from pipeline.secrets import redact_text

__all__ = ["install_log_redaction", "quiet_user_error_tracebacks"]

_INSTALLED = "_seedfield_redacting"
_QUIET: tuple[type[BaseException], ...] = ()
_QUIET_API = False


def quiet_user_error_tracebacks(kinds: tuple[type[BaseException], ...], api_errors: bool = False) -> None:
    """From now on, records that carry an exception of one of ``kinds`` (the user's mistakes: bad
    input, a full disk …) keep their message but lose their traceback, so Prefect's "Encountered
    exception" lines do not bury the CLI's one-line error. The CLI calls this unless ``--debug``.
    ``api_errors``: also the transport errors of a lost Prefect API (:mod:`flows.api_loss`)."""
    global _QUIET, _QUIET_API
    _QUIET = tuple(kinds)
    _QUIET_API = api_errors


def _from_lost_api(exc: BaseException | None) -> bool:
    from flows.api_loss import api_lost

    return exc is not None and api_lost(exc) is not None


def install_log_redaction() -> None:
    """Wrap the process's log-record factory (idempotent)."""
    base = logging.getLogRecordFactory()
    if getattr(base, _INSTALLED, False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as it would
            return record
        shown = redact_text(message)
        if shown != message:
            record.msg, record.args = shown, ()
        if record.exc_info and record.exc_info[0] is not None and (
                (_QUIET and issubclass(record.exc_info[0], _QUIET)) or (_QUIET_API and _from_lost_api(record.exc_info[1]))):
            record.exc_info, record.exc_text = None, None
        if record.exc_info and record.exc_info[0] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            if redact_text(text) != text:
                record.exc_text = redact_text(text)  # formatters use exc_text when it is set
        return record

    setattr(factory, _INSTALLED, True)
    logging.setLogRecordFactory(factory)
