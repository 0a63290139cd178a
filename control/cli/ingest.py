"""`conclave ingest ...`: bring ffmpeg, GStreamer or a WHIP encoder into a live meeting
(issue 12, items 4 and 6), through the REST API like the operator commands
(control.cli.admin: `--server`, `--operator-key`, `--config`), or with a host's sign-in
token (`--token`).

    conclave ingest create-rtp --meeting 123-4567-8901 --name "Stage camera" [--srtp] [--json]
    conclave ingest create-whip --meeting 123-4567-8901 --name "OBS" [--json]
    conclave ingest list --meeting 123-4567-8901
    conclave ingest delete --meeting 123-4567-8901 INGEST_ID

create-rtp prints where to send, the SRTP key (once) and ready commands; create-whip the
WHIP URL and its bearer token (once). `--json` prints the server's answer as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

from control.cli.admin import EXIT_OK, Client, CliError, _command, client_from, table

INGEST_COLUMNS = ("id", "kind", "name", "state", "connected", "media_held", "end_reason")


def _path(args: argparse.Namespace, *more: str) -> str:
    parts = [urllib.parse.quote(part, safe="") for part in more]
    return "/".join([f"/meetings/{urllib.parse.quote(args.meeting, safe='-')}/ingests", *parts])


def create(kind: str) -> Any:
    def run(client: Client, args: argparse.Namespace) -> None:
        body: dict[str, Any] = {"kind": kind, "name": args.name}
        if kind == "rtp" and args.srtp:
            body["srtp"] = True
        made = client.call("POST", _path(args), body)
        if args.json:
            print(json.dumps(made, indent=2))
            return
        print(f"ingest {made['id']} ({made['name']}) is in meeting {args.meeting}")
        if kind == "whip":
            print(f"WHIP URL:  {made['whip_url']}")
            print(f"token:     {made['token']}")
            print("(the token is shown only now)", file=sys.stderr)
        else:
            rtp = made["rtp"]
            print(f"send RTP to {rtp['ip']}:{rtp['port']} (VP8 ssrc {rtp['video_ssrc']} pt 96, "
                  f"Opus ssrc {rtp['audio_ssrc']} pt 111)")  # fmt: skip
            if made.get("srtp_key"):
                print(f"SRTP key ({'AES_CM_128_HMAC_SHA1_80'}): {made['srtp_key']}  (shown only now)")
            print("\nffmpeg (replace input.mp4):\n" + made["commands"]["ffmpeg"])
            print("\nGStreamer (replace the test sources):\n" + made["commands"]["gstreamer"])
        print(f"\nend it: conclave ingest delete --meeting {args.meeting} {made['id']}")

    return run


def list_ingests(client: Client, args: argparse.Namespace) -> None:
    print(table(client.call("GET", _path(args))["ingests"], INGEST_COLUMNS))


def delete(client: Client, args: argparse.Namespace) -> None:
    ingest = client.call("DELETE", _path(args, args.id))
    print(f"ingest {ingest['id']} ({ingest['name']}) is {ingest['state']}")


def add_commands(commands: Any) -> None:
    """Add `ingest` to the `conclave` sub-parsers."""
    ingest = commands.add_parser("ingest", help="streams brought into a live meeting (RTP, WHIP)").add_subparsers(
        title="ingest commands", metavar="ACTION", required=True
    )
    for kind, text in (("rtp", "an RTP ingest: prints where to send and ffmpeg/GStreamer commands"),
                       ("whip", "a WHIP ingest: prints the WHIP URL and its bearer token")):  # fmt: skip
        parser = _ingest_command(ingest, f"create-{kind}", text, create(kind))
        parser.add_argument("--name", required=True, help="the participant's name in the meeting")
        parser.add_argument("--json", action="store_true", help="print the server's answer as JSON")
        if kind == "rtp":
            parser.add_argument("--srtp", action="store_true", help="SRTP (SDES key printed once)")
    _ingest_command(ingest, "list", "list the meeting's ingests", list_ingests)
    _ingest_command(ingest, "delete", "revoke an ingest: it leaves the meeting", delete).add_argument("id")


def _ingest_command(group: Any, name: str, text: str, handler: Any) -> argparse.ArgumentParser:
    parser = _command(group, name, text, handler)
    parser.add_argument("--meeting", required=True, metavar="NUMBER", help="the live meeting's number")
    parser.add_argument("--token", metavar="TOKEN", help="a host's sign-in token instead of the operator key")
    parser.set_defaults(handler=run_ingest)
    return parser


def run_ingest(args: argparse.Namespace) -> int:
    try:
        if args.token:
            args.operator_key = args.token  # any bearer the API accepts; the server is still needed
        args.admin(client_from(args), args)
    except CliError as exc:
        print(f"conclave: {exc}", file=sys.stderr)
        return exc.exit_code
    return EXIT_OK
