"""How PlivoClient reaches Plivo: a GET with headers, answered by status, Retry-After and body.

Three implementations behind one Protocol: httpx (the chosen interface; its MockTransport
drives the client's tests), aiohttp (measured to carry several times the requests per second
of httpx's own transport on one core; see BENCHMARKS.md), and `plivo.lean.LeanUpstream`, our
own HTTP/1.1 on asyncio protocols and httptools (about a quarter of aiohttp's CPU per call;
see docs/performance.md). Each turns its library's failures into UpstreamTimeout or
UpstreamUnavailable; the reading helpers below are shared with the lean one.

Each reads an answer's body up to `max_body` bytes (PLIVO_MAX_RESPONSE_BYTES), decompressed:
a Content-Length above it fails before the body is read, a body that grows past it fails as
soon as it does. Either way the rest is never read and the connection is closed, not pooled.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx
from yarl import URL

from gateway.errors import UpstreamFailed, UpstreamTimeout, UpstreamUnavailable

logger = logging.getLogger(__name__)
DEFAULT_MAX_BODY = 1_048_576  # bytes; Plivo's largest answer, a page of 20 sessions, is ~35 KB


class BrokenAnswer(UpstreamFailed):
    """What came back cannot be read as an answer: not HTTP, or in an encoding we cannot read.

    Not retried (the same answer would come back); the breaker counts it like a 5xx.
    """


class AnswerTooLarge(BrokenAnswer):
    """Plivo's answer was over the size limit; `size` bytes were declared or read by then."""

    def __init__(
        self, subject: str, *, method: str, path: str, status_code: int, size: int, limit: int
    ) -> None:
        self.size, self.limit = size, limit
        super().__init__(
            f"Plivo's answer for {subject} is larger than the {limit}-byte limit",
            method=method,
            path=path,
            status_code=status_code,
        )


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """What the client needs of an answer."""

    status: int
    body: bytes
    retry_after: str | None


class UpstreamHTTP(Protocol):
    """Send a request to a path relative to Plivo's base URL, with a query or a JSON body."""

    async def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        subject: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, object] | None = None,
    ) -> UpstreamResponse: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Reading:
    """One answer being read: what to name in errors and logs, and the limit."""

    subject: str
    method: str
    path: str
    status: int
    limit: int

    def check_declared(self, content_length: int | None) -> None:
        """Fail before reading when the declared length is over the limit."""
        if content_length is not None and content_length > self.limit:
            raise self.too_large(content_length, "declared")

    def check_read(self, size: int) -> None:
        """Fail as soon as what was read is over the limit."""
        if size > self.limit:
            raise self.too_large(size, "read")

    def too_large(self, size: int, how: str) -> AnswerTooLarge:
        logger.warning(
            "Plivo's answer for %s is over the %d-byte limit (%d bytes %s); connection dropped",
            self.subject,
            self.limit,
            size,
            how,
        )
        return AnswerTooLarge(
            self.subject,
            method=self.method,
            path=self.path,
            status_code=self.status,
            size=size,
            limit=self.limit,
        )

    def broken(self, what: str) -> BrokenAnswer:
        return BrokenAnswer(
            f"Plivo's answer for {self.subject} is unreadable ({what})",
            method=self.method,
            path=self.path,
            status_code=self.status,
        )


class Inflater:
    """Decodes a gzip or deflate body a piece at a time, never more than asked for at once."""

    def __init__(self, encoding: str) -> None:
        wbits = zlib.MAX_WBITS | 16 if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._zlib = zlib.decompressobj(wbits)

    def feed(self, data: bytes, room: int) -> bytes:
        """At most `room + 1` bytes: one more than fits says the body is over the limit."""
        return self._zlib.decompress(data, room + 1)


class HttpxUpstream:
    """Over one pooled httpx.AsyncClient (base URL, timeouts and default headers set on it)."""

    def __init__(self, client: httpx.AsyncClient, *, max_body: int = DEFAULT_MAX_BODY) -> None:
        self._client = client
        self._max_body = max_body

    async def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        subject: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, object] | None = None,
    ) -> UpstreamResponse:
        request = self._client.build_request(
            method, path, headers=headers, params=params, json=json
        )
        try:
            response = await self._client.send(request, stream=True)
            try:
                reading = Reading(subject, method, path, response.status_code, self._max_body)
                body = await self._read(response, reading)
            finally:
                await response.aclose()  # before the body's end: closes the connection
        except httpx.TimeoutException as exc:
            raise timeout_error(path, subject, method) from exc
        except httpx.TransportError as exc:
            raise unavailable_error(path, subject, exc, method) from exc
        return UpstreamResponse(response.status_code, body, response.headers.get("retry-after"))

    @staticmethod
    async def _read(response: httpx.Response, reading: Reading) -> bytes:
        """The body, decoded, up to the limit (httpx's own decoders would inflate unbounded)."""
        length = response.headers.get("content-length", "")
        reading.check_declared(int(length) if length.isdigit() else None)
        if response.is_stream_consumed:  # built whole in memory (httpx.MockTransport's answers)
            reading.check_read(len(response.content))
            return response.content
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        inflater: Inflater | None = None
        if encoding in ("gzip", "x-gzip", "deflate"):
            inflater = Inflater(encoding)
        elif encoding not in ("identity", ""):
            raise reading.broken(f"content encoding {encoding[:20]!r} was not asked for")
        body = bytearray()
        async for chunk in response.aiter_raw():
            if inflater is not None:
                try:
                    chunk = inflater.feed(chunk, reading.limit - len(body))
                except zlib.error as exc:
                    raise reading.broken(f"not valid {encoding}") from exc
            body += chunk
            reading.check_read(len(body))
        return bytes(body)

    async def close(self) -> None:
        await self._client.aclose()


class AiohttpUpstream:
    """Over one pooled aiohttp.ClientSession; built inside the running event loop."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int,
        headers: dict[str, str],
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._root = URL(self._base) if URL(self._base).path in ("", "/") else None
        self._max_body = max_body
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=connect_timeout,
                sock_connect=connect_timeout,
                sock_read=read_timeout,
            ),
            auto_decompress=True,  # a piece at a time, bounded: counted as it comes below
            trust_env=False,
            # No cookies: Plivo's API needs none, and a jar shared by every credential's
            # requests could carry one caller's cookie to another's (it is also cheaper).
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        subject: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, object] | None = None,
    ) -> UpstreamResponse:
        try:
            async with self._session.request(
                method,
                self._url(path),
                headers=headers,
                params=params,
                json=json,
                allow_redirects=False,
            ) as response:
                reading = Reading(subject, method, path, response.status, self._max_body)
                try:
                    body = await self._read(response, reading)
                except BrokenAnswer:
                    response.close()  # the rest stays unread: this connection is not reused
                    raise
                return UpstreamResponse(response.status, body, response.headers.get("Retry-After"))
        except TimeoutError as exc:
            raise timeout_error(path, subject, method) from exc
        except aiohttp.ClientResponseError as exc:  # the parser refused the status line or headers
            raise BrokenAnswer(
                f"Plivo's answer for {subject} is unreadable (not HTTP)", method=method, path=path
            ) from exc
        except aiohttp.ClientError as exc:
            raise unavailable_error(path, subject, exc, method) from exc

    @staticmethod
    async def _read(response: aiohttp.ClientResponse, reading: Reading) -> bytes:
        reading.check_declared(response.content_length)
        if response.content_length is not None and "Content-Encoding" not in response.headers:
            return await response.read()  # the parser stops at the declared length
        body = bytearray()
        async for chunk in response.content.iter_any():
            body += chunk
            reading.check_read(len(body))
        return bytes(body)

    def _url(self, path: str) -> URL:
        """The URL of an already percent-encoded path (quicker than parsing the whole text)."""
        if self._root is not None:
            return self._root.with_path(path, encoded=True)
        return URL(self._base + path, encoded=True)

    async def close(self) -> None:
        await self._session.close()


def timeout_error(path: str, subject: str, method: str) -> UpstreamTimeout:
    return UpstreamTimeout(f"Plivo did not answer in time for {subject}", method=method, path=path)


def unavailable_error(path: str, subject: str, exc: Exception, method: str) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        f"the connection to Plivo failed for {subject} ({type(exc).__name__})",
        method=method,
        path=path,
    )
