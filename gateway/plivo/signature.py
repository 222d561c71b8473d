"""Plivo's request signatures on status callbacks: V2 and V3 (reference §6).

V2: base64(HMAC-SHA256(token, scheme://host/path + nonce)); the query string is not signed.
V3: base64(HMAC-SHA256(token, url-with-sorted-params + "." + nonce)); a header may carry
several signatures, comma-separated. Both are checked against the URL Plivo was given (the
gateway's public URL), never against the Host header of the request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

Params = Mapping[str, list[str]]


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


def is_signed(
    method: str, url: str, headers: Mapping[str, str], params: Params, tokens: Iterable[str]
) -> bool:
    """Whether a V3 or V2 signature (the account's or the main account's) matches a token."""
    tokens = [token for token in tokens if token]
    checks: list[tuple[set[str], Callable[[str], str]]] = []
    nonce3 = headers.get("x-plivo-signature-v3-nonce")
    if nonce3:
        given = {
            s.strip()
            for name in ("x-plivo-signature-v3", "x-plivo-signature-ma-v3")
            for s in headers.get(name, "").split(",")
            if s.strip()
        }
        checks.append((given, lambda token: signature_v3(method, url, nonce3, token, params)))
    nonce2 = headers.get("x-plivo-signature-v2-nonce")
    if nonce2:
        given = {
            headers.get(name, "").strip()
            for name in ("x-plivo-signature-v2", "x-plivo-signature-ma-v2")
        } - {""}
        checks.append((given, lambda token: signature_v2(url, nonce2, token)))
    return any(
        any(hmac.compare_digest(compute(token), signature) for signature in given)
        for given, compute in checks
        for token in tokens
    )
