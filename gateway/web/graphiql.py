"""The GraphiQL page: its scripts and styles served by the gateway when installed, else a CDN."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

logger = logging.getLogger(__name__)

ASSET_PATH = "/graphiql/assets"
DEFAULT_ASSET_DIR = Path(__file__).parent.parent / "static" / "node_modules"
# The README's example (the block after `<!-- example-query -->`), as it is written there: the
# page opens with what the README shows, and a test keeps the two the same.
EXAMPLE_QUERY = """\
query Session($uuid: ID!) {
  session(uuid: $uuid) {
    sessionUuid status channel recipient
    attempts { channel status time charge }
    charges { totalCharge validationCharge }
  }
}
"""
EXAMPLE_VARIABLES = '{"uuid": "60ea68db-b123-46d9-9eb2-1201d516dbbd"}'


@dataclass(frozen=True)
class Asset:
    """One file GraphiQL needs, where npm puts it under node_modules, and its CDN copy."""

    name: str
    npm_path: str
    cdn_url: str
    integrity: str


ASSETS = (
    Asset(
        "react.production.min.js",
        "react/umd/react.production.min.js",
        "https://unpkg.com/react@18.2.0/umd/react.production.min.js",
        "sha384-tMH8h3BGESGckSAVGZ82T9n90ztNXxvdwvdM6UoR56cYcf+0iGXBliJ29D+wZ/x8",
    ),
    Asset(
        "react-dom.production.min.js",
        "react-dom/umd/react-dom.production.min.js",
        "https://unpkg.com/react-dom@18.2.0/umd/react-dom.production.min.js",
        "sha384-bm7MnzvK++ykSwVJ2tynSE5TRdN+xL418osEVF2DE/L/gfWHj91J2Sphe582B1Bh",
    ),
    Asset(
        "graphiql.min.js",
        "graphiql/graphiql.min.js",
        "https://unpkg.com/graphiql@3.8.3/graphiql.min.js",
        "sha384-HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie",
    ),
    Asset(
        "graphql-ws.min.js",
        "graphql-ws/umd/graphql-ws.min.js",
        "https://unpkg.com/graphql-ws@5.16.2/umd/graphql-ws.min.js",
        "sha384-+EVxFEOpy8LWPRQcpntm0FKN2O+BzrMNSL0G3HIgVWFmeb6xqZqjuLivrQUTXZKi",
    ),
    Asset(
        "graphiql.min.css",
        "graphiql/graphiql.min.css",
        "https://unpkg.com/graphiql@3.8.3/graphiql.min.css",
        "sha384-Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM",
    ),
)


def local_assets(directory: str | None) -> dict[str, Path] | None:
    """Each asset's file by name, when a node_modules directory holds them all; else None."""
    root = Path(directory) if directory else DEFAULT_ASSET_DIR
    files = {asset.name: root / asset.npm_path for asset in ASSETS}
    if all(path.is_file() for path in files.values()):
        return files
    return None


def render_page(*, local: bool) -> str:
    """The GraphiQL HTML, loading assets from ASSET_PATH when `local`, else from the CDN."""
    template = resources.files("gateway").joinpath("static/graphiql.html").read_text("utf-8")
    css, js = [], []
    for asset in ASSETS:
        url = f"{ASSET_PATH}/{asset.name}" if local else asset.cdn_url
        attrs = f'integrity="{asset.integrity}" crossorigin="anonymous"'
        if asset.name.endswith(".css"):
            css.append(f'<link rel="stylesheet" href="{url}" {attrs} />')
        else:
            js.append(f'<script src="{url}" {attrs}></script>')
    return (
        template.replace("<!--ASSET_CSS-->", "\n    ".join(css))
        .replace("<!--ASSET_JS-->", "\n    ".join(js))
        .replace("/*DEFAULT_QUERY*/", json.dumps(EXAMPLE_QUERY))
        .replace("/*DEFAULT_VARIABLES*/", json.dumps(EXAMPLE_VARIABLES))
    )


def asset_endpoint(files: dict[str, Path]) -> Callable[[Request], Awaitable[Response]]:
    """Serves exactly the GraphiQL files by name, nothing else of node_modules."""

    async def asset(request: Request) -> Response:
        path = files.get(request.path_params["name"])
        if path is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})

    return asset
