"""The customer's web app, as the tests script it: a threaded HTTP server on 127.0.0.1 that answers
each path with scripted TwiML and records every request it gets (method, path, query, form
parameters, headers including X-Twilio-Signature, and the full URL the server asked for)."""

from __future__ import annotations

import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Union


@dataclass
class WebhookRequest:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    params: dict[str, str]  # form body for POST, query parameters for GET
    headers: dict[str, str]
    url: str  # as the client addressed it: http://host/path?query
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def signature(self) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == "x-twilio-signature":
                return v
        return None

    def signed_params(self) -> dict[str, str]:
        """What Twilio's signature covers besides the URL: the POST form fields (GET: none, the
        query is part of the URL)."""
        return self.params if self.method == "POST" else {}


Reply = Union[str, tuple[int, Union[str, bytes], str]]
Route = Union[str, Callable[[WebhookRequest], Reply]]


class Webhook:
    def __init__(self, on_request: Callable[[WebhookRequest], None] | None = None):
        self.routes: dict[str, Route] = {}
        self.requests: list[WebhookRequest] = []
        self.cond = threading.Condition()
        self.on_request = on_request
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, a kept-alive connection waits
            # ~40 ms for the client's delayed ACK before the body.
            disable_nagle_algorithm = True

            def log_message(self, fmt, *args):  # quiet: the test report shows what matters
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parsed = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
                if self.command == "POST":
                    params = dict(urllib.parse.parse_qsl(body.decode("utf-8", errors="replace"),
                                                         keep_blank_values=True))
                else:
                    params = dict(query)
                host = self.headers.get("Host") or f"127.0.0.1:{hook.port}"
                req = WebhookRequest(method=self.command, path=parsed.path, query=query, params=params,
                                     headers={k: v for k, v in self.headers.items()},
                                     url=f"http://{host}{self.path}", body=body)
                route = hook.routes.get(parsed.path)
                if route is None:
                    status, text, ctype = 404, "not found", "text/plain"
                elif callable(route):
                    out = route(req)
                    status, text, ctype = out if isinstance(out, tuple) else (200, out, "application/xml")
                else:
                    status, text, ctype = 200, route, "application/xml"
                data = text if isinstance(text, bytes) else text.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                # Recorded after the answer is written: a test that waits for this request then
                # knows the server has had its reply.
                with hook.cond:
                    hook.requests.append(req)
                    hook.cond.notify_all()
                if hook.on_request is not None:
                    hook.on_request(req)

            do_GET = _handle
            do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base_url + path

    def route(self, path: str, reply: Route) -> str:
        """Serves `reply` (TwiML text or a function of the request) at path; returns the full URL."""
        self.routes[path] = reply
        return self.url(path)

    def received(self, path: str | None = None) -> list[WebhookRequest]:
        with self.cond:
            return [r for r in self.requests if path is None or r.path == path]

    def wait_for(self, path: str, timeout: float = 10.0, count: int = 1) -> list[WebhookRequest]:
        """Waits until `count` requests to path have been answered; returns them (fails on timeout)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [r for r in self.requests if r.path == path]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(r.method, r.path) for r in self.requests]
                    raise AssertionError(f"webhook: {count} request(s) to {path} expected within "
                                         f"{timeout}s, got {len(got)}; all requests: {seen}")
                self.cond.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
