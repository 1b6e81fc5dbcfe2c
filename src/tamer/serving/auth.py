"""API keys: clients send `Authorization: Bearer KEY`; the server keeps only each key's SHA-256 and compares in
constant time (hmac.compare_digest), so a stolen key file serves no one and a key never reaches a log.

Key file format (UTF-8 text, owner-only): one key per line, `sha256:<64 hex digits> <name> <role>`, role `client`
(predict, completions, model card) or `admin` (also `POST /admin/reload`); blank lines and `#` comments are ignored.
`tamer serve --make-api-key NAME [--admin] --api-key-file F` appends a fresh key and prints it once. Keys are 256
random bits, so an unsalted hash is enough (as for GitHub's or Stripe's tokens): nothing to guess from it.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

ROLES = ("client", "admin")
PREFIX = "tamer_"
_LINE = re.compile(r"^sha256:([0-9a-f]{64})\s+(\S+)\s+(\S+)$")


@dataclass(frozen=True)
class Identity:
    """Who a valid key belongs to (never the key itself)."""

    name: str
    role: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRing:
    """The hashed keys of one key file."""

    def __init__(self, entries: list[tuple[str, Identity]]):
        self.entries = entries

    @classmethod
    def load(cls, path: str | os.PathLike) -> "KeyRing":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--api-key-file {str(path)!r} cannot be read ({exc.strerror}); make one with "
                             f"`tamer serve --make-api-key NAME --api-key-file {path}`.") from None
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            match = _LINE.match(line)
            if not match or match.group(3) not in ROLES:
                raise UsageError(f"line {number} of --api-key-file {str(path)!r} is not `sha256:<64 hex> NAME ROLE` with "
                                 f"ROLE client or admin (the file holds hashes, never keys).")
            entries.append((match.group(1), Identity(match.group(2), match.group(3))))
        if not entries:
            raise UsageError(f"--api-key-file {str(path)!r} holds no key; add one with `tamer serve --make-api-key NAME "
                             f"--api-key-file {path}`.")
        return cls(entries)

    def identify(self, authorization: str | None) -> Identity | None:
        """The identity whose key is in an `Authorization: Bearer KEY` header, or None. Every stored hash is
        compared, in constant time, whichever matches."""
        if not authorization:
            return None
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        digest = hash_key(key.strip())
        found = None
        for stored, identity in self.entries:
            if hmac.compare_digest(stored, digest):
                found = identity
        return found


def make_api_key(path: str | os.PathLike, name: str, role: str = "client") -> str:
    """Append a new random key's hash to the key file (created owner-only; rewritten atomically) and return the
    key, which is stored nowhere else: show it once."""
    if role not in ROLES:
        raise UsageError(f"key role {role!r} is not accepted; use client or admin.")
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", name):
        raise UsageError(f"key name {name!r} is not accepted; use 1-64 letters, digits or _ . @ -.")
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else "# tamer API keys: sha256:<hex> NAME ROLE\n"
    if old and not old.endswith("\n"):
        old += "\n"
    key = PREFIX + secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tamer-tmp-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{old}sha256:{hash_key(key)} {name} {role}\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return key
