"""Credentials from a Prefect Secret block, merged into a configuration when a command starts.

``archive.credentials_block``, ``observations.credentials_block`` and ``stores.credentials_block`` name Secret blocks (created in
the UI, or with ``Secret(value={...}).save(name)``) whose value is a JSON object:

* fsspec options, merged over the section's ``storage_options`` (nested objects such as
  ``client_kwargs`` are merged key by key): ``{"key": "…", "secret": "…"}`` for S3;
* for an HTTP(S) archive, ``{"username": "…", "password": "…"}``: basic auth, sent as an
  ``Authorization`` header with every request.

The values live only in the process's configuration object. Everything that shows or stores a
configuration masks them (``storage_options`` is serialised through
:func:`pipeline.secrets.redact_options`, so Prefect's flow-run parameters hold ``***``), and the
block itself is stored encrypted by the Prefect server.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from flows.config import ConfigError, SeedfieldConfig

__all__ = ["with_credentials"]


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _secret_value(name: str, key: str) -> dict[str, Any]:
    """The JSON object stored in the Secret block ``name``; a ConfigError naming ``key`` otherwise."""
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL

    try:
        value = Secret.load(name).get()
    except ValueError as exc:  # Prefect's "Unable to find block document named …"
        server = PREFECT_API_URL.value() or "Prefect's temporary server (PREFECT_API_URL is not set)"
        raise ConfigError(
            f"config key {key!r}: no Prefect Secret block named {name!r} on {server} ({exc.__class__.__name__}); "
            "expected one created in the UI (Blocks → Secret) or with Secret(value={...}).save(name)"
        ) from None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, dict):
        raise ConfigError(f"config key {key!r}: the Secret block {name!r} must hold a JSON object of options "
                          "(e.g. {\"key\": …, \"secret\": …}), not a plain value")
    return value


def _http_auth(options: dict[str, Any]) -> dict[str, Any]:
    """``username``/``password`` as the ``Authorization`` header fsspec's HTTP filesystem sends."""
    if "username" not in options and "password" not in options:
        return options
    rest = {k: v for k, v in options.items() if k not in ("username", "password")}
    token = base64.b64encode(f"{options.get('username', '')}:{options.get('password', '')}".encode()).decode()
    return _merged(rest, {"headers": {"Authorization": f"Basic {token}"}})


def with_credentials(config: SeedfieldConfig) -> SeedfieldConfig:
    """``config`` with its Secret blocks' options merged in (itself when it names none)."""
    archive, stores = config.archive, config.stores
    if archive.credentials_block:
        extra = _secret_value(archive.credentials_block, "archive.credentials_block")
        if str(archive.source or "").startswith(("http://", "https://")):
            extra = _http_auth(extra)
        archive = archive.model_copy(update={"storage_options": _merged(archive.storage_options, extra)})
    if stores.credentials_block:
        extra = _secret_value(stores.credentials_block, "stores.credentials_block")
        stores = stores.model_copy(update={"storage_options": _merged(stores.storage_options, extra)})
    observations = config.observations
    if observations.credentials_block:
        extra = _secret_value(observations.credentials_block, "observations.credentials_block")
        if str(observations.source or "").startswith(("http://", "https://")):
            extra = _http_auth(extra)
        observations = observations.model_copy(
            update={"storage_options": _merged(observations.storage_options, extra)})
    if archive is config.archive and stores is config.stores and observations is config.observations:
        return config
    return config.model_copy(update={"archive": archive, "stores": stores, "observations": observations})
