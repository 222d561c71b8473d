"""Plivo's request signatures on status callbacks: V2 and V3 (reference §6).

V2: base64(HMAC-SHA256(token, scheme://host/path + nonce)); the query string is not signed.
V3: base64(HMAC-SHA256(token, url-with-sorted-params + "." + nonce)); a header may carry
several signatures, comma-separated. Both are checked against the URL Plivo was given (the
gateway's public URL), never against the Host header of the request.

V2 signs neither the body nor the query: one captured V2 pair would carry any SessionUUID. So
when a request sends any V3 header, V3 alone decides; V2 counts only where V3 is not sent, and
each nonce is accepted once (the caller keeps the nonces `verified` returns).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

Params = Mapping[str, list[str]]
Nonce = tuple[str, str]  # (signature version, nonce)
V3_SIGNATURES = ("x-plivo-signature-v3", "x-plivo-signature-ma-v3")
V3_NONCE = "x-plivo-signature-v3-nonce"
V2_SIGNATURES = ("x-plivo-signature-v2", "x-plivo-signature-ma-v2")
V2_NONCE = "x-plivo-signature-v2-nonce"


@dataclass(frozen=True, slots=True)
class Signed:
    """A callback whose signature verified: the version that decided, and every verified
    (version, nonce) it carried (a V3 request's valid V2 pair too: stripped of its V3 headers,
    the same request must not pass again as V2)."""

    version: str
    nonces: tuple[Nonce, ...]


def _hmac(token: str, message: str) -> str:
    digest = hmac.new(token.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signature_v2(url: str, nonce: str, token: str) -> str:
    """The V2 signature of `url` with `nonce`."""
    parts = urlsplit(url)
    return _hmac(token, f"{parts.scheme}://{parts.netloc}{parts.path}{nonce}")


def _pairs(params: Params) -> list[tuple[str, str]]:
    return [(key, value) for key in sorted(params) for value in sorted(params[key])]


def signature_v3(method: str, url: str, nonce: str, token: str, params: Params) -> str:
    """The V3 signature of a GET (params in the query) or a POST (params in the form)."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    query: dict[str, list[str]] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(key, []).append(value)
    if method.upper() == "GET":
        merged = {**params, **query}  # the URL's own values win, as in Plivo's Python SDK
        if merged:
            base += "?" + "&".join(f"{k}={v}" for k, v in _pairs(merged))
    else:
        own = "&".join(f"{k}={v}" for k, v in _pairs(query))
        if params:
            base += "?" + own + ("." if own else "") + "".join(f"{k}{v}" for k, v in _pairs(params))
        elif own:
            base += "?" + own
    return _hmac(token, f"{base}.{nonce}")


def _matches(given: set[str], tokens: list[str], compute: Callable[[str], str]) -> bool:
    # Bytes, not str: compare_digest refuses a str with non-ASCII characters (a header's).
    return any(
        hmac.compare_digest(compute(token).encode(), signature.encode())
        for token in tokens
        for signature in given
    )


def _v2(url: str, headers: Mapping[str, str], tokens: list[str]) -> Nonce | None:
    nonce = headers.get(V2_NONCE, "")
    given = {headers.get(name, "").strip() for name in V2_SIGNATURES} - {""}
    if nonce and given and _matches(given, tokens, lambda token: signature_v2(url, nonce, token)):
        return ("v2", nonce)
    return None


def verified(
    method: str, url: str, headers: Mapping[str, str], params: Params, tokens: Iterable[str]
) -> Signed | None:
    """The signature that verifies with one of `tokens`, or None.

    `headers` are keyed in lower case. Any V3 header sent (a signature, the main account's, or
    the nonce): V3 must verify, whatever V2 says. No V3 header: a V2 pair must.
    """
    keys = [token for token in tokens if token]
    if any(name in headers for name in (*V3_SIGNATURES, V3_NONCE)):
        nonce = headers.get(V3_NONCE, "")
        given = {s.strip() for name in V3_SIGNATURES for s in headers.get(name, "").split(",")} - {
            ""
        }
        if not nonce or not given:
            return None
        if not _matches(given, keys, lambda t: signature_v3(method, url, nonce, t, params)):
            return None
        v2 = _v2(url, headers, keys)
        return Signed("v3", (("v3", nonce),) + ((v2,) if v2 else ()))
    v2 = _v2(url, headers, keys)
    return None if v2 is None else Signed("v2", (v2,))


def is_signed(
    method: str, url: str, headers: Mapping[str, str], params: Params, tokens: Iterable[str]
) -> bool:
    """Whether the request's signature verifies with one of `tokens` (see `verified`)."""
    return verified(method, url, headers, params, tokens) is not None
