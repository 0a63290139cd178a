"""What the server needs before it serves: its secrets, a first account.

- `private_data_dir(data_dir)`: DATA_DIR exists with mode 0700.
- `resolve_secrets(cfg)`: the operator key and the join-token secret come from the settings
  (`auth.operator_key`, `auth.token_secret`) or, when those are empty, from files in the
  data directory, generated once (mode 0600). Neither is ever logged or printed.
- `first_start(store, data_dir)`: an empty store gets customer "Default" and host `admin@localhost`
  whose random password goes to `DATA_DIR/initial-host-password` (0600); the path is
  printed, never the password, so `./scripts/serve` is all a newcomer needs.
Meetings still live from a previous run are not ended: they go on
(control.meeting.resumption).
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field

from common.private_files import stored_secret, write_private_file
from config import Config
from control.accounts.service import hash_password, new_api_key
from control.store.base import Conflict, Store

log = logging.getLogger(__name__)

OPERATOR_KEY_FILE = "operator-key"
TOKEN_SECRET_FILE = "token-secret"
INITIAL_PASSWORD_FILE = "initial-host-password"
DEFAULT_CUSTOMER_NAME = "Default"
DEFAULT_HOST_EMAIL = "admin@localhost"
DEFAULT_HOST_NAME = "Administrator"


@dataclass(frozen=True)
class Secrets:
    operator_key: str = field(repr=False)
    token_secret: str = field(repr=False)


PRIVATE_DIRECTORY = 0o700


def private_data_dir(data_dir: str) -> None:
    """The data directory (database, secrets, the recorder's spool and work) exists and is
    the server user's alone (0700, also when an older version made it 0755)."""
    os.makedirs(data_dir, mode=PRIVATE_DIRECTORY, exist_ok=True)
    os.chmod(data_dir, PRIVATE_DIRECTORY)


def _file_secret(data_dir: str, name: str, nbytes: int) -> str:
    """The secret stored in DATA_DIR/name, generated there the first time."""
    path = os.path.join(data_dir, name)
    value, generated = stored_secret(path, nbytes)
    if generated:
        log.info("generated %s", path)
    return value


def resolve_secrets(cfg: Config) -> Secrets:
    return Secrets(
        operator_key=cfg.auth.operator_key or _file_secret(cfg.data_dir, OPERATOR_KEY_FILE, 32),
        token_secret=cfg.auth.token_secret or _file_secret(cfg.data_dir, TOKEN_SECRET_FILE, 48),
    )


def operator_key_path(cfg: Config) -> str:
    return os.path.join(cfg.data_dir, OPERATOR_KEY_FILE)


async def first_start(store: Store, data_dir: str) -> None:
    """Create the default customer and host when the store has no customer at all."""
    if await store.count_customers() > 0:
        return
    _, api_key_hash = new_api_key()  # nobody holds it; the operator can rotate it
    customer = await store.create_customer(DEFAULT_CUSTOMER_NAME, api_key_hash=api_key_hash)
    password = secrets.token_urlsafe(12)
    try:
        host = await store.create_host(
            customer.id, DEFAULT_HOST_EMAIL, DEFAULT_HOST_NAME, await hash_password(password)
        )
    except Conflict:
        # Several nodes started together on an empty shared database: another one made
        # the first host (host emails are unique in the store) between our count and now.
        await store.delete_customer(customer.id)
        log.info("first start: another node made the first host; nothing to do here")
        return
    path = os.path.join(data_dir, INITIAL_PASSWORD_FILE)
    write_private_file(path, password)
    await store.append_audit(
        actor_kind="system",
        actor_id="bootstrap",
        action="bootstrap.first_start",
        target_kind="host",
        target_id=host.id,
        detail={"customer_id": customer.id, "email": host.email},
    )
    print(
        f"conclave: first start: host {DEFAULT_HOST_EMAIL} created; its password is in {path}",
        flush=True,
    )
    log.info("first start: customer %s and host %s created", customer.id, host.id)

