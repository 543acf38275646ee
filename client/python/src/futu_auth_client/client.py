""":class:`AuthClient`: the blocking client, one pipelined connection shared by every
thread of a process. Its calls are written once, for both clients, in ``_calls.py``;
this module only moves their bytes: a socket written by the calling threads and read by
a thread of its own, deadlines, and reconnection.

An order the daemon allowed after its caller gave up (the deadline passed) was counted
but will never be placed: the connection releases its ticket, so that the daemon's ledger
holds exactly the orders the gateway placed, and the audit trail shows the release."""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import select
import socket
import threading
import time
import weakref
from typing import Callable, Deque, Optional

from ._calls import Calls, Operation, Steps, T
from ._connection import (
    DEFAULT_CLIENT_NAME,
    DEFAULT_SOCKET,
    DEFAULT_TIMEOUT,
    LATE_RELEASE_TIMEOUT,
    Handshake,
    PathLike,
    Pipeline,
    check_timeout,
    connection_broke,
    failure_of,
)
from .errors import ClientError, ConnectError, ConnectionLost, DeadlineExceeded
from .messages import Response

__all__ = ["AuthClient"]

log = logging.getLogger("futu_auth_client")

_RECV = 256 * 1024


class _Connection:
    """A socket that said Hello, and its :class:`Pipeline`: requests are written by the
    calling threads, answers read by a thread of its own. The releases of orders allowed
    after their caller gave up are written by a thread of their own, started when there
    is one to write, so that the reader never waits to write."""

    def __init__(self, sock: socket.socket, pipeline: Pipeline) -> None:
        sock.setblocking(False)
        self._sock = sock
        self.pipeline = pipeline
        self._write_lock = threading.Lock()
        self._close_lock = threading.Lock()
        # Release frames waiting to be written, and the thread writing them (None while
        # none runs); both under _releases_lock.
        self._releases_lock = threading.Lock()
        self._releases: Deque[bytes] = collections.deque()
        self._releaser: Optional[threading.Thread] = None
        self._reader = threading.Thread(target=self._read_loop, name="futu-auth-client reader", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        return self.pipeline.alive

    def send(self, data: bytes, deadline: float, timeout: float) -> None:
        """Writes one whole frame before ``deadline``. A frame cut short breaks the
        connection (the stream would be out of step)."""
        if not self._write_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise DeadlineExceeded(timeout)
        try:
            view = memoryview(data)
            sent = 0
            while sent < len(data):
                failure = self.pipeline.failure
                if failure is not None:
                    raise failure()
                try:
                    sent += self._sock.send(view[sent:])
                    continue
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    broke = connection_broke(e).message
                    self.fail(lambda: ConnectionLost(broke))
                    raise self.pipeline.failure() from None  # type: ignore[misc]
                left = deadline - time.monotonic()
                if left <= 0 or not _wait_writable(self._sock, left):
                    if sent:
                        self.fail(lambda: ConnectionLost("a request was cut short by its deadline"))
                    raise DeadlineExceeded(timeout)
        finally:
            self._write_lock.release()

    def fail(self, make_error: Callable[[], ClientError]) -> None:
        """Ends the connection: fails every caller waiting on it, and wakes the reader
        (which closes the socket)."""
        if self.pipeline.fail(make_error):
            with self._close_lock:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self, join: float = 0.0) -> None:
        self.fail(lambda: ConnectionLost("the client was closed"))
        if join and threading.current_thread() is not self._reader:
            self._reader.join(join)

    def _release_late(self, data: bytes) -> None:
        with self._releases_lock:
            self._releases.append(data)
            if self._releaser is None:
                self._releaser = threading.Thread(target=self._release_loop, name="futu-auth-client releaser",
                                                  daemon=True)
                self._releaser.start()

    def _release_loop(self) -> None:
        while True:
            with self._releases_lock:
                if not self._releases or not self.alive:
                    self._releases.clear()
                    self._releaser = None
                    return
                data = self._releases.popleft()
            try:
                self.send(data, time.monotonic() + LATE_RELEASE_TIMEOUT, LATE_RELEASE_TIMEOUT)
            except ClientError as e:
                log.warning("the release of an order allowed after its caller gave up was not sent: %s", e)

    def _read_loop(self) -> None:
        failure: Callable[[], ClientError] = ConnectionLost
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        try:
            while True:
                poller.poll()
                try:
                    chunk = self._sock.recv(_RECV)
                except (BlockingIOError, InterruptedError):
                    continue
                if not chunk:
                    failure = self.pipeline.closed()
                    break
                for release in self.pipeline.receive(chunk):
                    self._release_late(release)
        except Exception as e:
            failure = failure_of(e)
        finally:
            self.fail(failure)
            with self._close_lock:
                try:
                    self._sock.close()
                except OSError:
                    pass


def _wait_writable(sock: socket.socket, timeout: float) -> bool:
    p = select.poll()
    p.register(sock.fileno(), select.POLLOUT)
    return bool(p.poll(max(1, int(timeout * 1000 + 0.999))))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionLost("futu-authd closed the connection during Hello")
        buf += chunk
    return bytes(buf)


class _Holder:
    """The client's connection, in an object a finalizer can reach without the client."""

    __slots__ = ("conn",)

    def __init__(self) -> None:
        self.conn: Optional[_Connection] = None


def _finalize(holder: _Holder) -> None:
    if holder.conn is not None:
        holder.conn.close()


class AuthClient(Calls):
    """A blocking client of futu-authd, safe to share between threads.

    Every thread's requests go over one connection, pipelined, and are matched to their
    answers by request id. The connection is made on the first call (or by
    :meth:`connect`), says Hello with protocol version 6 (an older one with a daemon that
    speaks only that), and is made again after it is lost, with a backoff between failed
    attempts (10 ms doubling to 1 s). Each call has a deadline: ``timeout`` seconds
    (50 ms unless set), connecting included; every method also takes ``timeout=`` for one
    call. A request the connection's version lacks is never sent (:meth:`session_check`
    asks an older daemon the equivalent instead; the others raise :class:`VersionTooOld`).

    **Fail closed.** :meth:`check`, :meth:`check_scope` and :meth:`session_check` return a
    :class:`Decision` whatever happens; when the daemon gave none (not running, no answer
    in time, the connection lost, an answer that cannot be read) it is a deny with reason
    ``internal`` and :attr:`Decision.error` set. The other calls raise a
    :class:`ClientError` (:class:`AuthError` for the daemon's Error answers).

    **Late allows are released.** An order whose caller was denied for want of an answer
    in time may still be allowed by the daemon afterwards, which counts its value; the
    client then sends ``Release`` for its ticket on the same connection (its answer is not
    waited for) and counts it in :attr:`late_releases`, so that the daemon's ledger holds
    only the orders callers were told they may place.

    >>> auth = AuthClient("/run/futu/auth.sock")                      # doctest: +SKIP
    >>> d = auth.check("fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f", "Qot_GetBasicQot")  # doctest: +SKIP
    >>> d.allowed, d.reason                                           # doctest: +SKIP
    (False, <Reason.UNKNOWN_KEY: 'unknown_key'>)
    """

    def __init__(self, socket_path: PathLike = DEFAULT_SOCKET, timeout: float = DEFAULT_TIMEOUT,
                 client_name: str = DEFAULT_CLIENT_NAME) -> None:
        super().__init__(socket_path, timeout, client_name)
        self._state_lock = threading.Lock()
        self._holder = _Holder()
        weakref.finalize(self, _finalize, self._holder)

    def __enter__(self) -> "AuthClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _conn(self) -> Optional[_Connection]:
        return self._holder.conn

    @_conn.setter
    def _conn(self, conn: Optional[_Connection]) -> None:
        self._holder.conn = conn

    # ---- connection ---------------------------------------------------------------------

    def connect(self, timeout: Optional[float] = None) -> int:
        """Connects now (if not connected) and returns the protocol version spoken;
        raises a :class:`ClientError` when that cannot be done within the timeout."""
        t = self.timeout if timeout is None else check_timeout(timeout)
        return self._connection(time.monotonic() + t, t).pipeline.version

    def close(self) -> None:
        """Closes the connection; later calls fail closed."""
        with self._state_lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close(join=1.0)

    def _connection(self, deadline: float, timeout: float) -> _Connection:
        if not self._state_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise DeadlineExceeded(timeout)
        try:
            if self._closed:
                raise ConnectionLost("the client was closed")
            conn = self._conn
            if conn is not None and conn.alive:
                return conn
            self._conn = None
            with self._backoff.attempt(self.socket_path, timeout):
                conn = self._open(deadline, timeout)
            self._opened(conn)
            return conn
        finally:
            self._state_lock.release()

    def _open(self, deadline: float, timeout: float) -> _Connection:
        hello = Handshake(self.client_name)
        while True:  # a new connection for each version offered
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeadlineExceeded(timeout)
                sock.settimeout(left)
                try:
                    sock.connect(self.socket_path)
                except socket.timeout:
                    raise DeadlineExceeded(timeout) from None
                except OSError as e:
                    raise ConnectError(self.socket_path, e) from None
                try:
                    sock.sendall(hello.offer)
                    sock.settimeout(max(0.001, deadline - time.monotonic()))
                    n = hello.length(_recv_exact(sock, 4))
                    sock.settimeout(max(0.001, deadline - time.monotonic()))
                    agreed = hello.answer(_recv_exact(sock, n))
                except socket.timeout:
                    raise DeadlineExceeded(timeout) from None
                except OSError as e:
                    raise connection_broke(e, " during Hello") from None
                if agreed:
                    return _Connection(sock, Pipeline(hello, self._ids.next, self._late_releases))
            except BaseException:
                sock.close()
                raise
            sock.close()  # the daemon refused the version offered, and closes it too

    # ---- calls --------------------------------------------------------------------------

    def _run(self, steps: Steps[T], timeout: Optional[float]) -> T:
        op = self._operation(steps, timeout)
        while not op.done:
            try:
                resp = self._exchange(op)
            except ClientError as e:
                op.fail(e)
            else:
                op.answer(resp)
        return op.result

    def _exchange(self, op: Operation) -> Response:
        """Sends the operation's request and waits for its answer until its deadline. A
        request not written whole never reached the daemon: it is sent once more, on a new
        connection."""
        req, deadline, timeout = op.request, op.deadline, op.timeout
        request_id: int = req.request_id  # type: ignore[union-attr]
        for attempt in (1, 2):
            conn = self._connection(deadline, timeout)
            answer: "concurrent.futures.Future[Response]" = concurrent.futures.Future()
            try:
                conn.pipeline.register(req, answer)  # type: ignore[arg-type]
                conn.send(op.frame_for(conn.pipeline.version), deadline, timeout)
            except ConnectionLost:
                conn.pipeline.forget(request_id)
                if attempt == 2:
                    raise
                continue
            except BaseException:
                conn.pipeline.forget(request_id)
                raise
            break
        try:
            return answer.result(max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            if conn.pipeline.forget(request_id):
                raise DeadlineExceeded(timeout) from None
            return answer.result()  # answered at the last moment
