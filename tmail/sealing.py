"""Secrets kept in a shared database, sealed with the fleet key.

Several MX hosts share one database; their DKIM private keys and SRS
secrets live there too, so that a rotation on one host is the rotation of
all. The database may be readable by more than the mail hosts (a DBA,
backups, a replica), so each secret is sealed with AES-256-GCM under the
fleet key, a file that only the hosts hold ([fleet] key_file, mode 0600,
owned by tmail, distributed like any host secret, e.g. from Ansible vault).

The associated data is the secret's identity (`what`): a sealed DKIM key
moved to another domain's row, or an SRS secret to a DKIM row, fails to
open instead of being used for the wrong thing.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os

PREFIX = "v1:"
KEY_BYTES = 32


class SealError(Exception):
    pass


def new_key() -> str:
    """A new fleet key, as the key file holds it (base64, one line)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def read_key(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            text = handle.read().strip()
    except OSError as exc:
        raise SealError(f"{path}: cannot read the fleet key: {exc.strerror}") from None
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise SealError(f"{path}: a fleet key is {KEY_BYTES} bytes in base64 on one line "
                        "(make one with `tmail fleet keygen`)")
    return key


def key_id(key: bytes) -> str:
    """A short public name of a fleet key: hosts compare it, it reveals nothing."""
    return hashlib.sha256(b"tmail fleet key id\0" + key).hexdigest()[:12]


class Sealer:
    def __init__(self, key: bytes):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        self._aead = AESGCM(key)
        self.key_id = key_id(key)
        self._digest_key = hashlib.sha256(b"tmail fleet digests\0" + key).digest()

    def digest(self, data: bytes) -> bytes:
        """A keyed digest of secret material, for hosts to compare what they
        use: a database reader cannot test guesses of the secret against it."""
        return hmac.new(self._digest_key, data, hashlib.sha256).digest()

    def seal(self, what: str, secret: bytes) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, secret, what.encode("utf-8"))
        return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, what: str, sealed: str) -> bytes:
        from cryptography.exceptions import InvalidTag
        try:
            if not sealed.startswith(PREFIX):
                raise ValueError("no v1: prefix")
            raw = base64.b64decode(sealed[len(PREFIX):], validate=True)
            if len(raw) < 12 + 16:
                raise ValueError("too short")
            return self._aead.decrypt(raw[:12], raw[12:], what.encode("utf-8"))
        except (ValueError, TypeError, InvalidTag):
            raise SealError(f"{what}: does not open with this host's fleet key (id {self.key_id}): "
                            "sealed under another host's key, or altered") from None
