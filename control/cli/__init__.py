"""`conclave` command line: `conclave serve [--config FILE]` (control.cli.serve),
`conclave doctor [--config FILE]` (control.cli.doctor: checks a running server),
`conclave backup|restore` (control.cli.backup: the SQLite database), the operator's
`conclave customer|host|meeting ...` (control.cli.admin) and `conclave ingest ...`
(control.cli.ingest): they call a running server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from control.cli import admin, backup, doctor, ingest, serve


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    return int(args.handler(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conclave", description="Conclave: self-hosted meeting server")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    serve_parser = commands.add_parser("serve", help="run the server (control plane and SFU workers)")
    serve_parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML settings file (default: $CONCLAVE_CONFIG, else built-in defaults); "
        "CONCLAVE_<SECTION>__<KEY> variables override it",
    )
    serve_parser.set_defaults(handler=serve.serve_command)
    doctor.add_command(commands)
    backup.add_commands(commands)
    admin.add_commands(commands)
    ingest.add_commands(commands)
    return parser


