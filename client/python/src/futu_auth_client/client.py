""":class:`AuthClient`: the blocking client, one pipelined connection shared by every
thread of a process.

An order the daemon allowed after its caller gave up (the deadline passed) was counted
but will never be placed: the connection releases its ticket, so that the daemon's ledger
holds exactly the orders the gateway placed, and the audit trail shows the release."""

from __future__ import annotations

import collections
import logging
import os
import select
import socket
import threading
import time
import weakref
from typing import Callable, Deque, Dict, List, Optional, Union

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

__all__ = ["AuthClient"]

log = logging.getLogger("futu_auth_client")

_RECV = 256 * 1024


class _Waiter:
    __slots__ = ("event", "response", "error")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.response: Optional[Response] = None
        self.error: Optional[ClientError] = None


class _Connection:
    """A connection that said Hello: requests are written by the calling threads, answers
    read by a thread of its own and handed to their callers by request id. The releases
    of orders allowed after their caller gave up are written by a thread of their own,
    started when there is one to write, so that the reader never waits to write."""

    def __init__(self, sock: socket.socket, version: int, server_version: str, next_id: Callable[[], int],
                 late_releases: c.Tally) -> None:
        sock.setblocking(False)
        self._sock = sock
        self.version = version
        self.server_version = server_version
        self._next_id = next_id
        self._late_releases = late_releases
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._pending: Dict[int, _Waiter] = {}
        self._alive = True
        self._failure: Callable[[], ClientError] = ConnectionLost
        self._fatal: Optional[ClientError] = None
        # Release frames waiting to be written, and the thread writing them (None while
        # none runs); both under _lock.
        self._releases: Deque[bytes] = collections.deque()
        self._releaser: Optional[threading.Thread] = None
        self._reader = threading.Thread(target=self._read_loop, name="futu-auth-client reader", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        return self._alive

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def register(self, request_id: int) -> _Waiter:
        with self._lock:
            if not self._alive:
                raise self._failure()
            w = _Waiter()
            self._pending[request_id] = w
            return w

    def forget(self, request_id: int) -> None:
        with self._lock:
            self._pending.pop(request_id, None)

    def send(self, data: bytes, deadline: float, timeout: float) -> None:
        """Writes one whole frame before ``deadline``. A frame cut short breaks the
        connection (the stream would be out of step)."""
        if not self._write_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise DeadlineExceeded(timeout)
        try:
            view = memoryview(data)
            sent = 0
            while sent < len(data):
                if not self._alive:
                    raise self._failure()
                try:
                    sent += self._sock.send(view[sent:])
                    continue
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    self.fail(lambda: ConnectionLost("the connection to futu-authd broke: %s" % (e.strerror or e)))
                    raise self._failure() from None
                left = deadline - time.monotonic()
                if left <= 0 or not _wait_writable(self._sock, left):
                    if sent:
                        self.fail(lambda: ConnectionLost("a request was cut short by its deadline"))
                    raise DeadlineExceeded(timeout)
        finally:
            self._write_lock.release()

    def fail(self, make_error: Callable[[], ClientError]) -> None:
        """Marks the connection dead, fails every caller waiting on it, and wakes the
        reader (which closes the socket)."""
        with self._lock:
            if not self._alive:
                return
            self._alive = False
            self._failure = make_error
            pending, self._pending = self._pending, {}
        with self._close_lock:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for w in pending.values():
            w.error = make_error()
            w.event.set()

    def close(self, join: float = 0.0) -> None:
        self.fail(lambda: ConnectionLost("the client was closed"))
        if join and threading.current_thread() is not self._reader:
            self._reader.join(join)

    def _deliver(self, resp: Response) -> None:
        if isinstance(resp, ErrorResponse) and resp.request_id == 0:
            # Answers no request: the daemon is about to close the connection.
            fatal = c.fatal_error(resp)
            self._fatal = fatal
            log.warning("%s", fatal)
            return
        with self._lock:
            # Handed over under the lock: a caller whose deadline passes either takes its
            # waiter out of the table first (and this answer is nobody's) or finds it set.
            w = self._pending.pop(resp.request_id, None)
            if w is not None:
                w.response = resp
                w.event.set()
        if w is None:
            self._unclaimed(resp)

    def _unclaimed(self, resp: Response) -> None:
        """An answer with no caller waiting: the caller gave up, or it answers a late
        release. An order it allowed was counted but will not be placed: its ticket is
        released (the answer to that is dropped here in turn)."""
        ticket = c.unclaimed_ticket(resp)
        if ticket is None:
            return
        data = request_frame(Release(self._next_id(), ticket))
        with self._lock:
            if not self._alive:
                return
            self._late_releases.add()
            self._releases.append(data)
            if self._releaser is None:
                self._releaser = threading.Thread(target=self._release_loop, name="futu-auth-client releaser",
                                                  daemon=True)
                self._releaser.start()
        log.info("releasing an order futu-authd allowed after its caller gave up")

    def _release_loop(self) -> None:
        while True:
            with self._lock:
                if not self._releases or not self._alive:
                    self._releases.clear()
                    self._releaser = None
                    return
                data = self._releases.popleft()
            try:
                self.send(data, time.monotonic() + c.LATE_RELEASE_TIMEOUT, c.LATE_RELEASE_TIMEOUT)
            except ClientError as e:
                log.warning("the release of an order allowed after its caller gave up was not sent: %s", e)

    def _read_loop(self) -> None:
        buf = bytearray()
        failure: Callable[[], ClientError] = ConnectionLost
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        try:
            while True:
                while len(buf) >= 4:
                    n = frame_length(bytes(buf[:4]))
                    if len(buf) < 4 + n:
                        break
                    body = bytes(buf[4:4 + n])
                    del buf[:4 + n]
                    self._deliver(decode_response(body, self.version))
                poller.poll()
                try:
                    chunk = self._sock.recv(_RECV)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    why = "the connection to futu-authd broke: %s" % (e.strerror or e)
                    failure = lambda: ConnectionLost(why)  # noqa: E731
                    break
                if not chunk:
                    fatal = self._fatal
                    if fatal is not None:
                        failure = lambda: ProtocolError(fatal.message)  # noqa: E731
                    elif buf:
                        failure = lambda: ConnectionLost("futu-authd closed the connection inside a frame")  # noqa: E731
                    break
                buf += chunk
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


class AuthClient:
    """A blocking client of futu-authd, safe to share between threads.

    Every thread's requests go over one connection, pipelined, and are matched to their
    answers by request id. The connection is made on the first call (or by
    :meth:`connect`), says Hello with protocol version 4 (an older one with a daemon that
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

    def __init__(self, socket_path: c.PathLike = c.DEFAULT_SOCKET, timeout: float = c.DEFAULT_TIMEOUT,
                 client_name: str = c.DEFAULT_CLIENT_NAME) -> None:
        self.socket_path = os.fspath(socket_path)
        self.timeout = c.check_timeout(timeout)
        self.client_name = client_name
        self._ids = c.RequestIds()
        self._state_lock = threading.Lock()
        self._holder = _Holder()
        self._backoff = c.Backoff()
        self._closed = False
        self._late_releases = c.Tally()
        #: How many connections this client has opened (Hello answered).
        self.connections_opened = 0
        weakref.finalize(self, _finalize, self._holder)

    def __repr__(self) -> str:
        return "AuthClient(socket_path=%r, timeout=%r)" % (self.socket_path, self.timeout)

    def __enter__(self) -> "AuthClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- connection ---------------------------------------------------------------------

    @property
    def protocol_version(self) -> Optional[int]:
        """The version the live connection speaks (``None`` without one)."""
        conn = self._holder.conn
        return conn.version if conn is not None and conn.alive else None

    @property
    def server_version(self) -> Optional[str]:
        """The daemon's version, from the live connection's HelloOk."""
        conn = self._holder.conn
        return conn.server_version if conn is not None and conn.alive else None

    @property
    def in_flight(self) -> int:
        """How many requests are waiting for their answers."""
        conn = self._holder.conn
        return conn.in_flight if conn is not None else 0

    @property
    def late_releases(self) -> int:
        """How many orders futu-authd allowed after their caller gave up (the deadline
        passed), and this client therefore released, over its life."""
        return self._late_releases.value

    def connect(self, timeout: Optional[float] = None) -> int:
        """Connects now (if not connected) and returns the protocol version spoken;
        raises a :class:`ClientError` when that cannot be done within the timeout."""
        t = self.timeout if timeout is None else c.check_timeout(timeout)
        return self._connection(time.monotonic() + t, t).version

    def close(self) -> None:
        """Closes the connection; later calls fail closed."""
        with self._state_lock:
            self._closed = True
            conn, self._holder.conn = self._holder.conn, None
        if conn is not None:
            conn.close(join=1.0)

    def _connection(self, deadline: float, timeout: float) -> _Connection:
        if not self._state_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise DeadlineExceeded(timeout)
        try:
            if self._closed:
                raise ConnectionLost("the client was closed")
            conn = self._holder.conn
            if conn is not None and conn.alive:
                return conn
            self._holder.conn = None
            self._backoff.check(self.socket_path)
            try:
                conn = self._open(deadline, timeout)
            except ClientError as e:
                self._backoff.failed(e)
                log.debug("futu-authd at %s: %s", self.socket_path, e)
                raise
            self._backoff.succeeded()
            self._holder.conn = conn
            self.connections_opened += 1
            log.debug("connected to futu-authd %s at %s, protocol version %d",
                      conn.server_version, self.socket_path, conn.version)
            return conn
        finally:
            self._state_lock.release()

    def _open(self, deadline: float, timeout: float) -> _Connection:
        versions = c.hello_versions()
        for i, version in enumerate(versions):
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
                    sock.sendall(request_frame(Hello(version, self.client_name)))
                    sock.settimeout(max(0.001, deadline - time.monotonic()))
                    n = frame_length(_recv_exact(sock, 4))
                    sock.settimeout(max(0.001, deadline - time.monotonic()))
                    resp = decode_response(_recv_exact(sock, n), 1)
                except socket.timeout:
                    raise DeadlineExceeded(timeout) from None
                except (DecodeError, FrameTooLarge) as e:
                    raise c.protocol_failure(e) from None
                except OSError as e:
                    raise ConnectionLost("the connection to futu-authd broke during Hello: %s"
                                         % (e.strerror or e)) from None
                try:
                    agreed, server_version = c.hello_outcome(resp, version)
                except AuthError as e:
                    if c.is_version_refusal(e) and i + 1 < len(versions):
                        log.debug("futu-authd does not speak version %d: %s", version, e.message)
                        sock.close()
                        continue
                    raise
                conn = _Connection(sock, agreed, server_version, self._ids.next, self._late_releases)
                sock = None  # type: ignore[assignment]
                return conn
            finally:
                if sock is not None:
                    sock.close()
        raise ProtocolError("no protocol version left to offer")  # not reached

    # ---- calls --------------------------------------------------------------------------

    def _next_id(self) -> int:
        return self._ids.next()

    def call(self, make: Callable[[int], Request], timeout: Optional[float] = None) -> Response:
        """Sends the request ``make(request_id)`` builds with a fresh id and returns its
        answer, within the deadline. An Error answer raises :class:`AuthError`, a
        ``forbidden`` deny of an admin request :class:`ForbiddenError`. A request the
        connection's protocol version does not have is not sent: :class:`VersionTooOld`."""
        t = self.timeout if timeout is None else c.check_timeout(timeout)
        deadline = time.monotonic() + t
        req, data = c.build(make, self._next_id())
        request_id = getattr(req, "request_id", None)
        if request_id is None:
            raise InvalidRequest("Hello is sent by the client itself")
        for attempt in (1, 2):
            conn = self._connection(deadline, t)
            c.require_version(conn.version, req)
            try:
                waiter = conn.register(request_id)
                conn.send(data, deadline, t)
            except ConnectionLost:
                # Not sent whole: the daemon never read it. Once, on a fresh connection.
                conn.forget(request_id)
                if attempt == 2:
                    raise
                continue
            except BaseException:
                conn.forget(request_id)
                raise
            break
        if not waiter.event.wait(max(0.0, deadline - time.monotonic())):
            conn.forget(request_id)
            if not waiter.event.is_set():  # else answered at the last moment
                raise DeadlineExceeded(t)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.response is not None
        return c.answer(req, waiter.response)

    def check(self, token: TokenLike, endpoint: str, order: Union[None, Order, dict] = None,
              iface: Union[str, Iface] = Iface.REST, dry_run: bool = False,
              timeout: Optional[float] = None) -> Decision:
        """May ``token`` call ``endpoint`` (a Futu OpenAPI protocol name such as
        ``Trd_PlaceOrder``, or its id ``"2202"``) with ``order`` (required for order
        writes)? ``dry_run`` decides without consuming a rate slot or daily value.

        Never raises for the daemon's absence or failure: see the class documentation
        (fail closed)."""
        try:
            return c.decision_of(self.call(c.check_maker(token, endpoint, order, iface, dry_run), timeout))
        except ClientError as e:
            return Decision.failed(e)

    def check_scope(self, token: TokenLike, scope: Union[str, Scope], iface: Union[str, Iface] = Iface.REST,
                    timeout: Optional[float] = None) -> Decision:
        """Does ``token`` hold ``scope``? (For filtering WebSocket pushes.) Fails closed
        like :meth:`check`."""
        try:
            return c.decision_of(self.call(c.check_scope_maker(token, scope, iface), timeout))
        except ClientError as e:
            return Decision.failed(e)

    def session_check(self, token: TokenLike, iface: Union[str, Iface], subject: SessionSubject,
                      previous: SessionOutcome, timeout: Optional[float] = None) -> Decision:
        """A decision a long-lived session (a WebSocket, an MCP session) asks again and
        again (protocol version 4): may its pushes that need a scope go out
        (:meth:`SessionSubject.for_pushes`, decided like :meth:`check_scope`), is its key
        still usable (:meth:`SessionSubject.keep_alive`, decided like a dry-run check of
        ``KeepAlive``)? The daemon audits it only when its outcome differs from
        ``previous``, the outcome the session had before (keep
        ``SessionOutcome.of(decision)`` of each decision the daemon made). A daemon older
        than version 4 is asked the equivalent :meth:`check_scope` or dry-run check
        instead, which it audits every time. Fails closed like :meth:`check`."""
        t = self.timeout if timeout is None else c.check_timeout(timeout)
        deadline = time.monotonic() + t
        try:
            try:
                resp = self.call(c.session_check_maker(token, iface, subject, previous), t)
            except VersionTooOld:
                resp = self.call(c.session_fallback_maker(token, iface, subject), c.time_left(deadline, t))
            return c.decision_of(resp)
        except ClientError as e:
            return Decision.failed(e)

    def release(self, ticket: int, timeout: Optional[float] = None) -> Released:
        """Gives back the daily value of an allowed order the broker then rejected
        (``ticket`` from the order's allow; once, within 15 minutes). Raises
        :class:`AuthError` (``unknown_ticket``, ``already_released``,
        ``ticket_expired``) or another :class:`ClientError`."""
        return c.expect(self.call(lambda rid: Release(rid, ticket), timeout), Released)

    # ---- admin --------------------------------------------------------------------------

    def gen_key(self, spec: KeySpec, timeout: Optional[float] = None) -> KeyGenerated:
        """Admin: makes a key. The answer has its plaintext (show it once), its record,
        and the keys file it was stored in. :class:`AuthError` ``duplicate_key``,
        ``invalid_spec`` or ``store``; :class:`ForbiddenError` for a non-administrator."""
        return c.expect(self.call(lambda rid: GenKey(rid, spec), timeout), KeyGenerated)

    def list_keys(self, paged: bool = True, timeout: Optional[float] = None) -> List[KeyRecord]:
        """Admin: every key record, in keys.json order. Paged (``ListKeysPage``, a frame's
        worth at a time, any number of keys; a listing that expires under way is started
        again, up to three times), or with ``paged=False`` in one answer (``ListKeys``:
        at most some 500 keys)."""
        if not paged:
            return list(c.expect(self.call(ListKeys, timeout), Keys).keys)
        for tries in range(4):
            keys: List[KeyRecord] = []
            listing = 0
            try:
                while True:
                    page = self.list_keys_page(listing, len(keys), timeout)
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

    def list_keys_page(self, listing: int = 0, offset: int = 0, timeout: Optional[float] = None) -> KeysPage:
        """Admin: one page of a listing (``listing`` 0 starts one; then the ``listing``
        of the previous page and ``offset`` = records received). :class:`AuthError`
        ``listing_expired``: start again with 0."""
        return c.expect(self.call(lambda rid: ListKeysPage(rid, listing, offset), timeout), KeysPage)

    def revoke_key(self, key_id: str, timeout: Optional[float] = None) -> str:
        """Admin: removes a key; returns its id. :class:`AuthError` ``unknown_key``."""
        return c.expect(self.call(lambda rid: RevokeKey(rid, key_id), timeout), KeyRevoked).id

    def bind_key(self, key_id: str, op: BindOp, timeout: Optional[float] = None) -> KeyRecord:
        """Admin: changes a key's machine binding (:class:`BindOp`); returns the record
        after the change."""
        return c.expect(self.call(lambda rid: BindKey(rid, key_id, op), timeout), KeyBound).record

    def freeze_key(self, key_id: str, timeout: Optional[float] = None) -> KeyRecord:
        """Admin: refuses the key everywhere until it is bound again (``BindOp.freeze()``)."""
        return self.bind_key(key_id, BindOp.freeze(), timeout)

    def unbind_key(self, key_id: str, timeout: Optional[float] = None) -> KeyRecord:
        """Admin: makes the key usable on any host (``BindOp.clear()``): also unfreezes."""
        return self.bind_key(key_id, BindOp.clear(), timeout)

    def reload(self, timeout: Optional[float] = None) -> int:
        """Admin: asks the daemon to re-read keys.json; returns the keys now in service.
        :class:`AuthError` ``store`` when the file does not load (the old keys stay)."""
        return c.expect(self.call(Reload, timeout), Reloaded).keys_loaded

    def usage(self, key_id: str, timeout: Optional[float] = None) -> Usage:
        """Admin: a key's consumption today. :class:`AuthError` ``unknown_key``."""
        return c.expect(self.call(lambda rid: UsageRequest(rid, key_id), timeout), Usage)

    def rotate_key(self, key_id: str, overlap_secs: int = 86_400, timeout: Optional[float] = None) -> KeyRotated:
        """Admin (protocol version 3): a new plaintext for a key, which keeps its id, scopes,
        limits, binding and counters; the old plaintext stays valid for ``overlap_secs``
        (never past the key's ``expires_at``; 0: refused at once). The answer has the new
        plaintext (show it once) and until when the old one is accepted.
        :class:`AuthError` ``unknown_key``; :class:`VersionTooOld` when the daemon speaks
        an older protocol (nothing is sent)."""
        return c.expect(self.call(lambda rid: RotateKey(rid, key_id, overlap_secs), timeout), KeyRotated)

    def key_activity(self, key_ids: List[str], timeout: Optional[float] = None) -> List[KeyActivity]:
        """Admin (protocol version 3): when each key was last allowed (to the minute) and
        until when its plaintext before the last rotation is accepted, for the ids that
        keys.json holds, in the order asked (at most 500 a call).
        :class:`VersionTooOld` when the daemon speaks an older protocol (nothing is sent)."""
        ids = tuple(key_ids)
        return list(c.expect(self.call(lambda rid: KeyActivityRequest(rid, ids), timeout), KeyActivityResponse).keys)

