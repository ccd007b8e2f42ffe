"""Small-object GETs and PUTs on plain http.client connections, one per worker thread.

For a 16 KiB object the bytes are nothing; the per-request CPU is everything, and on two busy
cores it decides how a folder of small files compares with rclone. Measured per GET on this
machine: botocore's get_object ~1 ms of CPU, its HTTP session (urllib3) ~0.45 ms, its presign alone
0.35-0.65 ms; a URL signed by s3_sign (~0.02-0.03 ms) sent on a kept-alive http.client connection,
its answer read without http.client's email parser (_Response), a small part of that (docs/s3.md).

Each request is a presigned URL (SigV4 in the query), signed by s3_sign: botocore's endpoint rules,
addressing style, credentials and clock, proved byte-identical to botocore's own presign per bucket
(else botocore presigns); only the signing arithmetic and the sending are ours. TLS verification
uses the value the botocore client was built with (the profile's verify_tls, else AWS's
ca_bundle / AWS_CA_BUNDLE / REQUESTS_CA_BUNDLE, else certifi's bundle: s3_client.resolve_verify).
Anything this path cannot honour the way botocore would (a proxy, a client certificate) switches it
off, and any surprise on a
request (an error status, a connection that cannot send) hands that request to botocore, whose
retries and error mapping apply as usual; a body that breaks mid-way raises BrokenBody, which the
caller's retry (s3_retry, the one policy) reads again.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from .s3_retry import BrokenBody
from .s3_sign import Presigner, Signed

BLOCK = 256 * 1024
PUT_MAX = 1024 * 1024  # larger files stream through put_object rather than sit in memory


# Set in `meta` (a name no header can have) when the answer says its ETag is not the MD5 of its
# bytes: AWS encrypts with KMS keys (SSE-KMS, DSSE-KMS) or a customer's key (SSE-C) that way.
ETAG_NOT_MD5 = "@etag-not-md5"


def etag_not_md5(header: str, value: str) -> bool:
    """Whether a GET answer's header (lower-cased name) says the object's ETag is no MD5."""
    if header == "x-amz-server-side-encryption":
        return value.strip().lower().startswith("aws:kms")
    return header == "x-amz-server-side-encryption-customer-algorithm"


class _Headers:
    """The few reads http.client and this module make of an answer's headers (get, get_all, items),
    without the email parser http.client builds for every answer (~60 us of CPU per answer here,
    a tenth of a small file's cost)."""

    __slots__ = ("_items", "_first")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        self._first: dict[str, str] = {}
        for name, value in items:
            self._first.setdefault(name.lower(), value)

    def get(self, name: str, default: Any = None) -> Any:
        return self._first.get(name.lower(), default)

    def get_all(self, name: str, default: Any = None) -> Any:
        low = name.lower()
        found = [v for n, v in self._items if n.lower() == low]
        return found or default

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)


class _Response(http.client.HTTPResponse):
    """http.client's answer with its status line and framing rules as they are, and a plain header
    reader in place of the email parser (`begin` is http.client's, apart from that)."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()  # type: ignore[attr-defined]
            if status != http.client.CONTINUE:
                break
            self._header_lines()  # the 100 answer's headers
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        items = []
        for line in self._header_lines():
            name, sep, value = line.decode("iso-8859-1").partition(":")
            if not sep:
                raise http.client.HTTPException(f"malformed header line {line[:40]!r}")
            items.append((name.strip(), value.strip()))
        self.headers = self.msg = _Headers(items)  # type: ignore[assignment]
        enc = self.headers.get("transfer-encoding")
        self.chunked = bool(enc and enc.lower() == "chunked")
        self.chunk_left = None
        self.will_close = self._check_close()  # type: ignore[attr-defined]
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200 \
                or self._method == "HEAD":  # type: ignore[attr-defined]
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True

    def _header_lines(self) -> list[bytes]:
        lines: list[bytes] = []
        while True:
            line = self.fp.readline(65537)
            if len(line) > 65536:
                raise http.client.LineTooLong("header line")
            if line in (b"\r\n", b"\n", b""):
                return lines
            if line[:1] in (b" ", b"\t") and lines:  # an obsolete folded line continues the last
                lines[-1] = lines[-1].rstrip(b"\r\n") + b" " + line.strip()
                continue
            lines.append(line)
            if len(lines) > 100:
                raise http.client.HTTPException("got more than 100 headers")


class FastGetter:
    def __init__(self, client: Any, verify: bool | str, timeout: float, credentials: Any = None) -> None:
        self._client = client
        self._verify = verify
        self._timeout = timeout
        self._signer = Presigner(client, credentials)
        self._ssl: ssl.SSLContext | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[http.client.HTTPConnection] = []
        self.broken = False  # after a connection-level failure, stop trying: each one costs

    @classmethod
    def for_client(cls, client: Any, *, verify: bool | str = True, credentials: Any = None) -> FastGetter | None:
        """A getter beside this client, or None where its plain connections would not match what
        botocore does: a proxy (config or environment), a client certificate, or a CA bundle that
        cannot be loaded. `verify` is the value the client was built with (False, True or a CA
        bundle's path); `credentials` the botocore credentials object it signs with (None: every
        URL is presigned by botocore). Reads only the client's public `meta`."""
        cfg = client.meta.config
        url = client.meta.endpoint_url or ""
        scheme = urlsplit(url).scheme
        if cfg.proxies or cfg.client_cert or (scheme and urllib.request.getproxies().get(scheme)):
            return None
        timeout = max(cfg.read_timeout or 60, cfg.connect_timeout or 60)
        fast = cls(client, verify, timeout, credentials)
        if scheme == "https":
            try:
                fast._context()
            except (OSError, ssl.SSLError, ValueError):  # botocore will say what is wrong with the bundle
                return None
        return fast

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            if self._verify is False:  # the profile said verify_tls = false
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:  # the CA bundle botocore verifies against (certifi's where verify is True)
                from botocore.httpsession import get_cert_path

                ctx = ssl.create_default_context(cafile=get_cert_path(self._verify))
            self._ssl = ctx
        return self._ssl

    def _conn(self, scheme: str, netloc: str) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection to the endpoint, and whether it is new (never used yet)."""
        conns: dict[tuple[str, str], http.client.HTTPConnection] = self._local.__dict__.setdefault("conns", {})
        conn = conns.get((scheme, netloc))
        fresh = conn is None
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(netloc, timeout=self._timeout, context=self._context())
            else:
                conn = http.client.HTTPConnection(netloc, timeout=self._timeout)
            conn.response_class = _Response
            conns[(scheme, netloc)] = conn
            with self._lock:
                self._conns.append(conn)
        return conn, fresh

    def _failed(self, scheme: str, netloc: str, fresh: bool) -> None:
        """A request could not be sent or answered. On a kept-alive connection the server may just
        have closed it (botocore sends this one; the next gets a new connection); on a new one,
        this path cannot reach the server the way botocore does, so it steps aside for good."""
        self._drop(scheme, netloc)
        if fresh:
            self.broken = True

    def _drop(self, scheme: str, netloc: str) -> None:
        conn = self._local.__dict__.get("conns", {}).pop((scheme, netloc), None)
        if conn is not None:
            conn.close()

    def _presign(self, method: str, bucket: str, key: str) -> Signed | None:
        """The presigned request, or None (the botocore path then takes over)."""
        return self._signer.url(method, bucket, key)

    def get(
        self, bucket: str, key: str, etag: str | None, span: tuple[int, int] | None = None,
        into: bytearray | None = None, meta: dict[str, str] | None = None,
    ) -> Iterator[Any] | None:
        """The body as blocks, or None: the caller then takes the botocore path.

        `span` (offset, length) asks for a range (a 206 answer); with `into`, blocks are views of
        that buffer, each valid until the next one is asked for (no copy per block). `meta`
        receives the answer's user metadata (`x-amz-meta-NAME` as NAME), as botocore gives it.
        """
        if self.broken:
            return None
        signed = self._presign("GET", bucket, key)
        if signed is None:
            return None
        headers = {"Host": signed.host}
        if etag:
            headers["If-Match"] = f'"{etag}"'
        if span is not None:
            headers["Range"] = f"bytes={span[0]}-{span[0] + span[1] - 1}"
        conn, fresh = self._conn(signed.scheme, signed.netloc)
        try:
            conn.request("GET", signed.target, headers=headers)
            resp = conn.getresponse()
        except (ConnectionError, http.client.HTTPException, TimeoutError, OSError):
            self._failed(signed.scheme, signed.netloc, fresh)
            return None
        if resp.status != (200 if span is None else 206):
            self._drop(signed.scheme, signed.netloc)  # its body is not worth reading
            return None
        if meta is not None:
            for name, value in resp.getheaders():
                low = name.lower()
                if low.startswith("x-amz-meta-"):
                    meta[low[11:]] = value
                elif etag_not_md5(low, value):
                    meta[ETAG_NOT_MD5] = value
        return self._body(resp, signed.scheme, signed.netloc, into)

    def put(self, bucket: str, key: str, path: Any, size: int) -> bool:
        """PUT a small file; False when the caller must use put_object (it maps the errors)."""
        if self.broken or size > PUT_MAX:
            return False
        with open(path, "rb") as f:
            data = f.read(size + 1)
        if len(data) != size:  # the file changed since it was listed: botocore sends what is there
            return False
        signed = self._presign("PUT", bucket, key)
        if signed is None:
            return False
        # A presigned URL does not sign the payload, as put_object does on plain http: the
        # server checks this digest instead.
        headers = {"Host": signed.host, "Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode()}
        conn, fresh = self._conn(signed.scheme, signed.netloc)
        try:
            conn.request("PUT", signed.target, body=data, headers=headers)
            resp = conn.getresponse()
            resp.read()
        except (ConnectionError, http.client.HTTPException, TimeoutError, OSError):
            self._failed(signed.scheme, signed.netloc, fresh)
            return False
        if resp.status != 200:
            self._drop(signed.scheme, signed.netloc)
            return False
        return True

    def _body(
        self, resp: http.client.HTTPResponse, scheme: str, netloc: str, into: bytearray | None
    ) -> Iterator[Any]:
        ok = False
        try:
            if into is None:
                while block := resp.read(BLOCK):
                    yield block
            else:
                view = memoryview(into)
                while n := resp.readinto(view):
                    yield view[:n]
            ok = True
        except Exception as exc:  # noqa: BLE001 - the caller's retry reads it again
            raise BrokenBody(f"the connection broke mid-body: {exc}") from None
        finally:
            if not ok:  # a half-read answer leaves the connection unusable
                self._drop(scheme, netloc)

    def close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
