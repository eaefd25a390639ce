"""DKIM keys on disk: one directory per domain, one file per selector and algorithm.

    <key_directory>/<domain>/<selector>.rsa.pem       RSA private key (PKCS#8 PEM)
    <key_directory>/<domain>/<selector>.ed25519.key   ed25519 seed, base64
    <key_directory>/<domain>/active                   the selector that signs

A selector names a key pair set; each algorithm gets its own DNS name, since
one name holding two key records makes verifiers pick either (RFC 6376
s3.6.2.2): the RSA key is published at <selector>._domainkey, the ed25519
key at <selector>-ed25519._domainkey.

Private keys are mode 0600, owned by the tmail user; a selector's keys are
created once and never rewritten (rotation is a new selector, activated once
its DNS record is published, the old one removed later).
"""
from __future__ import annotations

import base64
import dataclasses
import os
import pwd
import re
import tempfile

from .core.signer import Key

ALGORITHMS = ("rsa", "ed25519")
_SUFFIX = {"rsa": ".rsa.pem", "ed25519": ".ed25519.key"}
_SELECTOR = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")


class DkimKeyError(Exception):
    pass


def check_selector(selector: str) -> str:
    selector = selector.strip().lower()
    if not _SELECTOR.fullmatch(selector) or len(selector) > 50:
        raise DkimKeyError(f"invalid selector {selector!r}: letters, digits, hyphens and dots, "
                        "like a DNS label (for example 's2026')")
    return selector


def dns_selector(selector: str, algorithm: str) -> str:
    return selector if algorithm == "rsa" else f"{selector}-{algorithm}"


@dataclasses.dataclass(frozen=True)
class StoredKey:
    domain: str
    selector: str
    algorithm: str
    path: str

    @property
    def dns_selector(self) -> str:
        return dns_selector(self.selector, self.algorithm)


def generate_private(algorithm: str, bits: int = 2048) -> bytes:
    if algorithm == "rsa":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    if algorithm == "ed25519":
        import nacl.signing
        return base64.b64encode(bytes(nacl.signing.SigningKey.generate())) + b"\n"
    raise DkimKeyError(f"unknown algorithm {algorithm!r} (expected rsa or ed25519)")


def public_record(algorithm: str, private: bytes) -> str:
    """The DKIM TXT record value (RFC 6376 s3.6.1, RFC 8463 for ed25519)."""
    if algorithm == "rsa":
        from cryptography.hazmat.primitives import serialization
        key = serialization.load_pem_private_key(private, password=None)
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    import nacl.signing
    verify_key = nacl.signing.SigningKey(base64.b64decode(private.strip())).verify_key
    return "v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(verify_key)).decode()


def record_name(domain: str, selector: str) -> str:
    return f"{selector}._domainkey.{domain}"


def zone_txt(name: str, value: str) -> str:
    """A zone-file TXT record; strings of at most 255 octets (RFC 1035 s3.3.14)."""
    parts = [value[i:i + 250] for i in range(0, len(value), 250)]
    return f"{name}. IN TXT ( " + " ".join(f'"{p}"' for p in parts) + " )"


class KeyStore:
    def __init__(self, directory: str, owner: str | None = None):
        self.directory = directory
        self.owner = owner

    def _dir(self, domain: str) -> str:
        return os.path.join(self.directory, domain)

    def path(self, domain: str, selector: str, algorithm: str) -> str:
        return os.path.join(self._dir(domain), selector + _SUFFIX[algorithm])

    def keys(self, domain: str) -> list[StoredKey]:
        try:
            names = sorted(os.listdir(self._dir(domain)))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            for algorithm, suffix in _SUFFIX.items():
                if name.endswith(suffix):
                    found.append(StoredKey(domain, name[: -len(suffix)], algorithm,
                                           os.path.join(self._dir(domain), name)))
        return found

    def domains(self) -> list[str]:
        try:
            return sorted(d for d in os.listdir(self.directory) if self.keys(d))
        except FileNotFoundError:
            return []

    def active(self, domain: str) -> str | None:
        try:
            with open(os.path.join(self._dir(domain), "active")) as handle:
                selector = handle.read().strip()
        except FileNotFoundError:
            return None
        return selector or None

    def read(self, stored: StoredKey) -> bytes:
        with open(stored.path, "rb") as handle:
            return handle.read()

    def stamp(self, domain: str):
        """Changes whenever the domain's keys or active selector do: readers
        cache signing_keys() under it."""
        directory = self._dir(domain)
        stamp = []
        for path in (directory, os.path.join(directory, "active")):
            try:
                info = os.stat(path)
                stamp.append((info.st_ino, info.st_mtime_ns, info.st_size))
            except OSError:
                stamp.append(None)
        return tuple(stamp)

    def signing_keys(self, domain: str) -> list[Key]:
        """The active selector's keys, RSA first (what every verifier knows)."""
        selector = self.active(domain)
        found = [k for k in self.keys(domain) if k.selector == selector]
        found.sort(key=lambda k: ALGORITHMS.index(k.algorithm))
        return [Key(domain, k.dns_selector, k.algorithm, self.read(k)) for k in found]

    # -- changes (the CLI) ---------------------------------------------------
    def _write(self, path: str, data: bytes, mode: int) -> None:
        directory = os.path.dirname(path)
        os.makedirs(directory, mode=0o750, exist_ok=True)
        self._own(self.directory)
        self._own(directory)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, mode)
            self._own(tmp)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _own(self, path: str) -> None:
        if self.owner and os.geteuid() == 0:
            entry = pwd.getpwnam(self.owner)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def create(self, domain: str, selector: str, algorithm: str, bits: int = 2048) -> tuple[StoredKey, bool]:
        """The key for (domain, selector, algorithm), made if missing; True if made."""
        path = self.path(domain, selector, algorithm)
        stored = StoredKey(domain, selector, algorithm, path)
        if os.path.exists(path):
            return stored, False
        self._write(path, generate_private(algorithm, bits), 0o600)
        return stored, True

    def activate(self, domain: str, selector: str) -> bool:
        if not any(k.selector == selector for k in self.keys(domain)):
            raise DkimKeyError(f"no key for selector {selector!r} of {domain} (run `tmail dkim keygen`)")
        if self.active(domain) == selector:
            return False
        self._write(os.path.join(self._dir(domain), "active"), selector.encode() + b"\n", 0o640)
        return True

    def remove(self, domain: str, selector: str) -> list[StoredKey]:
        if self.active(domain) == selector:
            raise DkimKeyError(f"selector {selector!r} signs {domain}'s mail: activate another first")
        removed = [k for k in self.keys(domain) if k.selector == selector]
        for key in removed:
            os.unlink(key.path)
        return removed
