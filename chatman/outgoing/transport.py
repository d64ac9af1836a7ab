"""HTTP for outgoing webhooks: POSTs with a short timeout, several at once, that connect only
to public addresses (unless allowed otherwise).

The address check happens inside the connection: the host is resolved once, every address
it gives is checked, and the socket is opened to a checked address, so no second lookup can
answer differently (DNS rebinding). TLS still names and verifies the host itself.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NameResolutionError, NewConnectionError
from urllib3.util import connection

from chatman.outgoing.addresses import ALLOW_HINT, refusal, resolve

# Enough of an answer's body to say what went wrong; the rest is not read.
MAX_ANSWER_BYTES = 64 * 1024
ERROR_LENGTH = 500
USER_AGENT = "Chatman-Webhooks/1"

# What became of a request: an HTTP answer came; none came in time; the host could not be
# reached (worth trying again later); the address was refused; the request could not be made.
ANSWERED, TIMEOUT, UNREACHABLE, REFUSED, BROKEN = "answered", "timeout", "unreachable", "refused", "broken"


class RefusedAddress(Exception):
    """The host resolves to an address webhooks may not go to. Not an OSError, so neither
    urllib3 nor requests takes it for a network failure to retry."""


@dataclass(frozen=True)
class Request:
    url: str
    headers: dict[str, str]
    data: bytes


@dataclass(frozen=True)
class Answer:
    outcome: str
    duration_ms: int
    status_code: int | None = None
    error: str | None = None


class _PublicOnly:
    """urllib3 connection part: open the socket to checked addresses only."""

    def _new_conn(self) -> socket.socket:
        host, port = self._dns_host, self.port
        try:
            addresses = resolve(host, port)
        except socket.gaierror as error:
            raise NameResolutionError(self.host, self, error) from error
        for address in addresses:
            why = refusal(address)
            if why is not None:
                raise RefusedAddress(f"the host {self.host!r} resolves to {why}: refused ({ALLOW_HINT})")
        failure: Exception | None = None
        for address in addresses:
            try:
                return connection.create_connection(
                    (address, port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as error:
                failure = ConnectTimeoutError(
                    self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
                )
                failure.__cause__ = error
            except OSError as error:
                failure = NewConnectionError(self, f"Failed to establish a new connection: {error}")
                failure.__cause__ = error
        raise failure or NewConnectionError(self, f"{self.host} resolves to no address")


class _PublicHTTPConnection(_PublicOnly, HTTPConnection):
    pass


class _PublicHTTPSConnection(_PublicOnly, HTTPSConnection):
    pass


class _PublicHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicHTTPSConnection


class PublicOnlyAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PublicHTTPPool, "https": _PublicHTTPSPool}


class Sender:
    """POSTs webhook requests, `concurrency` at a time, each thread with its own keep-alive
    session. Use as a context manager (its threads end with it)."""

    def __init__(self, timeout_s: float, allow_private: bool = False, concurrency: int = 8) -> None:
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.concurrency = concurrency
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="webhooks")
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for session in self._sessions:
            session.close()

    def send(self, batch: Sequence[Request]) -> list[Answer]:
        """Each request's answer, in order; never raises for what the network does."""
        return list(self._pool.map(self._post, batch))

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # No proxies, .netrc or certificate bundles from the environment: a proxy would be
            # the address checked, not the endpoint.
            session.trust_env = False
            session.headers["user-agent"] = USER_AGENT
            if not self.allow_private:
                session.mount("http://", PublicOnlyAdapter())
                session.mount("https://", PublicOnlyAdapter())
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _post(self, request: Request) -> Answer:
        started = time.monotonic()

        def answer(outcome: str, status_code: int | None = None, error: str | None = None) -> Answer:
            ms = round((time.monotonic() - started) * 1000)
            return Answer(outcome, ms, status_code, error[:ERROR_LENGTH] if error else None)

        try:
            # Redirects are not followed: the receiver answers at the URL it was given (a
            # redirect could also lead where the address check never looked).
            response = self._session().post(
                request.url,
                data=request.data,
                headers=request.headers,
                timeout=self.timeout_s,
                allow_redirects=False,
                stream=True,
            )
        except RefusedAddress as error:
            return answer(REFUSED, error=str(error))
        except requests.Timeout:
            return answer(TIMEOUT, error=f"no answer within {self.timeout_s:g} s")
        except requests.ConnectionError as error:
            return answer(UNREACHABLE, error=f"could not connect: {_innermost(error)}")
        except (requests.RequestException, ValueError) as error:
            return answer(BROKEN, error=f"the request could not be made: {error}")
        with response:
            code = response.status_code
            if 200 <= code < 300:
                return answer(ANSWERED, code)
            try:
                text = response.raw.read(MAX_ANSWER_BYTES).decode("utf-8", "replace")
            except (HTTPError, OSError):  # the status line came; a body that stalls says no more
                text = ""
        said = " ".join(text.split())[:200]
        return answer(
            ANSWERED, code, f"HTTP {code} {response.reason or ''}".strip() + (f": {said}" if said else "")
        )


def _innermost(error: BaseException) -> str:
    """The cause that says what happened (requests wraps urllib3 wraps socket errors)."""
    for _ in range(10):
        inner = error.__cause__ or (error.args[0] if error.args else None)
        if not isinstance(inner, BaseException):
            break
        error = inner
    return str(error) or type(error).__name__
