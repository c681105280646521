"""Vendor errors of the Vertex AI and Secret Manager calls (google.api_core, requests, google.auth),
wrapped once, here, into ours through the status table in `http_errors.py`."""

from __future__ import annotations

from typing import Any

from shared.adapters.http_errors import error_for_status
from shared.domain.status import FailureClass
from shared.errors import PermanentError, PlatformError, TransientError


def google_status(exc: Any) -> str | None:
    """The `error.status` word (`FAILED_PRECONDITION`, ...) of a REST error response, when there is one."""
    response: Any = getattr(exc, "response", None)
    try:
        status = response.json()["error"]["status"]
    except Exception:  # noqa: BLE001 - no response, or a body that is not a Google error
        return None
    return status if isinstance(status, str) else None


def api_error(exc: BaseException, what: str) -> PlatformError:
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, gexc.GoogleAPICallError):
        return error_for_status(exc.code if isinstance(exc.code, int) else None, exc.message or "", what=what)
    if isinstance(exc, gexc.RetryError):
        return TransientError(f"{what}: retries exhausted: {exc}")
    if isinstance(exc, (requests.exceptions.Timeout, requests.exceptions.ConnectionError)):
        return TransientError(f"{what}: {type(exc).__name__}")
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return PermanentError(f"{what}: no Google credentials: {exc}", reason="CredentialsError", failure_class=FailureClass.INFRA.value)
    if isinstance(exc, (auth_exc.RefreshError, auth_exc.TransportError)):
        return TransientError(f"{what}: could not refresh credentials: {exc}")
    return PermanentError(f"{what}: {type(exc).__name__}: {exc}", reason="VertexError", failure_class=FailureClass.INFRA.value)
