"""A fake futu-authd on a Unix socket for the client's tests: it speaks the protocol with
this package's own messages, and does what a test tells it (answer, answer out of order,
stay silent, send garbage, close)."""

import os
import socket
import struct
import tempfile
import threading
from typing import Callable, List, Optional, Sequence, Union

from futu_auth_client.messages import (
    ErrorResponse,
    Hello,
    HelloOk,
    Request,
    Response,
    decode_request,
    response_frame,
)
from futu_auth_client.types import ErrorKind

#: What a handler returns for a request: responses to send (or raw frames; CLOSE among
#: them closes the connection there), nothing yet (None or []), or CLOSE.
CLOSE = "close"
Answer = Union[None, str, Sequence[Union[Response, bytes]]]
Handler = Callable[["FakeDaemon", Request, int], Answer]


def recv_exact(sock: socket.socket, n: int) -> Optional[bytes]:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_frame(sock: socket.socket) -> Optional[bytes]:
    prefix = recv_exact(sock, 4)
    if prefix is None:
        return None
    return recv_exact(sock, struct.unpack(">I", prefix)[0])


class FakeDaemon:
    """Listens on ``path``. ``versions``: the protocol versions it speaks (a Hello offering
    another is refused with Error ``version`` and a close, as a daemon of version 1
    refuses 2, with ``negotiates=False``). ``hello``: False to accept and never answer anything. ``hello_version``:
    the version its HelloOk names, whatever was offered (a broken daemon)."""

    def __init__(self, path: str, handler: Optional[Handler] = None, versions: Sequence[int] = (1, 2),
                 hello: bool = True, hello_version: Optional[int] = None, negotiates: bool = True) -> None:
        self.path = path
        self.handler = handler
        self.versions = tuple(versions)
        self.hello = hello
        self.hello_version = hello_version
        self.negotiates = negotiates
        self.offered: List[int] = []
        self.connections = 0
        self.requests: List[Request] = []
        self.lock = threading.Lock()
        self._socks: List[socket.socket] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(64)
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __enter__(self) -> "FakeDaemon":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stops listening and closes every connection."""
        self._stopped = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self.lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._thread.join(2)
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _accept(self) -> None:
        while not self._stopped:
            try:
                s, _ = self._listener.accept()
            except OSError:
                return
            with self.lock:
                self._socks.append(s)
                self.connections += 1
            if self.hello:
                threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s: socket.socket) -> None:
        body = read_frame(s)
        if body is None:
            return
        hello = decode_request(body)
        assert isinstance(hello, Hello), hello
        with self.lock:
            self.offered.append(hello.protocol_version)
        # A daemon of version 2 answers the older of the offer and its own; one of version 1
        # (negotiates=False) refuses every version but its own.
        agreed = min(hello.protocol_version, max(self.versions)) if self.negotiates else hello.protocol_version
        if agreed not in self.versions:
            s.sendall(response_frame(ErrorResponse(0, ErrorKind.VERSION, "protocol version %d is not spoken here"
                                                   % hello.protocol_version), 1))
            s.shutdown(socket.SHUT_RDWR)
            return
        s.sendall(response_frame(HelloOk(self.hello_version or agreed, "fake"), 1))
        while True:
            body = read_frame(s)
            if body is None:
                return
            req = decode_request(body, agreed)
            with self.lock:
                self.requests.append(req)
            answer = self.handler(self, req, agreed) if self.handler else None
            if answer == CLOSE:
                s.shutdown(socket.SHUT_RDWR)
                return
            for item in answer or ():
                if item == CLOSE:
                    s.shutdown(socket.SHUT_RDWR)
                    return
                try:
                    s.sendall(item if isinstance(item, bytes) else response_frame(item, agreed))
                except OSError:
                    return


class SocketDir:
    """A temporary directory for sockets (short paths: sun_path is limited)."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="fac-")

    def path(self, name: str) -> str:
        return os.path.join(self._dir.name, name)

    def cleanup(self) -> None:
        self._dir.cleanup()
