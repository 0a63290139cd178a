"""The recorder's settings from control, and what they keep a customer from: its S3 endpoint
leading the recorder's uploads into the server's own network (issue 10, SSRF)."""

from __future__ import annotations

import asyncio
import json

import pytest

from common.storage import StorageError
from config import load_config
from recorder.api import recorder_config_json
from recorder.journal import RecordingDirectory
from recorder.process import load_settings
from recorder.service import RecorderService
from recorder.storage.spool import SpoolItem

pytestmark = pytest.mark.unit


def s3_settings(endpoint: str) -> dict[str, str]:
    return {"kind": "s3", "endpoint_url": endpoint, "bucket": "b", "access_key_id": "AK", "secret_access_key": "SK"}


def recording_with_storage(service: RecorderService, settings: dict[str, str]) -> None:
    directory = RecordingDirectory(service.recordings_root, "rec-1")
    directory.create()
    directory.save_storage(settings)


def spooled(tmp_path, recording_id: str) -> SpoolItem:
    file = tmp_path / "segment.webm"
    file.write_bytes(b"x" * 10)
    return SpoolItem(id="1", key="recordings/1/x.webm", content_type="video/webm",
                     target=json.dumps({"recording_id": recording_id}), size=10, directory=tmp_path)  # fmt: skip


def test_control_hands_the_recorder_its_outbound_allow_list():
    cfg = load_config(env={"CONCLAVE_OUTBOUND__ALLOWED_NETWORKS": "10.9.0.0/16"})
    settings = load_settings(recorder_config_json(cfg))
    assert settings.allowed_networks == ("10.9.0.0/16",)
    assert settings.config == cfg.recorder
    assert load_settings(recorder_config_json(load_config(env={}))).allowed_networks == ()


class Listener:
    """A TCP port on loopback that counts the connections made to it."""

    def __init__(self) -> None:
        self.connections = 0

    async def __aenter__(self) -> Listener:
        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()


async def upload_error(service: RecorderService, tmp_path, endpoint: str) -> StorageError:
    recording_with_storage(service, s3_settings(endpoint))
    backend = service._backend_for(spooled(tmp_path, "rec-1"))
    with pytest.raises(StorageError) as failed:
        await backend.put_file(tmp_path / "segment.webm", "recordings/1/x.webm", "video/webm")
    return failed.value


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "127.1"])
async def test_an_s3_endpoint_inside_our_network_gets_no_upload(tmp_path, host):
    service = RecorderService(load_config(env={}).recorder, tmp_path / "data", allowed_networks=())
    async with Listener() as listener:
        await upload_error(service, tmp_path, f"http://{host}:{listener.port}")
    assert listener.connections == 0, "the recorder connected to loopback"


async def test_the_operator_may_allow_on_premises_storage(tmp_path):
    service = RecorderService(load_config(env={}).recorder, tmp_path / "data", allowed_networks=("127.0.0.0/8",))
    async with Listener() as listener:
        await upload_error(service, tmp_path, f"http://127.0.0.1:{listener.port}")  # not an S3 server
    assert listener.connections >= 1


async def test_a_proxy_in_the_environment_does_not_carry_guarded_uploads(tmp_path, monkeypatch):
    """HTTP(S)_PROXY would let the proxy pick the endpoint's address, past the check."""
    service = RecorderService(load_config(env={}).recorder, tmp_path / "data", allowed_networks=("127.0.0.0/8",))
    async with Listener() as proxy, Listener() as endpoint:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        await upload_error(service, tmp_path, f"http://127.0.0.1:{endpoint.port}")  # not an S3 server
    assert (proxy.connections, endpoint.connections >= 1) == (0, True)
