"""Sealing a secret the platform must keep and later use itself (the studio's callback `Authorization`).

The store sees only the sealed text: AES-256-GCM (authenticated, so a tampered value is refused, not
decrypted into garbage) under a key derived with HKDF-SHA256 from the platform's
`WEBHOOK_SIGNING_SECRET`, with an info string of its own, so the sealing key is never the signing key
and a key for another purpose can never open these. A fresh random 96-bit nonce per seal (this is why
it lives outside the pure domain). The sealed text is `v1.` + URL-safe base64 of nonce || ciphertext;
the prefix names the scheme, so another one can come later and old values still open.

Built at the edge (`Settings.request_policy` seals, the composition root gives the notifier `unseal`).
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.errors import PermanentError

VERSION = "v1"
PREFIX = VERSION + "."
# The purpose the key is derived for; changing it makes every sealed value unreadable.
INFO = b"training-platform/sealed-secret/v1"
# Bound into every seal (associated data): a value sealed for another purpose under the same key won't open.
AAD = b"callback-authorization"
NONCE_BYTES = 12


class SealError(PermanentError):
    """A sealed value that can't be opened (another key, tampered, not ours): retrying won't help."""

    def __init__(self, message: str):
        super().__init__(message, reason="SealError")


def derive_key(secret_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(secret_key)


class Sealer:
    def __init__(self, secret_key: bytes):
        self._aead = AESGCM(derive_key(secret_key))

    def seal(self, plain: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plain.encode("utf-8"), AAD)
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")

    def unseal(self, sealed: str) -> str:
        if not isinstance(sealed, str) or not sealed.startswith(PREFIX):
            raise SealError("not a sealed value of a known version")
        raw = sealed[len(PREFIX) :]
        try:
            blob = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (binascii.Error, ValueError) as exc:
            raise SealError("a sealed value that is not base64") from exc
        if len(blob) <= NONCE_BYTES:
            raise SealError("a sealed value too short to hold anything")
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], AAD).decode("utf-8")
        except InvalidTag as exc:
            # Sealed under another WEBHOOK_SIGNING_SECRET (rotated), or altered.
            raise SealError("the sealed value does not open with this platform's key") from exc


def sealer(secret_key: bytes | None) -> Sealer | None:
    """A sealer for the platform's signing key, None when there is none (nothing can be sealed)."""
    return Sealer(secret_key) if secret_key else None
