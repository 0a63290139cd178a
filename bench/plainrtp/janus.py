"""Janus (Debian's `janus` package) as a plain-RTP fan-out forwarder, for comparison.

The bench writes a config folder in which only the VideoRoom plugin and the HTTP
transport load, the HTTP API listens on 127.0.0.1 only, ICE is limited to "lo" and no
Streaming mountpoint exists; starts `janus -C DIR/janus.jcfg -F DIR -N` pinned to one
CPU; then over the HTTP API creates a room, a remote publisher (`add_remote_publisher`:
Janus reads plain RTP on a port of its own, SSRC = 1000 + 10 x mindex) and one
`rtp_forward` per receiver (SRTP with its own key when the workload is SRTP). Stopped by
PID: SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from bench.plainrtp import procfs
from bench.plainrtp.packets import VIDEO_PAYLOAD_TYPE, key_base64, new_srtp_key

JANUS_BINARY = "janus"
PLUGINS_DIR = Path("/usr/lib/x86_64-linux-gnu/janus/plugins")
TRANSPORTS_DIR = Path("/usr/lib/x86_64-linux-gnu/janus/transports")
REMOTE_PUBLISHER_SSRC = 1000  # REMOTE_PUBLISHER_BASE_SSRC + 10 * mindex 0
ROOM_ID = 4242
PUBLISHER_ID = 777
START_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 5.0
PUBLISHER_TIMEOUT_S = 5.0

INSTALL_HINT = "Janus is not installed: `apt-get install -y janus` (Debian 12 ships 1.1.2), or pass --skip-janus"


def available() -> bool:
    return shutil.which(JANUS_BINARY) is not None and PLUGINS_DIR.is_dir()


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _disable_list(folder: Path, keep: str) -> str:
    names = sorted({p.name.split(".so")[0] + ".so" for p in folder.glob("*.so*")} - {keep})
    return ",".join(names)


def write_config(folder: Path, http_port: int) -> Path:
    """A config folder that binds nothing but 127.0.0.1 and loads VideoRoom + HTTP only."""
    main = folder / "janus.jcfg"
    main.write_text(
        f"""general: {{
\tconfigs_folder = "{folder}"
\tplugins_folder = "{PLUGINS_DIR}"
\ttransports_folder = "{TRANSPORTS_DIR}"
\tevents_folder = "{folder / 'no-events'}"
\tloggers_folder = "{folder / 'no-loggers'}"
\tdebug_level = 2
\tsession_timeout = 0
\tprotected_folders = []
}}
certificates: {{
}}
media: {{
\trtp_port_range = "30000-39999"
}}
nat: {{
\tnice_debug = false
\tice_enforce_list = "lo"
\tignore_mdns = true
}}
plugins: {{
\tdisable = "{_disable_list(PLUGINS_DIR, 'libjanus_videoroom.so')}"
}}
transports: {{
\tdisable = "{_disable_list(TRANSPORTS_DIR, 'libjanus_http.so')}"
}}
loggers: {{
}}
events: {{
\tbroadcast = false
}}
"""
    )
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
\tjson = "compact"
\tbase_path = "/janus"
\thttp = true
\tport = {http_port}
\tip = "127.0.0.1"
\thttps = false
}}
admin: {{
\tadmin_http = false
\tadmin_https = false
}}
cors: {{
}}
"""
    )
    # No sample rooms: the bench creates its own.
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    return main


class JanusApi:
    """The few Janus HTTP API calls the bench needs (sessions never time out: 0)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._transaction = 0
        self.session: int | None = None
        self.handle: int | None = None

    def _post(self, path: str, body: dict) -> dict:
        self._transaction += 1
        body = dict(body, transaction=f"t{self._transaction}")
        request = urllib.request.Request(
            self.base_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            reply = json.loads(response.read())
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus {body.get('janus')}: {reply.get('error')}")
        return reply

    def info(self) -> dict:
        with urllib.request.urlopen(self.base_url + "/info", timeout=HTTP_TIMEOUT_S) as response:
            return json.loads(response.read())

    def attach_videoroom(self) -> None:
        self.session = self._post("", {"janus": "create"})["data"]["id"]
        self.handle = self._post(f"/{self.session}", {"janus": "attach", "plugin": "janus.plugin.videoroom"})["data"]["id"]

    def message(self, body: dict) -> dict:
        reply = self._post(f"/{self.session}/{self.handle}", {"janus": "message", "body": body})
        data = reply.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise RuntimeError(f"janus videoroom {body.get('request')}: {data['error']}")
        return data


class JanusForwarder:
    """One Janus process with one remote publisher forwarded to `len(receiver_ports)` ports."""

    def __init__(self, srtp: bool, cpu: int | None, name: str | None = None) -> None:
        self.name = name or ("janus+srtp" if srtp else "janus")
        self.srtp = srtp
        self.cpu = cpu
        self.proc: subprocess.Popen | None = None
        self.folder = Path(tempfile.mkdtemp(prefix="bench-janus-"))
        # Janus 1.1.2 (Debian 12) cannot decrypt SRTP from a remote publisher: that came in
        # 1.3.0 (meetecho/janus-gateway#3449); it would forward the ciphertext as payload.
        # So "+srtp" here is plain RTP in, SRTP out: one unprotect per packet in (1/16 of
        # one per packet out, about 0.13 µs) less work than ours, in Janus's favour.
        self.input_key: bytes | None = None
        self.receiver_keys: list[bytes | None] = []
        self.input_addr: tuple[str, int] | None = None
        self.ssrc = REMOTE_PUBLISHER_SSRC
        self.payload_type = VIDEO_PAYLOAD_TYPE
        self.api: JanusApi | None = None

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    @property
    def input_ports(self) -> list[int]:
        return [self.input_addr[1]] if self.input_addr else []

    def start(self, receiver_ports: list[int]) -> None:
        if not available():
            raise RuntimeError(INSTALL_HINT)
        http_port = _free_tcp_port()
        config = write_config(self.folder, http_port)
        log = open(self.folder / "janus.log", "wb")
        command = procfs.pin_prefix(self.cpu) + [JANUS_BINARY, "-C", str(config), "-F", str(self.folder), "-N",
                                                  "-L", str(self.folder / "janus.file.log")]
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.api = JanusApi(f"http://127.0.0.1:{http_port}/janus")
        if not procfs.wait_for(self._answers, START_TIMEOUT_S, 0.1):
            self.stop()
            raise RuntimeError(f"janus did not answer on 127.0.0.1:{http_port}; see {self.folder}/janus.file.log")
        self._configure(receiver_ports)

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"janus exited with {self.proc.returncode}; see {self.folder}/janus.file.log")
        try:
            assert self.api is not None
            return self.api.info().get("janus") == "server_info"
        except OSError:
            return False

    def _configure(self, receiver_ports: list[int]) -> None:
        api = self.api
        assert api is not None
        api.attach_videoroom()
        api.message({"request": "create", "room": ROOM_ID, "publishers": 4, "videocodec": "vp8",
                     "audiocodec": "opus", "permanent": False})
        remote = {"request": "add_remote_publisher", "room": ROOM_ID, "id": PUBLISHER_ID, "display": "bench",
                  "iface": "127.0.0.1", "port": 0,
                  "streams": [{"type": "video", "mindex": 0, "mid": "0", "codec": "vp8"}]}
        if self.input_key:
            remote.update(srtp_suite=80, srtp_crypto=key_base64(self.input_key))
        reply = api.message(remote)
        self.input_addr = ("127.0.0.1", int(reply["port"]))
        # The remote publisher joins the room from its own thread, a moment later:
        # rtp_forward before that answers "No such feed".
        if not procfs.wait_for(self._publisher_listed, PUBLISHER_TIMEOUT_S, 0.02):
            raise RuntimeError("janus never listed the remote publisher in the room")
        self.receiver_keys = []
        for i, port in enumerate(receiver_ports):
            forward = {"request": "rtp_forward", "room": ROOM_ID, "publisher_id": PUBLISHER_ID, "host": "127.0.0.1",
                       "streams": [{"mid": "0", "port": port, "ssrc": 0x10000 + i, "pt": VIDEO_PAYLOAD_TYPE}]}
            key = new_srtp_key() if self.srtp else None
            if key:
                forward.update(srtp_suite=80, srtp_crypto=key_base64(key))
            api.message(forward)
            self.receiver_keys.append(key)

    def _publisher_listed(self) -> bool:
        assert self.api is not None
        listing = self.api.message({"request": "listparticipants", "room": ROOM_ID})
        return any(p.get("id") == PUBLISHER_ID for p in listing.get("participants", []))

    def stats(self) -> dict:
        return {}

    def stop(self) -> None:
        if self.proc is not None:
            procfs.stop_process(self.proc)
        shutil.rmtree(self.folder, ignore_errors=True)

    def describe(self) -> str:
        version = ""
        try:
            assert self.api is not None
            version = self.api.info().get("version_string", "")
        except Exception:
            pass
        srtp = ", plain RTP in (1.1.2 cannot decrypt a remote publisher), SRTP out" if self.srtp else ""
        return f"Janus {version} VideoRoom add_remote_publisher + rtp_forward x N{srtp}"
