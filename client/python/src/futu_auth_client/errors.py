"""What can go wrong when asking futu-authd. Every one of these means: no decision, so
refuse the request (fail closed).

``check()`` and ``check_scope()`` do not raise them: they return a deny whose ``error``
is one. The other calls (``release()`` and the admin requests) raise them.

::

    ClientError
    ├── ConnectError        the socket could not be connected (not running, permission denied)
    ├── UnavailableError    a recent connection attempt failed; the next after a backoff
    ├── DeadlineExceeded    no answer within the call's timeout (also a builtin TimeoutError)
    ├── ConnectionLost      the connection broke before the answer came (also a ConnectionError)
    ├── ProtocolError       bytes that are not the protocol, or an answer that does not fit
    │   └── VersionTooOld   the daemon speaks a protocol version without the request (not sent)
    ├── InvalidRequest      the request cannot be sent as given (also a ValueError)
    ├── AuthError           the daemon answered with an Error: ``kind`` is its ErrorKind
    └── ForbiddenError      an admin request from a peer that is not an administrator
"""

from __future__ import annotations

import errno
from typing import Optional

from .token import redact
from .types import ErrorKind

__all__ = [
    "AuthError",
    "ClientError",
    "ConnectError",
    "ConnectionLost",
    "DeadlineExceeded",
    "ForbiddenError",
    "InvalidRequest",
    "ProtocolError",
    "UnavailableError",
    "VersionTooOld",
]


class ClientError(Exception):
    """A call that got no decision or no regular answer. Treat it as a deny."""

    def __init__(self, message: str) -> None:
        # Whatever text reaches an exception is redacted: a token never shows in one.
        super().__init__(redact(message))

    @property
    def message(self) -> str:
        """The one-line description."""
        return str(self.args[0]) if self.args else ""


    @property
    def is_not_running(self) -> bool:
        """Whether the daemon was not there at all (socket missing or nobody listening),
        as opposed to refusing or failing."""
        return False


class ConnectError(ClientError):
    """The socket could not be connected: the daemon is not running, or this process may
    not reach it (``EACCES``: not in the gateway group)."""

    def __init__(self, path: str, error: OSError) -> None:
        self.path = str(path)
        self.errno: Optional[int] = error.errno
        super().__init__("cannot connect to futu-authd at %s: %s" % (self.path, error.strerror or error))

    @property
    def is_not_running(self) -> bool:
        return self.errno in (errno.ENOENT, errno.ECONNREFUSED)


class UnavailableError(ClientError):
    """A recent connection attempt failed; the next one is made after ``retry_in``
    seconds (10 ms doubling to 1 s while the daemon stays away)."""

    def __init__(self, path: str, retry_in: float, cause: Optional[ClientError] = None) -> None:
        self.path = str(path)
        self.retry_in = retry_in
        self.cause = cause
        super().__init__("futu-authd at %s is unavailable (%s); retrying in %.3f s"
                         % (self.path, cause.message if cause else "connection failed", retry_in))

    @property
    def is_not_running(self) -> bool:
        return self.cause is None or self.cause.is_not_running


class DeadlineExceeded(ClientError, TimeoutError):
    """No answer within the call's timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__("futu-authd did not answer within %.3f s" % timeout)


class ConnectionLost(ClientError, ConnectionError):
    """The connection broke before the answer came."""

    def __init__(self, message: str = "the connection to futu-authd was closed") -> None:
        super().__init__(message)


class ProtocolError(ClientError):
    """Bytes that are not the protocol (an answer that cannot be decoded, a frame over
    64 KiB), or an answer that does not fit the request."""


class VersionTooOld(ProtocolError):
    """The connection speaks a protocol version without this request (``request``, which
    ``needs`` a version the daemon, speaking ``speaks``, does not have): it was not sent,
    since the daemon would read it as a malformed frame and close the connection.
    Upgrade futu-authd."""

    def __init__(self, request: str, needs: int, speaks: int) -> None:
        self.request = request
        self.needs = needs
        self.speaks = speaks
        super().__init__("%s needs protocol version %d; this futu-authd speaks %d (upgrade futu-authd)"
                         % (request, needs, speaks))


class InvalidRequest(ClientError, ValueError):
    """The request cannot be sent as given (a value that breaks a rule of the protocol,
    a message over 64 KiB)."""


class AuthError(ClientError):
    """futu-authd answered with an Error. ``kind`` is its :class:`ErrorKind`
    (``unknown_key``, ``duplicate_key``, ``unknown_ticket``, …), ``message`` its line."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        self.kind = ErrorKind.parse(kind)
        self._message = redact(message)
        super().__init__("futu-authd refused the request (%s): %s" % (self.kind.value, message))

    @property
    def message(self) -> str:
        """The daemon's message."""
        return self._message


class ForbiddenError(ClientError):
    """An admin request from a peer that is not an administrator: the daemon answered
    with a ``forbidden`` deny."""

    def __init__(self, detail: str) -> None:
        self.detail = redact(detail)
        super().__init__("futu-authd refused: %s" % detail)
