"""A connection to futu-authd without its socket (sans-IO): the Hello that agrees on a
protocol version, the requests in flight matched to the answers that come back, what
the callers are told when the connection fails, the release of an order nobody waits for
any more, and the backoff between connection attempts. The blocking client (client.py)
and the asyncio client (aio.py) only move its bytes."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Protocol, Union

from .codec import DecodeError, FrameTooLarge, frame_length
from .errors import (
    AuthError,
    ClientError,
    ConnectionLost,
    DeadlineExceeded,
    ProtocolError,
    UnavailableError,
    VersionTooOld,
)
from .messages import (
    PROTOCOL_VERSIONS,
    DecisionResponse,
    ErrorResponse,
    Hello,
    HelloOk,
    Release,
    Request,
    Response,
    decode_response,
    request_frame,
)
from .types import ErrorKind

log = logging.getLogger("futu_auth_client")

#: Where futu-authd listens unless told otherwise.
DEFAULT_SOCKET = "/run/futu/auth.sock"
#: The default deadline of a call, connecting included, in seconds (the Rust client's 50 ms).
DEFAULT_TIMEOUT = 0.05
#: The name sent in Hello (for the daemon's log).
DEFAULT_CLIENT_NAME = "futu-auth-client (python)"
#: The first wait after a failed connection attempt; doubled after each failure.
FIRST_BACKOFF = 0.01
#: The longest wait between connection attempts while the daemon is away.
MAX_BACKOFF = 1.0
#: How long the release of an order allowed after its caller gave up may wait to be
#: written (behind other callers' requests) before it is given up.
LATE_RELEASE_TIMEOUT = 1.0

PathLike = Union[str, "os.PathLike[str]"]


def check_timeout(timeout: float) -> float:
    """``timeout`` as a float; :class:`ValueError` unless it is a number of seconds above 0."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError("a timeout is a number of seconds above 0, got %r" % (timeout,))
    return float(timeout)


class Backoff:
    """When the next connection attempt may be made, after failures."""

    __slots__ = ("retry_at", "delay", "last_error")

    def __init__(self) -> None:
        self.retry_at: Optional[float] = None
        self.delay = FIRST_BACKOFF
        self.last_error: Optional[ClientError] = None

    @contextlib.contextmanager
    def attempt(self, path: str, timeout: float) -> Iterator[None]:
        """One connection attempt, the body of the ``with``: raises
        :class:`UnavailableError` instead while the backoff lasts. An attempt that fails
        starts (or doubles) the backoff; one cut short (a cancelled coroutine) counts as
        one that ran out of time."""
        if self.retry_at is not None:
            wait = self.retry_at - time.monotonic()
            if wait > 0:
                raise UnavailableError(path, wait, self.last_error)
        try:
            yield
        except ClientError as e:
            self._failed(e)
            log.debug("futu-authd at %s: %s", path, e)
            raise
        except BaseException:
            self._failed(DeadlineExceeded(timeout))
            raise
        self.retry_at = None
        self.delay = FIRST_BACKOFF
        self.last_error = None

    def _failed(self, error: ClientError) -> None:
        self.retry_at = time.monotonic() + self.delay
        self.delay = min(self.delay * 2, MAX_BACKOFF)
        self.last_error = error


class RequestIds:
    """Fresh request ids, for a client's calls and its connections' own releases (an
    object of its own: a connection that holds it does not keep its client alive)."""

    __slots__ = ("_ids", "_lock")

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def next(self) -> int:
        """The next id."""
        with self._lock:
            return next(self._ids)


class Tally:
    """A count several threads add to (the late releases of a client's connections)."""

    __slots__ = ("_n", "_lock")

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        """Counts one more."""
        with self._lock:
            self._n += 1

    @property
    def value(self) -> int:
        """The count so far."""
        return self._n


# ---- what went wrong ------------------------------------------------------------------

def protocol_failure(e: BaseException) -> ProtocolError:
    """A frame that could not be read."""
    if isinstance(e, FrameTooLarge):
        return ProtocolError("futu-authd sent a frame over the limit: %s" % e)
    if isinstance(e, DecodeError):
        return ProtocolError("an answer from futu-authd could not be read: %s" % e)
    return ProtocolError("an answer from futu-authd could not be read: %s: %s" % (type(e).__name__, e))


def connection_broke(e: OSError, during: str = "") -> ConnectionLost:
    """A socket's error, as the callers are told it."""
    return ConnectionLost("the connection to futu-authd broke%s: %s" % (during, getattr(e, "strerror", None) or e))


def failure_of(error: BaseException) -> Callable[[], ClientError]:
    """What the callers waiting on a connection are told when its reader stopped on
    ``error`` (called where it was caught; logged)."""
    if isinstance(error, ProtocolError):
        log.warning("%s", error)
        message = error.message
        return lambda: ProtocolError(message)
    if isinstance(error, OSError):
        message = connection_broke(error).message
        return lambda: ConnectionLost(message)
    log.exception("futu-auth-client reader failed")  # a reader that dies must still fail its callers
    message = protocol_failure(error).message
    return lambda: ProtocolError(message)


def require_version(spoken: int, req: Request) -> None:
    """Raises :class:`VersionTooOld` when the connection speaks a protocol older than the
    first that can carry ``req`` (:meth:`Request.needs`: the first that has the request,
    or a later one for a value only that one has, such as a Check's ``acc_id``): the
    daemon would read it as a malformed frame and close the connection, so it is not
    sent."""
    needs, name = req.needs()
    if spoken < needs:
        raise VersionTooOld(name, needs, spoken)


# ---- Hello ----------------------------------------------------------------------------

class Handshake:
    """Hello, and the protocol version a connection speaks. Versions are offered newest
    first; a daemon that refuses one (Error ``version``) closes the connection, and the
    next older one is offered on a new connection. A transport sends :attr:`offer`, reads
    4 bytes, then :meth:`length` bytes, and hands those to :meth:`answer`."""

    def __init__(self, client_name: str) -> None:
        self._client_name = client_name
        self._versions = sorted(PROTOCOL_VERSIONS, reverse=True)
        #: The version offered by :attr:`offer`.
        self.offered = self._versions[0]
        #: The version agreed, once :meth:`answer` said so.
        self.version = 0
        #: The daemon's version, from its HelloOk.
        self.server_version = ""

    @property
    def offer(self) -> bytes:
        """The frame of the Hello to send on a new connection."""
        return request_frame(Hello(self.offered, self._client_name))

    @staticmethod
    def length(prefix: bytes) -> int:
        """The length of the answer's body, from the 4 bytes before it."""
        try:
            return frame_length(prefix)
        except (DecodeError, FrameTooLarge) as e:
            raise protocol_failure(e) from None

    def answer(self, body: bytes) -> bool:
        """Reads the answer to :attr:`offer`: ``True`` when the connection speaks
        :attr:`version`; ``False`` when the daemon refused it and closes the connection,
        which a new connection then offers again (the next older version). Raises
        :class:`ProtocolError` for anything but a futu-authd, :class:`AuthError` for
        another Error."""
        try:
            resp = decode_response(body, 1)  # HelloOk and Error read alike in every version
        except (DecodeError, FrameTooLarge) as e:
            raise protocol_failure(e) from None
        if isinstance(resp, HelloOk):
            if resp.protocol_version <= self.offered and resp.protocol_version in PROTOCOL_VERSIONS:
                self.version, self.server_version = resp.protocol_version, resp.server_version
                return True
            raise ProtocolError("futu-authd answered a Hello offering version %d with version %d: not a futu-authd"
                                " this client can talk to" % (self.offered, resp.protocol_version))
        if not isinstance(resp, ErrorResponse):
            raise ProtocolError("unexpected answer to Hello: %r" % (resp,))
        older = [v for v in self._versions if v < self.offered]
        if resp.kind != ErrorKind.VERSION or not older:
            raise AuthError(resp.kind, resp.message)
        log.debug("futu-authd does not speak version %d: %s", self.offered, resp.message)
        self.offered = older[0]
        return False


# ---- after Hello ----------------------------------------------------------------------

class Waiter(Protocol):
    """Where a caller waits for its answer: a :class:`concurrent.futures.Future` (a
    thread) or an :class:`asyncio.Future` (a coroutine)."""

    def done(self) -> bool: ...
    def set_result(self, result: Response) -> None: ...
    def set_exception(self, exception: BaseException) -> None: ...


class Pipeline:
    """A connection's requests in flight, after Hello: each registered with its
    :class:`Waiter`, each answer handed to the waiter of its request id (the daemon
    answers in order; matching by id makes it safe either way). Bytes read go in through
    :meth:`receive`; when the connection ends, :meth:`fail` tells every waiter why.

    An answer nobody waits for (its caller gave up: the deadline passed, or it was
    cancelled) that allowed an order with a ticket was counted by the daemon but will
    not be placed: the pipeline hands back the frame of a ``Release`` of that ticket for
    the transport to write, without waiting for its answer (dropped in turn when it
    comes). It touches no socket; a lock makes it safe to share between threads."""

    def __init__(self, hello: Handshake, next_id: Callable[[], int], late_releases: Tally) -> None:
        #: The protocol version the connection speaks.
        self.version = hello.version
        #: The daemon's version, from its HelloOk.
        self.server_version = hello.server_version
        self._next_id = next_id
        self._late_releases = late_releases
        self._lock = threading.Lock()
        self._waiting: Dict[int, Waiter] = {}
        self._buffer = bytearray()
        #: What the callers are told once the connection failed; ``None`` while it lives.
        self.failure: Optional[Callable[[], ClientError]] = None
        # An Error answering no request (id 0): the daemon is about to close the connection.
        self._fatal: Optional[ProtocolError] = None

    @property
    def alive(self) -> bool:
        """Whether the connection has not failed."""
        return self.failure is None

    @property
    def in_flight(self) -> int:
        """How many requests wait for their answers."""
        return len(self._waiting)

    def register(self, req: Request, waiter: Waiter) -> None:
        """``waiter`` waits for the answer to ``req``, which is about to be written. Raises
        :class:`VersionTooOld` for a request the connection's version lacks, or the error
        the connection failed with."""
        require_version(self.version, req)
        with self._lock:
            if self.failure is not None:
                raise self.failure()
            self._waiting[req.request_id] = waiter  # type: ignore[attr-defined]

    def forget(self, request_id: int) -> bool:
        """Stops waiting for an answer (sent or not); ``True`` when it had not come yet
        (when it does, it is nobody's)."""
        with self._lock:
            return self._waiting.pop(request_id, None) is not None

    def receive(self, data: bytes) -> List[bytes]:
        """Bytes read from the daemon: each whole answer in them goes to its waiter.
        Returns the frames of the releases to write; :class:`ProtocolError` for bytes that
        are not the protocol."""
        self._buffer += data
        releases = []
        while len(self._buffer) >= 4:
            try:
                n = frame_length(bytes(self._buffer[:4]))
                if len(self._buffer) < 4 + n:
                    break
                resp = decode_response(bytes(self._buffer[4:4 + n]), self.version)
            except (DecodeError, FrameTooLarge) as e:
                raise protocol_failure(e) from None
            del self._buffer[:4 + n]
            release = self._deliver(resp)
            if release is not None:
                releases.append(release)
        return releases

    def _deliver(self, resp: Response) -> Optional[bytes]:
        if isinstance(resp, ErrorResponse) and resp.request_id == 0:
            self._fatal = ProtocolError("futu-authd closed the connection with an error (%s): %s"
                                        % (resp.kind.value, resp.message))
            log.warning("%s", self._fatal)
            return None
        with self._lock:
            # Handed over under the lock: a caller whose deadline passes either takes its
            # waiter out first (and this answer is nobody's) or finds it answered.
            waiter = self._waiting.pop(resp.request_id, None)  # type: ignore[attr-defined]
            if waiter is not None and not waiter.done():
                waiter.set_result(resp)
                return None
        return self.unclaimed(resp)

    def unclaimed(self, resp: Response) -> Optional[bytes]:
        """An answer nobody reads: the frame of the ``Release`` of the order it allowed
        (counted in the client's late releases), or ``None``."""
        if not (isinstance(resp, DecisionResponse) and resp.decision.allowed and resp.decision.ticket is not None):
            return None
        if not self.alive:
            return None
        self._late_releases.add()
        log.info("releasing an order futu-authd allowed after its caller gave up")
        return request_frame(Release(self._next_id(), resp.decision.ticket), self.version)

    def closed(self) -> Callable[[], ClientError]:
        """What the callers still waiting are told when the daemon closed the connection."""
        fatal = self._fatal
        if fatal is not None:
            return lambda: ProtocolError(fatal.message)
        if self._buffer:
            return lambda: ConnectionLost("futu-authd closed the connection inside a frame")
        return ConnectionLost

    def fail(self, make_error: Callable[[], ClientError]) -> bool:
        """Ends the connection: every waiter is told ``make_error()``, and so is every
        later :meth:`register`. ``False`` when it had ended already."""
        with self._lock:
            if self.failure is not None:
                return False
            self.failure = make_error
            waiting, self._waiting = self._waiting, {}
        for waiter in waiting.values():
            if not waiter.done():
                waiter.set_exception(make_error())
        return True
