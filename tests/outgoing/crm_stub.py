"""A CRM on loopback that receives outgoing webhooks the way a real receiver would: it verifies
every request with the standardwebhooks library (signature and timestamp) and records what
came; it answers from a plan (codes in order, or a code after a sleep), 200 once it runs out."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Received:
    path: str
    webhook_id: str | None
    verified: bool
    why: str | None
    body: bytes
    content_type: str | None
    answered: int
    host: str | None = None


@dataclass(frozen=True)
class Sleep:
    seconds: float
    then: int = 200


class CrmStub:
    def __init__(self) -> None:
        self.secret: str | None = None
        self.received: list[Received] = []
        self._plan: deque[int | Sleep] = deque()
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    Webhook(stub.secret).verify(body, dict(self.headers.items()))
                    verified, why = True, None
                except (WebhookVerificationError, EmptyWebhookSecretError, ValueError, TypeError) as error:
                    verified, why = False, str(error)
                with stub._lock:
                    step = stub._plan.popleft() if stub._plan else 200
                pause = step.seconds if isinstance(step, Sleep) else 0
                step = step.then if isinstance(step, Sleep) else step
                stub.received.append(
                    Received(
                        self.path,
                        self.headers.get("webhook-id"),
                        verified,
                        why,
                        body,
                        self.headers.get("content-type"),
                        step,
                        self.headers.get("host"),
                    )
                )
                time.sleep(pause)
                try:
                    self.send_response(step)
                    self.send_header("content-type", "text/plain")
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the sender gave up waiting and hung up
                    pass

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hooks/chatman"

    def answer(self, *steps: int | Sleep) -> None:
        """Answer the next requests with these codes (or sleeps), then 200."""
        with self._lock:
            self._plan = deque(steps)

    def start(self) -> CrmStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
