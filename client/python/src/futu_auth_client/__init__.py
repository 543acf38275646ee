"""futu-auth-client for Python: ask futu-authd whether a request may go through.

A gateway front-end keeps one client per process and asks it for every request. Two
clients with the same methods: :class:`AuthClient` (blocking, thread-safe) and
:class:`AsyncAuthClient` (asyncio). Both speak protocol version 6 over futu-authd's Unix
socket (falling back to 5, 4, 3, 2 or 1 with a daemon that speaks only those), pipeline every
caller's requests on one connection, give each call a deadline, and reconnect when the
connection is lost.

**Fail closed.** ``check()`` returns a :class:`Decision` whatever happens; only the daemon
allows. When it gave no decision (not running, too slow, connection lost, an answer that
cannot be read) the decision is a deny with reason ``internal`` and ``error`` set. An
order the daemon allows after its caller gave up is released by the client itself
(``late_releases`` counts them).

::

    from futu_auth_client import AuthClient, Order, token

    auth = AuthClient("/run/futu/auth.sock")
    key = token.from_bearer(request.headers["Authorization"])
    d = auth.check(key, "Trd_PlaceOrder",
                   Order("simulate", "HK", "HK.00700", "SELL", qty=100, price=388.2))
    if d.allowed:
        ...                      # place it; if the broker rejects it: auth.release(d.ticket)
        # (protocol version 6: then tell what became of it by its ticket,
        #  auth.order_event(d.ticket, "filled", filled_qty=100, fill_price=388.2))
    elif d.retry_after_ms is not None:
        ...                      # 429, Retry-After: ceil(d.retry_after_ms / 1000)
    else:
        ...                      # 403 d.reason (503 when d.error is set)

A long-lived session (a WebSocket, an MCP session) asks its repeated decisions with
``session_check()`` (protocol version 4): the daemon audits one only when its outcome
differs from the session's previous one::

    previous = SessionOutcome.deny("scope")          # no quotes pushed yet
    d = auth.session_check(key, "ws", SessionSubject.for_pushes("qot:read", len(batch)), previous)
    if d.from_daemon:
        previous = SessionOutcome.of(d)

Token functions (:mod:`futu_auth_client.token`): :class:`Token` (never shown by
``repr()``), :func:`generate_token`, :func:`digest` (keys.json's ``hash``),
:func:`redact`, :func:`is_token_shaped`, :func:`from_bearer`, :func:`from_query`. The wire
format is in :mod:`futu_auth_client.codec` and :mod:`futu_auth_client.messages`.
"""

import logging as _logging

from . import token
from ._connection import DEFAULT_SOCKET, DEFAULT_TIMEOUT, MAX_BACKOFF
from .aio import AsyncAuthClient
from .client import AuthClient
from .errors import (
    AuthError,
    ClientError,
    ConnectError,
    ConnectionLost,
    DeadlineExceeded,
    ForbiddenError,
    InvalidRequest,
    ProtocolError,
    UnavailableError,
    VersionTooOld,
)
from .messages import (
    PROTOCOL_VERSION,
    PROTOCOL_VERSIONS,
    Halt,
    Imported,
    KeyActivity,
    KeyGenerated,
    KeyRotated,
    KeysPage,
    OrderEventOutcome,
    Released,
    PositionUsage,
    Usage,
)
from .token import (
    KeyHash,
    Token,
    digest,
    from_bearer,
    from_query,
    generate_token,
    is_token_shaped,
    redact,
)
from .types import (
    BindOp,
    DailyValueFigures,
    Decision,
    DuplicateFigures,
    ErrorKind,
    HoursFigures,
    Iface,
    KeyRecord,
    KeySpec,
    LimitFigures,
    Limits,
    Market,
    OpenOrdersFigures,
    Order,
    OrderEventKind,
    OrderEventRefusal,
    OrderValueFigures,
    PositionFigures,
    PriceCollarFigures,
    RateFigures,
    Reason,
    Scope,
    SessionOutcome,
    SessionSubject,
    TrdEnv,
    TrdSide,
)

__version__ = "0.1.0"

# The package logs on "futu_auth_client" (never a token); nothing shows unless the
# application configures logging.
_logging.getLogger("futu_auth_client").addHandler(_logging.NullHandler())

__all__ = [
    "DEFAULT_SOCKET",
    "DEFAULT_TIMEOUT",
    "MAX_BACKOFF",
    "PROTOCOL_VERSION",
    "PROTOCOL_VERSIONS",
    "AsyncAuthClient",
    "AuthClient",
    "AuthError",
    "BindOp",
    "ClientError",
    "ConnectError",
    "ConnectionLost",
    "DailyValueFigures",
    "DeadlineExceeded",
    "Decision",
    "DuplicateFigures",
    "ErrorKind",
    "ForbiddenError",
    "Halt",
    "HoursFigures",
    "Iface",
    "Imported",
    "InvalidRequest",
    "KeyActivity",
    "KeyGenerated",
    "KeyHash",
    "KeyRecord",
    "KeyRotated",
    "KeySpec",
    "KeysPage",
    "LimitFigures",
    "Limits",
    "Market",
    "OpenOrdersFigures",
    "Order",
    "OrderEventKind",
    "OrderEventOutcome",
    "OrderEventRefusal",
    "OrderValueFigures",
    "PositionFigures",
    "PriceCollarFigures",
    "ProtocolError",
    "RateFigures",
    "Reason",
    "Released",
    "Scope",
    "SessionOutcome",
    "SessionSubject",
    "Token",
    "TrdEnv",
    "TrdSide",
    "UnavailableError",
    "PositionUsage",
    "Usage",
    "VersionTooOld",
    "digest",
    "from_bearer",
    "from_query",
    "generate_token",
    "is_token_shaped",
    "redact",
    "token",
]
