"""One set of rules for a customer's storage settings and keys: common.storage's, which
control answers in its HTTP error shape (`storage.<field>: <problem>`). Neither quotes what
the customer sent. (The REST round trip is in tests/control/http/test_recordings.py.)"""

from __future__ import annotations

import pytest

from common import storage
from control.recording import storage_settings
from control.errors import ApiError

SECRET = "topsecret-value"
S3 = {"kind": "s3", "bucket": "acme", "access_key_id": "AKID", "secret_access_key": SECRET}


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({"kind": SECRET}, "kind", "must be 'local' or 's3'"),
        ({"kind": "local", "root": "relative/" + SECRET}, "root", "must be an absolute directory path"),
        ({**S3, "bucket": "no spaces " + SECRET}, "bucket", "must be a bucket name"),
        ({**S3, "endpoint_url": f"https://u:{SECRET}@s3.test"}, "endpoint_url", "must not contain credentials"),
        ({**S3, "prefix": f"a/../{SECRET}"}, "prefix", "prefix has an empty, '.' or '..' part"),
        ({**S3, "prefix": ".."}, "prefix", "prefix has an empty, '.' or '..' part"),
        ({**S3, SECRET: 1}, SECRET, "unknown s3 storage setting"),  # a field's name is not its value
    ],
)
def test_the_shared_rules_name_the_field_and_control_answers_in_its_http_shape(body, field, problem):
    with pytest.raises(storage.InvalidStorageSetting) as caught:
        storage.validate_storage_settings(body)
    error = caught.value
    assert isinstance(error, storage.StorageSettingsError) and error.code == "settings"
    assert error.field == field and error.problem.startswith(problem)
    if field != SECRET:
        assert SECRET not in str(error)

    with pytest.raises(ApiError) as answered:
        storage_settings.validate_storage_settings(body)
    assert (answered.value.status, answered.value.code) == (400, "invalid_field")
    assert answered.value.message == f"storage.{field}: {error.problem}"


def test_valid_settings_come_back_normalized_through_both():
    body = {**S3, "prefix": "/conclave/rec/", "endpoint_url": "https://s3.example.test:9000/"}
    expected = {**S3, "prefix": "conclave/rec/", "endpoint_url": "https://s3.example.test:9000"}
    assert storage.validate_storage_settings(body) == expected
    assert storage_settings.validate_storage_settings(body) == expected
    local = {"kind": "local", "path": "/srv/a/../recordings"}
    assert storage_settings.validate_storage_settings(local) == {"kind": "local", "root": "/srv/recordings"}


def test_the_secret_may_stay_only_with_the_same_access_key():
    current = dict(S3)
    without = {k: v for k, v in S3.items() if k != "secret_access_key"}
    kept = storage_settings.validate_storage_settings({**without, "bucket": "other"}, current)
    assert kept["secret_access_key"] == SECRET
    with pytest.raises(ApiError, match="storage.secret_access_key: is required"):
        storage_settings.validate_storage_settings({**without, "access_key_id": "NEW"}, current)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "object key is empty"),
        ("/abs/" + SECRET, "object key is not a relative path"),
        ("a\\" + SECRET, "object key is not a relative path"),
        ("..", "object key has an empty, '.' or '..' part"),
        (f"a//{SECRET}", "object key has an empty, '.' or '..' part"),
        ("k" * 1025, "object key is longer than 1024 bytes"),
    ],
)
def test_object_keys_are_checked_without_quoting_them(key, message):
    with pytest.raises(storage.InvalidKey) as caught:
        storage.check_key(key)
    assert str(caught.value) == message and caught.value.code == "invalid_key"
    assert storage.check_key("recordings/42/r1/track.mkv") == "recordings/42/r1/track.mkv"
    assert storage.normalized_prefix("/a/b/") == "a/b/" and storage.normalized_prefix("") == ""
    with pytest.raises(storage.InvalidKey, match="^prefix has an empty"):
        storage.normalized_prefix("a//b")


def test_a_recording_is_reached_with_the_settings_it_was_written_with():
    written = {**S3, "bucket": "old"}
    moved = {**S3, "bucket": "new", "secret_access_key": "new-secret"}
    rotated = {**written, "secret_access_key": "rotated", "part_size": 8 * 1024**2}
    resolve = storage_settings.resolve_storage
    assert resolve(written, moved) == written  # the customer moved on: the old bucket still
    assert resolve(written, rotated) == rotated  # same storage, new secret: the current one
    assert resolve(written, None) == written  # the customer forgot its settings (or is gone)
    assert resolve(None, moved) == moved  # a recording that kept none (before migration 3)
    assert resolve(None, None) is None
    local = {"kind": "local", "root": "/srv/a"}
    assert resolve(local, {"kind": "local", "root": "/srv/b"}) == local
