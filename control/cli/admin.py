"""Operator commands of `conclave`: customers, hosts and meetings of a running server.

    conclave customer create "Acme" --limit max_concurrent_meetings=5
    conclave host create --customer ID --email ann@acme.example --name "Ann"
    conclave meeting list --status live
    conclave meeting end 123-4567-8901

They talk to the server's REST API (`/api/v1`) with the operator key, so they work on
whatever the server holds and leave the same audit trail as any other client.
The server: `--server URL`, else the settings the server uses (`--config`, $CONCLAVE_CONFIG
and the CONCLAVE_* variables): `http.public_url` or `http.host:http.port`. The operator
key: `--operator-key`, else `auth.operator_key` (e.g. $CONCLAVE_AUTH__OPERATOR_KEY), else
the file DATA_DIR/operator-key the server generated. (No other CONCLAVE_ variables: the
settings loader refuses unknown ones, and `serve` must keep starting in the same shell.)
Exit codes: 0 done, 1 the server refused (its message is printed) or cannot be reached,
2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from config import ConfigError, load_config
from control.accounts.bootstrap import OPERATOR_KEY_FILE
from control.cli import cluster_dev

EXIT_OK, EXIT_API_ERROR, EXIT_USAGE = 0, 1, 2
REQUEST_TIMEOUT_S = 30.0


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_API_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ---------------------------------------------------------------------- talking to the server


class Client:
    def __init__(self, server: str, operator_key: str) -> None:
        self.base = server.rstrip("/") + "/api/v1"
        self.operator_key = operator_key

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **query: str | None) -> Any:
        params = {k: v for k, v in query.items() if v is not None}
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.operator_key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise CliError(_error_text(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(f"cannot reach the server at {self.base}: {reason}") from None
        return json.loads(raw) if raw.strip() else None


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        error = json.loads(exc.read())["error"]
        return f"{error['message']} ({error['code']}, HTTP {exc.code})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code} {exc.reason}"


def _settings(args: argparse.Namespace) -> Any:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        raise CliError(f"bad configuration:\n{exc}", EXIT_USAGE) from None


def client_from(args: argparse.Namespace) -> Client:
    server, key = args.server, args.operator_key
    cfg = None
    if not server or not key:
        cfg = _settings(args)
    if not server:
        if cfg.http.public_url:
            server = cfg.http.public_url
        else:
            host = "127.0.0.1" if cfg.http.host in ("0.0.0.0", "::") else cfg.http.host
            host = f"[{host}]" if ":" in host else host
            scheme = "https" if cfg.http.tls_cert else "http"
            server = f"{scheme}://{host}:{cfg.http.port}"
    if not key:
        key = cfg.auth.operator_key or _read_key_file(os.path.join(cfg.data_dir, OPERATOR_KEY_FILE))
    return Client(server, key)


def _read_key_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            key = file.read().strip()
    except OSError as exc:
        raise CliError(
            f"no operator key: give --operator-key, set CONCLAVE_AUTH__OPERATOR_KEY, or let me read {path} "
            f"({exc.strerror})",
            EXIT_USAGE,
        ) from None
    if not key:
        raise CliError(f"{path} is empty", EXIT_USAGE)
    return key


# ---------------------------------------------------------------------- output


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as an aligned text table with a header; `-` for empty cells."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    header = [c.upper() for c in columns]
    widths = [max(len(x) for x in col) for col in zip(header, *cells)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header, *cells]]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _show(record: dict[str, Any], fields: Sequence[str]) -> None:
    width = max(len(f) for f in fields)
    for name in fields:
        print(f"{name.ljust(width)}  {_cell(record.get(name))}")


CUSTOMER_COLUMNS = ("id", "name", "status", "created_at")
HOST_COLUMNS = ("id", "email", "name", "status", "customer_id")
MEETING_COLUMNS = ("meeting_number", "title", "status", "host_id", "customer_id", "start_time")
NODE_COLUMNS = ("node_id", "public_url", "draining", "cpu", "participants", "meetings", "packets_per_s")


# ---------------------------------------------------------------------- commands


def _limits(pairs: Sequence[str]) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise CliError(f"--limit {pair!r}: expected NAME=VALUE", EXIT_USAGE)
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "on", "false", "no", "off"):
            limits[name] = lowered in ("true", "yes", "on")
        else:
            try:
                limits[name] = int(text)
            except ValueError:
                raise CliError(f"--limit {pair!r}: expected an integer or true/false", EXIT_USAGE) from None
    return limits


def customer_create(client: Client, args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"name": args.name}
    if args.limit:
        body["limits"] = _limits(args.limit)
    if args.webhook_url:
        body["webhook_url"] = args.webhook_url
    created = client.call("POST", "/customers", body)
    _show(created["customer"], ("id", "name", "status"))
    print(f"api_key  {created['api_key']}")
    if created.get("webhook_secret"):
        print(f"webhook_secret  {created['webhook_secret']}")
    print("(the API key is shown only now; `conclave customer rotate-key ID` makes a new one)", file=sys.stderr)


def customer_list(client: Client, args: argparse.Namespace) -> None:
    print(table(client.call("GET", "/customers")["customers"], CUSTOMER_COLUMNS))


def customer_action(action: str) -> Any:
    def run(client: Client, args: argparse.Namespace) -> None:
        path = f"/customers/{urllib.parse.quote(args.id, safe='')}"
        if action == "delete":
            client.call("DELETE", path)
            print(f"customer {args.id} deleted")
        elif action == "rotate-key":
            print(f"api_key  {client.call('POST', path + '/api-key')['api_key']}")
        else:
            customer = client.call("POST", f"{path}/{action}")
            print(f"customer {customer['id']} ({customer['name']}) is {customer['status']}")

    return run


def host_create(client: Client, args: argparse.Namespace) -> None:
    password = args.password or secrets.token_urlsafe(12)
    body = {"email": args.email, "name": args.name, "password": password}
    host = client.call("POST", f"/customers/{urllib.parse.quote(args.customer, safe='')}/hosts", body)
    _show(host, HOST_COLUMNS)
    if not args.password:
        print(f"password     {password}")
        print("(generated: give it to the host; it is shown only now)", file=sys.stderr)


def host_list(client: Client, args: argparse.Namespace) -> None:
    if args.customer:
        customer_ids = [args.customer]
    else:
        customer_ids = [c["id"] for c in client.call("GET", "/customers")["customers"]]
    hosts: list[dict[str, Any]] = []
    for customer_id in customer_ids:
        hosts.extend(client.call("GET", f"/customers/{urllib.parse.quote(customer_id, safe='')}/hosts")["hosts"])
    print(table(hosts, HOST_COLUMNS))


def host_action(action: str) -> Any:
    def run(client: Client, args: argparse.Namespace) -> None:
        path = f"/hosts/{urllib.parse.quote(args.id, safe='')}"
        if action == "delete":
            client.call("DELETE", path)
            print(f"host {args.id} deleted")
        else:
            host = client.call("POST", f"{path}/{action}")
            print(f"host {host['id']} ({host['email']}) is {host['status']}")

    return run


def meeting_list(client: Client, args: argparse.Namespace) -> None:
    meetings = client.call("GET", "/meetings", status=args.status, customer_id=args.customer, host_id=args.host)
    print(table(meetings["meetings"], MEETING_COLUMNS))


def _number_path(number: str) -> str:
    return f"/meetings/{urllib.parse.quote(number, safe='-')}"


def meeting_end(client: Client, args: argparse.Namespace) -> None:
    client.call("POST", _number_path(args.number) + "/end", {})
    print(f"meeting {args.number} ended")


def meeting_remove_content(client: Client, args: argparse.Namespace) -> None:
    result = client.call("DELETE", _number_path(args.number) + "/content")
    removed = result["removed"]
    print(
        f"meeting {result['meeting_number']}: removed {removed['chat_messages']} chat message(s), "
        f"{removed.get('recordings', 0)} recording(s)/transcript(s) with {removed.get('files', 0)} file(s)"
    )
    for pending in result.get("storage_pending", []):
        print(f"  recording {pending['recording_id']}: its files are still in the storage ({pending['last_error']});"
              f" retried, or: POST /api/v1/storage-deletions/{pending['id']}/retry")  # fmt: skip


def cluster_status(client: Client, args: argparse.Namespace) -> None:
    status = client.call("GET", "/cluster")
    print(table(status["nodes"], NODE_COLUMNS))
    print(f"(as node {status['node_id']} sees them{'; it is draining' if status['draining'] else ''})")


def drain(client: Client, args: argparse.Namespace) -> None:
    result = client.call("POST", "/cluster/drain", {"timeout_s": args.timeout})
    state = "draining" if result["started"] else "already draining"
    print(f"node {result['node_id']} is {state}: no new meeting; its meetings move to other nodes "
          f"when they end or after {args.timeout:g} s")  # fmt: skip


# ---------------------------------------------------------------------- parsers


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", metavar="URL", help="server base URL (default: from the settings)")
    parser.add_argument("--operator-key", metavar="KEY", help="operator key (default: auth.operator_key, "
                        "else the file DATA_DIR/operator-key)")
    parser.add_argument("--config", metavar="FILE", help="the server's YAML settings (default: $CONCLAVE_CONFIG)")


def _command(group: Any, name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help_text)
    _common(parser)
    parser.set_defaults(handler=run_admin, admin=handler)
    return parser


def add_commands(commands: Any) -> None:
    """Add `customer`, `host`, `meeting`, `cluster` and `drain` to the `conclave` sub-parsers."""
    customer = commands.add_parser("customer", help="manage customers (operator)").add_subparsers(
        title="customer commands", metavar="ACTION", required=True
    )
    create = _command(customer, "create", "create a customer; prints its admin API key once", customer_create)
    create.add_argument("name")
    create.add_argument("--limit", action="append", metavar="NAME=VALUE", help="a limit override (repeatable)")
    create.add_argument("--webhook-url", metavar="URL")
    _command(customer, "list", "list customers", customer_list)
    for action, text in (("suspend", "suspend (ends its live meetings)"), ("unsuspend", "unsuspend"),
                         ("delete", "delete with all its hosts and meetings"),
                         ("rotate-key", "replace its admin API key (prints the new one)")):
        _command(customer, action, text, customer_action(action)).add_argument("id")

    host = commands.add_parser("host", help="manage hosts (operator)").add_subparsers(
        title="host commands", metavar="ACTION", required=True
    )
    create = _command(host, "create", "create a host", host_create)
    create.add_argument("--customer", required=True, metavar="ID")
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--password", help="default: a random one, printed once")
    _command(host, "list", "list hosts", host_list).add_argument("--customer", metavar="ID")
    for action, text in (("suspend", "suspend (ends the live meeting, signs out)"), ("unsuspend", "unsuspend"),
                         ("delete", "delete with their meetings")):
        _command(host, action, text, host_action(action)).add_argument("id")

    meeting = commands.add_parser("meeting", help="meetings (operator)").add_subparsers(
        title="meeting commands", metavar="ACTION", required=True
    )
    listing = _command(meeting, "list", "list meetings", meeting_list)
    listing.add_argument("--status", choices=("scheduled", "live", "ended"))
    listing.add_argument("--customer", metavar="ID")
    listing.add_argument("--host", metavar="ID")
    _command(meeting, "end", "end a live meeting for everyone", meeting_end).add_argument("number")
    _command(meeting, "remove-content", "remove a meeting's chat, recordings and transcripts", meeting_remove_content).add_argument("number")

    cluster = commands.add_parser("cluster", help="several nodes (operator)").add_subparsers(
        title="cluster commands", metavar="ACTION", required=True
    )
    _command(cluster, "status", "list the living nodes and their load", cluster_status)
    cluster_dev.add_command(cluster)
    _command(commands, "drain", "drain the server: no new meeting; its meetings move to other nodes",
             drain).add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                                 help="how long running meetings may go on here first (default 600)")  # fmt: skip


def run_admin(args: argparse.Namespace) -> int:
    try:
        args.admin(client_from(args), args)
    except CliError as exc:
        print(f"conclave: {exc}", file=sys.stderr)
        return exc.exit_code
    return EXIT_OK
