"""The web studio's application: the JSON API, the pages, the vendored assets, and their rules.

``create_app`` builds it for one studio; ``serve`` runs it under uvicorn (``rotoscope serve``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from rotoscope import __version__
from rotoscope.errors import BusyError, NotFoundError, OutsideStudioError, RotoscopeError, storage_error
from rotoscope.web import api, pages
from rotoscope.web.context import WebStudio
from rotoscope.web.security import Access, AccessMiddleware
from rotoscope.web.uploads import TooLarge, UploadLimits


def create_app(
    root: Path, access: Access, run_jobs: bool = True, limits: UploadLimits | None = None
) -> FastAPI:
    """The web studio of the studio at ``root``; ``run_jobs`` False leaves queued jobs queued."""
    here = WebStudio.open(root, limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_jobs:
            here.runner.start()
        try:
            yield
        finally:
            if run_jobs:
                here.runner.stop()

    app = FastAPI(
        title="Rotoscope studio",
        version=__version__,
        description="The studio's verbs over HTTP: filters, renders, revisions, frames by md5, jobs.",
        lifespan=lifespan,
    )
    app.state.web_studio = here
    app.add_middleware(AccessMiddleware, access=access)
    app.include_router(api.router)
    app.include_router(pages.router)
    static = resources.files("rotoscope.web").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    _error_handlers(app, here)
    return app


def _status(error: RotoscopeError) -> int:
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, BusyError):
        return 409
    if isinstance(error, TooLarge):
        return 413
    if isinstance(error, OutsideStudioError):
        return 403
    return 400


def _error_handlers(app: FastAPI, here: WebStudio) -> None:
    root = f"{here.studio.root}/"

    def answer(status: int, message: str) -> JSONResponse:
        return JSONResponse(
            {"detail": message.replace(root, "")}, status_code=status
        )  # paths as the studio names them

    @app.exception_handler(RotoscopeError)
    async def refused(request: Request, error: RotoscopeError) -> JSONResponse:
        return answer(_status(error), str(error))

    @app.exception_handler(OSError)
    async def storage(request: Request, error: OSError) -> JSONResponse:
        return answer(500, str(storage_error(error)))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return answer(422, f"{where}: {first.get('msg')}")

    @app.exception_handler(HTTPException)
    async def http(request: Request, error: HTTPException) -> JSONResponse:
        return answer(error.status_code, str(error.detail))


def serve(root: Path, host: str, port: int, token: str | None = None) -> None:
    import uvicorn

    from rotoscope.progress import say

    access = Access.for_binding(host, port, token)
    app = create_app(root, access)
    shown = f"[{host}]" if ":" in host else host
    if access.token is None:
        say(f"web studio: http://{shown}:{port}/  (loopback only; Ctrl-C stops it)")
    else:
        say(f"web studio: http://{shown}:{port}/?token={access.token}")
        say("  the token is needed beyond this machine: share the link only with people you trust")
    uvicorn.run(app, host=host, port=port, log_level="warning")
