"""A real HTTP server on 127.0.0.1 that records the JSON bodies POSTed to it (alert webhooks)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class WebhookRecorder:
    url: str
    requests: list[dict] = field(default_factory=list)
    status: int = 200

    def texts(self) -> list[str]:
        return [str(item["body"].get("text", "")) for item in self.requests]


@contextmanager
def webhook_server(status: int = 200) -> Iterator[WebhookRecorder]:
    """Serve on a free loopback port; every POST's path and JSON body is recorded."""
    recorder = WebhookRecorder(url="")
    recorder.status = status

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            recorder.requests.append({"path": self.path, "body": json.loads(raw or b"{}")})
            self.send_response(recorder.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
