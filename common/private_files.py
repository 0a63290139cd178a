"""Files only the server's user may read: generated secrets and keys in the data directory.

Written through a temporary file (O_EXCL, 0600) and renamed into place, so a reader never
sees half a secret and no other user can open it even for a moment.
"""

from __future__ import annotations

import os
import secrets


def write_private_file(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write `data` (text gets a final newline) to `path`, 0600, replacing any older file;
    the directory is made (0700) when missing."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    if isinstance(data, str):
        data = (data if data.endswith("\n") else data + "\n").encode("utf-8")
    temporary = f"{path}.tmp-{secrets.token_hex(4)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def stored_secret(path: str | os.PathLike[str], nbytes: int) -> tuple[str, bool]:
    """The secret kept in `path`, generated there (0600, `nbytes` of randomness,
    URL-safe) the first time. Returns (secret, whether it was generated now)."""
    try:
        with open(path, encoding="utf-8") as file:
            value = file.read().strip()
        if value:
            return value, False
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(nbytes)
    write_private_file(path, value)
    return value, True
