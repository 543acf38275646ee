"""What the blocking and the asyncio client share: settings, the backoff between
connection attempts, building requests and reading their answers, and what becomes of an
answer nobody reads."""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any, Callable, Optional, Tuple, Type, TypeVar, Union

from .codec import DecodeError, FrameTooLarge
from .errors import (
    AuthError,
    ClientError,
    DeadlineExceeded,
    ForbiddenError,
    InvalidRequest,
    ProtocolError,
    UnavailableError,
    VersionTooOld,
)
from .messages import (
    PROTOCOL_VERSIONS,
    Check,
    CheckScope,
    DecisionResponse,
    ErrorResponse,
    HelloOk,
    Request,
    Response,
    SessionCheck,
    request_frame,
)
from .types import Decision, ErrorKind, Iface, Order, Reason, Scope, SessionOutcome, SessionSubject

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
#: The system endpoint a session's key is proved usable with: 1xxx needs no scope, and a
#: dry run consumes nothing.
KEEP_ALIVE = "KeepAlive"

R = TypeVar("R", bound=Response)

PathLike = Union[str, "os.PathLike[str]"]


def check_timeout(timeout: float) -> float:
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

    def check(self, path: str) -> None:
        """Raises :class:`UnavailableError` while the backoff lasts."""
        if self.retry_at is not None:
            wait = self.retry_at - time.monotonic()
            if wait > 0:
                raise UnavailableError(path, wait, self.last_error)

    def failed(self, error: ClientError) -> None:
        self.retry_at = time.monotonic() + self.delay
        self.delay = min(self.delay * 2, MAX_BACKOFF)
        self.last_error = error

    def succeeded(self) -> None:
        self.retry_at = None
        self.delay = FIRST_BACKOFF
        self.last_error = None


def hello_versions() -> Tuple[int, ...]:
    """The versions to offer, newest first."""
    return tuple(sorted(PROTOCOL_VERSIONS, reverse=True))


def hello_outcome(resp: Response, offered: int) -> Tuple[int, str]:
    """The version a connection speaks, from the answer to a Hello offering ``offered``;
    :class:`AuthError` for an Error (kind ``version``: offer an older one)."""
    if isinstance(resp, HelloOk):
        if resp.protocol_version <= offered and resp.protocol_version in PROTOCOL_VERSIONS:
            return resp.protocol_version, resp.server_version
        raise ProtocolError(
            "futu-authd answered a Hello offering version %d with version %d: not a futu-authd this client can talk to"
            % (offered, resp.protocol_version)
        )
    if isinstance(resp, ErrorResponse):
        raise AuthError(resp.kind, resp.message)
    raise ProtocolError("unexpected answer to Hello: %r" % (resp,))


def is_version_refusal(e: ClientError) -> bool:
    return isinstance(e, AuthError) and e.kind == ErrorKind.VERSION


def build(make: Callable[[int], Request], request_id: int) -> Tuple[Request, bytes]:
    """The request for ``request_id`` and its frame; :class:`InvalidRequest` when it
    cannot be sent as given."""
    try:
        req = make(request_id)
        return req, request_frame(req)
    except ClientError:
        raise
    except FrameTooLarge as e:
        raise InvalidRequest("the request would not fit in a frame: %s" % e) from None
    except (ValueError, TypeError, UnicodeError) as e:
        raise InvalidRequest("the request cannot be sent: %s" % e) from None


def answer(req: Request, resp: Response) -> Response:
    """The regular answer to ``req``, or the exception its answer stands for: an Error is
    an :class:`AuthError`, a ``forbidden`` deny of an admin request a
    :class:`ForbiddenError`."""
    if isinstance(resp, ErrorResponse):
        raise AuthError(resp.kind, resp.message)
    if (req.ADMIN and isinstance(resp, DecisionResponse) and not resp.decision.allowed
            and resp.decision.reason == Reason.FORBIDDEN):
        raise ForbiddenError(resp.decision.detail)
    return resp


def expect(resp: Response, cls: Type[R]) -> R:
    if not isinstance(resp, cls):
        raise ProtocolError("unexpected response %r (expected %s)" % (resp, cls.__name__))
    return resp


def decision_of(resp: Response) -> Decision:
    return expect(resp, DecisionResponse).decision


def make_order(order: Union[None, Order, dict]) -> Optional[Order]:
    if order is None or isinstance(order, Order):
        return order
    if isinstance(order, dict):
        return Order(**order)
    raise TypeError("an order is an Order (or a dict of its fields), not %s" % type(order).__name__)


def check_maker(token: Any, endpoint: str, order: Any, iface: Union[str, Iface], dry_run: bool
                ) -> Callable[[int], Request]:
    def make(request_id: int) -> Request:
        if not isinstance(endpoint, str):
            raise TypeError("the endpoint is a str (Trd_PlaceOrder, or 2202)")
        if not isinstance(dry_run, bool):
            raise TypeError("dry_run is a bool")
        return Check(request_id, token, Iface.parse(iface), endpoint, make_order(order), dry_run)
    return make


def check_scope_maker(token: Any, scope: Union[str, Scope], iface: Union[str, Iface]) -> Callable[[int], Request]:
    def make(request_id: int) -> Request:
        return CheckScope(request_id, token, Iface.parse(iface), Scope.parse(scope))
    return make


def session_check_maker(token: Any, iface: Union[str, Iface], subject: SessionSubject,
                        previous: SessionOutcome) -> Callable[[int], Request]:
    def make(request_id: int) -> Request:
        return SessionCheck(request_id, token, Iface.parse(iface), subject, previous)
    return make


def session_fallback_maker(token: Any, iface: Union[str, Iface], subject: SessionSubject) -> Callable[[int], Request]:
    """What a daemon older than protocol version 4 is asked instead of a SessionCheck: the
    CheckScope of the pushes' scope (it counts one filtered push, not ``pushes``), or a
    dry-run check of ``KeepAlive``. It audits them every time."""
    if subject.kind == SessionSubject.PUSHES:
        return check_scope_maker(token, subject.scope, iface)  # type: ignore[arg-type]
    return check_maker(token, KEEP_ALIVE, None, iface, True)


def time_left(deadline: float, timeout: float) -> float:
    """Seconds until ``deadline``; :class:`DeadlineExceeded` (of a call of ``timeout``)
    when it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded(timeout)
    return left


def unclaimed_ticket(resp: Response) -> Optional[int]:
    """For an answer nobody reads (its caller gave up: the deadline passed, or it was
    cancelled): the ticket of the order it allowed, which was counted but will not be
    placed and must be released; ``None`` for any other answer."""
    if isinstance(resp, DecisionResponse) and resp.decision.allowed and resp.decision.ticket is not None:
        return resp.decision.ticket
    return None


class RequestIds:
    """Fresh request ids, for a client's calls and its connections' own releases (an
    object of its own: a connection that holds it does not keep its client alive)."""

    __slots__ = ("_ids", "_lock")

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            return next(self._ids)


class Tally:
    """A count several threads add to (the late releases of a client's connections)."""

    __slots__ = ("_n", "_lock")

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self._n += 1

    @property
    def value(self) -> int:
        return self._n


def protocol_failure(e: BaseException) -> ProtocolError:
    """A frame that could not be read."""
    if isinstance(e, FrameTooLarge):
        return ProtocolError("futu-authd sent a frame over the limit: %s" % e)
    if isinstance(e, DecodeError):
        return ProtocolError("an answer from futu-authd could not be read: %s" % e)
    return ProtocolError("an answer from futu-authd could not be read: %s: %s" % (type(e).__name__, e))


def fatal_error(resp: ErrorResponse) -> ProtocolError:
    """An Error answering no request (request id 0): the daemon closes the connection."""
    return ProtocolError("futu-authd closed the connection with an error (%s): %s" % (resp.kind.value, resp.message))


def require_version(spoken: int, req: Request) -> None:
    """Raises :class:`VersionTooOld` when the connection speaks a protocol older than the
    first that has ``req``: the daemon would read it as a malformed frame and close the
    connection, so it is not sent."""
    if spoken < req.SINCE:
        name = type(req).__name__
        if name.endswith("Request"):
            name = name[:-len("Request")]  # KeyActivityRequest is Request::KeyActivity
        raise VersionTooOld(name, req.SINCE, spoken)
