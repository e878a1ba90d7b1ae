"""Keep credentials out of everything seedfield shows or stores (docs/operations.md, "Credentials").

A URL may carry a password (``https://user:pass@host/…``) or a signed query
(``?X-Amz-Signature=…``), and fsspec options may carry keys (``key``, ``secret``, ``token``,
``password``, ``Authorization`` headers). The process uses them to read and write; every log
line, report, commit marker, store attribute, Prefect parameter and artifact gets the redacted
form made here. Pure string and dict logic, no I/O.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "is_secret_key", "redact_options", "redact_text", "redact_url"]

MASK = "***"

#: Words that make an option or query-parameter name a credential (names are split into words
#: at every non-alphanumeric character: ``aws_secret_access_key``, ``X-Amz-Signature``).
_SECRET_WORDS = frozenset({
    "key", "secret", "token", "password", "passwd", "pass", "pwd", "auth", "authorization",
    "credential", "credentials", "signature", "sig", "cookie", "apikey", "sas",
})
#: Names made of such words that only name a thing.
_SAFE_NAMES = frozenset({"key_prefix"})

#: ``scheme://userinfo@`` (the userinfo is what goes); the scheme may be any fsspec protocol.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/\s@'\"<>]+)@")
#: ``name=value`` in a query string whose name is a credential.
_QUERY = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&\s'\"]+)=(?P<value>[^&\s'\"#]*)")


def is_secret_key(name: str) -> bool:
    """True for an option or query name that holds a credential."""
    words = set(re.split(r"[^a-z0-9]+", str(name).lower()))
    return str(name).lower() not in _SAFE_NAMES and bool(words & _SECRET_WORDS)


def redact_text(text: str) -> str:
    """``text`` with every URL userinfo and every credential query value replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", str(text))
    return _QUERY.sub(lambda m: f"{m['sep']}{m['name']}={MASK}" if is_secret_key(m["name"]) else m[0], text)


def redact_url(url: str) -> str:
    """A URL (or local path) as it may be shown: userinfo and credential query values masked."""
    return redact_text(url)


def redact_options(options: Any) -> Any:
    """fsspec options with every credential value masked (recursively; lists and dicts)."""
    if isinstance(options, dict):
        return {k: (MASK if is_secret_key(str(k)) and v not in (None, "", False) else redact_options(v))
                for k, v in options.items()}
    if isinstance(options, (list, tuple)):
        return type(options)(redact_options(v) for v in options)
    if isinstance(options, str):
        return redact_text(options)
    return options
