"""A customer's storage in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO, ...), via
aiobotocore. Imported only when such a storage is opened (common.storage.settings): the
processes that never touch S3 do not load aiobotocore and botocore.

Verification: every upload carries the SHA-256 of its bytes (ChecksumSHA256, one per part
for multipart uploads). A server that supports checksums recomputes it and refuses the
request on mismatch (BadDigest), then reports the stored checksum on HEAD. After the
upload we HEAD the object and compare its size and that checksum with what we computed
locally (for multipart: the composite "base64(sha256(part digests))-N" form). If the
server reports no checksum, or one we cannot match, the object is read back and hashed
instead, so a put is only reported once the stored bytes are known to be right.

Credentials live in a wrapper whose repr is "<hidden>"; they are never logged, never part
of this object's repr and never copied into an error message. One client per operation:
operations are few and far between (a segment every few seconds, a download now and
then), nothing worth pooling.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import math
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from common import netguard
from common.storage.base import (
    READ_CHUNK_BYTES,
    OpenedObject,
    StorageError,
    StorageNotFound,
    StorageSettingsError,
    StoredObject,
    check_key,
    folder_prefix,
    normalized_prefix,
    read_chunks,
)

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MIN_PART_BYTES = 5 * MiB  # S3: every part but the last is at least 5 MiB
MAX_PART_BYTES = 5 * 1024 * MiB
MAX_PARTS = 10_000
DEFAULT_MULTIPART_THRESHOLD = 16 * MiB
DEFAULT_PART_BYTES = 8 * MiB
CHECK_PREFIX = ".conclave-check/"
DELETE_BATCH = 1000  # S3's DeleteObjects limit

CREDENTIAL_ERRORS = {
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "403",
}
NOT_FOUND_ERRORS = {"NoSuchKey", "NotFound", "404"}
UNREACHABLE_ERRORS = (BotoConnectionError, HTTPClientError, OSError, asyncio.TimeoutError)


class _Hidden:
    """Holds a credential; prints as <hidden> so it cannot leak through repr or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<hidden>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("credentials are not picklable")


class S3BucketStorage:
    """An S3 bucket, optionally under a key prefix (every key is below it), as storage."""

    def __init__(
        self,
        endpoint_url: str | None,
        region: str,
        bucket: str,
        prefix: str,
        access_key_id: str,
        secret_access_key: str,
        *,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_BYTES,
        addressing_style: str = "path",
        max_attempts: int = 3,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        verify_by_reading_back: bool = False,
        allowed_networks: tuple[str, ...] | None = None,
    ) -> None:
        """allowed_networks: None connects wherever the endpoint leads (the settings were
        checked when saved); a tuple (control, downloading for anyone with a link) connects
        only to public addresses and those networks, on the address checked
        (common.netguard)."""
        self.endpoint_url = _checked_endpoint(endpoint_url)
        connector_args: dict[str, Any] = {}
        self._refused: str | None = None  # why the endpoint may not be reached (every use fails)
        if allowed_networks is not None:
            allowed = netguard.networks(allowed_networks)
            if self.endpoint_url is not None:
                try:  # an IP literal never reaches the resolver: checked here
                    netguard.check_url(self.endpoint_url, allowed)
                except netguard.AddressRefused as refused:
                    self._refused = f"S3 endpoint refused: {refused}"
            connector_args = {"resolver": netguard.GuardedResolver(allowed), "use_dns_cache": False}
        # Guarded: never through a proxy from HTTP(S)_PROXY (botocore reads them when
        # `proxies` is None): the proxy, not our resolver, would pick the address.
        proxies: dict[str, str] | None = {} if allowed_networks is not None else None
        self.region = region or "us-east-1"
        if not bucket:
            raise StorageSettingsError("S3 bucket name is empty")
        self.bucket = bucket
        self.prefix = normalized_prefix(prefix)
        if not access_key_id or not secret_access_key:
            raise StorageSettingsError("S3 access key id and secret access key are both required")
        self._access_key_id = _Hidden(access_key_id)
        self._secret_access_key = _Hidden(secret_access_key)
        if not MIN_PART_BYTES <= part_size <= MAX_PART_BYTES:
            raise StorageSettingsError(f"S3 part size must be between 5 MiB and 5 GiB, not {part_size}")
        self.part_size = part_size
        self.multipart_threshold = max(1, multipart_threshold)
        if addressing_style not in ("path", "virtual", "auto"):
            raise StorageSettingsError(f"unknown S3 addressing style {addressing_style!r}")
        self.verify_by_reading_back = verify_by_reading_back
        self._config = AioConfig(
            connector_args=connector_args or None,
            proxies=proxies,
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            retries={"max_attempts": max(1, max_attempts), "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # We send our own SHA-256 checksums; no extra CRC32 on every request.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            user_agent_extra="conclave",
        )
        self._session: AioSession = get_session()

    def __repr__(self) -> str:
        return (
            f"S3BucketStorage(endpoint_url={self.endpoint_url!r}, region={self.region!r}, "
            f"bucket={self.bucket!r}, prefix={self.prefix!r})"
        )

    __str__ = __repr__

    # --- writing ---------------------------------------------------------------------------

    async def put_file(self, local_path: Path, key: str, content_type: str) -> StoredObject:
        object_key = self._object_key(key)
        try:
            size = (await asyncio.to_thread(os.stat, local_path)).st_size
        except OSError as error:
            raise StorageError(f"cannot read {local_path}: {error}", code="io") from error
        try:
            async with self._client() as client:
                if size > self.multipart_threshold:
                    size, sha256_hex, expected = await self._put_multipart(
                        client, Path(local_path), object_key, content_type
                    )
                else:
                    size, sha256_hex, expected = await self._put_single(
                        client, Path(local_path), object_key, content_type
                    )
                await self._verify(client, object_key, size, sha256_hex, expected)
        except StorageError:
            raise
        except Exception as error:
            raise self._error("upload", object_key, error) from error
        log.debug("stored %s (%d bytes, sha256 %s)", self._where(object_key), size, sha256_hex)
        return StoredObject(key=key, size=size, sha256=sha256_hex)

    async def check(self) -> None:
        probe = f"{self.prefix}{CHECK_PREFIX}{uuid.uuid4().hex}"
        try:
            async with self._client() as client:
                await client.head_bucket(Bucket=self.bucket)
                await client.put_object(Bucket=self.bucket, Key=probe, Body=b"conclave storage check\n")
                await client.delete_object(Bucket=self.bucket, Key=probe)
        except Exception as error:
            raise self._error("check", probe, error) from error

    # --- reading ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def open_object(self, key: str) -> AsyncIterator[OpenedObject]:
        object_key = self._object_key(key)
        async with contextlib.AsyncExitStack() as stack:  # the client stays open while the body streams
            try:
                client = await stack.enter_async_context(self._client())
                response = await client.get_object(Bucket=self.bucket, Key=object_key)
            except Exception as error:
                raise self._error("read", object_key, error) from error
            body = stack.enter_context(contextlib.closing(response["Body"]))
            yield OpenedObject(response.get("ContentLength"), self._chunks(body, object_key))

    async def _chunks(self, body: Any, object_key: str) -> AsyncIterator[bytes]:
        try:
            async for chunk in body.iter_chunks(READ_CHUNK_BYTES):
                yield chunk
        except Exception as error:
            raise self._error("read", object_key, error) from error

    async def read_bytes(self, key: str, max_bytes: int) -> bytes:
        async with self.open_object(key) as obj:
            return await read_chunks(obj.chunks, max_bytes)

    async def list(self, prefix: str) -> list[StoredObject]:
        found = []
        try:
            async with self._client() as client:
                async for object_key, size in self._listed(client, self.prefix + prefix):
                    key = object_key[len(self.prefix) :]
                    if not key.startswith(CHECK_PREFIX):
                        found.append(StoredObject(key=key, size=size, sha256=""))
        except Exception as error:
            raise self._error("list", self.prefix + prefix, error) from error
        return sorted(found, key=lambda stored: stored.key)

    async def _listed(self, client: Any, full_prefix: str) -> AsyncIterator[tuple[str, int]]:
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
            for entry in page.get("Contents", ()):
                yield entry["Key"], int(entry["Size"])

    # --- deleting --------------------------------------------------------------------------

    async def delete(self, key: str) -> None:
        object_key = self._object_key(key)
        try:
            async with self._client() as client:
                await client.delete_object(Bucket=self.bucket, Key=object_key)
        except Exception as error:
            failure = self._error("delete", object_key, error)
            if not isinstance(failure, StorageNotFound):  # already gone: what we wanted
                raise failure from error

    async def delete_prefix(self, prefix: str) -> int:
        full_prefix = self.prefix + folder_prefix(prefix)
        removed = 0
        try:
            async with self._client() as client:
                keys = [object_key async for object_key, _ in self._listed(client, full_prefix)]
                for start in range(0, len(keys), DELETE_BATCH):
                    batch = [{"Key": key} for key in keys[start : start + DELETE_BATCH]]
                    response = await client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                    )
                    _raise_for_failed_deletes(response)
                    removed += len(batch)
        except Exception as error:
            raise self._error("delete", full_prefix, error) from error
        return removed

    # --- uploads ---------------------------------------------------------------------------

    async def _put_single(
        self, client: Any, path: Path, object_key: str, content_type: str
    ) -> tuple[int, str, str]:
        data, digest = await asyncio.to_thread(_read_and_hash, path)
        checksum = _b64(digest)
        await client.put_object(
            Bucket=self.bucket,
            Key=object_key,
            Body=data,
            ContentType=content_type,
            ChecksumSHA256=checksum,
        )
        return len(data), digest.hex(), checksum

    async def _put_multipart(
        self, client: Any, path: Path, object_key: str, content_type: str
    ) -> tuple[int, str, str]:
        size = (await asyncio.to_thread(os.stat, path)).st_size
        part_size = max(self.part_size, math.ceil(size / MAX_PARTS))
        created = await client.create_multipart_upload(
            Bucket=self.bucket, Key=object_key, ContentType=content_type, ChecksumAlgorithm="SHA256"
        )
        upload_id = created["UploadId"]
        try:
            whole = hashlib.sha256()
            uploaded = 0
            part_digests: list[bytes] = []
            parts: list[dict[str, Any]] = []
            file = await asyncio.to_thread(open, path, "rb")
            try:
                while chunk := await asyncio.to_thread(file.read, part_size):
                    digest = await asyncio.to_thread(_hash_into, chunk, whole)
                    number = len(parts) + 1
                    response = await client.upload_part(
                        Bucket=self.bucket,
                        Key=object_key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                        ChecksumSHA256=_b64(digest),
                    )
                    part_digests.append(digest)
                    uploaded += len(chunk)
                    parts.append(
                        {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": _b64(digest)}
                    )
            finally:
                file.close()
            await client.complete_multipart_upload(
                Bucket=self.bucket, Key=object_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            await self._abort_quietly(client, object_key, upload_id)
            raise
        # The checksum S3 reports for a multipart object: the hash of the parts' hashes.
        composite = _b64(hashlib.sha256(b"".join(part_digests)).digest()) + f"-{len(parts)}"
        return uploaded, whole.hexdigest(), composite

    async def _abort_quietly(self, client: Any, object_key: str, upload_id: str) -> None:
        # Best effort: leaves no orphaned parts behind a failed upload; its own failure
        # must not hide the error that made us abort.
        try:
            await asyncio.wait_for(
                client.abort_multipart_upload(Bucket=self.bucket, Key=object_key, UploadId=upload_id),
                timeout=10,
            )
        except (Exception, asyncio.CancelledError):
            log.debug("could not abort multipart upload of %s", self._where(object_key))

    async def _verify(self, client: Any, object_key: str, size: int, sha256_hex: str, expected: str) -> None:
        head = await client.head_object(Bucket=self.bucket, Key=object_key, ChecksumMode="ENABLED")
        stored_size = int(head["ContentLength"])
        if stored_size != size:
            raise StorageError(
                f"verification of {self._where(object_key)} failed: uploaded {size} bytes, "
                f"the server holds {stored_size}",
                code="verification_failed",
            )
        if head.get("ChecksumSHA256") == expected and not self.verify_by_reading_back:
            return
        # No (matching) checksum reported: read the object back and hash it ourselves.
        read_size, read_sha256 = await self._hash_stored(client, object_key)
        if (read_size, read_sha256) != (size, sha256_hex):
            raise StorageError(
                f"verification of {self._where(object_key)} failed: the bytes read back "
                f"({read_size}) do not match the file ({size} bytes, sha256 {sha256_hex})",
                code="verification_failed",
            )

    async def _hash_stored(self, client: Any, object_key: str) -> tuple[int, str]:
        response = await client.get_object(Bucket=self.bucket, Key=object_key)
        digest = hashlib.sha256()
        size = 0
        async with response["Body"] as body:
            async for chunk in body.iter_chunks(READ_CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
        return size, digest.hexdigest()

    # --- helpers -----------------------------------------------------------------------------

    def _client(self) -> Any:
        if self._refused is not None:
            raise StorageError(self._refused, code="address_refused")
        return self._session.create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self._access_key_id.reveal(),
            aws_secret_access_key=self._secret_access_key.reveal(),
            config=self._config,
        )

    def _object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _where(self, object_key: str) -> str:
        return f"s3://{self.bucket}/{object_key}"

    def _error(self, action: str, object_key: str, error: BaseException) -> StorageError:
        """A StorageError saying what failed and why, built only from safe parts."""
        if isinstance(error, StorageError):
            return error
        where = f"{self._where(object_key)} at {self.endpoint_url or 'AWS'}"
        if isinstance(error, ClientError):
            details = error.response.get("Error", {})
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(details.get("Code") or status or "error")
            message = details.get("Message") or ""
            if code == "NoSuchBucket" or (error.operation_name == "HeadBucket" and code in NOT_FOUND_ERRORS):
                return StorageError(
                    f"S3 {action} of {where} failed: bucket {self.bucket!r} does not exist", code="NoSuchBucket"
                )
            if code in NOT_FOUND_ERRORS:
                return StorageNotFound(f"S3 {action} of {where}: no such object")
            hint = ""
            if code in CREDENTIAL_ERRORS:
                hint = " (the storage server rejected the credentials or denied access)"
            text = f": {message}" if message else ""
            return StorageError(f"S3 {action} of {where} failed: {code}{text}{hint}", code=code)
        if isinstance(error, UNREACHABLE_ERRORS):
            return StorageError(
                f"S3 {action} of {where} failed: storage unreachable: {error}", code="unreachable"
            )
        if isinstance(error, BotoCoreError):
            return StorageError(f"S3 {action} of {where} failed: {error}", code="client")
        return StorageError(f"S3 {action} of {where} failed: {type(error).__name__}: {error}")


def _checked_endpoint(endpoint_url: str | None) -> str | None:
    if not endpoint_url:
        return None  # AWS itself, from the region
    parts = urlsplit(endpoint_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StorageSettingsError("S3 endpoint URL must be http(s)://host[:port]")
    if parts.username or parts.password:
        # Never accept credentials in a URL: URLs end up in logs and error messages.
        raise StorageSettingsError("S3 endpoint URL must not contain credentials")
    return endpoint_url.rstrip("/")


def _read_and_hash(path: Path) -> tuple[bytes, bytes]:
    with open(path, "rb") as file:
        data = file.read()
    return data, hashlib.sha256(data).digest()


def _hash_into(chunk: bytes, whole: Any) -> bytes:
    whole.update(chunk)
    return hashlib.sha256(chunk).digest()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _raise_for_failed_deletes(response: dict[str, Any]) -> None:
    # DeleteObjects answers 200 even when some keys could not be deleted; they are listed.
    errors = response.get("Errors") or ()
    if errors:
        first = errors[0]
        code = str(first.get("Code") or "error")
        raise StorageError(f"{len(errors)} object(s) not deleted: {code}", code=code)
