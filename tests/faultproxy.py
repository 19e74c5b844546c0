"""A fault-injecting HTTP/1.1 proxy on loopback, for testing clients against a flaky server.

Each request is read whole from the client, then a fault from the script decides its fate:
forwarded, answered with a 5xx, cut while the client is still sending its body, cut halfway
through the response, or stalled past the client's timeout. Requests are forwarded on a fresh
upstream connection each, so one fault never leaks into the next request. Bounded: the proxy
stops with its `with` block, and a stall lasts at most `stall_s`.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum

from tests.servers import free_port


class Fault(StrEnum):
    NONE = "none"
    HTTP_503 = "http_503"  # S3 "SlowDown"
    HTTP_500 = "http_500"  # S3 "InternalError"
    CUT_REQUEST = "cut_request"  # connection closed while the client sends the body
    CUT_RESPONSE = "cut_response"  # upstream did the work; the client gets half an answer
    STALL = "stall"  # nothing comes back until the client gives up
    TRUNCATE_BODY = "truncate_body"  # the whole head, half the body, then a clean close (FIN)


_S3_ERRORS = {
    Fault.HTTP_503: (503, "Service Unavailable", "SlowDown", "Please reduce your request rate."),
    Fault.HTTP_500: (500, "Internal Server Error", "InternalError", "We encountered an error."),
}


def _read_until(sock: socket.socket, buffer: bytearray, marker: bytes) -> bool:
    while marker not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        buffer += chunk
    return True


def _read_exactly(sock: socket.socket, buffer: bytearray, size: int) -> bool:
    while len(buffer) < size:
        chunk = sock.recv(min(65536, size - len(buffer)))
        if not chunk:
            return False
        buffer += chunk
    return True


class FaultProxy:
    """Forwards to `upstream_port` on 127.0.0.1; `script(n)` picks the fault of request n."""

    def __init__(self, upstream_port: int, script: Callable[[int], Fault], *,
                 stall_s: float = 3.0) -> None:
        self.upstream_port = upstream_port
        self.script = script
        self.stall_s = stall_s
        self.port = free_port()
        self.injected: Counter[Fault] = Counter()
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _next_fault(self) -> Fault:
        with self._lock:
            fault = self.script(self.requests)
            self.requests += 1
            self.injected[fault] += 1
            return fault

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._connection, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _connection(self, client: socket.socket) -> None:
        client.settimeout(self.stall_s + 30)
        buffer = bytearray()
        try:
            while not self._stop.is_set():
                if not self._request(client, buffer):
                    return
        except OSError:
            return
        finally:
            client.close()

    def _request(self, client: socket.socket, buffer: bytearray) -> bool:
        """Handle one request from `buffer` + the socket; False when the connection ends."""
        if not _read_until(client, buffer, b"\r\n\r\n"):
            return False
        head_end = buffer.index(b"\r\n\r\n") + 4
        head = bytes(buffer[:head_end])
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if line)}
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise OSError("chunked request bodies are not supported by this test proxy")
        length = int(headers.get("content-length", "0"))
        fault = self._next_fault()
        if headers.get("expect", "").lower() == "100-continue":
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if fault is Fault.CUT_REQUEST and length > 1:
            _read_exactly(client, buffer, head_end + length // 2)
            client.shutdown(socket.SHUT_RDWR)
            return False
        if not _read_exactly(client, buffer, head_end + length):
            return False
        body = bytes(buffer[head_end:head_end + length])
        del buffer[:head_end + length]
        if fault in _S3_ERRORS:
            status, reason, code, message = _S3_ERRORS[fault]
            payload = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>"
                       f"<Message>{message}</Message></Error>").encode()
            client.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
                           f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
            return True
        if fault is Fault.STALL:
            self._stop.wait(self.stall_s)
            return False
        response = self._forward(lines, headers, body)
        if fault is Fault.CUT_RESPONSE:
            # Cut inside the body when there is one; a bodyless answer is cut inside its status
            # line. (Plain HTTP cut inside the header block parses as a complete answer with
            # headers missing in Python's http.client; over TLS the same cut is an SSL EOF
            # error, so that case would test the client library, not ours.)
            head_len = response.find(b"\r\n\r\n") + 4
            body_len = len(response) - head_len
            cut = head_len + body_len // 2 if body_len > 1 else 5
            client.sendall(response[:cut])
            client.shutdown(socket.SHUT_RDWR)
            return False
        if fault is Fault.TRUNCATE_BODY:
            # Unlike CUT_RESPONSE (a reset, which can discard what was sent): the client reads
            # the head and half the body, then the end of the stream.
            head_len = response.find(b"\r\n\r\n") + 4
            client.sendall(response[:head_len + (len(response) - head_len) // 2])
            client.shutdown(socket.SHUT_WR)
            return False
        client.sendall(response)
        return b"\r\nconnection: close" not in response.split(b"\r\n\r\n")[0].lower()

    def _forward(self, lines: list[str], headers: dict[str, str], body: bytes) -> bytes:
        """The request on a fresh upstream connection (closed after it); the raw response."""
        kept = [line for line in lines[1:] if line and line.partition(":")[0].strip().lower()
                not in ("connection", "expect", "keep-alive")]
        head = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1")
        with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30) as up:
            up.sendall(head + body)
            chunks = []
            while chunk := up.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        for thread in self._threads:
            thread.join(timeout=self.stall_s + 5)


@contextmanager
def fault_proxy(upstream_port: int, script: Callable[[int], Fault], *,
                stall_s: float = 3.0) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream_port, script, stall_s=stall_s)
    thread = threading.Thread(target=proxy._serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.close()
        thread.join(timeout=5)
