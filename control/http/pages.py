"""What is not the API: the web client's pages and files (health and metrics: control.http.health)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from control.meeting.model import is_valid_id

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def register(router: web.UrlDispatcher) -> None:
    router.add_get("/", index_page)
    router.add_get("/m/{meeting_id}", meeting_page)
    router.add_get("/join", join_page)
    router.add_get("/host", host_page)
    router.add_static("/static/", STATIC_DIR, follow_symlinks=False)


def _page(name: str) -> web.StreamResponse:
    path = STATIC_DIR / name
    if not path.is_file():
        raise web.HTTPNotFound(text=f"{name} is not installed")
    return web.FileResponse(path, headers={"Cache-Control": "no-cache"})


async def index_page(request: web.Request) -> web.StreamResponse:
    return _page("index.html")


async def join_page(request: web.Request) -> web.StreamResponse:
    """The meeting page without a number: it asks for Meeting ID, passcode and name."""
    return _page("meeting.html")


async def host_page(request: web.Request) -> web.StreamResponse:
    """Host sign-in and dashboard."""
    return _page("host.html")


async def meeting_page(request: web.Request) -> web.StreamResponse:
    if not is_valid_id(request.match_info["meeting_id"]):
        raise web.HTTPNotFound(text="no such meeting")
    return _page("meeting.html")
