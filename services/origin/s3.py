"""S3 (and S3-compatible stores) as under-storage: `s3://bucket/prefix`, over obstore.

Design note
-----------
- Settings are explicit (`s3_settings`): every resolved value is passed to obstore.
  That matters because obstore also reads `AWS_*` variables by itself, and some of its
  own win over a passed value (`AWS_ENDPOINT_URL_S3` beats `endpoint`), so we pass the
  endpoint under both names and `skip_signature` always. Without keys and without
  `anonymous=true`, obstore's own chain applies (web identity, ECS/EKS container
  credentials, EC2 instance metadata).
- Every call is bounded: connect, stall and whole-request timeouts plus a small retry
  budget (constants below) keep an unreachable endpoint to ~15 s at worst, after which
  the caller gets Unavailable naming the endpoint.
- The prefix is a directory: obstore's store prefix and listing match whole path
  segments, so `s3://b/dir` never sees `dir2/...`.
- Directory markers. obstore strips the trailing "/" of a key such as `dir/`, so a
  marker shows up as an empty object named `dir`. Empty objects are therefore held back
  until the listing ends: one that is the parent of another object is a marker; any
  other is asked for by HEAD, which finds a real empty file and misses a marker.
- Version pinning. A version is the ETag without quotes. `get_range` sends it as
  If-Match and checks the response's ETag too, so a rewritten object fails with
  FailedPrecondition, never a mix of old and new bytes.
- Errors are translated here, once: obstore raises typed errors for some cases and a
  GenericError whose text holds the HTTP status and S3 error code for the rest.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import re
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import (
    InvalidPathError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from reservoir.errors import FailedPrecondition, NotFound, ReservoirError, Unavailable
from reservoir.origin.base import ObjectInfo, changed_since_sync, check_range
from reservoir.origin.s3_settings import DEFAULT_REGION, S3Settings
from reservoir.paths import normalize

if TYPE_CHECKING:
    from obstore import GetOptions, ObjectMeta
    from obstore.store import ClientConfig, RetryConfig

# A reachable endpoint accepts a connection in milliseconds; 3 s tolerates a busy one.
CONNECT_TIMEOUT = "3s"
# No byte for this long while we wait for one means a dead peer (resets on each read,
# and does not fire while our own reader is slow).
STALL_TIMEOUT = "10s"
# A whole request, body included: one 64 MiB block must arrive at >= ~220 KB/s.
REQUEST_TIMEOUT = "300s"
# Retries start only within RETRY_WINDOW of the first attempt, so the worst case is the
# window plus one stall (~15 s); transient 5xx and refused connections still get 3 tries.
MAX_RETRIES = 3
RETRY_WINDOW = timedelta(seconds=5)
BACKOFF_FIRST = timedelta(milliseconds=100)
BACKOFF_MAX = timedelta(seconds=2)

LIST_PAGE = 1000  # objects per batch handed to Python; S3 pages hold up to 1000 keys
STREAM_CHUNK = 1 << 20  # 1 MiB chunks out of get_range, as for the local backend
HEAD_CONCURRENCY = 16  # parallel HEADs when telling empty files from directory markers
# obstore's tokio threads may still be handing a finished call back to Python when the
# interpreter starts to finalize, which aborts the process (SIGABRT) now and then; a
# short pause at exit lets them finish first (pyo3-async-runtimes shutdown race).
SETTLE_AT_EXIT_S = 0.1
_STATUS = re.compile(r"status code: (\d{3})")
_S3_CODE = re.compile(r"<Code>([A-Za-z]+)</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]{1,300})</Message>")
_NO_ETAG = "mtime-"  # prefix of the versions made up for objects without an ETag
_OS_MESSAGE = re.compile(r'message: "([^"]+)"')


class S3Origin:
    """Read-only access to one bucket prefix."""

    def __init__(self, settings: S3Settings) -> None:
        self._settings = settings
        self._endpoint = settings.display_endpoint
        config: dict[str, Any] = {
            "region": settings.region or DEFAULT_REGION,
            "skip_signature": settings.anonymous,
        }
        if settings.endpoint:
            # Under both names: obstore lets AWS_ENDPOINT_URL_S3 override `endpoint`.
            config["endpoint"] = settings.endpoint
            config["aws_endpoint_url_s3"] = settings.endpoint
        for key in ("access_key_id", "secret_access_key", "session_token"):
            if value := getattr(settings, key):
                config[key] = value
        client: ClientConfig = {
            "connect_timeout": CONNECT_TIMEOUT,
            "read_timeout": STALL_TIMEOUT,
            "timeout": REQUEST_TIMEOUT,
        }
        if self._endpoint.startswith("http://"):
            client["allow_http"] = True
        retry: RetryConfig = {
            "max_retries": MAX_RETRIES,
            "retry_timeout": RETRY_WINDOW,
            "backoff": {"init_backoff": BACKOFF_FIRST, "max_backoff": BACKOFF_MAX, "base": 2},
        }
        self._store = S3Store(
            settings.bucket,
            prefix=settings.prefix or None,
            config=config,  # type: ignore[arg-type]  # keys checked above
            client_options=client,
            retry_config=retry,
        )
        _settle_runtime_at_exit()

    @property
    def uri(self) -> str:
        prefix = f"/{self._settings.prefix}" if self._settings.prefix else ""
        return f"s3://{self._settings.bucket}{prefix}"

    @property
    def settings(self) -> S3Settings:
        return self._settings

    # -- listing ------------------------------------------------------------------

    async def list(self) -> AsyncIterator[ObjectInfo]:
        held: dict[str, ObjectInfo] = {}  # empty objects: files or directory markers
        parents: set[str] = set()
        try:
            pages = aiter(obstore.list(self._store, chunk_size=LIST_PAGE))
        except Exception as exc:
            raise self._error(exc, "") from exc
        while True:
            try:
                page = await anext(pages)
            except StopAsyncIteration:
                break
            except Exception as exc:
                raise self._error(exc, "") from exc
            for meta in page:
                path = meta["path"]
                if not path:  # the marker of the prefix itself
                    continue
                _add_parents(parents, path)
                info = _info(meta)
                if info.size == 0:
                    held[path] = info
                else:
                    yield info
        candidates = [path for path in held if path not in parents]
        for start in range(0, len(candidates), HEAD_CONCURRENCY):
            batch = candidates[start : start + HEAD_CONCURRENCY]
            for empty in await asyncio.gather(*(self._empty_file(path) for path in batch)):
                if empty is not None:
                    yield empty

    async def _empty_file(self, path: str) -> ObjectInfo | None:
        """The empty file at `path`, or None when only a `path/` marker is there."""
        try:
            meta = await obstore.head_async(self._store, path)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._error(exc, path) from exc
        # A non-empty object of the same name was listed already; this was its marker.
        return _info(meta) if meta["size"] == 0 else None

    # -- single objects -----------------------------------------------------------

    async def head(self, path: str) -> ObjectInfo:
        key = self._key(path)
        try:
            return _info(await obstore.head_async(self._store, key))
        except Exception as exc:
            raise self._error(exc, key) from exc

    async def get_range(
        self, path: str, start: int, end: int, *, version: str
    ) -> AsyncIterator[bytes]:
        key = self._key(path)
        check_range(start, end)
        if start == end:  # no request can ask for zero bytes; check the version only
            await self._check_version(key, version)
            return
        options: GetOptions = {"range": (start, end)}
        if not version.startswith(_NO_ETAG):
            options["if_match"] = f'"{version}"'
        try:
            result = await obstore.get_async(self._store, key, options=options)
        except Exception as exc:
            if _status(exc) == 416:  # starts at or past the end: no bytes, if unchanged
                await self._check_version(key, version)
                return
            raise self._error(exc, key) from exc
        if _info(result.meta).version != version:  # for stores that ignore If-Match
            raise changed_since_sync(key)
        chunks = aiter(result.stream(min_chunk_size=STREAM_CHUNK))
        while True:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except Exception as exc:
                raise self._error(exc, key) from exc
            yield chunk

    async def _check_version(self, key: str, version: str) -> None:
        if (await self.head(key)).version != version:
            raise changed_since_sync(key)

    async def close(self) -> None:
        """Nothing to release: obstore's connection pool goes with the store."""

    # -- translation --------------------------------------------------------------

    def _key(self, path: str) -> str:
        key = normalize(path)
        if not key:
            raise NotFound(f"{self.uri} is a directory, not an object")
        return key

    def _error(self, exc: Exception, path: str) -> ReservoirError:
        """The Reservoir error for an obstore failure on `path`."""
        if isinstance(exc, ReservoirError):
            return exc
        text = str(exc)
        status = _status(exc)
        s3_code = m.group(1) if (m := _S3_CODE.search(text)) else None
        where = f"{self._endpoint}, bucket {self._settings.bucket!r}"
        if isinstance(exc, PreconditionError) or status == 412:
            return changed_since_sync(path)
        if s3_code == "NoSuchBucket":
            return FailedPrecondition(
                f"bucket {self._settings.bucket!r} does not exist at {self._endpoint}"
            )
        if "/latest/api/token" in text or "/latest/meta-data" in text:
            return FailedPrecondition(
                f"no credentials for {where}: set the access_key_id and secret_access_key "
                "options (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or anonymous=true "
                "for a public bucket"
            )
        if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or status in (401, 403):
            return FailedPrecondition(
                f"the under-storage at {where} refused access ({s3_code or status}); "
                "check the credentials and the bucket's policy"
            )
        if isinstance(exc, FileNotFoundError) or status == 404:
            return NotFound(f"no object {path!r} in {self.uri}")
        if status == 301 or s3_code in ("PermanentRedirect", "AuthorizationHeaderMalformed"):
            return FailedPrecondition(
                f"bucket {self._settings.bucket!r} is not in region "
                f"{self._settings.region or DEFAULT_REGION} at {self._endpoint}: set the region "
                "option (or AWS_REGION)"
            )
        if status is not None and 400 <= status < 500:
            detail = m.group(1) if (m := _S3_MESSAGE.search(text)) else f"HTTP {status}"
            return FailedPrecondition(
                f"the under-storage at {where} rejected the request ({s3_code or status}): {detail}"
            )
        if isinstance(exc, InvalidPathError):
            return FailedPrecondition(
                f"{self.uri} holds a key that is not a valid path (empty, '.' or '..' "
                f"segments): {text.splitlines()[0]}"
            )
        return Unavailable(f"cannot reach the under-storage at {self._endpoint}: {_reason(text)}")


def _info(meta: ObjectMeta) -> ObjectInfo:
    etag = (meta["e_tag"] or "").removeprefix("W/").strip('"')
    mtime_ms = int(meta["last_modified"].timestamp() * 1000)
    # No ETag (rare S3-compatible stores): size and second-precision mtime stand in.
    version = etag or f"{_NO_ETAG}{mtime_ms // 1000}-{meta['size']}"
    return ObjectInfo(path=meta["path"], size=meta["size"], version=version, mtime_ms=mtime_ms)


def _add_parents(parents: set[str], path: str) -> None:
    parent = path.rpartition("/")[0]
    while parent and parent not in parents:
        parents.add(parent)
        parent = parent.rpartition("/")[0]


def _status(exc: Exception) -> int | None:
    m = _STATUS.search(str(exc))
    return int(m.group(1)) if m else None


def _reason(text: str) -> str:
    """A one-line cause out of obstore's multi-line error text."""
    if m := _OS_MESSAGE.search(text):
        reason = m.group(1)  # e.g. "Connection refused"
    elif "kind: Timeout" in text or "TimedOut" in text:
        reason = "timed out"
    elif "dns error" in text.lower():
        reason = "the host name does not resolve"
    elif "InvalidCertificate" in text or "InvalidMessage" in text:
        reason = "TLS handshake failed (a plain http:// server, or an untrusted certificate?)"
    elif "kind: Connect" in text:
        reason = "could not connect"
    elif m := _STATUS.search(text):
        reason = f"HTTP {m.group(1)}"
    else:
        reason = text.splitlines()[0] if text else "unknown error"
    if m := re.search(r"after (\d+) retries", text):
        reason += f" (after {m.group(1)} retries)"
    return reason


@functools.cache
def _settle_runtime_at_exit() -> None:
    atexit.register(time.sleep, SETTLE_AT_EXIT_S)
