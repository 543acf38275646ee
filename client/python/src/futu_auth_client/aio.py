""":class:`AsyncAuthClient`: the asyncio twin of :class:`~futu_auth_client.AuthClient`,
with the same methods as coroutines.

An order the daemon allowed after its caller gave up (the deadline passed, or the call
was cancelled) was counted but will never be placed: the connection releases its ticket,
as the blocking client's does."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Callable, Dict, List, Optional, Union

from . import _common as c
from .codec import DecodeError, FrameTooLarge, frame_length
from .errors import (
    AuthError,
    ClientError,
    ConnectError,
    ConnectionLost,
    DeadlineExceeded,
    InvalidRequest,
    ProtocolError,
    VersionTooOld,
)
from .messages import (
    BindKey,
    ErrorResponse,
    GenKey,
    Hello,
    KeyBound,
    KeyActivity,
    KeyActivityRequest,
    KeyActivityResponse,
    KeyGenerated,
    KeyRevoked,
    KeyRotated,
    Keys,
    KeysPage,
    ListKeys,
    ListKeysPage,
    Release,
    Released,
    Reload,
    Reloaded,
    Request,
    Response,
    RevokeKey,
    RotateKey,
    Usage,
    UsageRequest,
    decode_response,
    request_frame,
)
from .token import TokenLike
from .types import BindOp, Decision, ErrorKind, Iface, KeyRecord, KeySpec, Order, Scope, SessionOutcome, SessionSubject

__all__ = ["AsyncAuthClient"]

log = logging.getLogger("futu_auth_client")


class _AsyncConnection:
    """A connection that said Hello, on one event loop: requests are written by the
    calling coroutines, answers read by a reader of its own and handed over by request id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, version: int,
                 server_version: str, next_id: Callable[[], int], late_releases: c.Tally) -> None:
        self._reader = reader
        self._writer = writer
        self.version = version
        self.server_version = server_version
        self._next_id = next_id
        self._late_releases = late_releases
        self.loop = asyncio.get_running_loop()
        self._pending: Dict[int, "asyncio.Future[Response]"] = {}
        self._alive = True
        self._failure: Callable[[], ClientError] = ConnectionLost
        self._fatal: Optional[ClientError] = None
        self._task = self.loop.create_task(self._read_loop())

    @property
    def alive(self) -> bool:
        return self._alive and not self.loop.is_closed()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def register(self, request_id: int) -> "asyncio.Future[Response]":
        if not self._alive:
            raise self._failure()
        fut = self.loop.create_future()
        self._pending[request_id] = fut
        return fut

    def forget(self, request_id: int) -> None:
        self._pending.pop(request_id, None)

    async def send(self, data: bytes) -> None:
        """Writes one whole frame (a frame is buffered whole or not at all)."""
        if not self._alive:
            raise self._failure()
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError) as e:
            why = "the connection to futu-authd broke: %s" % (getattr(e, "strerror", None) or e)
            self.fail(lambda: ConnectionLost(why))
            raise self._failure() from None

    def fail(self, make_error: Callable[[], ClientError]) -> None:
        if not self._alive:
            return
        self._alive = False
        self._failure = make_error
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(make_error())
        try:
            self._writer.close()
        except Exception:  # the loop may be closing
            pass
        if self._task is not asyncio.current_task(self.loop) and not self._task.done():
            self._task.cancel()

    def _deliver(self, resp: Response) -> None:
        if isinstance(resp, ErrorResponse) and resp.request_id == 0:
            self._fatal = c.fatal_error(resp)
            log.warning("%s", self._fatal)
            return
        fut = self._pending.pop(resp.request_id, None)
        if fut is not None and not fut.done():
            fut.set_result(resp)
        else:
            self.unclaimed(resp)

    def unclaimed(self, resp: Response) -> None:
        """An answer nobody reads: its caller gave up, or it answers a late release. An
        order it allowed was counted but will not be placed: its ticket is released (the
        frame is buffered whole, never waited for; its answer is dropped in turn)."""
        ticket = c.unclaimed_ticket(resp)
        if ticket is None or not self._alive:
            return
        data = request_frame(Release(self._next_id(), ticket))
        self._late_releases.add()
        log.info("releasing an order futu-authd allowed after its caller gave up")
        try:
            self._writer.write(data)
        except Exception as e:  # the transport is closing: the connection is going anyway
            log.warning("the release of an order allowed after its caller gave up was not sent: %s", e)

    async def _read_loop(self) -> None:
        failure: Callable[[], ClientError] = ConnectionLost
        try:
            while True:
                try:
                    prefix = await self._reader.readexactly(4)
                except asyncio.IncompleteReadError as e:
                    fatal = self._fatal
                    if fatal is not None:
                        failure = lambda: ProtocolError(fatal.message)  # noqa: E731
                    elif e.partial:
                        failure = lambda: ConnectionLost("futu-authd closed the connection inside a frame")  # noqa: E731
                    break
                n = frame_length(prefix)
                try:
                    body = await self._reader.readexactly(n)
                except asyncio.IncompleteReadError:
                    failure = lambda: ConnectionLost("futu-authd closed the connection inside a frame")  # noqa: E731
                    break
                self._deliver(decode_response(body, self.version))
        except asyncio.CancelledError:
            failure = lambda: ConnectionLost("the client was closed")  # noqa: E731
        except (ConnectionError, OSError) as e:
            why = "the connection to futu-authd broke: %s" % (getattr(e, "strerror", None) or e)
            failure = lambda: ConnectionLost(why)  # noqa: E731
        except (DecodeError, FrameTooLarge) as e:
            err = c.protocol_failure(e)
            log.warning("%s", err)
            failure = lambda: ProtocolError(err.message)  # noqa: E731
        except Exception as e:  # a reader that dies must still fail its callers
            err = c.protocol_failure(e)
            log.exception("futu-auth-client reader failed")
            failure = lambda: ProtocolError(err.message)  # noqa: E731
        finally:
            self.fail(failure)


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    try:
        n = frame_length(await reader.readexactly(4))
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError:
        raise ConnectionLost("futu-authd closed the connection during Hello") from None


class AsyncAuthClient:
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

    def __init__(self, socket_path: c.PathLike = c.DEFAULT_SOCKET, timeout: float = c.DEFAULT_TIMEOUT,
                 client_name: str = c.DEFAULT_CLIENT_NAME) -> None:
        self.socket_path = os.fspath(socket_path)
        self.timeout = c.check_timeout(timeout)
        self.client_name = client_name
        self._ids = c.RequestIds()
        self._conn: Optional[_AsyncConnection] = None
        self._lock: Optional[asyncio.Lock] = None
        self._lock_loop: Optional[asyncio.AbstractEventLoop] = None
        self._backoff = c.Backoff()
        self._closed = False
        self._late_releases = c.Tally()
        #: How many connections this client has opened (Hello answered).
        self.connections_opened = 0

    def __repr__(self) -> str:
        return "AsyncAuthClient(socket_path=%r, timeout=%r)" % (self.socket_path, self.timeout)

    async def __aenter__(self) -> "AsyncAuthClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- connection ---------------------------------------------------------------------

    @property
    def protocol_version(self) -> Optional[int]:
        """The version the live connection speaks (``None`` without one)."""
        conn = self._conn
        return conn.version if conn is not None and conn.alive else None

    @property
    def server_version(self) -> Optional[str]:
        """The daemon's version, from the live connection's HelloOk."""
        conn = self._conn
        return conn.server_version if conn is not None and conn.alive else None

    @property
    def in_flight(self) -> int:
        """How many requests are waiting for their answers."""
        conn = self._conn
        return conn.in_flight if conn is not None else 0

    @property
    def late_releases(self) -> int:
        """How many orders futu-authd allowed after their caller gave up (the deadline
        passed, or the call was cancelled), and this client therefore released, over its
        life. A late answer is read while the event loop runs."""
        return self._late_releases.value

    async def connect(self, timeout: Optional[float] = None) -> int:
        """Connects now (if not connected) and returns the protocol version spoken;
        raises a :class:`ClientError` when that cannot be done within the timeout."""
        t = self.timeout if timeout is None else c.check_timeout(timeout)
        try:
            conn = await asyncio.wait_for(self._connection(t), t)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(t) from None
        return conn.version

    async def close(self) -> None:
        """Closes the connection; later calls fail closed."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fail(lambda: ConnectionLost("the client was closed"))
            try:
                await asyncio.wait_for(asyncio.shield(conn._task), 1.0)
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
            self._backoff.check(self.socket_path)
            try:
                conn = await self._open(timeout)
            except asyncio.CancelledError:
                self._backoff.failed(DeadlineExceeded(timeout))
                raise
            except ClientError as e:
                self._backoff.failed(e)
                log.debug("futu-authd at %s: %s", self.socket_path, e)
                raise
            self._backoff.succeeded()
            self._conn = conn
            self.connections_opened += 1
            log.debug("connected to futu-authd %s at %s, protocol version %d",
                      conn.server_version, self.socket_path, conn.version)
            return conn

    async def _open(self, timeout: float) -> _AsyncConnection:
        versions = c.hello_versions()
        for i, version in enumerate(versions):
            try:
                reader, writer = await asyncio.open_unix_connection(self.socket_path)
            except OSError as e:
                raise ConnectError(self.socket_path, e) from None
            ok = False
            try:
                try:
                    writer.write(request_frame(Hello(version, self.client_name)))
                    await writer.drain()
                    resp = decode_response(await _read_frame(reader), 1)
                except (DecodeError, FrameTooLarge) as e:
                    raise c.protocol_failure(e) from None
                except (ConnectionError, OSError) as e:
                    raise ConnectionLost("the connection to futu-authd broke during Hello: %s"
                                         % (getattr(e, "strerror", None) or e)) from None
                try:
                    agreed, server_version = c.hello_outcome(resp, version)
                except AuthError as e:
                    if c.is_version_refusal(e) and i + 1 < len(versions):
                        log.debug("futu-authd does not speak version %d: %s", version, e.message)
                        continue
                    raise
                ok = True
                return _AsyncConnection(reader, writer, agreed, server_version, self._ids.next, self._late_releases)
            finally:
                if not ok:
                    writer.close()
        raise ProtocolError("no protocol version left to offer")  # not reached

    # ---- calls --------------------------------------------------------------------------

    async def call(self, make: Callable[[int], Request], timeout: Optional[float] = None) -> Response:
        """Sends the request ``make(request_id)`` builds with a fresh id and returns its
        answer, within the deadline. An Error answer raises :class:`AuthError`, a
        ``forbidden`` deny of an admin request :class:`ForbiddenError`. A request the
        connection's protocol version does not have is not sent: :class:`VersionTooOld`."""
        t = self.timeout if timeout is None else c.check_timeout(timeout)
        req, data = c.build(make, self._ids.next())
        if getattr(req, "request_id", None) is None:
            raise InvalidRequest("Hello is sent by the client itself")
        try:
            resp = await asyncio.wait_for(self._exchange(req, data, t), t)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(t) from None
        return c.answer(req, resp)

    async def _exchange(self, req: Request, data: bytes, timeout: float) -> Response:
        request_id: int = req.request_id  # type: ignore[attr-defined]
        for attempt in (1, 2):
            conn = await self._connection(timeout)
            c.require_version(conn.version, req)
            try:
                fut = conn.register(request_id)
                await conn.send(data)
            except ConnectionLost:
                # Not sent whole: the daemon never read it. Once, on a fresh connection.
                conn.forget(request_id)
                if attempt == 2:
                    raise
                continue
            except BaseException:
                conn.forget(request_id)
                raise
            try:
                return await fut
            except asyncio.CancelledError:
                # Given up (deadline, or cancelled) with the answer perhaps handed over
                # already: then it is nobody's.
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    conn.unclaimed(fut.result())
                raise
            finally:
                conn.forget(request_id)
        raise ProtocolError("not reached")

    async def check(self, token: TokenLike, endpoint: str, order: Union[None, Order, dict] = None,
                    iface: Union[str, Iface] = Iface.REST, dry_run: bool = False,
                    timeout: Optional[float] = None) -> Decision:
        """See :meth:`AuthClient.check <futu_auth_client.AuthClient.check>`; fails closed."""
        try:
            return c.decision_of(await self.call(c.check_maker(token, endpoint, order, iface, dry_run), timeout))
        except ClientError as e:
            return Decision.failed(e)

    async def check_scope(self, token: TokenLike, scope: Union[str, Scope], iface: Union[str, Iface] = Iface.REST,
                          timeout: Optional[float] = None) -> Decision:
        """See :meth:`AuthClient.check_scope <futu_auth_client.AuthClient.check_scope>`; fails closed."""
        try:
            return c.decision_of(await self.call(c.check_scope_maker(token, scope, iface), timeout))
        except ClientError as e:
            return Decision.failed(e)

    async def session_check(self, token: TokenLike, iface: Union[str, Iface], subject: SessionSubject,
                            previous: SessionOutcome, timeout: Optional[float] = None) -> Decision:
        """See :meth:`AuthClient.session_check <futu_auth_client.AuthClient.session_check>`
        (protocol version 4; the equivalent scope check or dry-run check with an older
        daemon); fails closed."""
        t = self.timeout if timeout is None else c.check_timeout(timeout)
        deadline = time.monotonic() + t
        try:
            try:
                resp = await self.call(c.session_check_maker(token, iface, subject, previous), t)
            except VersionTooOld:
                resp = await self.call(c.session_fallback_maker(token, iface, subject), c.time_left(deadline, t))
            return c.decision_of(resp)
        except ClientError as e:
            return Decision.failed(e)

    async def release(self, ticket: int, timeout: Optional[float] = None) -> Released:
        """See :meth:`AuthClient.release <futu_auth_client.AuthClient.release>`."""
        return c.expect(await self.call(lambda rid: Release(rid, ticket), timeout), Released)

    # ---- admin --------------------------------------------------------------------------

    async def gen_key(self, spec: KeySpec, timeout: Optional[float] = None) -> KeyGenerated:
        """Admin: makes a key (see :meth:`AuthClient.gen_key <futu_auth_client.AuthClient.gen_key>`)."""
        return c.expect(await self.call(lambda rid: GenKey(rid, spec), timeout), KeyGenerated)

    async def list_keys(self, paged: bool = True, timeout: Optional[float] = None) -> List[KeyRecord]:
        """Admin: every key record (see :meth:`AuthClient.list_keys <futu_auth_client.AuthClient.list_keys>`)."""
        if not paged:
            return list(c.expect(await self.call(ListKeys, timeout), Keys).keys)
        for tries in range(4):
            keys: List[KeyRecord] = []
            listing = 0
            try:
                while True:
                    page = await self.list_keys_page(listing, len(keys), timeout)
                    if page.offset != len(keys):
                        raise ProtocolError("a page at %d of a listing asked at %d" % (page.offset, len(keys)))
                    keys.extend(page.keys)
                    if len(keys) >= page.total:
                        return keys
                    if not page.keys:
                        raise ProtocolError("an empty page at %d of a listing of %d keys" % (len(keys), page.total))
                    listing = page.listing
            except AuthError as e:
                if e.kind != ErrorKind.LISTING_EXPIRED or tries == 3:
                    raise
        raise ProtocolError("not reached")

    async def list_keys_page(self, listing: int = 0, offset: int = 0, timeout: Optional[float] = None) -> KeysPage:
        """Admin: one page of a listing."""
        return c.expect(await self.call(lambda rid: ListKeysPage(rid, listing, offset), timeout), KeysPage)

    async def revoke_key(self, key_id: str, timeout: Optional[float] = None) -> str:
        """Admin: removes a key; returns its id."""
        return c.expect(await self.call(lambda rid: RevokeKey(rid, key_id), timeout), KeyRevoked).id

    async def bind_key(self, key_id: str, op: BindOp, timeout: Optional[float] = None) -> KeyRecord:
        """Admin: changes a key's machine binding; returns the record after the change."""
        return c.expect(await self.call(lambda rid: BindKey(rid, key_id, op), timeout), KeyBound).record

    async def freeze_key(self, key_id: str, timeout: Optional[float] = None) -> KeyRecord:
        """Admin: refuses the key everywhere until it is bound again."""
        return await self.bind_key(key_id, BindOp.freeze(), timeout)

    async def unbind_key(self, key_id: str, timeout: Optional[float] = None) -> KeyRecord:
        """Admin: makes the key usable on any host (also unfreezes)."""
        return await self.bind_key(key_id, BindOp.clear(), timeout)

    async def reload(self, timeout: Optional[float] = None) -> int:
        """Admin: re-reads keys.json; returns the keys now in service."""
        return c.expect(await self.call(Reload, timeout), Reloaded).keys_loaded

    async def usage(self, key_id: str, timeout: Optional[float] = None) -> Usage:
        """Admin: a key's consumption today."""
        return c.expect(await self.call(lambda rid: UsageRequest(rid, key_id), timeout), Usage)

    async def rotate_key(self, key_id: str, overlap_secs: int = 86_400, timeout: Optional[float] = None) -> KeyRotated:
        """Admin (protocol version 3): a new plaintext for a key, which keeps its id, scopes,
        limits, binding and counters; the old plaintext stays valid for ``overlap_secs``
        (never past the key's ``expires_at``; 0: refused at once). The answer has the new
        plaintext (show it once) and until when the old one is accepted.
        :class:`AuthError` ``unknown_key``; :class:`VersionTooOld` when the daemon speaks
        an older protocol (nothing is sent)."""
        return c.expect(await self.call(lambda rid: RotateKey(rid, key_id, overlap_secs), timeout), KeyRotated)

    async def key_activity(self, key_ids: List[str], timeout: Optional[float] = None) -> List[KeyActivity]:
        """Admin (protocol version 3): when each key was last allowed (to the minute) and
        until when its plaintext before the last rotation is accepted, for the ids that
        keys.json holds, in the order asked (at most 500 a call).
        :class:`VersionTooOld` when the daemon speaks an older protocol (nothing is sent)."""
        ids = tuple(key_ids)
        return list(c.expect(await self.call(lambda rid: KeyActivityRequest(rid, ids), timeout), KeyActivityResponse).keys)

