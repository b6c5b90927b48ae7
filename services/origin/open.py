"""From a mount URI and its options to an `Origin`, refusing what cannot work.

Every refusal is an InvalidArgument that says what is wrong and what would be right,
since it reaches a person through `reservoir dataset create ... --mount URI --option
KEY=VALUE`. Messages name option keys but never echo their values: some are secrets
(`SECRET_OPTIONS`), and callers must not show or log those either.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from reservoir.errors import InvalidArgument
from reservoir.origin.base import Origin
from reservoir.origin.local import LocalOrigin
from reservoir.origin.s3 import S3Origin
from reservoir.origin.s3_settings import S3Settings
from reservoir.paths import normalize

SECRET_OPTIONS = frozenset({"secret_access_key", "session_token"})
# What identifies a caller to the under-storage: may be rotated without listing again.
CREDENTIAL_OPTIONS = frozenset({"access_key_id", *SECRET_OPTIONS})
# The option keys each scheme accepts; file:// takes none.
OPTIONS_BY_SCHEME: Mapping[str, frozenset[str]] = {
    "s3": frozenset(
        {"endpoint", "region", "access_key_id", "secret_access_key", "session_token", "anonymous"}
    ),
    "file": frozenset(),
}
EXAMPLES = "s3://BUCKET/PREFIX or file:///ABSOLUTE/DIR"


def open_origin(
    uri: str, options: Mapping[str, str], *, environ: Mapping[str, str] | None = None
) -> Origin:
    """The origin that `uri` names, configured by `options` (S3 falls back to `environ`,
    by default the process environment, for what the options leave unset)."""
    if "\x00" in uri:
        raise InvalidArgument("the mount URI contains a NUL byte")
    parts = urlsplit(uri)
    uri = _shown(uri)
    scheme = parts.scheme.lower()
    if scheme not in OPTIONS_BY_SCHEME:
        given = f"scheme {scheme!r}" if scheme else "no scheme"
        raise InvalidArgument(f"unsupported mount URI {uri!r} ({given}): supported are {EXAMPLES}")
    if parts.query or parts.fragment:
        raise InvalidArgument(f"mount URI {uri!r} must have no query (?...) or fragment (#...)")
    _check_options(scheme, options)
    if scheme == "file":
        return _open_file(uri, parts.netloc.rpartition("@")[2], parts.path)
    return _open_s3(uri, parts.netloc, parts.path, options, environ)


def _shown(uri: str) -> str:
    """`uri` fit for a message: whatever precedes an "@" in the authority may be a secret."""
    scheme, sep, rest = uri.partition("://")
    authority, slash, path = rest.partition("/")
    if sep and "@" in authority:
        return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"
    return uri


def _check_options(scheme: str, options: Mapping[str, str]) -> None:
    allowed = OPTIONS_BY_SCHEME[scheme]
    unknown = sorted(set(options) - allowed)
    if unknown and not allowed:
        raise InvalidArgument(f"{scheme}:// mounts take no options, got {', '.join(unknown)}")
    if unknown:
        raise InvalidArgument(
            f"unknown option {', '.join(unknown)} for {scheme}:// mounts; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    for key, value in options.items():
        if not value:
            raise InvalidArgument(f"option {key} is empty: give it a value or leave it out")


def _open_file(uri: str, host: str, path: str) -> LocalOrigin:
    if host:
        raise InvalidArgument(
            f"file URI {uri!r} names a host ({host!r}); write file:///ABSOLUTE/DIR "
            "(three slashes) for a directory of this machine"
        )
    directory = unquote(path)
    if "\x00" in directory:
        raise InvalidArgument("the mount URI contains a NUL byte")
    if not directory.startswith("/"):
        raise InvalidArgument(f"file URI {uri!r} needs an absolute path: file:///ABSOLUTE/DIR")
    return LocalOrigin(Path(os.path.normpath(directory)))


def _open_s3(
    uri: str,
    netloc: str,
    path: str,
    options: Mapping[str, str],
    environ: Mapping[str, str] | None,
) -> S3Origin:
    if not netloc:
        raise InvalidArgument(f"S3 URI {uri!r} names no bucket: write s3://BUCKET/PREFIX")
    if "@" in netloc or ":" in netloc:
        raise InvalidArgument(
            f"S3 URI {uri!r}: the part after s3:// is the bucket name alone; give "
            "credentials and endpoint as options (access_key_id, secret_access_key, endpoint)"
        )
    try:
        prefix = normalize(unquote(path))
    except InvalidArgument as exc:
        raise InvalidArgument(f"S3 URI {uri!r} has an invalid prefix: {exc}") from None
    settings = S3Settings.resolve(
        netloc, prefix, options, os.environ if environ is None else environ
    )
    return S3Origin(settings)
