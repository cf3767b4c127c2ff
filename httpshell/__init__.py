"""The one HTTP/1.1 server shell: requests and responses, the parser, response rendering,
connections, listeners and deadlines. Used by the S3 API, the web seed, the tracker's HTTP
front and /metrics; imports neither ``seeder`` nor ``tracker``.

Import from the package: ``from httpshell import Request, Response, serve_http``. The modules:
``messages`` (Request, Response, Handler), ``parser`` (RequestParser: sans-I/O framing and
its caps), ``render`` (response heads and bytes, the shell's error answers), ``listeners``
(binding, accept constants), ``serve`` (serve_http: a task per connection) and ``epoll``
(serve_http_sync: one task, one epoll set, for synchronous handlers).
"""

from httpshell.epoll import SyncHandler, serve_http_sync
from httpshell.listeners import open_listeners
from httpshell.messages import Handler, Request, Response
from httpshell.parser import RequestParser
from httpshell.render import error_response, render_response, response_head
from httpshell.serve import serve_http

__all__ = [
    "Handler",
    "Request",
    "RequestParser",
    "Response",
    "SyncHandler",
    "error_response",
    "open_listeners",
    "render_response",
    "response_head",
    "serve_http",
    "serve_http_sync",
]
