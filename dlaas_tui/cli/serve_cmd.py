"""`dlaas-tui serve`: the same TUI in a browser (textual-serve), on 127.0.0.1 only, behind a token.

Each browser tab gets its own app process, started with this command's profile and stopped when the
tab's websocket closes; runs live in the agent, so closing a tab never touches them. The server binds
to the loopback address only: a laptop reaches it through `ssh -L PORT:127.0.0.1:PORT host`. Every
request must carry the token printed at start (`?token=` on the first page, then an HttpOnly,
SameSite=Strict cookie). The page's URLs are built from the Host the browser used, so a port
forwarded under another number works too.
"""
from __future__ import annotations

import argparse
import errno
import hmac
import secrets
import shlex
import socket
import sys
from typing import Any

from .context import Context

HOST = "127.0.0.1"
DEFAULT_PORT = 8000
COOKIE = "dlaas_token"
REFUSED = ("dlaas-tui serve: this page needs the token that `dlaas-tui serve` printed when it started:\n"
           "open the exact URL it printed (…/?token=…).\n")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="the TUI in a browser, on 127.0.0.1 behind a token (reach it with ssh -L)",
        description="Serve the TUI to a web browser: one app per tab, on 127.0.0.1 only, protected by a "
                    "random token printed at start. From a laptop: ssh -L 8000:127.0.0.1:8000 HOST, then "
                    "open the printed URL.",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    p.add_argument("--token", help=argparse.SUPPRESS)  # tests pass a known token; users get a fresh one
    p.set_defaults(func=serve)


def app_command(ctx: Context) -> str:
    """The shell command each tab runs: this program's TUI with the same profile and mode."""
    argv = [sys.executable, "-m", "dlaas_tui"]
    if ctx.profile:
        argv += ["--profile", ctx.profile]
    if ctx.read_only:
        argv.append("--read-only")
    return shlex.join(argv)


def check_port(port: int) -> None:
    from backend.facade import BadInput

    if not 1 <= port <= 65535:
        raise BadInput(f"--port {port}: a port is 1-65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BadInput(f"port {port} on {HOST} is taken: pass another with --port") from None
            raise BadInput(f"cannot listen on {HOST}:{port}: {exc.strerror}") from None


def token_ok(given: str | None, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def make_server(command: str, port: int, token: str) -> Any:
    """A textual-serve Server that refuses any request without the token and builds the page's URLs
    from the Host the browser used (so a port forwarded under another number works)."""
    import aiohttp_jinja2
    from aiohttp import web
    from textual_serve.server import Server

    class TokenServer(Server):
        async def _make_app(self) -> web.Application:
            app = await super()._make_app()

            @web.middleware
            async def require_token(request: web.Request, handler: Any) -> web.StreamResponse:
                given = request.query.get("token") or request.cookies.get(COOKIE)
                if not token_ok(given, token):
                    return web.Response(status=403, text=REFUSED)
                response = await handler(request)
                if request.query.get("token") and not response.prepared:
                    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
                return response

            app.middlewares.append(require_token)
            return app

        async def handle_index(self, request: web.Request) -> web.StreamResponse:
            base = f"{request.host}"
            context = {
                "font_size": _int(request.query.get("fontsize"), 16),
                "app_websocket_url": f"ws://{base}/ws",  # the cookie carries the token (same host)
                "config": {"static": {"url": f"http://{base}/static/"}},
                "application": {"name": self.title},
            }
            return aiohttp_jinja2.render_template("app_index.html", request, context)

        async def on_startup(self, app: web.Application) -> None:
            pass  # the command prints its own banner (with the token), once

    return TokenServer(command, host=HOST, port=port, title="dlaas-tui")


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


def serve(args: argparse.Namespace, ctx: Context) -> int:
    from backend.facade import BadInput

    try:
        import textual_serve  # noqa: F401
    except ImportError:
        raise BadInput("dlaas-tui serve needs textual-serve: pip install 'dlaas-tui[serve]'") from None
    check_port(args.port)
    token = args.token or secrets.token_urlsafe(24)
    server = make_server(app_command(ctx), args.port, token)
    url = f"http://{HOST}:{args.port}/?token={token}"
    print(f"dlaas-tui serve: open {url}", flush=True)
    print(f"  from a laptop: ssh -L {args.port}:{HOST}:{args.port} THIS-HOST, then open the URL there", flush=True)
    print("  each tab runs its own app; closing a tab or this server never stops a run. Ctrl+C stops.", flush=True)
    server.serve()
    return 0
