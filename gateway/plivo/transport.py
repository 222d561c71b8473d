"""How PlivoClient reaches Plivo: a GET with headers, answered by status, Retry-After and body.

Two implementations behind one Protocol: httpx (the chosen interface; its MockTransport drives
the client's tests) and aiohttp (the production default: measured to carry several times the
requests per second of httpx's own transport on one core; see BENCHMARKS.md). Each turns its
library's failures into UpstreamTimeout or UpstreamUnavailable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx
from yarl import URL

from gateway.errors import UpstreamTimeout, UpstreamUnavailable


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


class HttpxUpstream:
    """Over one pooled httpx.AsyncClient (base URL, timeouts and default headers set on it)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

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
            response = await self._client.request(
                method, path, headers=headers, params=params, json=json
            )
        except httpx.TimeoutException as exc:
            raise _timeout(path, subject, method) from exc
        except httpx.TransportError as exc:
            raise _unavailable(path, subject, exc, method) from exc
        return UpstreamResponse(
            response.status_code, response.content, response.headers.get("retry-after")
        )

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
    ) -> None:
        self._base = base_url.rstrip("/")
        self._root = URL(self._base) if URL(self._base).path in ("", "/") else None
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=connect_timeout,
                sock_connect=connect_timeout,
                sock_read=read_timeout,
            ),
            auto_decompress=True,
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
                body = await response.read()
                return UpstreamResponse(response.status, body, response.headers.get("Retry-After"))
        except TimeoutError as exc:
            raise _timeout(path, subject, method) from exc
        except aiohttp.ClientError as exc:
            raise _unavailable(path, subject, exc, method) from exc

    def _url(self, path: str) -> URL:
        """The URL of an already percent-encoded path (quicker than parsing the whole text)."""
        if self._root is not None:
            return self._root.with_path(path, encoded=True)
        return URL(self._base + path, encoded=True)

    async def close(self) -> None:
        await self._session.close()


def _timeout(path: str, subject: str, method: str) -> UpstreamTimeout:
    return UpstreamTimeout(f"Plivo did not answer in time for {subject}", method=method, path=path)


def _unavailable(path: str, subject: str, exc: Exception, method: str) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        f"the connection to Plivo failed for {subject} ({type(exc).__name__})",
        method=method,
        path=path,
    )
