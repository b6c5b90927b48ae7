"""What only the S3 backend has to get right: endpoints, credentials, S3's own quirks.

Every test talks HTTP to a moto server process; none mocks S3.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from reservoir.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from reservoir.origin import ObjectInfo, Origin, open_origin
from reservoir.origin.s3 import S3Origin
from reservoir.processes import free_port
from tests.fixtures.s3 import MotoServer, unique_bucket_name

# Env variables that obstore or our fallbacks read; each test starts without them.
AWS_VARIABLES = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SKIP_SIGNATURE",
)
BOUND_S = 20  # the bound for a dead origin; the design aims at ~15 s


@pytest.fixture(autouse=True)
def clean_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def listing(origin: Origin) -> dict[str, ObjectInfo]:
    async def collect() -> dict[str, ObjectInfo]:
        return {info.path: info async for info in origin.list()}

    return asyncio.run(collect())


def head(origin: Origin, path: str) -> ObjectInfo:
    return asyncio.run(origin.head(path))


def read(origin: Origin, path: str, version: str, start: int = 0, end: int = 1 << 30) -> bytes:
    async def collect() -> bytes:
        return b"".join(
            [chunk async for chunk in origin.get_range(path, start, end, version=version)]
        )

    return asyncio.run(collect())


def s3(uri: str, **options: str) -> S3Origin:
    origin = open_origin(uri, options)
    assert isinstance(origin, S3Origin)
    return origin


# -- unreachable, refused, missing ---------------------------------------------------


def test_an_unreachable_endpoint_fails_fast_naming_it() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    origin = s3("s3://some-bucket", endpoint=endpoint, access_key_id="k", secret_access_key="s")
    for call in (
        lambda: listing(origin),
        lambda: head(origin, "a"),
        lambda: read(origin, "a", "etag", 0, 10),
    ):
        started = time.monotonic()
        with pytest.raises(Unavailable) as failure:
            call()
        assert time.monotonic() - started < BOUND_S
        message = str(failure.value)
        assert f"cannot reach the under-storage at {endpoint}" in message
        assert "Connection refused" in message


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_an_endpoint_that_never_answers_times_out(silent_endpoint: str) -> None:
    origin = s3(
        "s3://some-bucket", endpoint=silent_endpoint, access_key_id="k", secret_access_key="s"
    )
    started = time.monotonic()
    with pytest.raises(Unavailable, match="timed out") as failure:
        listing(origin)
    assert time.monotonic() - started < BOUND_S
    assert silent_endpoint in str(failure.value)


def test_a_missing_bucket_fails_naming_it(s3_server: MotoServer) -> None:
    bucket = unique_bucket_name()
    origin = s3(f"s3://{bucket}/data", **s3_server.options())
    with pytest.raises(FailedPrecondition) as failure:
        listing(origin)
    assert f"bucket {bucket!r} does not exist at {s3_server.endpoint}" in str(failure.value)
    with pytest.raises(FailedPrecondition, match=f"{bucket}.*does not exist"):
        read(origin, "a", "etag", 0, 10)


def test_refused_credentials_fail_naming_endpoint_and_bucket(
    s3_auth_server: MotoServer,
) -> None:
    origin = s3("s3://some-bucket", **s3_auth_server.options())
    for call in (
        lambda: listing(origin),
        lambda: head(origin, "a"),
        lambda: read(origin, "a", "etag", 0, 10),
    ):
        with pytest.raises(FailedPrecondition) as failure:
            call()
        message = str(failure.value)
        assert s3_auth_server.endpoint in message
        assert "'some-bucket'" in message
        assert "refused" in message
    assert s3_auth_server.options()["secret_access_key"] not in message


# -- anonymous access and options ---------------------------------------------------


def test_anonymous_access_reads_a_public_bucket(
    s3_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_server.create_bucket(public=True)
    s3_server.put(bucket, "pub/file.txt", b"for everyone", public=True)
    # Credentials in the environment are not sent when anonymous=true.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    origin = s3(f"s3://{bucket}/pub", endpoint=s3_server.endpoint, anonymous="true")
    assert origin.settings.anonymous
    assert origin.settings.access_key_id is None
    found = listing(origin)
    assert set(found) == {"file.txt"}
    assert read(origin, "file.txt", found["file.txt"].version) == b"for everyone"


def test_anonymous_access_to_a_private_bucket_is_refused(s3_server: MotoServer) -> None:
    bucket = s3_server.create_bucket()
    s3_server.put(bucket, "private.txt", b"not for everyone")
    origin = s3(f"s3://{bucket}", endpoint=s3_server.endpoint, anonymous="TRUE")
    with pytest.raises(FailedPrecondition, match="refused"):
        head(origin, "private.txt")


@pytest.mark.parametrize(
    ("value", "anonymous"), [("true", True), ("TRUE", True), ("false", False), ("False", False)]
)
def test_anonymous_option_parsing(value: str, anonymous: bool) -> None:
    origin = s3("s3://some-bucket", endpoint="http://127.0.0.1:9", anonymous=value)
    assert origin.settings.anonymous is anonymous
    assert s3("s3://some-bucket").settings.anonymous is False


def test_unset_options_fall_back_to_the_aws_environment(
    s3_server: MotoServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_server.put(s3_bucket, "f", b"via the environment")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token")
    origin = s3(f"s3://{s3_bucket}")
    settings = origin.settings
    assert settings.endpoint == s3_server.endpoint
    assert settings.region == "eu-west-3"
    assert (settings.access_key_id, settings.secret_access_key) == ("env-key", "env-secret")
    assert settings.session_token == "env-token"
    assert set(listing(origin)) == {"f"}
    # AWS_REGION wins over AWS_DEFAULT_REGION; AWS_ENDPOINT_URL_S3 over AWS_ENDPOINT_URL.
    monkeypatch.setenv("AWS_REGION", "ap-south-2")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    settings = s3(f"s3://{s3_bucket}").settings
    assert (settings.region, settings.endpoint) == ("ap-south-2", "http://127.0.0.1:9")


def test_options_beat_the_environment_even_inside_obstore(
    s3_server: MotoServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_server.put(s3_bucket, "f", b"x")
    # obstore reads these itself, and AWS_ENDPOINT_URL_S3 would beat a plain `endpoint`;
    # unsigned requests to a private bucket would be refused.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_SKIP_SIGNATURE", "true")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a token of another identity")
    origin = s3(f"s3://{s3_bucket}", **s3_server.options())
    assert origin.settings.session_token is None, "credentials come from one place"
    assert set(listing(origin)) == {"f"}


def test_credentials_go_in_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidArgument, match="access_key_id and secret_access_key"):
        s3("s3://some-bucket", access_key_id="only-the-key")
    with pytest.raises(InvalidArgument, match="session_token needs both"):
        s3("s3://some-bucket", session_token="only-the-token")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "only-the-secret")
    with pytest.raises(InvalidArgument, match="environment"):
        s3("s3://some-bucket")


def test_secrets_stay_out_of_repr() -> None:
    origin = s3(
        "s3://some-bucket",
        access_key_id="key-id",
        secret_access_key="very-secret",
        session_token="token-secret",
    )
    assert "very-secret" not in repr(origin.settings)
    assert "token-secret" not in repr(origin.settings)


# -- S3's own quirks -------------------------------------------------------------------


def test_directory_markers_are_not_files(s3_server: MotoServer, s3_bucket: str) -> None:
    for key, body in {
        "data/": b"",  # the prefix's own marker
        "data/dir/": b"",
        "data/dir/x": b"x",
        "data/empty-dir/": b"",  # a marker with nothing below it
        "data/deep/er/": b"",
        "data/real-empty-file": b"",
        "data/dir/empty-too": b"",
    }.items():
        s3_server.put(s3_bucket, key, body)
    found = listing(s3(f"s3://{s3_bucket}/data", **s3_server.options()))
    assert {path: info.size for path, info in found.items()} == {
        "dir/x": 1,
        "real-empty-file": 0,
        "dir/empty-too": 0,
    }


def test_version_is_the_etag_without_quotes(s3_server: MotoServer, s3_bucket: str) -> None:
    body = b"some bytes"
    etag = s3_server.put(s3_bucket, "f", body)
    info = head(s3(f"s3://{s3_bucket}", **s3_server.options()), "f")
    assert info.version == etag == hashlib.md5(body).hexdigest()


def test_listing_follows_pages(s3_server: MotoServer, s3_bucket: str) -> None:
    objects = {f"p/{i:04d}": b"." for i in range(1001)}  # two pages of at most 1000
    s3_server.put_many(s3_bucket, objects)
    before = len(s3_server.requests())
    found = listing(s3(f"s3://{s3_bucket}/p", **s3_server.options()))
    assert len(found) == 1001
    pages = [
        r
        for r in s3_server.requests()[before:]
        if r.method == "GET" and r.path.startswith(f"/{s3_bucket}?") and "list-type=2" in r.path
    ]
    assert len(pages) == 2


def test_a_ranged_read_is_one_request(s3_server: MotoServer, s3_bucket: str) -> None:
    s3_server.put(s3_bucket, "blob", bytes(range(256)) * 1000)
    origin = s3(f"s3://{s3_bucket}", **s3_server.options())
    version = head(origin, "blob").version
    before = len(s3_server.requests())
    assert read(origin, "blob", version, 1000, 1010) == (bytes(range(256)) * 1000)[1000:1010]
    assert [(r.method, r.status) for r in s3_server.requests()[before:]] == [("GET", 206)]


def test_a_key_that_is_not_a_path_fails_the_listing_clearly(
    s3_server: MotoServer, s3_bucket: str
) -> None:
    s3_server.put(s3_bucket, "a//b", b"x")
    with pytest.raises(FailedPrecondition, match=f"s3://{s3_bucket}.*not a valid path"):
        listing(s3(f"s3://{s3_bucket}", **s3_server.options()))


def test_the_mount_root_is_not_an_object(s3_server: MotoServer, s3_bucket: str) -> None:
    with pytest.raises(NotFound):
        head(s3(f"s3://{s3_bucket}/data", **s3_server.options()), "")


def test_processes_that_used_s3_exit_cleanly(s3_server: MotoServer, s3_bucket: str) -> None:
    """obstore can abort an exiting interpreter (~1 run in 8 without the exit pause)."""
    s3_server.put(s3_bucket, "f", b"x")
    script = textwrap.dedent(
        f"""
        import asyncio
        from reservoir.origin import open_origin

        async def main():
            origin = open_origin("s3://{s3_bucket}", {s3_server.options()!r})
            for _ in range(3):
                info = await origin.head("f")
                [c async for c in origin.get_range("f", 0, 1, version=info.version)]
                [i async for i in origin.list()]
                try:
                    await origin.head("missing")
                except Exception:
                    pass

        asyncio.run(main())
        """
    )
    runs = [
        subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE) for _ in range(16)
    ]
    results = [(run.wait(60), run.stderr.read() if run.stderr else b"") for run in runs]
    assert [code for code, _ in results] == [0] * len(runs), results
