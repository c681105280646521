"""A job's status callback: where the studio wants its job's statuses (`callbacks` of the studio's body).

The `Authorization` value the studio gives (`callbacks.auth_header`) is a secret: the job keeps it only
sealed (`sealed_authorization`, authenticated encryption under a key from the platform's settings); the
notifier unseals it for each delivery. It is never in a summary, a response, a log or a manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STUDIO = "studio"  # the studio's callback format: POST {"status", "log"}


@dataclass(frozen=True)
class Callback:
    url: str
    sealed_authorization: str | None = None  # sealed `Authorization` header value, or None: no header
    kind: str = STUDIO

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.url, "sealedAuthorization": self.sealed_authorization}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Callback | None:
        if not data:
            return None
        return cls(url=data["url"], sealed_authorization=data.get("sealedAuthorization"), kind=data.get("kind") or STUDIO)
