""":class:`AsyncAuthClient`: the asyncio twin of :class:`~futu_auth_client.AuthClient`,
with the same methods as coroutines. Its calls are written once, for both clients, in
``_calls.py``; this module only moves their bytes: a stream written by the calling
coroutines and read by a task of its own, deadlines, and reconnection.

An order the daemon allowed after its caller gave up (the deadline passed, or the call
was cancelled) was counted but will never be placed: the connection releases its ticket,
as the blocking client's does."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from typing import Any, Callable, Optional

from ._calls import Calls, Operation, Steps, T
from ._connection import (
    DEFAULT_CLIENT_NAME,
    DEFAULT_SOCKET,
    DEFAULT_TIMEOUT,
    Handshake,
    PathLike,
    Pipeline,
    check_timeout,
    connection_broke,
    failure_of,
)
from .errors import ClientError, ConnectError, ConnectionLost, DeadlineExceeded, ProtocolError
from .messages import Response

__all__ = ["AsyncAuthClient"]

log = logging.getLogger("futu_auth_client")

_RECV = 256 * 1024


class _AsyncConnection:
    """A stream that said Hello, on one event loop, and its :class:`Pipeline`: requests
    are written by the calling coroutines, answers read by a task of its own. A release
    of an order allowed after its caller gave up is buffered whole, never waited for."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pipeline: Pipeline) -> None:
        self._reader = reader
        self._writer = writer
        self.pipeline = pipeline
        self.loop = asyncio.get_running_loop()
        self.task = self.loop.create_task(self._read_loop())

    @property
    def alive(self) -> bool:
        return self.pipeline.alive and not self.loop.is_closed()

    async def send(self, data: bytes) -> None:
        """Writes one whole frame (a frame is buffered whole or not at all)."""
        failure = self.pipeline.failure
        if failure is not None:
            raise failure()
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError) as e:
            broke = connection_broke(e).message
            self.fail(lambda: ConnectionLost(broke))
            raise self.pipeline.failure() from None  # type: ignore[misc]

    def fail(self, make_error: Callable[[], ClientError]) -> None:
        """Ends the connection: fails every caller waiting on it, closes the stream and
        stops the reader."""
        if not self.pipeline.fail(make_error):
            return
        try:
            self._writer.close()
        except Exception:  # the loop may be closing
            pass
        if self.task is not asyncio.current_task(self.loop) and not self.task.done():
            self.task.cancel()

    def release_late(self, resp: Response) -> None:
        """Releases the order an answer nobody reads allowed, if any."""
        data = self.pipeline.unclaimed(resp)
        if data is not None:
            self._write_release(data)

    def _write_release(self, data: bytes) -> None:
        try:
            self._writer.write(data)
        except Exception as e:  # the transport is closing: the connection is going anyway
            log.warning("the release of an order allowed after its caller gave up was not sent: %s", e)

    async def _read_loop(self) -> None:
        failure: Callable[[], ClientError] = ConnectionLost
        try:
            while True:
                chunk = await self._reader.read(_RECV)
                if not chunk:
                    failure = self.pipeline.closed()
                    break
                for release in self.pipeline.receive(chunk):
                    self._write_release(release)
        except asyncio.CancelledError:
            failure = lambda: ConnectionLost("the client was closed")  # noqa: E731
        except Exception as e:
            failure = failure_of(e)
        finally:
            self.fail(failure)


class AsyncAuthClient(Calls):
    """The asyncio client of futu-authd: :class:`~futu_auth_client.AuthClient`'s methods
    as coroutines, for one event loop at a time.

    Every caller's requests go over one connection, pipelined, matched to their answers by
    request id; the connection is made on the first call (or :meth:`connect`), says
    Hello with protocol version 4 (an older one with a daemon that speaks only that), and
    is made again after it is lost, with a backoff between failed attempts (10 ms doubling
    to 1 s). Each call has a deadline of ``timeout`` seconds (50 ms unless set),
    connecting included.

    **Fail closed.** :meth:`check`, :meth:`check_scope` and :meth:`session_check` return a
    :class:`Decision` whatever happens: a deny with reason ``internal`` and
    :attr:`Decision.error` set when the daemon gave no decision. The other calls raise a
    :class:`ClientError`.

    **Late allows are released**, as by :class:`~futu_auth_client.AuthClient`: an order
    allowed after its call's deadline passed, or after the call was cancelled, is released
    on the same connection and counted in :attr:`late_releases`. Answers are read while
    the event loop runs.

    ::

        async with AsyncAuthClient("/run/futu/auth.sock") as auth:
            decision = await auth.check(token, "Qot_GetBasicQot")
    """

    def __init__(self, socket_path: PathLike = DEFAULT_SOCKET, timeout: float = DEFAULT_TIMEOUT,
                 client_name: str = DEFAULT_CLIENT_NAME) -> None:
        super().__init__(socket_path, timeout, client_name)
        self._conn: Optional[_AsyncConnection] = None
        self._lock: Optional[asyncio.Lock] = None
        self._lock_loop: Optional[asyncio.AbstractEventLoop] = None

    async def __aenter__(self) -> "AsyncAuthClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- connection ---------------------------------------------------------------------

    async def connect(self, timeout: Optional[float] = None) -> int:
        """Connects now (if not connected) and returns the protocol version spoken;
        raises a :class:`ClientError` when that cannot be done within the timeout."""
        t = self.timeout if timeout is None else check_timeout(timeout)
        try:
            conn = await asyncio.wait_for(self._connection(t), t)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(t) from None
        return conn.pipeline.version

    async def close(self) -> None:
        """Closes the connection; later calls fail closed."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fail(lambda: ConnectionLost("the client was closed"))
            try:
                await asyncio.wait_for(asyncio.shield(conn.task), 1.0)
            except BaseException:
                pass

    def _get_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            # A client used from a new event loop (asyncio.run() again) starts afresh there.
            self._lock = asyncio.Lock()
            self._lock_loop = loop
            self._conn = None
        return self._lock

    async def _connection(self, timeout: float) -> _AsyncConnection:
        async with self._get_lock():
            if self._closed:
                raise ConnectionLost("the client was closed")
            conn = self._conn
            if conn is not None and conn.alive and conn.loop is asyncio.get_running_loop():
                return conn
            self._conn = None
            with self._backoff.attempt(self.socket_path, timeout):
                conn = await self._open()
            self._opened(conn)
            return conn

    async def _open(self) -> _AsyncConnection:
        hello = Handshake(self.client_name)
        while True:  # a new connection for each version offered
            try:
                reader, writer = await asyncio.open_unix_connection(self.socket_path)
            except OSError as e:
                raise ConnectError(self.socket_path, e) from None
            try:
                try:
                    writer.write(hello.offer)
                    await writer.drain()
                    n = hello.length(await reader.readexactly(4))
                    agreed = hello.answer(await reader.readexactly(n))
                except asyncio.IncompleteReadError:
                    raise ConnectionLost("futu-authd closed the connection during Hello") from None
                except (ConnectionError, OSError) as e:
                    raise connection_broke(e, " during Hello") from None
                if agreed:
                    return _AsyncConnection(reader, writer, Pipeline(hello, self._ids.next, self._late_releases))
            except BaseException:
                writer.close()
                raise
            writer.close()  # the daemon refused the version offered, and closes it too

    # ---- calls --------------------------------------------------------------------------

    async def _run(self, steps: Steps[T], timeout: Optional[float]) -> T:
        op = self._operation(steps, timeout)
        while not op.done:
            try:
                resp = await self._exchange(op)
            except ClientError as e:
                op.fail(e)
            else:
                op.answer(resp)
        return op.result

    async def _exchange(self, op: Operation) -> Response:
        """Sends the operation's request and waits for its answer until its deadline."""
        try:
            return await asyncio.wait_for(self._send(op), op.deadline - time.monotonic())
        except asyncio.TimeoutError:
            raise DeadlineExceeded(op.timeout) from None

    async def _send(self, op: Operation) -> Response:
        """A request not written whole never reached the daemon: it is sent once more, on
        a new connection. A caller that gives up (the deadline, or it was cancelled) with
        its answer handed over already leaves it to be released."""
        req = op.request
        request_id: int = req.request_id  # type: ignore[union-attr]
        for attempt in (1, 2):
            conn = await self._connection(op.timeout)
            answer: "asyncio.Future[Response]" = conn.loop.create_future()
            try:
                conn.pipeline.register(req, answer)  # type: ignore[arg-type]
                await conn.send(op.frame_for(conn.pipeline.version))
            except ConnectionLost:
                conn.pipeline.forget(request_id)
                if attempt == 2:
                    raise
                continue
            except BaseException:
                conn.pipeline.forget(request_id)
                raise
            try:
                return await answer
            except asyncio.CancelledError:
                if answer.done() and not answer.cancelled() and answer.exception() is None:
                    conn.release_late(answer.result())
                raise
            finally:
                conn.pipeline.forget(request_id)
        raise ProtocolError("not reached")


def _coroutine_function(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def call(self: AsyncAuthClient, *args: Any, **kwargs: Any) -> Any:
        return await method(self, *args, **kwargs)
    call.__qualname__ = "AsyncAuthClient." + name
    return call


# Every call of Calls returns a coroutine here already (_run is one); as coroutine
# functions they are also what inspect.iscoroutinefunction(), and the frameworks that ask
# it, take them for.
for _name, _method in list(vars(Calls).items()):
    if inspect.isfunction(_method) and not _name.startswith("_"):
        setattr(AsyncAuthClient, _name, _coroutine_function(_name, _method))
