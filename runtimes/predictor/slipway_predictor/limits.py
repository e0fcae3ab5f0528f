"""What one request may cost the server, and bodies that are not JSON refused in words that say so.

kserve's REST server (FastAPI on uvicorn) reads a request body whole, however large, and waits for it however
slowly it comes. `BodyLimitMiddleware` reads it first, for every request with a body:

- more than `max_bytes` (SLIPWAY_MAX_BODY_BYTES): 413 as soon as that is known (a Content-Length over the limit
  is refused before a byte of the body is read; a chunked body is cut off at the limit) and the connection
  closed (left open, a client that stops sending the rest would hold it for ever: uvicorn's keep-alive timer
  is not armed while a body is unfinished), so a request holds at most `max_bytes` of body (uvicorn itself
  buffers at most 64 KiB per connection before it stops reading);
- not all there `timeout` seconds (SLIPWAY_BODY_TIMEOUT_SECONDS) after the headers: 408, connection closed, so
  a client that trickles its body or stops mid-body holds neither memory nor a connection for ever;
- a v1 predict body that is not JSON (a tabular model takes nothing else, whatever the Content-Type): 400 "the
  body is not valid JSON: <where and why>" (kserve's own words would not say JSON);
- a v2 infer body (its JSON part, when the binary extension's inference-header-content-length is there) read
  the same way, strictly: FastAPI reads it with Python's json module, which takes NaN and Infinity (no JSON has
  them) and lone surrogates; and pydantic's lax mode turns a shape of [true, 30] or ["2", 30] into [1, 30] or
  [2, 30], so a tensor's shape is checked here to be integers, as written.

A v2 body that FastAPI cannot parse (nesting beyond Python's recursion limit, an integer of more than 4,300
digits, invalid UTF-8) would get a 400 "There was an error parsing the body" that does not say what is wrong:
`parse_error_handler` says it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 16 << 20
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0
_V1_PREDICT = re.compile(r"^/v1/models/[^/]+:predict$")
_V2_INFER = re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$")


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            await _answer(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, self._too_large(), close=True)
            return
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout(self.timeout):
                if not await self._read(receive, chunks):
                    return  # the client went away: nobody to answer
        except TimeoutError:
            message = (
                f"the body did not arrive within {self.timeout:g} seconds of the headers (SLIPWAY_BODY_TIMEOUT_SECONDS)"
            )
            await _answer(send, HTTPStatus.REQUEST_TIMEOUT, message, close=True)
            return
        except _TooLarge:
            await _answer(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, self._too_large(), close=True)
            return
        body = b"".join(chunks)
        del chunks
        problem = body_problem(scope["path"], headers, body)
        if problem is not None:
            await _answer(send, HTTPStatus.BAD_REQUEST, problem)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive, chunks: list[bytes]) -> bool:
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return True

    def _too_large(self) -> str:
        return f"the body is larger than {self.max_bytes} bytes (SLIPWAY_MAX_BODY_BYTES)"


def body_problem(path: str, headers: dict[str, str], body: bytes) -> str | None:
    """What is wrong with an inference body before kserve's lenient parsing sees it, or None."""
    v2 = _V2_INFER.match(path) is not None
    if (not v2 and not _V1_PREDICT.match(path)) or (v2 and not body):
        return None  # an empty v2 body: the model says "the body is empty"
    json_length = headers.get("inference-header-content-length", "")
    try:
        doc = orjson.loads(body[: int(json_length)] if v2 and json_length.isdigit() else body)
    except orjson.JSONDecodeError as e:
        return f"the body is not valid JSON: {e}"
    return _v2_shape_problem(doc) if v2 else None


def _v2_shape_problem(doc: Any) -> str | None:
    tensors = doc.get("inputs") if isinstance(doc, dict) else None
    for i, tensor in enumerate(tensors if isinstance(tensors, list) else ()):
        shape = tensor.get("shape") if isinstance(tensor, dict) else None
        if isinstance(shape, list) and not all(type(d) is int for d in shape):
            written = orjson.dumps(shape).decode()[:80]
            return f"inputs[{i}].shape must be a list of integers, got {written}"
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body, read already, as one message; then whatever the server says next (a disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(send: Send, status: HTTPStatus, message: str, close: bool = False) -> None:
    body = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": int(status), "headers": headers})
    await send({"type": "http.response.body", "body": body})


def describe_parse_error(cause: BaseException | None) -> str | None:
    """What is wrong with a body that Python's json module could not read, or None when that was not it."""
    if isinstance(cause, RecursionError):
        return "the body is not valid JSON: nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not valid JSON: not UTF-8 (byte {cause.start})"
    if isinstance(cause, ValueError):
        return f"the body is not valid JSON: {cause}"
    return None


async def parse_error_handler(request: Any, exc: Any) -> Any:
    """FastAPI's 400 for a body it could not parse, with the reason; any other HTTPException as FastAPI says it."""
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import JSONResponse

    message = describe_parse_error(exc.__cause__) if exc.status_code == HTTPStatus.BAD_REQUEST else None
    if message is None:
        return await http_exception_handler(request, exc)
    return JSONResponse(status_code=HTTPStatus.BAD_REQUEST, content={"error": message})


def install(app: Any, max_bytes: int, timeout: float) -> None:
    """Before the metrics middleware: that one is added after, so it is outside this one and counts the 4xx here."""
    from starlette.exceptions import HTTPException

    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes, timeout=timeout)
    app.add_exception_handler(HTTPException, parse_error_handler)
