"""Mount URIs and options: what is refused, and that the refusal says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from reservoir.errors import InvalidArgument
from reservoir.origin import SECRET_OPTIONS, open_origin
from reservoir.origin.local import LocalOrigin
from reservoir.origin.s3 import S3Origin

NO_ENV: dict[str, str] = {}  # the process environment must not leak into these cases


def refusal(uri: str, options: dict[str, str] | None = None, env: dict[str, str] = NO_ENV) -> str:
    with pytest.raises(InvalidArgument) as failure:
        open_origin(uri, options or {}, environ=env)
    return str(failure.value)


@pytest.mark.parametrize("uri", ["", "/data/models", "http://host/x", "gs://bucket/x", "s4://b"])
def test_unknown_schemes_name_the_supported_ones(uri: str) -> None:
    message = refusal(uri)
    assert "s3://BUCKET/PREFIX" in message
    assert "file:///ABSOLUTE/DIR" in message


def test_file_uri_with_a_host_is_refused() -> None:
    message = refusal("file://data/models")
    assert "names a host ('data')" in message
    assert "file:///ABSOLUTE/DIR" in message


def test_file_uri_must_be_absolute() -> None:
    assert "needs an absolute path" in refusal("file:relative/dir")


def test_file_uri_takes_no_options() -> None:
    message = refusal("file:///data", {"region": "us-east-1", "endpoint": "http://x"})
    assert "file:// mounts take no options" in message
    assert "endpoint, region" in message


@pytest.mark.parametrize("uri", ["file:///data?x=1", "s3://bucket/p#frag"])
def test_query_and_fragment_are_refused(uri: str) -> None:
    assert "no query" in refusal(uri)


@pytest.mark.parametrize("uri", ["s3://", "s3:///prefix"])
def test_s3_uri_needs_a_bucket(uri: str) -> None:
    assert "names no bucket: write s3://BUCKET/PREFIX" in refusal(uri)


def test_s3_uri_with_credentials_in_it_is_refused() -> None:
    message = refusal("s3://key:hunter2@bucket/prefix")
    assert "bucket name alone" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("bucket", ["ab", "-bucket", "bucket-", "buck%20et", "bu!ck", "b" * 300])
def test_invalid_bucket_names_are_refused(bucket: str) -> None:
    assert "invalid bucket name" in refusal(f"s3://{bucket}/prefix")


def test_a_prefix_that_leaves_the_bucket_is_refused() -> None:
    assert "invalid prefix" in refusal("s3://bucket/a/../../b")


def test_unknown_options_are_named_with_the_allowed_keys() -> None:
    message = refusal("s3://bucket", {"endpont": "http://x", "regoin": "y"})
    assert "unknown option endpont, regoin for s3:// mounts" in message
    assert (
        "allowed: access_key_id, anonymous, endpoint, region, secret_access_key, session_token"
        in message
    )


@pytest.mark.parametrize("value", ["yes", "1", "on", "truee"])
def test_anonymous_must_be_true_or_false(value: str) -> None:
    assert f"anonymous must be true or false, not {value!r}" in refusal(
        "s3://bucket", {"anonymous": value}
    )


def test_empty_option_values_are_refused() -> None:
    assert "option region is empty" in refusal("s3://bucket", {"region": ""})


@pytest.mark.parametrize("endpoint", ["localhost:9000", "ftp://host", "http://", "http://h/?a=b"])
def test_endpoints_must_be_http_urls(endpoint: str) -> None:
    message = refusal("s3://bucket", {"endpoint": endpoint})
    assert "endpoint" in message
    assert "http" in message


def test_an_endpoint_from_the_environment_is_named_when_refused() -> None:
    message = refusal("s3://bucket", env={"AWS_ENDPOINT_URL": "minio:9000"})
    assert "AWS_ENDPOINT_URL='minio:9000' is not an endpoint URL" in message


def test_anonymous_with_credentials_is_refused() -> None:
    message = refusal(
        "s3://bucket",
        {"anonymous": "true", "access_key_id": "k", "secret_access_key": "hunter2"},
    )
    assert "anonymous=true sends no credentials" in message
    assert "hunter2" not in message


def test_option_values_are_never_echoed() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    for options in (
        {"secret_access_key": secret, "bogus": "1"},
        {"secret_access_key": secret},  # without its access_key_id
        {"session_token": secret, "anonymous": "maybe"},
    ):
        assert secret not in refusal("s3://bucket", options)


def test_secret_options() -> None:
    assert frozenset({"secret_access_key", "session_token"}) == SECRET_OPTIONS


def test_valid_uris_open(tmp_path: Path) -> None:
    local = open_origin(f"file://{tmp_path}/a%20dir/", {}, environ=NO_ENV)
    assert isinstance(local, LocalOrigin)
    assert local.uri == (tmp_path / "a dir").as_uri()
    remote = open_origin(
        "S3://My.Bucket-1//models/./llama/", {"region": "eu-west-1"}, environ=NO_ENV
    )
    assert isinstance(remote, S3Origin)
    assert remote.uri == "s3://My.Bucket-1/models/llama"
    assert remote.settings.region == "eu-west-1"
    assert open_origin("s3://bucket", {}, environ=NO_ENV).uri == "s3://bucket"
