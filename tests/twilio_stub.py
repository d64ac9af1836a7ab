"""A local stand-in for Twilio's Messages REST API (2010-04-01), for tests and benchmarks.

Point twilio-python at it with `client.api.base_url = stub.base_url`. It answers:

* `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`: validates like Twilio (legacy error JSON,
  which twilio-python raises as `TwilioRestException` with `.code`), records the message, and
  answers 201 with a Message resource;
* `GET  /2010-04-01/Accounts/{AccountSid}/Messages.json`: the list endpoint, filtered by `To`,
  `From` and `DateSent` / `DateSent<` / `DateSent>` (inclusive), newest first, paged;
* control endpoints under `/_stub/` (no auth): `GET messages[?full=1]`, `POST reset`,
  `POST config` (latency, held answers, queued or random errors, answers broken on the way
  back, failing lookups), `POST release`.

The stub never delivers: a message's `date_sent` is null, and the DateSent filters use
`date_created`. Run it with `python -m tests.twilio_stub --host 127.0.0.1 --port 0`, or from Python
with `start_stub()`, whose client side uses only the standard library. aiohttp is imported only
by the server, so importing this module is cheap and has no side effects.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
import hmac
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

if TYPE_CHECKING:
    from aiohttp import web

API_VERSION = "2010-04-01"
REPO_ROOT = Path(__file__).resolve().parent.parent

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
MAX_BODY = 1600
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

# Messages for injected errors that come without one; Twilio's wording where known.
ERROR_MESSAGES = {
    20003: "Authenticate",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    21610: "Attempt to send to unsubscribed recipient",
    63018: "Rate limit exceeded for the WhatsApp sender",
}
CONFIG_KEYS = frozenset(
    {"latency_ms", "hold_after", "errors", "error_rate", "error", "seed", "mangle", "list_error"}
)


def error_body(status: int, code: int, message: str | None = None) -> dict[str, Any]:
    """Twilio's legacy error JSON; twilio-python maps it to TwilioRestException(code=code)."""
    return {
        "code": code,
        "message": message or ERROR_MESSAGES.get(code, f"Stub error {code}"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class BadRequest(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Form(Protocol):
    """What the stub reads from a form or query (aiohttp's MultiDictProxy fits)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def getall(self, key: str, default: Any = ...) -> list[Any]: ...


@dataclass(slots=True)
class Record:
    """One accepted message, as the provider would have stored it."""

    sid: str
    account_sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str | None
    content_sid: str | None
    content_variables: dict[str, Any] | None
    status_callback: str | None
    media_url: list[str]
    status: str
    date_created: datetime  # UTC
    date_rfc2822: str

    def as_json(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "to": self.to,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "body": self.body,
            "content_sid": self.content_sid,
            "content_variables": self.content_variables,
            "status_callback": self.status_callback,
            "media_url": self.media_url,
            "status": self.status,
            "date_created": self.date_created.isoformat(),
        }

    def resource(self) -> dict[str, Any]:
        """The Message resource Twilio answers with (create, and each item of a list page)."""
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body or "",
            "date_created": self.date_rfc2822,
            "date_sent": None,
            "date_updated": self.date_rfc2822,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": str(len(self.media_url)),
            "num_segments": "1",
            "price": None,
            "price_unit": None,
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": uri[: -len(".json")] + "/Media.json"},
            "to": self.to,
            "uri": uri,
        }


def bare_number(address: str) -> str:
    return address.removeprefix("whatsapp:")


def _parse_error_spec(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict) or not isinstance(spec.get("status"), int):
        raise ValueError(f"an error spec needs an integer 'status': {spec!r}")
    status = spec["status"]
    if not 400 <= status <= 599:
        raise ValueError(f"error status must be 4xx or 5xx: {status}")
    code = spec.get("code", status)
    if not isinstance(code, int):
        raise ValueError(f"error code must be an integer: {code!r}")
    return error_body(status, code, spec.get("message"))


def _parse_bound(raw: str) -> tuple[datetime, str]:
    """A DateSent value as a UTC datetime plus the precision it was given at."""
    raw = raw.strip()
    if len(raw) == 10:
        return datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC), "day"
    value = datetime.fromisoformat(raw.replace(" ", "T", 1))
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    clock = re.split(r"[Zz+-]", raw[11:], maxsplit=1)[0]
    if "." in clock:
        return value, "microsecond"
    return value, {0: "hour", 1: "minute"}.get(clock.count(":"), "second")


def _truncate(value: datetime, precision: str) -> datetime:
    if precision == "day":
        return value.replace(hour=0, minute=0, second=0, microsecond=0)
    if precision == "hour":
        return value.replace(minute=0, second=0, microsecond=0)
    if precision == "minute":
        return value.replace(second=0, microsecond=0)
    if precision == "second":
        return value.replace(microsecond=0)
    return value


class StubState:
    """Everything the stub knows; the aiohttp layer only moves requests in and answers out."""

    def __init__(self, auth_token: str | None = None) -> None:
        self.auth_token = auth_token
        self._auth_cache: dict[str, tuple[str, str] | None] = {}
        self._rfc2822_cache: tuple[int, str] = (-1, "")
        self.records: list[Record] = []
        self.by_to: collections.Counter[str] = collections.Counter()
        self.held = 0
        self.release_event = asyncio.Event()
        self.reset()

    # -- configuration ------------------------------------------------------------------------

    def reset(self) -> None:
        self.records.clear()
        self.by_to.clear()
        self.latency_s = 0.0
        self.hold_after: int | None = None
        self.errors: collections.deque[dict[str, Any]] = collections.deque()
        self.error_rate = 0.0
        self.error: dict[str, Any] | None = None
        # Accepted messages whose answer is broken on the way back (a body that is not JSON).
        self.mangle = 0
        # The answer to every list request (lookups), e.g. a 500: the provider cannot be asked.
        self.list_error: dict[str, Any] | None = None
        self.rng = random.Random()
        # Nothing may stay stuck on a hold that no longer exists.
        self.release()

    def configure(self, settings: dict[str, Any]) -> dict[str, Any]:
        unknown = set(settings) - CONFIG_KEYS
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        # Validate everything before changing anything, so a bad call leaves the config alone.
        latency_s = self.latency_s
        if "latency_ms" in settings:
            latency_ms = settings["latency_ms"]
            if not isinstance(latency_ms, int | float) or latency_ms < 0:
                raise ValueError("latency_ms must be a number >= 0")
            latency_s = latency_ms / 1000
        hold_after = settings.get("hold_after", self.hold_after)
        if hold_after is not None and (not isinstance(hold_after, int) or hold_after < 0):
            raise ValueError("hold_after must be an integer >= 0 or null")
        errors = settings.get("errors")
        if errors is not None and not isinstance(errors, list):
            raise ValueError("errors must be a list of error specs")
        queued = [_parse_error_spec(spec) for spec in errors or []]
        error_rate = settings.get("error_rate", self.error_rate)
        if not isinstance(error_rate, int | float) or not 0 <= error_rate <= 1:
            raise ValueError("error_rate must be a number between 0 and 1")
        error = self.error
        if "error" in settings:
            error = None if settings["error"] is None else _parse_error_spec(settings["error"])
        if error_rate and error is None:
            raise ValueError("error_rate needs an error spec in 'error'")
        mangle = settings.get("mangle", self.mangle)
        if not isinstance(mangle, int) or mangle < 0:
            raise ValueError("mangle must be an integer >= 0")
        list_error = self.list_error
        if "list_error" in settings:
            list_error = None if settings["list_error"] is None else _parse_error_spec(settings["list_error"])

        self.latency_s, self.hold_after = latency_s, hold_after
        self.error_rate, self.error = error_rate, error
        self.mangle, self.list_error = mangle, list_error
        if errors is not None:
            self.errors = collections.deque(queued)
        if "seed" in settings:
            self.rng = random.Random(settings["seed"])
        return self.current_config()

    def current_config(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_s * 1000,
            "hold_after": self.hold_after,
            "errors": list(self.errors),
            "error_rate": self.error_rate,
            "error": self.error,
            "mangle": self.mangle,
            "list_error": self.list_error,
        }

    def release(self) -> int:
        """Answer every held request; later holds wait on a fresh event."""
        released = self.held
        self.hold_after = None
        self.release_event.set()
        self.release_event = asyncio.Event()
        return released

    # -- requests -----------------------------------------------------------------------------

    def authorised(self, header: str | None, account_sid: str) -> bool:
        if header is None:
            return False
        # Keep-alive clients send the same header every time: decode it once.
        try:
            credentials = self._auth_cache[header]
        except KeyError:
            credentials = None
            scheme, _, encoded = header.partition(" ")
            if scheme.lower() == "basic":
                try:
                    user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
                    credentials = (user, password) if sep else None
                except (binascii.Error, UnicodeDecodeError):
                    credentials = None
            if len(self._auth_cache) > 1024:
                self._auth_cache.clear()
            self._auth_cache[header] = credentials
        if credentials is None or credentials[0] != account_sid:
            return False
        return self.auth_token is None or hmac.compare_digest(credentials[1], self.auth_token)

    def _now(self) -> tuple[datetime, str]:
        now = datetime.now(UTC)
        second = int(now.timestamp())
        if self._rfc2822_cache[0] != second:
            self._rfc2822_cache = (second, format_datetime(now.replace(microsecond=0)))
        return now, self._rfc2822_cache[1]

    def create(self, account_sid: str, form: Form) -> tuple[int, dict[str, Any] | str, bool]:
        """Decide a POST's answer: (status, JSON or a broken body, hold the answer?). Accepted
        messages are recorded."""
        if self.errors:
            error = self.errors.popleft()
            return error["status"], error, False
        if self.error_rate and self.rng.random() < self.error_rate:
            assert self.error is not None
            return self.error["status"], self.error, False
        try:
            record = self._validate(account_sid, form)
        except BadRequest as exc:
            return 400, error_body(400, exc.code, exc.message), False
        hold = self.hold_after is not None and len(self.records) >= self.hold_after
        self.records.append(record)
        self.by_to[bare_number(record.to)] += 1
        if self.mangle:
            self.mangle -= 1
            return 201, json.dumps(record.resource())[:40], hold  # cut off mid-way
        return 201, record.resource(), hold

    def _validate(self, account_sid: str, form: Form) -> Record:
        # Empty values count as missing, as they do at Twilio.
        to = form.get("To") or None
        from_ = form.get("From") or None
        service = form.get("MessagingServiceSid") or None
        body = form.get("Body") or None
        content_sid = form.get("ContentSid") or None
        raw_variables = form.get("ContentVariables")
        media_url = form.getall("MediaUrl", [])
        if to is None:
            raise BadRequest(21604, "A 'To' phone number is required.")
        if not E164.match(bare_number(to)):
            raise BadRequest(21211, f"Invalid 'To' Phone Number: {to}")
        # Twilio accepts MessagingServiceSid instead of or in addition to From (error 21603 page).
        if from_ is None and service is None:
            raise BadRequest(
                21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message"
            )
        if service is not None and not MESSAGING_SERVICE_SID.match(service):
            raise BadRequest(21701, f"The Messaging Service Sid {service} is invalid.")
        if body is None and content_sid is None and not media_url:
            raise BadRequest(21602, "Message body is required.")
        if body is not None and len(body) > MAX_BODY:
            raise BadRequest(21617, "The concatenated message body exceeds the 1600 character limit.")
        if content_sid is not None and not CONTENT_SID.match(content_sid):
            raise BadRequest(21655, f"The ContentSid {content_sid} is invalid.")
        variables = None
        if raw_variables is not None:
            if content_sid is None:
                raise BadRequest(21654, "A ContentSid must be specified if ContentVariables are provided.")
            try:
                variables = json.loads(raw_variables)
            except ValueError:
                variables = None
            if not isinstance(variables, dict) or any(v is None or v == "" for v in variables.values()):
                raise BadRequest(21656, "The ContentVariables Parameter is invalid.")
        now, rfc2822 = self._now()
        return Record(
            sid="SM" + uuid.uuid4().hex,
            account_sid=account_sid,
            to=to,
            from_=from_,
            messaging_service_sid=service,
            body=body,
            content_sid=content_sid,
            content_variables=variables,
            status_callback=form.get("StatusCallback") or None,
            media_url=list(media_url),
            status="accepted" if service else "queued",
            date_created=now,
            date_rfc2822=rfc2822,
        )

    def list_page(self, account_sid: str, query: Form) -> tuple[int, dict[str, Any]]:
        """Twilio's list endpoint: filters, newest first, PageSize/Page/PageToken paging."""
        filters = {k: query.get(k) for k in ("To", "From", "DateSent", "DateSent<", "DateSent>")}
        filters = {k: v for k, v in filters.items() if v is not None}
        try:
            page_size = min(int(query.get("PageSize") or DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
            page = int(query.get("Page") or 0)
            bounds = [
                (key, *_parse_bound(filters[key]))
                for key in ("DateSent", "DateSent<", "DateSent>")
                if key in filters
            ]
        except ValueError as exc:
            return 400, error_body(400, 20001, f"Invalid list parameter: {exc}")
        if page_size < 1 or page < 0:
            return 400, error_body(400, 20001, "PageSize must be >= 1 and Page >= 0")

        to, from_ = filters.get("To"), filters.get("From")
        matching = []
        for record in reversed(self.records):
            if record.account_sid != account_sid or (to and record.to != to):
                continue
            if from_ and record.from_ != from_:
                continue
            if all(self._date_matches(record.date_created, *bound) for bound in bounds):
                matching.append(record)

        # A token names the last message of the previous page, so new messages do not shift pages.
        start = page * page_size
        token = query.get("PageToken")
        if token and token.startswith("PA"):
            after = next((i for i, r in enumerate(matching) if r.sid == token[2:]), None)
            if after is not None:
                start = after + 1
        items = matching[start : start + page_size]
        base = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"

        def uri(page_number: int, page_token: str | None = None) -> str:
            params = {**filters, "PageSize": page_size, "Page": page_number}
            if page_token:
                params["PageToken"] = page_token
            return f"{base}?{urlencode(params)}"

        more = start + page_size < len(matching)
        return 200, {
            "messages": [record.resource() for record in items],
            "end": start + len(items) - 1 if items else start,
            "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1, "PA" + items[-1].sid) if more and items else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
            "start": start,
            "uri": uri(page, token),
        }

    @staticmethod
    def _date_matches(created: datetime, key: str, bound: datetime, precision: str) -> bool:
        value = _truncate(created, precision)
        if key == "DateSent":
            return value == bound
        return value <= bound if key == "DateSent<" else value >= bound

    def summary(self, full: bool) -> dict[str, Any]:
        result: dict[str, Any] = {"count": len(self.records), "by_to": dict(self.by_to), "held": self.held}
        if full:
            result["messages"] = [record.as_json() for record in self.records]
        return result


# -- the aiohttp server --------------------------------------------------------------------------


def build_app(state: StubState) -> web.Application:
    from aiohttp import web

    json_type = "application/json"
    auth_failed = json.dumps(error_body(401, 20003)).encode()
    challenge = {"WWW-Authenticate": 'Basic realm="Twilio API"'}

    def answer(status: int, payload: dict[str, Any] | str) -> web.Response:
        body = (
            payload.encode()
            if isinstance(payload, str)
            else json.dumps(payload, separators=(",", ":")).encode()
        )
        return web.Response(status=status, body=body, content_type=json_type)

    async def create_message(request: web.Request) -> web.Response:
        account_sid = request.match_info["account_sid"]
        if state.authorised(request.headers.get("Authorization"), account_sid):
            status, payload, hold = state.create(account_sid, await request.post())
        else:
            status, payload, hold = 401, None, False
        if state.latency_s:
            await asyncio.sleep(state.latency_s)
        if payload is None:
            return web.Response(status=401, body=auth_failed, content_type=json_type, headers=challenge)
        if hold:
            # Recorded already: like a provider whose answer is lost on the way back. A client
            # that gives up cancels this handler (handler_cancellation), which drops the hold.
            state.held += 1
            try:
                await state.release_event.wait()
            finally:
                state.held -= 1
        return answer(status, payload)

    async def list_messages(request: web.Request) -> web.Response:
        account_sid = request.match_info["account_sid"]
        if not state.authorised(request.headers.get("Authorization"), account_sid):
            return web.Response(status=401, body=auth_failed, content_type=json_type, headers=challenge)
        if state.list_error is not None:
            return answer(state.list_error["status"], state.list_error)
        return answer(*state.list_page(account_sid, request.query))

    async def stub_messages(request: web.Request) -> web.Response:
        full = request.query.get("full", "").lower() in ("1", "true", "yes")
        return answer(200, state.summary(full))

    async def stub_reset(request: web.Request) -> web.Response:
        state.reset()
        return answer(200, state.current_config())

    async def stub_config(request: web.Request) -> web.Response:
        try:
            settings = await request.json()
            if not isinstance(settings, dict):
                raise ValueError("the body must be a JSON object")
            return answer(200, state.configure(settings))
        except ValueError as exc:
            return answer(400, {"error": str(exc)})

    async def stub_release(request: web.Request) -> web.Response:
        return answer(200, {"released": state.release()})

    app = web.Application()
    messages = f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json"
    app.router.add_post(messages, create_message)
    app.router.add_get(messages, list_messages)
    app.router.add_get("/_stub/messages", stub_messages)
    app.router.add_post("/_stub/reset", stub_reset)
    app.router.add_post("/_stub/config", stub_config)
    app.router.add_post("/_stub/release", stub_release)
    return app


async def serve(host: str, port: int, auth_token: str | None = None) -> None:
    """Serve until SIGTERM/SIGINT; print the listening line once connections are accepted."""
    from aiohttp import web

    state = StubState(auth_token)
    # access_log=None: no per-request logging. handler_cancellation: a client that disconnects
    # while its answer is held frees the hold.
    runner = web.AppRunner(build_app(state), access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
    await runner.setup()
    # Bind the socket ourselves so that port 0 gives a port we can read back.
    sock = socket.create_server(
        (host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET, backlog=1024
    )
    await web.SockSite(runner, sock).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    shown_host = f"[{host}]" if ":" in host else host
    print(f"listening on http://{shown_host}:{sock.getsockname()[1]}", flush=True)
    try:
        await stop.wait()
    finally:
        state.release()  # held answers go out instead of stalling the shutdown
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local stand-in for Twilio's Messages REST API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--auth-token", default=None, help="check Basic auth passwords against this")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.auth_token))
    return 0


# -- the helper for tests and benchmarks (standard library only) --------------------------------


class StubProcess:
    """A running stub subprocess and a small client for its control endpoints."""

    def __init__(self, process: subprocess.Popen[bytes], base_url: str, stderr: IO[bytes]) -> None:
        self.process = process
        self.base_url = base_url
        self._stderr = stderr
        # Loopback never goes through a proxy, whatever the environment says.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with self._opener.open(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            # The stub says what was wrong with a control call (e.g. an unknown setting).
            raise ValueError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from None

    def messages(self, full: bool = False) -> dict[str, Any]:
        """`{"count", "by_to", "held"}`, plus `"messages"` (the records) when full."""
        return self._call("GET", "/_stub/messages" + ("?full=1" if full else ""))

    def config(self, **settings: Any) -> dict[str, Any]:
        """latency_ms, hold_after, errors, error_rate, error, seed, mangle, list_error; returns
        the resulting config."""
        return self._call("POST", "/_stub/config", settings)

    def release(self) -> int:
        """Answer every held request and clear hold_after; returns how many were released."""
        return self._call("POST", "/_stub/release", {})["released"]

    def reset(self) -> None:
        self._call("POST", "/_stub/reset", {})

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within timeout; returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self._stderr):
            if stream is not None:
                stream.close()
        return self.process.returncode

    def __enter__(self) -> StubProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_stub(host: str = "127.0.0.1", auth_token: str | None = None, timeout: float = 15.0) -> StubProcess:
    """Start `python -m tests.twilio_stub` on a free port and wait until it accepts connections."""
    command = [sys.executable, "-m", "tests.twilio_stub", "--host", host, "--port", "0"]
    if auth_token is not None:
        command += ["--auth-token", auth_token]
    # stderr to a file, not a pipe: nobody drains it while the stub runs.
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the stub; stop() closes it)
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr)
    assert process.stdout is not None
    buffer = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        ready = remaining > 0 and select.select([process.stdout], [], [], remaining)[0]
        chunk = os.read(process.stdout.fileno(), 4096) if ready else b""
        if not chunk:
            # Timed out or the process closed stdout (it died): stop it and say why.
            stub = StubProcess(process, "", stderr)
            stderr.seek(0)
            detail = stderr.read().decode(errors="replace")[-2000:]
            code = stub.stop(timeout=1.0)
            why = f"exited with {code}" if ready else f"did not report listening within {timeout:.0f} s"
            raise RuntimeError(f"Twilio stub {why}: {' '.join(command)}\n{detail}")
        buffer += chunk
    line = buffer.split(b"\n", 1)[0].decode()
    if not line.startswith("listening on "):
        StubProcess(process, "", stderr).stop(timeout=1.0)
        raise RuntimeError(f"Twilio stub printed {line!r} instead of 'listening on <url>'")
    return StubProcess(process, line.removeprefix("listening on "), stderr)


if __name__ == "__main__":
    sys.exit(main())
