"""API keys: generated with 256 bits of entropy, shown once, stored only as a SHA-256 digest.

A key reads ``dpg_<id>_<secret>``: `id` (8 hex digits) is not secret and names the key in listings and
the audit log; `secret` is ``secrets.token_urlsafe(32)``. A plain, unsalted SHA-256 is enough for keys
this random (there is nothing to brute-force); a configured administrator key (DPGATE_ADMIN_KEY) of any
shape is accepted if it is long enough, and hashed the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from .errors import InvalidInput

__all__ = [
    "MAX_KEY_LENGTH",
    "MIN_CONFIGURED_KEY_LENGTH",
    "PREFIX",
    "check_configured_key",
    "digests_equal",
    "key_hash",
    "key_id_of",
    "new_key",
]

PREFIX = "dpg_"
MIN_CONFIGURED_KEY_LENGTH = 16
MAX_KEY_LENGTH = 512
# compared against when no key matches, so that unknown keys take about as long as known ones
_DUMMY_DIGEST = hashlib.sha256(b"dpgate: no such key").hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh ``(key, key_id)``."""
    key_id = PREFIX + secrets.token_hex(4)
    return f"{key_id}_{secrets.token_urlsafe(32)}", key_id


def key_hash(key: str) -> str:
    """The stored form of `key`: its SHA-256 digest, hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id_of(key: str) -> str:
    """The non-secret id of a key: its ``dpg_xxxxxxxx`` part, or for a configured key of another shape a
    short digest prefix (which says nothing useful about a key long enough to be accepted)."""
    head, sep, _ = key[len(PREFIX) :].partition("_")
    if key.startswith(PREFIX) and sep and len(head) == 8:
        return PREFIX + head
    return "cfg_" + key_hash(key)[:8]


def check_configured_key(key: str) -> None:
    if not isinstance(key, str) or len(key) < MIN_CONFIGURED_KEY_LENGTH:
        raise InvalidInput(f"a configured key must be a string of at least {MIN_CONFIGURED_KEY_LENGTH} characters")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"a configured key must be at most {MAX_KEY_LENGTH} characters")


def digests_equal(stored: str | None, presented: str) -> bool:
    """Constant-time comparison of hex digests; `stored` None (no such key) compares against a dummy."""
    return hmac.compare_digest(stored if stored is not None else _DUMMY_DIGEST, presented) and stored is not None
