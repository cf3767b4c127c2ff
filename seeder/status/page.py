"""The status page and ``/torrents.json`` as an HTTP handler on the metrics listener.

:class:`StatusPage` owns the Jinja2 environment (autoescape on for every template: each
name from an object key, a log line or the config is HTML-escaped), the rate history and
the error ring; :meth:`StatusPage.handler` answers::

    GET|HEAD /               text/html; charset=utf-8   (the page, ?page=N)
    GET|HEAD /torrents.json  application/json            (?page=N)
    anything else            404 (405 for other methods on those two paths)

A bad ``?page=`` is 400 with a one-line text body. The page carries a Content-Security-Policy
that allows nothing but its one inline stylesheet (by hash) and data: images: no script
runs, nothing is fetched. Data is gathered on the trio thread (one catalog page, then
per-row lookups), the HTML is rendered in a worker thread (one at a time), gzip when the
client accepts it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import time
from importlib import resources

import jinja2
import trio
from markupsafe import Markup

from httpshell import Handler, Request, Response
from seeder import __version__
from seeder.metrics import accepts_gzip
from seeder.status.chart import human_bytes, human_rate
from seeder.status.errors import ErrorRing
from seeder.status.history import RateHistory
from seeder.status.paging import PageError, parse_page
from seeder.status.sources import Sources
from seeder.status.view import gather, torrent_rows

__all__ = ["REFRESH_SECONDS", "StatusPage", "page_numbers"]

REFRESH_SECONDS = 30
_GZIP_MIN = 1024


def _duration(seconds: float) -> str:
    s = int(max(0, seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {s} s" if minutes else f"{s} s"


def _ago(seconds: float) -> str:
    return "just now" if seconds < 1 else _duration(seconds) + " ago"


def _utc(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))


def page_numbers(current: int, pages: int, around: int = 2) -> list[int | None]:
    """The pager's numbers: the first, the last and ``around`` either side of ``current``;
    None where numbers are left out."""
    keep = sorted(k for k in {1, pages, *range(current - around, current + around + 1)}
                  if 1 <= k <= pages)
    out: list[int | None] = []
    for n in keep:
        last = out[-1] if out else None
        if last is not None and n == last + 2:
            out.append(last + 1)  # one number left out: show it rather than an ellipsis
        elif last is not None and n > last + 2:
            out.append(None)
        out.append(n)
    return out


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("seeder.status", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(bytes=human_bytes, rate=human_rate, duration=_duration, ago=_ago,
                       utc=_utc)
    return env


class StatusPage:
    """The page over ``sources``; ``history`` is sampled by the daemon
    (:func:`seeder.status.sampler.run_sampler`) and ``errors`` attached to the root logger
    by it."""

    def __init__(self, sources: Sources, *, history: RateHistory | None = None,
                 errors: ErrorRing | None = None, started: float | None = None) -> None:
        self.sources = sources
        self.history = history or RateHistory()
        self.errors = errors or ErrorRing()
        self.started = time.monotonic() if started is None else started
        self._env = _environment()
        self._template = self._env.get_template("status.html")
        self._css = resources.files("seeder.status").joinpath("templates/status.css").read_text(
            encoding="utf-8")
        digest = hashlib.sha256(self._css.encode("utf-8")).digest()
        style_hash = base64.b64encode(digest).decode()
        self.csp = (f"default-src 'none'; style-src 'sha256-{style_hash}'; img-src data:; "
                    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        self._limiter = trio.CapacityLimiter(1)

    # -- bodies (sync; the handler calls them) -------------------------------------------

    def html(self, query: bytes) -> str:
        """The page for ``query`` (raises PageError for a bad ``page``)."""
        return self._render(self._view(query))

    def _view(self, query: bytes):  # -> PageView
        page = parse_page(query, self.sources.catalog.count())
        mono = time.monotonic()
        return gather(self.sources, page, version=__version__, uptime=mono - self.started,
                      now=time.time(), mono_now=mono, history=self.history,
                      errors=self.errors)

    def _render(self, view) -> str:
        return self._template.render(
            v=view, css=Markup(self._css), chart=Markup(view.chart_svg),
            refresh=REFRESH_SECONDS,
            page_numbers=page_numbers(view.page.number, view.page.pages),
        )

    def json(self, query: bytes) -> bytes:
        """``/torrents.json`` for ``query`` (raises PageError for a bad ``page``)."""
        page = parse_page(query, self.sources.catalog.count())
        rows = torrent_rows(self.sources, page, facts=False)
        doc = {"page": page.number, "pages": page.pages, "per_page": page.per_page,
               "total": page.total, "torrents": [r.as_json() for r in rows]}
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "surrogateescape")

    # -- HTTP ----------------------------------------------------------------------------

    def handler(self) -> Handler:
        """The HTTP handler (see the module docstring). Never raises for bad input."""

        async def handle(request: Request) -> Response:
            path, _, query = request.target.partition(b"?")
            if path not in (b"/", b"/torrents.json"):
                return _text(404, "not found: the status page is at /, the metrics at /metrics")
            if request.method not in (b"GET", b"HEAD"):
                return Response(405, [*_TEXT, (b"allow", b"GET, HEAD")], b"method not allowed\n")
            try:
                if path == b"/torrents.json":
                    body = self.json(query)
                    headers = [(b"content-type", b"application/json")]
                else:
                    view = self._view(query)
                    html = await trio.to_thread.run_sync(self._render, view,
                                                         limiter=self._limiter)
                    body = html.encode("utf-8", "surrogateescape")
                    headers = [(b"content-type", b"text/html; charset=utf-8"),
                               (b"content-security-policy", self.csp.encode()),
                               (b"x-frame-options", b"DENY"),
                               (b"referrer-policy", b"no-referrer")]
            except PageError as exc:
                return _text(400, f"bad request: {exc}")
            headers += [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"),
                        (b"vary", b"Accept-Encoding")]
            if len(body) >= _GZIP_MIN and accepts_gzip(request.header(b"accept-encoding")):
                body = await trio.to_thread.run_sync(gzip.compress, body, 6,
                                                     limiter=self._limiter)
                headers.append((b"content-encoding", b"gzip"))
            return Response(200, headers, body)

        return handle


_TEXT = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]


def _text(status: int, line: str) -> Response:
    return Response(status, list(_TEXT), (" ".join(line.split()) + "\n").encode())
