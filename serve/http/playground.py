"""Pages for people: the playground at ``/`` (plain HTML, JavaScript and CSS in ``static/``, talking to
the public HTTP API like any client) and the API docs, Swagger UI at ``/docs`` and ReDoc at ``/redoc``,
whose JavaScript and CSS the gateway serves itself (the copies packaged by ``fastapi-offline``, a
dependency of the ``serve`` extra): nothing is fetched from a CDN, so both work offline."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
PLAYGROUND_ASSETS = "/playground"  # static/ as served: app.js, style.css, favicon.svg
DOCS_ASSETS = "/docs-assets"  # swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js, favicon.svg
DOCS_PACKAGE = "fastapi_offline"  # the package that ships those files, in its folder static/
# ReDoc's credit line shows a logo from a CDN: served with the gateway's icon instead (a URL relative to the
# page, so it follows a root path).
REDOC_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
# The playground loads only its own files and talks only to this gateway; images are data: and blob: URLs.
PLAYGROUND_CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
                  "connect-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'self'")


def install_playground(app: FastAPI) -> None:
    """``GET /``: the playground page; ``/playground/...``: its script, style sheet and icon."""
    missing = [name for name in ("index.html", "app.js", "style.css", "favicon.svg") if not (STATIC / name).is_file()]
    if missing:
        raise RuntimeError(f"the playground's files are missing from {STATIC}: {', '.join(missing)} "
                           f"(package data of ganserve.serve.http: reinstall ganserve)")
    app.mount(PLAYGROUND_ASSETS, StaticFiles(directory=STATIC), name="playground")

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": PLAYGROUND_CSP, "Cache-Control": "no-cache"})


def install_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Swagger UI at ``docs_url`` and ReDoc at ``redoc_url``, with local assets. The app must be created
    with ``docs_url=None, redoc_url=None`` (FastAPI's own pages point at a CDN). One function, so the
    pages can move (e.g. to another port) as a whole."""
    assets = Path(str(files(DOCS_PACKAGE) / "static"))
    missing = [name for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js")
               if not (assets / name).is_file()]
    if missing:
        raise RuntimeError(f"the API docs' assets are missing from {assets}: {', '.join(missing)} "
                           f"(reinstall the 'serve' extra: pip install 'ganserve[serve]')")
    redoc_js: list[bytes] = []  # read on first use

    @app.get(f"{DOCS_ASSETS}/redoc.standalone.js", include_in_schema=False)  # before the mount below
    async def redoc_script() -> Response:
        if not redoc_js:
            script = (assets / "redoc.standalone.js").read_bytes()
            redoc_js.append(script.replace(REDOC_CDN_LOGO, f"{DOCS_ASSETS[1:]}/favicon.svg".encode()))
        return Response(redoc_js[0], media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})

    @app.get(f"{DOCS_ASSETS}/favicon.svg", include_in_schema=False)  # the pages need nothing from install_playground
    async def docs_icon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")
    oauth2_redirect_url = f"{docs_url}/oauth2-redirect"
    icon = f"{DOCS_ASSETS}/favicon.svg"
    # no online validator badge (Swagger UI would send the schema to validator.swagger.io)
    swagger_parameters = {**(app.swagger_ui_parameters or {}), "validatorUrl": None}

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css", swagger_favicon_url=f"{root}{icon}",
            oauth2_redirect_url=f"{root}{oauth2_redirect_url}", swagger_ui_parameters=swagger_parameters)

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{icon}", with_google_fonts=False)
