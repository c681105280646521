"""The Kubernetes client: configuration loading (kubeconfig or in-cluster), the vendor's errors mapped
onto ours (once, here, through the shared status table in `http_errors.py`), and the plumbing of
streaming responses (watches and log follows) both readers share."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

from shared.adapters.http_errors import error_for_status
from shared.adapters.kubernetes.config import KubernetesSettings
from shared.domain.redaction import redact
from shared.domain.status import FailureClass
from shared.errors import PermanentError, PlatformError, TransientError

GONE = 410


def _status_body(exc: Any) -> dict[str, Any]:
    body = getattr(exc, "body", None)
    if body is None and getattr(exc, "data", None) is not None and isinstance(exc.data, (bytes, str)):
        body = exc.data
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
            return parsed if isinstance(parsed, dict) else {}
        except json.JSONDecodeError:
            return {"message": body}
    return {}


def is_already_exists(exc: BaseException) -> bool:
    from kubernetes.client.exceptions import ApiException

    return isinstance(exc, ApiException) and exc.status == 409 and _status_body(exc).get("reason", "AlreadyExists") == "AlreadyExists"


def is_not_found(exc: BaseException) -> bool:
    from kubernetes.client.exceptions import ApiException

    return isinstance(exc, ApiException) and exc.status == 404


def api_error(exc: BaseException, what: str, secrets: Any = ()) -> PlatformError:
    """Our error for a failed Kubernetes call: the status through the shared table, the message from
    the server's `Status` (never its headers, and with secret values redacted)."""
    import urllib3
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    if isinstance(exc, ApiException):
        status = exc.status or None
        body = _status_body(exc)
        message = str(body.get("message") or exc.reason or "")
        return error_for_status(status, message, what=what, secrets=secrets)
    if isinstance(exc, urllib3.exceptions.HTTPError):  # timeouts, refused / reset connections
        return TransientError(f"{what}: {type(exc).__name__}: {redact(str(exc), secrets)[:300]}")
    if isinstance(exc, ConfigException):
        return PermanentError(f"{what}: {exc}", reason="KubernetesConfigError", failure_class=FailureClass.INFRA.value)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return TransientError(f"{what}: {type(exc).__name__}: {exc}")
    return PermanentError(f"{what}: {type(exc).__name__}: {redact(str(exc), secrets)[:300]}", reason="KubernetesError", failure_class=FailureClass.INFRA.value)


def is_gone(exc: BaseException) -> bool:
    """An HTTP 410: the resourceVersion asked for is compacted away."""
    from kubernetes.client.exceptions import ApiException

    return isinstance(exc, ApiException) and exc.status == GONE


def load_api_client(cfg: KubernetesSettings) -> Any:
    """An `ApiClient` from `K8S_KUBECONFIG`/`KUBECONFIG` (+ `K8S_CONTEXT`), else in-cluster config."""
    from kubernetes import client, config
    from urllib3.util.retry import Retry

    configuration = client.Configuration()
    try:
        if cfg.kubeconfig:
            config.load_kube_config(config_file=cfg.kubeconfig, context=cfg.context, client_configuration=configuration)  # type: ignore[no-untyped-call]  # the kubernetes client ships no type hints
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]  # the kubernetes client ships no type hints
            except config.ConfigException:
                if not cfg.context:
                    raise
                config.load_kube_config(context=cfg.context, client_configuration=configuration)  # type: ignore[no-untyped-call]  # the kubernetes client ships no type hints
    except Exception as exc:  # noqa: BLE001 - whatever the loader raises, it is our configuration
        raise PermanentError(
            f"could not load the Kubernetes configuration: {exc}", reason="KubernetesConfigError", failure_class=FailureClass.INFRA.value
        ) from exc
    # Retry only what never reached the server (connect errors); everything else is the launcher's call.
    configuration.retries = Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0)
    return client.ApiClient(configuration)


def lines(resp: Any) -> Iterator[str]:
    """Lines of a (chunked, streaming) response as they arrive; the last one even without a newline."""
    buffer = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer += chunk if isinstance(chunk, bytes) else str(chunk).encode()
        while True:
            cut = buffer.find(b"\n")
            if cut < 0:
                break
            line, buffer = buffer[:cut], buffer[cut + 1 :]
            yield line.decode("utf-8", "replace").rstrip("\r")
    if buffer:
        yield buffer.decode("utf-8", "replace").rstrip("\r")


def shutdown(resp: Any) -> None:
    """Unblock a thread reading `resp` by shutting its socket down (the client library's `Watch.stop`
    does the same through the connection; when the server said `Connection: close`, http.client has
    handed the socket to the response, so look there too)."""
    candidates = [getattr(getattr(resp, "connection", None), "sock", None)]
    raw = getattr(getattr(getattr(resp, "_fp", None), "fp", None), "raw", None)
    candidates.append(getattr(raw, "_sock", None))
    for sock in candidates:
        if sock is None:
            continue
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
