"""A raw HTTP/1.1 client for the payload campaigns: any header bytes, bodies sent in pieces, senders that
trickle or stop, and whether the server answered, closed the connection or reset it. Plus a process's memory
from /proc."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# How long a client waits for a byte before it gives up on the server: a guard against a hung test, never a
# bound the server is held to (the servers' own timeouts are set much shorter than this in the tests).
GUARD_SECONDS = 120.0


@dataclass
class Answer:
    status: int  # 0: no HTTP response (the connection was closed or reset without one)
    body: Any  # the JSON document, or the text when it is not JSON
    closed: bool  # the server closed the connection after answering (or without answering)
    sent: int = 0  # body bytes the client managed to send

    @property
    def message(self) -> str:
        if isinstance(self.body, dict):
            return " ".join(str(self.body.get(k, "")) for k in ("error", "reason", "detail"))
        return str(self.body)


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes | None, port: int) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k in headers):
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    return head + (body or b"")


def _read_response(sock: socket.socket) -> Answer:
    """One response; a read until the server closes when it gives no length."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = _recv(sock)
        if not chunk:
            return Answer(0, None, True)
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(rest) < length:
            chunk = _recv(sock)
            if not chunk:
                break
            rest += chunk
        raw = rest[:length]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        raw, rest = b"", _read_until_close_or(sock, rest, b"0\r\n\r\n")
        while rest:
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            raw, rest = raw + rest[:size], rest[size + 2 :]
    else:
        raw = _read_until_close_or(sock, rest, None)
    closed = headers.get("connection", "").lower() == "close"
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode(errors="replace")
    return Answer(status, body, closed)


def _read_until_close_or(sock: socket.socket, buf: bytes, end: bytes | None) -> bytes:
    while end is None or not buf.endswith(end):
        chunk = _recv(sock)
        if not chunk:
            break
        buf += chunk
    return buf


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 16)
    except (ConnectionResetError, BrokenPipeError):
        return b""


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=GUARD_SECONDS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
    """One request on its own connection."""
    with connect(port) as sock:
        # The server may answer (and close) before it has read everything: read what it said.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(request_bytes(method, path, headers or {}, body, port))
        answer = _read_response(sock)
        answer.sent = len(body or b"")
        return answer


def closed_by_server(sock: socket.socket, guard: float = 30.0) -> bool:
    """Whether the server closes the connection (after any answer it gave, which is read and dropped) within
    `guard` seconds: a guard against waiting for ever, far beyond the servers' timeouts in these tests."""
    sock.settimeout(guard)
    while True:
        try:
            chunk = sock.recv(1 << 16)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        if not chunk:
            return True


def send_large(
    port: int,
    path: str,
    headers: dict[str, str],
    total: int,
    chunked: bool = False,
    deaf: bool = False,
    piece: int = 1 << 20,
) -> Answer:
    """A body of `total` bytes (a JSON array of zeros, valid as far as it goes), sent in `piece`-sized writes
    until the server answers or closes (`deaf`: until all is sent or the server closes, whatever it answered);
    with `chunked`, as Transfer-Encoding: chunked without a length."""
    framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(total)}
    sock = connect(port)
    sent = 0
    try:
        sock.sendall(request_bytes("POST", path, {**headers, **framing}, None, port))
        filler = b"[" + b"0," * (piece // 2)
        while sent < total:
            data = filler[: min(piece, total - sent)]
            sock.sendall(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            sent += len(data)
            filler = b"0," * (piece // 2)
            if not deaf and _readable(sock):
                break  # the server has answered (or closed) before the whole body: stop sending
        if chunked and sent >= total:
            sock.sendall(b"0\r\n\r\n")
    except (ConnectionResetError, BrokenPipeError):
        pass
    answer = _read_response(sock)
    answer.sent = sent
    if not deaf:  # a deaf client's complete body may well leave the connection open for the next request
        answer.closed = closed_by_server(sock)
    sock.close()
    return answer


def _readable(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])


def trickle(port: int, path: str, headers: dict[str, str], length: int, pause: float, stop_after: int | None) -> Answer:
    """Announce `length` body bytes, then send them one at a time with `pause` between; with `stop_after`,
    stop after that many and wait. Ends when the server answers or closes (the connection is not reused)."""
    sock = connect(port)
    sent = 0
    try:
        sock.sendall(request_bytes("POST", path, {**headers, "Content-Length": str(length)}, None, port))
        while sent < length and (stop_after is None or sent < stop_after) and not _readable(sock):
            sock.sendall(b" ")  # whitespace: the body stays a valid prefix of JSON however far it gets
            sent += 1
            time.sleep(pause)  # the slow sender's pace (the client's behaviour, not a proof of anything)
    except (ConnectionResetError, BrokenPipeError):
        pass
    answer = _read_response(sock)
    answer.sent = sent
    answer.closed = closed_by_server(sock)
    sock.close()
    return answer


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak since the process started), in KiB, from /proc/<pid>/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out
