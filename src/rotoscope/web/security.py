"""Who may talk to the web studio, and what every response tells the browser.

Bound to loopback the server trusts the machine's user, as a terminal does. Bound to any other
address it needs the token printed once at start-up on every mutating request and on the event
stream: as ``Authorization: Bearer``, ``X-Rotoscope-Token``, or the cookie that opening the printed
``/?token=`` link sets (HttpOnly, SameSite=Strict). Everywhere, the Host header must name the server
(a DNS-rebinding page gets nothing) and a mutating request from another origin is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from rotoscope.errors import RotoscopeError

TOKEN_COOKIE = "rotoscope_token"
MIN_TOKEN = 16
TOKEN_HEADER = "x-rotoscope-token"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Access:
    """The server's rules: the token (None on loopback) and the host names it answers to."""

    token: str | None
    hosts: frozenset[str]
    max_body: int  # bytes of any request body but an upload's (those have their own limits)
    any_host: bool = False  # bound to every address: the token, not the Host header, keeps others out

    @classmethod
    def for_binding(cls, host: str, port: int, token: str | None, max_body: int = 1 << 20) -> Access:
        names = {host, f"{host}:{port}"}
        if is_loopback(host):
            names |= {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")}
            names |= {"127.0.0.1", "localhost", "[::1]"}
        if token is None and not is_loopback(host):
            token = new_token()
        if token is not None and len(token) < MIN_TOKEN:
            raise RotoscopeError(None, f"a token must have at least {MIN_TOKEN} characters")
        if host in ("0.0.0.0", "::", ""):  # every address of the machine: clients name it as they reach it
            return cls(token, frozenset(), max_body, any_host=True)
        return cls(token, frozenset(names), max_body)

    def allows(self, request: Request) -> bool:
        if self.token is None:
            return True
        offered = (
            request.headers.get(TOKEN_HEADER)
            or _bearer(request.headers.get("authorization", ""))
            or request.cookies.get(TOKEN_COOKIE)
            or ""
        )
        return hmac.compare_digest(offered.encode(), self.token.encode())


def _bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _refuse(status: int, detail: str) -> Response:
    response = JSONResponse({"detail": detail}, status_code=status)
    response.headers.update(HEADERS)
    return response


class AccessMiddleware(BaseHTTPMiddleware):
    def __init__(self, app, access: Access) -> None:  # type: ignore[no-untyped-def]
        super().__init__(app)
        self.access = access

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        access = self.access
        if not access.any_host and request.headers.get("host", "") not in access.hosts:
            return _refuse(421, "this server does not answer to that host name")
        if access.token is not None and request.method == "GET" and "token" in request.query_params:
            return self._login(request)
        # writes, and what jobs say (their logs can hold remote output), need the token
        needs_token = request.method in MUTATING or request.url.path.startswith("/api/jobs")
        if needs_token and not access.allows(request):
            return _refuse(401, "a token is needed: open the link `rotoscope serve` printed, or send it")
        if request.method in MUTATING and not _same_origin(request):
            return _refuse(403, "refused: a request from another site")
        length = request.headers.get("content-length")
        limit = access.max_body if not request.url.path.startswith("/api/uploads") else None
        if limit is not None and length is not None and (not length.isdigit() or int(length) > limit):
            return _refuse(413, f"request body over {limit:,} bytes")
        response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def _login(self, request: Request) -> Response:
        offered = request.query_params.get("token", "")
        if not hmac.compare_digest(offered.encode(), (self.access.token or "").encode()):
            return _refuse(401, "wrong token")
        response = RedirectResponse(request.url.remove_query_params("token").path, status_code=303)
        response.set_cookie(TOKEN_COOKIE, offered, httponly=True, samesite="strict")
        response.headers.update(HEADERS)
        return response


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser's cross-site request (curl, scripts); "null" is refused
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")
