"""Every call of futu-authd, written once for both clients (sans-IO).

A call is a generator of steps: ``answer = yield from Ask(make)`` asks the daemon the
request ``make(request_id)`` builds and gives its answer, or raises the
:class:`ClientError` that stood in the way; what the generator returns is the call's
result. An :class:`Operation` runs one: it gives each request a fresh id and its frame,
keeps the call's deadline, and turns an Error answer into its exception. :class:`Calls`
is what both clients offer; each of them (client.py with threads, aio.py with asyncio)
adds only ``_run``, which moves an operation's frames to the daemon and its answers back."""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Awaitable, Callable, Generator, Generic, List, Optional, Tuple, Type, TypeVar, Union

from ._connection import (
    DEFAULT_CLIENT_NAME,
    DEFAULT_SOCKET,
    DEFAULT_TIMEOUT,
    Backoff,
    PathLike,
    RequestIds,
    Tally,
    check_timeout,
)
from .codec import FrameTooLarge
from .errors import (
    AuthError,
    ClientError,
    DeadlineExceeded,
    ForbiddenError,
    InvalidRequest,
    ProtocolError,
    VersionTooOld,
)
from .messages import (
    MAX_IMPORT_LEN,
    PROTOCOL_VERSION,
    BindKey,
    Check,
    CheckScope,
    DecisionResponse,
    ErrorResponse,
    ExportKeys,
    GenKey,
    Halt,
    HaltRequest,
    Halts,
    ImportKeys,
    Imported,
    KeyActivity,
    KeyActivityRequest,
    KeyActivityResponse,
    KeyBound,
    KeyGenerated,
    KeyRevoked,
    KeyRotated,
    Keys,
    KeysExport,
    KeysImported,
    KeysPage,
    ListHalts,
    ListKeys,
    ListKeysPage,
    OrderEvent,
    OrderEventDone,
    OrderEventOutcome,
    Release,
    Released,
    Reload,
    Reloaded,
    Request,
    Response,
    Resume,
    RevokeKey,
    RotateKey,
    SessionCheck,
    Usage,
    UsageRequest,
    keys_chunk_end,
    request_frame,
)
from .token import TokenLike
from .types import (
    BindOp,
    Decision,
    ErrorKind,
    Iface,
    KeyRecord,
    KeySpec,
    Order,
    OrderEventKind,
    Reason,
    Scope,
    SessionOutcome,
    SessionSubject,
)

log = logging.getLogger("futu_auth_client")

T = TypeVar("T")
R = TypeVar("R", bound=Response)

#: What a call returns: the result itself from :class:`AuthClient`, a coroutine of it
#: from :class:`AsyncAuthClient`.
MaybeAwaitable = Union[T, Awaitable[T]]

#: The system endpoint a session's key is proved usable with: 1xxx needs no scope, and a
#: dry run consumes nothing.
KEEP_ALIVE = "KeepAlive"


class Ask:
    """One request a call needs answered, built by ``make(request_id)``:
    ``answer = yield from Ask(make)``. Its deadline is the call's timeout from when it is
    asked, or with ``same_deadline`` what is left of the previous request's."""

    __slots__ = ("make", "same_deadline")

    def __init__(self, make: Callable[[int], Request], same_deadline: bool = False) -> None:
        self.make = make
        self.same_deadline = same_deadline

    def __iter__(self) -> Generator["Ask", Response, Response]:
        return (yield self)


Steps = Generator[Ask, Response, T]


def build(make: Callable[[int], Request], request_id: int) -> Tuple[Request, bytes]:
    """The request for ``request_id`` and its frame; :class:`InvalidRequest` when it
    cannot be sent as given."""
    try:
        req = make(request_id)
        frame = request_frame(req)
    except ClientError:
        raise
    except FrameTooLarge as e:
        raise InvalidRequest("the request would not fit in a frame: %s" % e) from None
    except (ValueError, TypeError, UnicodeError) as e:
        raise InvalidRequest("the request cannot be sent: %s" % e) from None
    if getattr(req, "request_id", None) is None:
        raise InvalidRequest("Hello is sent by the client itself")
    return req, frame


def interpret(req: Request, resp: Response) -> Response:
    """The regular answer to ``req``, or the exception its answer stands for: an Error is
    an :class:`AuthError`, a ``forbidden`` deny of an admin request a
    :class:`ForbiddenError`."""
    if isinstance(resp, ErrorResponse):
        raise AuthError(resp.kind, resp.message)
    if (req.ADMIN and isinstance(resp, DecisionResponse) and not resp.decision.allowed
            and resp.decision.reason == Reason.FORBIDDEN):
        raise ForbiddenError(resp.decision.detail)
    return resp


class Operation(Generic[T]):
    """One call under way. Until it is :attr:`done`, :attr:`request` (its frame in
    :attr:`frame`) waits to be sent and answered before :attr:`deadline`; the transport
    reports its answer (:meth:`answer`) or what stood in the way (:meth:`fail`). Then
    :attr:`result` holds what the call returns; an exception the call raises comes out
    of :meth:`answer` or :meth:`fail`."""

    def __init__(self, steps: Steps[T], next_id: Callable[[], int], timeout: float) -> None:
        #: The call's timeout, in seconds.
        self.timeout = timeout
        #: The request to send; ``None`` once the call is done.
        self.request: Optional[Request] = None
        #: The request's frame, in the newest protocol version (:meth:`frame_for` another).
        self.frame = b""
        #: When (``time.monotonic()``) the request's answer is due.
        self.deadline = 0.0
        #: What the call returned, once done.
        self.result: Any = None
        self._steps = steps
        self._next_id = next_id
        self._advance(None, None)

    @property
    def done(self) -> bool:
        """Whether the call has its result."""
        return self.request is None

    def frame_for(self, version: int) -> bytes:
        """:attr:`request`'s frame for a connection of protocol ``version``, which can carry
        it (the connection's pipeline checked that when it registered the request): the
        same bytes in every version but for the fields version 6 added."""
        if version >= PROTOCOL_VERSION:
            return self.frame
        try:
            return request_frame(self.request, version)  # type: ignore[arg-type]
        except (ValueError, TypeError) as e:
            raise InvalidRequest("the request cannot be sent in protocol version %d: %s" % (version, e)) from None

    def answer(self, resp: Response) -> None:
        """The daemon's answer to :attr:`request`."""
        assert self.request is not None
        try:
            resp = interpret(self.request, resp)
        except ClientError as e:
            self._advance(None, e)
        else:
            self._advance(resp, None)

    def fail(self, error: ClientError) -> None:
        """Why :attr:`request` got no answer."""
        self._advance(None, error)

    def _advance(self, resp: Optional[Response], error: Optional[ClientError]) -> None:
        while True:
            self.request = None
            try:
                ask = self._steps.send(resp) if error is None else self._steps.throw(error)
            except StopIteration as stop:
                self.result = stop.value
                return
            resp, error = None, None
            if not ask.same_deadline:
                self.deadline = time.monotonic() + self.timeout
            elif time.monotonic() >= self.deadline:
                error = DeadlineExceeded(self.timeout)
                continue
            try:
                self.request, self.frame = build(ask.make, self._next_id())
                return
            except ClientError as e:
                error = e


# ---- the steps of each call ----------------------------------------------------------

def expect(resp: Response, cls: Type[R]) -> R:
    """``resp``, which must be a ``cls``."""
    if not isinstance(resp, cls):
        raise ProtocolError("unexpected response %r (expected %s)" % (resp, cls.__name__))
    return resp


def _asked(make: Callable[[int], Request], cls: Type[R], then: Callable[[R], Any] = lambda r: r) -> Steps[Any]:
    """One request, whose answer must be a ``cls``; returns ``then(answer)``."""
    return then(expect((yield from Ask(make)), cls))


def _fail_closed(asking: Union[Ask, Steps[Response]]) -> Steps[Decision]:
    """The decision ``asking`` gets, whatever happens: when the daemon gave none, a deny
    ``internal`` with ``error`` set."""
    try:
        return expect((yield from asking), DecisionResponse).decision
    except ClientError as e:
        return Decision.failed(e)


def _order(order: Union[None, Order, dict]) -> Optional[Order]:
    if order is None or isinstance(order, Order):
        return order
    if isinstance(order, dict):
        return Order(**order)
    raise TypeError("an order is an Order (or a dict of its fields), not %s" % type(order).__name__)


def _check(token: TokenLike, endpoint: str, order: Union[None, Order, dict], iface: Union[str, Iface],
           dry_run: bool, acc_id: Optional[int] = None, ref_price: Optional[float] = None) -> Callable[[int], Request]:
    def make(request_id: int) -> Request:
        if not isinstance(endpoint, str):
            raise TypeError("the endpoint is a str (Trd_PlaceOrder, or 2202)")
        if not isinstance(dry_run, bool):
            raise TypeError("dry_run is a bool")
        return Check(request_id, token, Iface.parse(iface), endpoint, _order(order), dry_run, acc_id, ref_price)
    return make


def _order_event(ticket: int, kind: Union[str, OrderEventKind], filled_qty: Optional[float],
                 fill_price: Optional[float]) -> Callable[[int], Request]:
    """An OrderEvent, refused (:class:`InvalidRequest`) before it is sent unless its
    figures fit its kind: a fill has both, finite and above zero; the other kinds neither."""
    def make(request_id: int) -> Request:
        if isinstance(ticket, bool) or not isinstance(ticket, int) or not 0 <= ticket < 1 << 64:
            raise ValueError("a ticket is the u64 of an order's allow, got %r" % (ticket,))
        what = OrderEventKind.parse(kind)
        figures = {"filled_qty": filled_qty, "fill_price": fill_price}
        if what.is_fill:
            for name, value in figures.items():
                if value is None:
                    raise ValueError("an order event %s carries %s" % (what, name))
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise TypeError("%s is a number, not %s" % (name, type(value).__name__))
                if not (math.isfinite(value) and value > 0):
                    raise ValueError("%s %r is not a finite number above zero" % (name, value))
        elif filled_qty is not None or fill_price is not None:
            raise ValueError("an order event %s carries no filled_qty and no fill_price" % what)
        return OrderEvent(request_id, ticket, what, filled_qty, fill_price)
    return make


def _check_scope(token: TokenLike, scope: Union[str, Scope], iface: Union[str, Iface]) -> Callable[[int], Request]:
    return lambda request_id: CheckScope(request_id, token, Iface.parse(iface), Scope.parse(scope))


def _session_check(token: TokenLike, iface: Union[str, Iface], subject: SessionSubject,
                   previous: SessionOutcome) -> Steps[Response]:
    """A SessionCheck; a daemon older than protocol version 4 is asked instead, within
    the same deadline, the CheckScope of the pushes' scope (it counts one filtered push,
    not ``pushes``) or a dry-run check of ``KeepAlive``, which it audits every time."""
    try:
        return (yield from Ask(lambda rid: SessionCheck(rid, token, Iface.parse(iface), subject, previous)))
    except VersionTooOld:
        if subject.kind == SessionSubject.PUSHES:
            instead = _check_scope(token, subject.scope, iface)  # type: ignore[arg-type]
        else:
            instead = _check(token, KEEP_ALIVE, None, iface, True)
        return (yield from Ask(instead, same_deadline=True))


def _list_keys(paged: bool) -> Steps[List[KeyRecord]]:
    """Every key record: in one answer, or page by page (a listing that expires under way
    is started again, up to three times; each page has a deadline of its own)."""
    if not paged:
        return list(expect((yield from Ask(ListKeys)), Keys).keys)
    for tries in range(4):
        keys: List[KeyRecord] = []
        listing = 0
        try:
            while True:
                page = yield from _list_keys_page(listing, len(keys))
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


def _list_keys_page(listing: int, offset: int) -> Steps[KeysPage]:
    return (yield from _asked(lambda rid: ListKeysPage(rid, listing, offset), KeysPage))


def _import_keys(text: str, replace: bool) -> Steps[Imported]:
    """The keys.json ``text`` sent a chunk at a time, each cut at a character boundary
    within :data:`~futu_auth_client.messages.MAX_KEYS_CHUNK` bytes (one chunk, ``last``,
    for a short file), each with a deadline of its own. Each answer must continue the
    import where the chunk ended; the last one must say what the import did."""
    if not isinstance(text, str):
        raise InvalidRequest("the keys.json text is a str, not %s" % type(text).__name__)
    if not isinstance(replace, bool):
        raise InvalidRequest("replace is a bool, not %s" % type(replace).__name__)
    try:
        data = text.encode("utf-8")
    except UnicodeError as e:
        raise InvalidRequest("the keys.json text is not UTF-8: %s" % e) from None
    if len(data) > MAX_IMPORT_LEN:
        raise InvalidRequest("the keys.json text is %d bytes, longer than an import takes (%d MiB)"
                             % (len(data), MAX_IMPORT_LEN >> 20))
    import_, start = 0, 0
    while True:
        end = keys_chunk_end(data, start)
        last = end == len(data)
        chunk = data[start:end].decode("utf-8")
        answer = expect((yield from Ask(_import_chunk(import_, start, chunk, last, replace))), KeysImported)
        if last:
            if answer.done is None:
                raise ProtocolError("the last chunk of an import answered without what it did: %r" % (answer,))
            return answer.done
        if answer.done is not None or answer.next_offset != end:
            raise ProtocolError("a chunk of an import that ends at %d answered with %r" % (end, answer))
        import_, start = answer.import_, end


def _import_chunk(import_: int, offset: int, chunk: str, last: bool, replace: bool) -> Callable[[int], Request]:
    return lambda request_id: ImportKeys(request_id, import_, offset, chunk, last, replace)


def _export_chunk(export: int, offset: int) -> Callable[[int], Request]:
    return lambda request_id: ExportKeys(request_id, export, offset)


def _export_keys() -> Steps[str]:
    """The key store as a keys.json, received a chunk at a time from one read of it, each
    chunk with a deadline of its own. Each chunk must start where the text received ends."""
    parts: List[str] = []
    received = 0
    export = 0
    while True:
        answer = expect((yield from Ask(_export_chunk(export, received))), KeysExport)
        if answer.offset != received:
            raise ProtocolError("a chunk at %d of an export asked at %d" % (answer.offset, received))
        if not answer.chunk and received < answer.total:
            raise ProtocolError("an empty chunk at %d of an export of %d bytes" % (received, answer.total))
        parts.append(answer.chunk)
        received += len(answer.chunk.encode("utf-8"))
        if received >= answer.total:
            return "".join(parts)
        export = answer.export


# ---- the calls ------------------------------------------------------------------------

class Calls:
    """What both clients are: their settings and counters, and every call of futu-authd.
    A subclass moves the bytes: its ``_run(steps, timeout)`` returns the call's result
    (:class:`AuthClient`) or a coroutine of it (:class:`AsyncAuthClient`)."""

    def __init__(self, socket_path: PathLike = DEFAULT_SOCKET, timeout: float = DEFAULT_TIMEOUT,
                 client_name: str = DEFAULT_CLIENT_NAME) -> None:
        #: Where futu-authd listens.
        self.socket_path = os.fspath(socket_path)
        #: A call's deadline unless the call sets its own, in seconds.
        self.timeout = check_timeout(timeout)
        #: The name sent in Hello (for the daemon's log).
        self.client_name = client_name
        #: How many connections this client has opened (Hello answered).
        self.connections_opened = 0
        self._ids = RequestIds()
        self._backoff = Backoff()
        self._late_releases = Tally()
        self._closed = False

    def __repr__(self) -> str:
        return "%s(socket_path=%r, timeout=%r)" % (type(self).__name__, self.socket_path, self.timeout)

    # ---- what a transport provides ------------------------------------------------------

    _conn: Any  # the live connection (with .pipeline and .alive), or None

    def _run(self, steps: Steps[T], timeout: Optional[float]) -> MaybeAwaitable[T]:
        raise NotImplementedError

    def _operation(self, steps: Steps[T], timeout: Optional[float]) -> Operation[T]:
        t = self.timeout if timeout is None else check_timeout(timeout)
        return Operation(steps, self._ids.next, t)

    def _opened(self, conn: Any) -> None:
        self._conn = conn
        self.connections_opened += 1
        log.debug("connected to futu-authd %s at %s, protocol version %d",
                  conn.pipeline.server_version, self.socket_path, conn.pipeline.version)

    # ---- the connection -----------------------------------------------------------------

    @property
    def protocol_version(self) -> Optional[int]:
        """The version the live connection speaks (``None`` without one)."""
        conn = self._conn
        return conn.pipeline.version if conn is not None and conn.alive else None

    @property
    def server_version(self) -> Optional[str]:
        """The daemon's version, from the live connection's HelloOk."""
        conn = self._conn
        return conn.pipeline.server_version if conn is not None and conn.alive else None

    @property
    def in_flight(self) -> int:
        """How many requests are waiting for their answers."""
        conn = self._conn
        return conn.pipeline.in_flight if conn is not None else 0

    @property
    def late_releases(self) -> int:
        """How many orders futu-authd allowed after their caller gave up (the deadline
        passed, or with asyncio the call was cancelled), and this client therefore
        released, over its life. The asyncio client reads a late answer while its event
        loop runs."""
        return self._late_releases.value

    # ---- calls --------------------------------------------------------------------------

    def call(self, make: Callable[[int], Request], timeout: Optional[float] = None) -> MaybeAwaitable[Response]:
        """Sends the request ``make(request_id)`` builds with a fresh id and returns its
        answer, within the deadline. An Error answer raises :class:`AuthError`, a
        ``forbidden`` deny of an admin request :class:`ForbiddenError`. A request the
        connection's protocol version does not have is not sent: :class:`VersionTooOld`."""
        return self._run(_asked(make, Response), timeout)

    def check(self, token: TokenLike, endpoint: str, order: Union[None, Order, dict] = None,
              iface: Union[str, Iface] = Iface.REST, dry_run: bool = False,
              timeout: Optional[float] = None, *, acc_id: Optional[int] = None,
              ref_price: Optional[float] = None) -> MaybeAwaitable[Decision]:
        """May ``token`` call ``endpoint`` (a Futu OpenAPI protocol name such as
        ``Trd_PlaceOrder``, or its id ``"2202"``) with ``order`` (required for order
        writes)? ``dry_run`` decides without consuming a rate slot or daily value.

        Protocol version 6: ``acc_id`` is the broker account the request is for (the
        order's, or the one an account read reads; a key with ``allowed_acc_ids`` refuses
        a request without one, ``account``), ``ref_price`` the gateway's reference price
        (its last quote) for the order's symbol, for a key's price collar (only with an
        order). A daemon older than version 6 cannot be told either: a check with one is
        not sent, and is a deny ``internal`` whose ``error`` is :class:`VersionTooOld`.

        Never raises for the daemon's absence or failure: see the class documentation
        (fail closed)."""
        return self._run(_fail_closed(Ask(_check(token, endpoint, order, iface, dry_run, acc_id, ref_price))),
                         timeout)

    def check_scope(self, token: TokenLike, scope: Union[str, Scope], iface: Union[str, Iface] = Iface.REST,
                    timeout: Optional[float] = None) -> MaybeAwaitable[Decision]:
        """Does ``token`` hold ``scope``? (For filtering WebSocket pushes.) Fails closed
        like :meth:`check`."""
        return self._run(_fail_closed(Ask(_check_scope(token, scope, iface))), timeout)

    def session_check(self, token: TokenLike, iface: Union[str, Iface], subject: SessionSubject,
                      previous: SessionOutcome, timeout: Optional[float] = None) -> MaybeAwaitable[Decision]:
        """A decision a long-lived session (a WebSocket, an MCP session) asks again and
        again (protocol version 4): may its pushes that need a scope go out
        (:meth:`SessionSubject.for_pushes`, decided like :meth:`check_scope`), is its key
        still usable (:meth:`SessionSubject.keep_alive`, decided like a dry-run check of
        ``KeepAlive``)? The daemon audits it only when its outcome differs from
        ``previous``, the outcome the session had before (keep
        ``SessionOutcome.of(decision)`` of each decision the daemon made). A daemon older
        than version 4 is asked the equivalent :meth:`check_scope` or dry-run check
        instead, within the same deadline, which it audits every time. Fails closed like
        :meth:`check`."""
        return self._run(_fail_closed(_session_check(token, iface, subject, previous)), timeout)

    def release(self, ticket: int, timeout: Optional[float] = None) -> MaybeAwaitable[Released]:
        """Gives back the daily value of an allowed order the broker then rejected
        (``ticket`` from the order's allow; once, within 15 minutes). Raises
        :class:`AuthError` (``unknown_ticket``, ``already_released``,
        ``ticket_expired``) or another :class:`ClientError`."""
        return self._run(_asked(lambda rid: Release(rid, ticket), Released), timeout)

    def order_event(self, ticket: int, kind: Union[str, OrderEventKind], filled_qty: Optional[float] = None,
                    fill_price: Optional[float] = None,
                    timeout: Optional[float] = None) -> MaybeAwaitable[OrderEventOutcome]:
        """Protocol version 6: tells the daemon what became of an allowed order, by the
        ``ticket`` of its allow, as the broker reported it, so that its open orders and
        positions are counted. ``kind`` is ``accepted``, ``partially_filled``, ``filled``,
        ``cancelled`` or ``rejected`` (or an :class:`OrderEventKind`). A fill carries
        ``filled_qty``, the quantity the order has filled so far (cumulative, not this
        fill's), and ``fill_price``, their average price, both finite and above zero; the
        other kinds carry neither (:class:`InvalidRequest` otherwise, nothing sent). A
        rejection gives the order's daily value back as :meth:`release` does.

        Returns the :class:`OrderEventOutcome`: ``applied`` (with the value refunded),
        ``duplicate`` (applied before, or the order is finished: sending an event again is
        safe) or ``refused`` (``unknown_ticket``, ``bad_figures``, ``not_supported``: the
        daemon's ledger store does not follow orders), which changed nothing.
        :class:`VersionTooOld` when the daemon speaks an older protocol (nothing is
        sent)."""
        return self._run(_asked(_order_event(ticket, kind, filled_qty, fill_price), OrderEventDone,
                                lambda r: r.outcome), timeout)

    # ---- admin --------------------------------------------------------------------------

    def gen_key(self, spec: KeySpec, timeout: Optional[float] = None) -> MaybeAwaitable[KeyGenerated]:
        """Admin: makes a key. The answer has its plaintext (show it once), its record,
        and the keys file it was stored in. :class:`AuthError` ``duplicate_key``,
        ``invalid_spec`` or ``store``; :class:`ForbiddenError` for a non-administrator."""
        return self._run(_asked(lambda rid: GenKey(rid, spec), KeyGenerated), timeout)

    def list_keys(self, paged: bool = True, timeout: Optional[float] = None) -> MaybeAwaitable[List[KeyRecord]]:
        """Admin: every key record, in keys.json order. Paged (``ListKeysPage``, a frame's
        worth at a time, any number of keys, each page within ``timeout``; a listing that
        expires under way is started again, up to three times), or with ``paged=False``
        in one answer (``ListKeys``: at most some 500 keys)."""
        return self._run(_list_keys(paged), timeout)

    def list_keys_page(self, listing: int = 0, offset: int = 0,
                       timeout: Optional[float] = None) -> MaybeAwaitable[KeysPage]:
        """Admin: one page of a listing (``listing`` 0 starts one; then the ``listing``
        of the previous page and ``offset`` = records received). :class:`AuthError`
        ``listing_expired``: start again with 0."""
        return self._run(_list_keys_page(listing, offset), timeout)

    def revoke_key(self, key_id: str, timeout: Optional[float] = None) -> MaybeAwaitable[str]:
        """Admin: removes a key; returns its id. :class:`AuthError` ``unknown_key``."""
        return self._run(_asked(lambda rid: RevokeKey(rid, key_id), KeyRevoked, lambda r: r.id), timeout)

    def bind_key(self, key_id: str, op: BindOp, timeout: Optional[float] = None) -> MaybeAwaitable[KeyRecord]:
        """Admin: changes a key's machine binding (:class:`BindOp`); returns the record
        after the change."""
        return self._run(_asked(lambda rid: BindKey(rid, key_id, op), KeyBound, lambda r: r.record), timeout)

    def freeze_key(self, key_id: str, timeout: Optional[float] = None) -> MaybeAwaitable[KeyRecord]:
        """Admin: refuses the key everywhere until it is bound again (``BindOp.freeze()``)."""
        return self.bind_key(key_id, BindOp.freeze(), timeout)

    def unbind_key(self, key_id: str, timeout: Optional[float] = None) -> MaybeAwaitable[KeyRecord]:
        """Admin: makes the key usable on any host (``BindOp.clear()``): also unfreezes."""
        return self.bind_key(key_id, BindOp.clear(), timeout)

    def reload(self, timeout: Optional[float] = None) -> MaybeAwaitable[int]:
        """Admin: asks the daemon to re-read keys.json; returns the keys now in service.
        :class:`AuthError` ``store`` when the file does not load (the old keys stay)."""
        return self._run(_asked(Reload, Reloaded, lambda r: r.keys_loaded), timeout)

    def usage(self, key_id: str, timeout: Optional[float] = None) -> MaybeAwaitable[Usage]:
        """Admin: a key's consumption today. :class:`AuthError` ``unknown_key``."""
        return self._run(_asked(lambda rid: UsageRequest(rid, key_id), Usage), timeout)

    def rotate_key(self, key_id: str, overlap_secs: int = 86_400,
                   timeout: Optional[float] = None) -> MaybeAwaitable[KeyRotated]:
        """Admin (protocol version 3): a new plaintext for a key, which keeps its id, scopes,
        limits, binding and counters; the old plaintext stays valid for ``overlap_secs``
        (never past the key's ``expires_at``; 0: refused at once). The answer has the new
        plaintext (show it once) and until when the old one is accepted.
        :class:`AuthError` ``unknown_key``; :class:`VersionTooOld` when the daemon speaks
        an older protocol (nothing is sent)."""
        return self._run(_asked(lambda rid: RotateKey(rid, key_id, overlap_secs), KeyRotated), timeout)

    def key_activity(self, key_ids: List[str], timeout: Optional[float] = None) -> MaybeAwaitable[List[KeyActivity]]:
        """Admin (protocol version 3): when each key was last allowed (to the minute) and
        until when its plaintext before the last rotation is accepted, for the ids that
        keys.json holds, in the order asked (at most 500 a call).
        :class:`VersionTooOld` when the daemon speaks an older protocol (nothing is sent)."""
        ids = tuple(key_ids)
        return self._run(_asked(lambda rid: KeyActivityRequest(rid, ids), KeyActivityResponse,
                                lambda r: list(r.keys)), timeout)

    def halt(self, key_id: Optional[str], reason: str, timeout: Optional[float] = None) -> MaybeAwaitable[List[Halt]]:
        """Admin (protocol version 5): halts trading — orders and unlocks refused
        ``halted`` — for key ``key_id``, or for every key when it is ``None``, for ``reason``
        (one line of at most 200 characters); a halt of what is halted already replaces its
        reason. Returns the halts in force after it. :class:`AuthError` ``unknown_key`` or
        ``invalid_spec`` (a reason the daemon does not take); :class:`VersionTooOld` when the
        daemon speaks an older protocol (nothing is sent)."""
        return self._run(_asked(lambda rid: HaltRequest(rid, key_id, reason), Halts, lambda r: list(r.halts)),
                         timeout)

    def resume(self, key_id: Optional[str], timeout: Optional[float] = None) -> MaybeAwaitable[List[Halt]]:
        """Admin (protocol version 5): lifts the halt of key ``key_id``, or of every key when
        it is ``None``; returns the halts still in force. :class:`AuthError` ``invalid_spec``
        when it is not halted (the message says what is); :class:`VersionTooOld` when the
        daemon speaks an older protocol."""
        return self._run(_asked(lambda rid: Resume(rid, key_id), Halts, lambda r: list(r.halts)), timeout)

    def halts(self, timeout: Optional[float] = None) -> MaybeAwaitable[List[Halt]]:
        """Admin (protocol version 5): the halts of trading in force, in keys.json's order.
        :class:`VersionTooOld` when the daemon speaks an older protocol."""
        return self._run(_asked(ListHalts, Halts, lambda r: list(r.halts)), timeout)

    def import_keys(self, text: str, replace: bool = False,
                    timeout: Optional[float] = None) -> MaybeAwaitable[Imported]:
        """Admin (protocol version 5): loads the keys.json ``text`` into the daemon's key
        store (keys.json, or the database of ``--keys-url``), sent a chunk at a time (at
        most 60 KiB each, cut at a character boundary; each chunk within ``timeout``). The
        daemon checks the whole file as ``futu-authd --check-config`` does before it changes
        anything, then merges it in one change; returns what it did (:class:`Imported`).
        :class:`AuthError` ``duplicate_key`` for an id the store holds already, unless
        ``replace``; ``invalid_spec`` for a file the daemon refuses (or over 64 MiB);
        ``listing_expired`` for an import that was gone before its last chunk;
        :class:`VersionTooOld` when the daemon speaks an older protocol (nothing is sent)."""
        return self._run(_import_keys(text, replace), timeout)

    def export_keys(self, timeout: Optional[float] = None) -> MaybeAwaitable[str]:
        """Admin (protocol version 5): the daemon's key store written as a keys.json (the
        text ``futu-authd --check-config`` accepts), read once and received a chunk at a
        time (each within ``timeout``). :class:`AuthError` ``listing_expired`` for an export
        that was gone before its last chunk; :class:`VersionTooOld` when the daemon speaks
        an older protocol (nothing is sent)."""
        return self._run(_export_keys(), timeout)
