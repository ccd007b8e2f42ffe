"""Presigned (SigV4 query-string) URLs for the small-object fast path, without botocore's per-call cost.

botocore's `generate_presigned_url` costs 0.35-0.65 ms of CPU a call here (endpoint rules, event
hooks, a request object, URL re-parsing), more than sending the request and writing the file; for
a folder of 16 KiB files it was the largest client cost per file. The signature itself is a few
HMACs. This module signs the same URL itself, and proves per (method, bucket) that it does:

- What to sign for comes from botocore, once: a presigned URL for a probe key gives the scheme,
  host, path up to the key (addressing style and endpoint rules applied), and the credential
  scope (signing region and service). Its query must be exactly SigV4's (AWS4-HMAC-SHA256,
  `host` the only signed header, our expiry); anything else (SigV2, S3 Express session auth, an
  extra parameter a hook added) leaves that bucket on botocore's presign.
- Then the probe URL is signed here, with botocore's own X-Amz-Date and the same credentials
  object, and must come out byte-identical to botocore's; if not (a credentials refresh in
  between, a signing rule this code does not know), that bucket stays on botocore's presign.

Per request: the credentials are read from botocore's credentials object
(`get_frozen_credentials()`, so refreshable credentials refresh as botocore's would), the time
from botocore's clock (`botocore.auth.get_current_datetime`: the signature must carry the time
the server compares with, as botocore's does, not the app's shiftable clock), and the signing key
is derived once per (secret, date, region, service) and kept.
"""
from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

EXPIRES = 900
PROBE_KEY = "dlaas-signing-probe"
_OPERATIONS = {"GET": "get_object", "PUT": "put_object"}
_SAFE = "-_.~"  # botocore's percent_encode: everything else in a query value is escaped
_ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True)
class Signed:
    """A presigned request: where to send it, the Host it was signed for, and the request target."""

    scheme: str
    netloc: str
    host: str
    target: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.target}"


@dataclass(frozen=True)
class _Template:
    scheme: str
    netloc: str
    host: str
    base: str  # the path up to the key, ending in "/"
    region: str
    service: str


def host_header(scheme: str, hostname: str | None, port: int | None) -> str:
    """The Host value SigV4 signs (botocore's rule): lower-case, the port unless the scheme's default."""
    host = (hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}.get(scheme):
        host = f"{host}:{port}"
    return host


class Presigner:
    """SigV4 presigned URLs for GET and PUT of single objects, proved against botocore per bucket.

    `credentials` is botocore's credentials object the client signs with (None: every URL is
    botocore's). `url()` returns None only where botocore's presign itself fails.
    """

    def __init__(self, client: Any, credentials: Any) -> None:
        self._client = client
        self._credentials = credentials
        self._templates: dict[tuple[str, str], _Template | None] = {}
        self._lock = threading.Lock()
        self._key: tuple[tuple[str, str, str, str], bytes] | None = None

    def url(self, method: str, bucket: str, key: str) -> Signed | None:
        tpl = self._templates.get((method, bucket), False)
        if tpl is False:
            tpl = self._template(method, bucket)
        if tpl is not None:
            try:
                return self._sign(tpl, method, key, _amz_date(), self._credentials.get_frozen_credentials())
            except Exception:  # noqa: BLE001 - botocore's presign below reports the real error
                pass
        return self._botocore(method, bucket, key)

    def _botocore(self, method: str, bucket: str, key: str) -> Signed | None:
        try:
            url = self._client.generate_presigned_url(
                _OPERATIONS[method], Params={"Bucket": bucket, "Key": key}, ExpiresIn=EXPIRES
            )
        except Exception:  # noqa: BLE001 - the botocore request path reports the real error
            return None
        parts = urlsplit(url)
        return Signed(parts.scheme, parts.netloc, host_header(parts.scheme, parts.hostname, parts.port),
                      parts.path + ("?" + parts.query if parts.query else ""))

    def _template(self, method: str, bucket: str) -> _Template | None:
        with self._lock:
            if (method, bucket) not in self._templates:
                tpl = None
                if self._credentials is not None:
                    for _ in range(2):  # a second try: the credentials may have refreshed in between
                        tpl = self._prove(method, bucket)
                        if tpl is not None:
                            break
                self._templates[(method, bucket)] = tpl
            return self._templates[(method, bucket)]

    def _prove(self, method: str, bucket: str) -> _Template | None:
        """The bucket's template, if a probe URL signed here equals botocore's byte for byte."""
        probe = self._botocore(method, bucket, PROBE_KEY)
        if probe is None:
            return None
        path, _, query = probe.target.partition("?")
        if not path.endswith("/" + PROBE_KEY):
            return None
        params = dict(p.partition("=")[::2] for p in query.split("&"))
        try:
            _access, date, region, service, term = unquote(params["X-Amz-Credential"]).rsplit("/", 4)
            amz_date = params["X-Amz-Date"]
        except (KeyError, ValueError):
            return None
        if (params.get("X-Amz-Algorithm") != _ALGORITHM or params.get("X-Amz-SignedHeaders") != "host"
                or params.get("X-Amz-Expires") != str(EXPIRES) or term != "aws4_request"
                or amz_date[:8] != date):
            return None
        tpl = _Template(probe.scheme, probe.netloc, probe.host, path[: -len(PROBE_KEY)], region, service)
        try:
            ours = self._sign(tpl, method, PROBE_KEY, amz_date, self._credentials.get_frozen_credentials())
        except Exception:  # noqa: BLE001 - no credentials, or ones this code cannot read
            return None
        return tpl if ours == probe else None

    def _signing_key(self, secret: str, date: str, region: str, service: str) -> bytes:
        ident = (secret, date, region, service)
        cached = self._key
        if cached is not None and cached[0] == ident:
            return cached[1]
        key = f"AWS4{secret}".encode()
        for part in (date, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self._key = (ident, key)
        return key

    def _sign(self, tpl: _Template, method: str, key: str, amz_date: str, creds: Any) -> Signed:
        date = amz_date[:8]
        scope = f"{date}/{tpl.region}/{tpl.service}/aws4_request"
        # The parameters in botocore's order (the URL), then sorted by name (what is signed).
        params = [
            ("X-Amz-Algorithm", _ALGORITHM),
            ("X-Amz-Credential", quote(f"{creds.access_key}/{scope}", safe=_SAFE)),
            ("X-Amz-Date", amz_date),
            ("X-Amz-Expires", str(EXPIRES)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        if creds.token is not None:
            params.append(("X-Amz-Security-Token", quote(creds.token, safe=_SAFE)))
        query = "&".join(f"{k}={v}" for k, v in params)
        path = tpl.base + quote(key, safe="/~")
        canonical = "\n".join((
            method, path, "&".join(f"{k}={v}" for k, v in sorted(params)),
            f"host:{tpl.host}\n", "host", "UNSIGNED-PAYLOAD",
        ))
        to_sign = f"{_ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signing_key = self._signing_key(creds.secret_key, date, tpl.region, tpl.service)
        signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        return Signed(tpl.scheme, tpl.netloc, tpl.host, f"{path}?{query}&X-Amz-Signature={signature}")


def _amz_date() -> str:
    import botocore.auth

    return botocore.auth.get_current_datetime().strftime("%Y%m%dT%H%M%SZ")
