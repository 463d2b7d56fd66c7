"""Password hashing (argon2id, argon2-cffi's defaults) and the rules a new password must meet."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 10
MAX_LENGTH = 1024
_hasher = PasswordHasher()
# Verified against when the user name is unknown, so both answers take the same time.
_DUMMY = _hasher.hash("maild-no-such-user-password")


def check_new(password: str) -> None:
    """ValueError saying why a new password is refused."""
    if len(password) < MIN_LENGTH:
        raise ValueError(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise ValueError(f"a password has at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    check_new(password)
    return _hasher.hash(password)


def verify(stored_hash: str | None, password: str) -> bool:
    """Does `password` match? With no stored hash (unknown user), the same work is done and False returned."""
    try:
        ok = _hasher.verify(stored_hash or _DUMMY, password[:MAX_LENGTH])
    except (VerificationError, InvalidHashError):
        return False
    return ok and stored_hash is not None
