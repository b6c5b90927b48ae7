"""The settings of an S3 origin (`s3://bucket/prefix`): from a dataset's options and the
process environment to what reaches one bucket prefix, refusing what cannot work.

`S3Settings.resolve` takes each option from `--option`, else from the standard AWS
environment variable named in `ENV_FALLBACKS`. Credentials travel as a set: if
`--option` names a key, the key, secret and session token all come from the options,
never half from the environment. The origin (`s3`) passes every resolved value to
obstore.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from reservoir.errors import InvalidArgument

# Where each option falls back to when `--option` does not set it, first match wins.
ENV_FALLBACKS: Mapping[str, tuple[str, ...]] = {
    "endpoint": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "access_key_id": ("AWS_ACCESS_KEY_ID",),
    "secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "session_token": ("AWS_SESSION_TOKEN",),
}
DEFAULT_REGION = "us-east-1"  # what AWS SDKs and obstore assume when none is given

# A bucket name as S3 and the common S3-compatible stores accept it (lenient on case).
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")


@dataclass(frozen=True)
class S3Settings:
    """Everything needed to reach one bucket prefix; secrets stay out of repr()."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    anonymous: bool = False

    @classmethod
    def resolve(
        cls, bucket: str, prefix: str, options: Mapping[str, str], environ: Mapping[str, str]
    ) -> S3Settings:
        """Options first, then `ENV_FALLBACKS`; InvalidArgument for what cannot work."""
        if not _BUCKET.match(bucket):
            raise InvalidArgument(
                f"invalid bucket name {bucket!r}: 3 to 255 letters, digits, '.', '-' or '_', "
                "starting and ending with a letter or digit"
            )
        anonymous = options.get("anonymous", "false").lower()
        if anonymous not in ("true", "false"):
            raise InvalidArgument(f"option anonymous must be true or false, not {anonymous!r}")

        endpoint, endpoint_from = options.get("endpoint"), "option endpoint"
        if not endpoint and (found := _from_env("endpoint", environ)):
            endpoint, endpoint_from = found
        if endpoint:
            endpoint = _check_endpoint(endpoint, endpoint_from)
        region = options.get("region") or _value(_from_env("region", environ))

        creds = ("access_key_id", "secret_access_key", "session_token")
        from_options = any(options.get(key) for key in creds)
        key_id = secret = token = None
        if anonymous == "true":
            if from_options:
                raise InvalidArgument(
                    "anonymous=true sends no credentials: drop access_key_id, "
                    "secret_access_key and session_token, or set anonymous=false"
                )
        elif from_options:
            key_id, secret, token = (options.get(key) or None for key in creds)
        else:
            key_id, secret, token = (_value(_from_env(key, environ)) for key in creds)
        if (key_id is None) != (secret is None) or (token and key_id is None):
            where = "the options give" if from_options else "the environment gives"
            raise InvalidArgument(
                f"access_key_id and secret_access_key go together (and session_token needs "
                f"both), but {where} only part of them (options access_key_id/"
                "secret_access_key/session_token, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/"
                "AWS_SESSION_TOKEN)"
            )
        return cls(
            bucket=bucket,
            prefix=prefix,
            endpoint=endpoint or None,
            region=region,
            access_key_id=key_id,
            secret_access_key=secret,
            session_token=token,
            anonymous=anonymous == "true",
        )

    @property
    def display_endpoint(self) -> str:
        """The endpoint as a person would call it, for messages."""
        return self.endpoint or f"https://s3.{self.region or DEFAULT_REGION}.amazonaws.com"


def _from_env(key: str, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The first non-empty variable of `ENV_FALLBACKS[key]`, with its name."""
    for var in ENV_FALLBACKS[key]:
        if value := environ.get(var):
            return value, var
    return None


def _value(found: tuple[str, str] | None) -> str | None:
    return found[0] if found else None


def _check_endpoint(endpoint: str, source: str) -> str:
    parts = urlsplit(endpoint)
    shown = f"={endpoint!r}" if "@" not in endpoint else ""  # user:password@ stays unsaid
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(
            f"{source}{shown} is not an endpoint URL: write http://HOST:PORT or https://HOST"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidArgument(
            f"{source} must be a plain http(s)://HOST[:PORT] URL, without credentials, "
            "query or fragment"
        )
    return endpoint.rstrip("/")
