"""Every message of the protocol (docs/PROTOCOL.md §5), both ways.

Requests are what a client sends, responses what futu-authd answers; each class knows its
variant index and writes and reads its fields in wire order. Only
:class:`DecisionResponse` depends on the protocol version a connection speaks (a Deny
gained ``retry_after_ms`` and ``limit`` in version 2, and a reason, ``halted``, in version
5, which a peer of an older version is told as ``scope``); every other message is the
same bytes in every version. Versions 3, 4 and 5 added requests at the end of the enum
(``SINCE`` says which version has a request): a daemon of an older version cannot read
them, so they are not sent to it.

>>> from futu_auth_client.messages import Hello, encode_request
>>> encode_request(Hello(2, "rest")).hex()
'00020472657374'
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, List, Optional, Sequence, Tuple, Type, Union

from .codec import DecodeError, Reader, Writer, frame
from .token import KeyHash, Token
from .types import (
    LIMIT_FIGURES,
    BindOp,
    Decision,
    ErrorKind,
    Iface,
    KeyRecord,
    KeySpec,
    LimitFigures,
    Limits,
    Market,
    Order,
    Reason,
    Scope,
    SessionOutcome,
    SessionSubject,
    TrdEnv,
    TrdSide,
    validate_key_id,
)

__all__ = [
    "PROTOCOL_VERSION",
    "PROTOCOL_VERSIONS",
    "REQUESTS",
    "RESPONSES",
    "BindKey",
    "Check",
    "CheckScope",
    "DecisionResponse",
    "ErrorResponse",
    "ExportKeys",
    "GenKey",
    "Halt",
    "HaltRequest",
    "Halts",
    "Hello",
    "HelloOk",
    "ImportKeys",
    "Imported",
    "KeyBound",
    "KeyActivity",
    "KeyActivityRequest",
    "KeyActivityResponse",
    "KeyGenerated",
    "KeyRevoked",
    "KeyRotated",
    "Keys",
    "KeysExport",
    "KeysImported",
    "KeysPage",
    "ListHalts",
    "ListKeys",
    "ListKeysPage",
    "Release",
    "Released",
    "Reload",
    "Reloaded",
    "Request",
    "Response",
    "Resume",
    "RevokeKey",
    "RotateKey",
    "SessionCheck",
    "MAX_ACTIVITY_IDS",
    "MAX_IMPORT_LEN",
    "MAX_KEYS_CHUNK",
    "Usage",
    "UsageRequest",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "keys_chunk_end",
    "request_frame",
    "response_frame",
]

#: The newest protocol version this package speaks (offered in Hello).
PROTOCOL_VERSION = 5
#: Every version it speaks, oldest first.
PROTOCOL_VERSIONS = (1, 2, 3, 4, 5)
#: The first protocol version with :attr:`Reason.HALTED`.
HALTED_SINCE = 5
#: The most key ids one :class:`KeyActivityRequest` may ask about.
MAX_ACTIVITY_IDS = 500
#: The most bytes of keys.json text one :class:`ImportKeys` or :class:`KeysExport`
#: carries (60 KiB): the message, with its other fields, fits in a frame.
MAX_KEYS_CHUNK = 60 * 1024
#: The longest keys.json an import may bring, in bytes (64 MiB).
MAX_IMPORT_LEN = 64 * 1024 * 1024


def keys_chunk_end(data: bytes, start: int) -> int:
    """Where the chunk of the UTF-8 text ``data`` that starts at byte ``start`` ends in an
    :class:`ImportKeys` or a :class:`KeysExport`: at most :data:`MAX_KEYS_CHUNK` bytes on,
    at a character boundary (``start`` must be one)."""
    end = min(start + MAX_KEYS_CHUNK, len(data))
    while end < len(data) and end > start and data[end] & 0xC0 == 0x80:
        end -= 1  # a continuation byte: inside a character
    return end


class Request:
    """A message a client sends. ``VARIANT`` is its index, ``ADMIN`` whether only an
    administrator may send it, ``SINCE`` the first protocol version that has it; every
    one but :class:`Hello` has a ``request_id``."""

    VARIANT: ClassVar[int] = -1
    ADMIN: ClassVar[bool] = False
    SINCE: ClassVar[int] = 1

    def write(self, w: Writer) -> None:
        raise NotImplementedError

    @classmethod
    def read(cls, r: Reader) -> "Request":
        raise NotImplementedError


class Response:
    """A message futu-authd sends. ``VARIANT`` is its index; every one but
    :class:`HelloOk` carries the ``request_id`` of the request it answers."""

    VARIANT: ClassVar[int] = -1

    def write(self, w: Writer, version: int) -> None:
        raise NotImplementedError

    @classmethod
    def read(cls, r: Reader, version: int) -> "Response":
        raise NotImplementedError


# ---- shared parts -----------------------------------------------------------------------

def _token(t: Union[Token, str]) -> Token:
    return t if isinstance(t, Token) else Token(t)


def write_order(w: Writer, o: Order) -> None:
    w.enum(o.env)
    w.enum(o.market)
    w.string(o.symbol)
    w.enum(o.side)
    w.f64(o.qty)
    w.option(o.price, w.f64)


def read_order(r: Reader) -> Order:
    return Order(env=r.enum(TrdEnv), market=r.enum(Market), symbol=r.string(), side=r.enum(TrdSide),
                 qty=r.f64(), price=r.option(r.f64))


def write_limits(w: Writer, lim: Limits) -> None:
    w.option(lim.allowed_markets, lambda v: w.seq(v, w.enum))
    w.option(lim.allowed_symbols, lambda v: w.seq(v, w.string))
    w.option(lim.allowed_trd_sides, lambda v: w.seq(v, w.enum))
    w.option(lim.max_order_value, w.f64)
    w.option(lim.max_daily_value, w.f64)
    w.option(lim.max_orders_per_minute, w.u32)
    w.option(lim.hours_window, w.string)


def read_limits(r: Reader) -> Limits:
    return _checked(Limits,
                    allowed_markets=r.option(lambda: r.seq(lambda: r.enum(Market))),
                    allowed_symbols=r.option(lambda: r.seq(r.string)),
                    allowed_trd_sides=r.option(lambda: r.seq(lambda: r.enum(TrdSide))),
                    max_order_value=r.option(r.f64),
                    max_daily_value=r.option(r.f64),
                    max_orders_per_minute=r.option(r.u32),
                    hours_window=r.option(r.string))


def _machines(w: Writer, machines: Optional[Sequence[str]]) -> None:
    w.option(machines, lambda v: w.seq(v, w.string))


def _read_machines(r: Reader) -> Optional[List[str]]:
    return r.option(lambda: r.seq(r.string))


def write_key_spec(w: Writer, spec: KeySpec) -> None:
    w.string(spec.id)
    w.seq(spec.scopes, w.enum)
    write_limits(w, spec.limits)
    _machines(w, spec.allowed_machines)
    w.option(spec.expires_at, w.string)
    w.option(spec.note, w.string)


def read_key_spec(r: Reader) -> KeySpec:
    return _checked(KeySpec, id=r.string(), scopes=r.seq(lambda: r.enum(Scope)), limits=read_limits(r),
                    allowed_machines=_read_machines(r), expires_at=r.option(r.string), note=r.option(r.string))


def write_key_record(w: Writer, rec: KeyRecord) -> None:
    w.string(rec.id)
    w.string(str(rec.hash))
    w.seq(rec.scopes, w.enum)
    write_limits(w, rec.limits)
    _machines(w, rec.allowed_machines)
    w.string(rec.created_at)
    w.option(rec.expires_at, w.string)
    w.option(rec.note, w.string)


def read_key_record(r: Reader) -> KeyRecord:
    key_id = _checked(validate_key_id, r.string())
    key_hash = _checked(KeyHash, r.string())
    scopes = tuple(r.seq(lambda: r.enum(Scope)))
    limits = read_limits(r)
    machines = _read_machines(r)
    return KeyRecord(id=key_id, hash=key_hash, scopes=scopes, limits=limits,
                     allowed_machines=None if machines is None else tuple(machines),
                     created_at=r.string(), expires_at=r.option(r.string), note=r.option(r.string))


def _checked(make, *args: Any, **kwargs: Any):
    """``make(...)``, with a value that breaks a rule reported as malformed bytes."""
    try:
        return make(*args, **kwargs)
    except (ValueError, TypeError) as e:
        raise DecodeError(str(e)) from None


def reason_told_in(reason: Reason, version: int) -> Reason:
    """The reason a peer of protocol ``version`` is told for ``reason``: itself, or the
    nearest one that version has (``halted`` is ``scope`` before version 5)."""
    if reason == Reason.HALTED and version < HALTED_SINCE:
        return Reason.SCOPE
    return reason


def write_decision(w: Writer, d: Decision, version: int) -> None:
    if d.error is not None:
        raise ValueError("a fail-closed decision of the client is not a message")
    if d.allowed:
        w.varint(0, 32)
        w.string(d.key_id or "")
        w.option(d.scope, w.enum)
        w.option(d.ticket, w.u64)
        return
    w.varint(1, 32)
    w.enum(reason_told_in(d.reason, version))
    w.option(d.key_id, w.string)
    w.string(d.detail)
    if version >= 2:
        w.option(d.retry_after_ms, w.u64)
        w.option(d.limit, lambda lim: write_limit_figures(w, lim))


def read_decision(r: Reader, version: int) -> Decision:
    variant = r.variant()
    if variant == 0:
        return Decision(True, key_id=_checked(validate_key_id, r.string()), scope=r.option(lambda: r.enum(Scope)),
                        ticket=r.option(r.u64))
    if variant == 1:
        reason = r.enum(Reason)
        if reason_told_in(reason, version) != reason:
            raise DecodeError("reason %s in a message of protocol version %d, which does not have it" % (reason, version))
        key_id = r.option(lambda: _checked(validate_key_id, r.string()))
        detail = r.string()
        retry = limit = None
        if version >= 2:
            retry = r.option(r.u64)
            limit = r.option(lambda: read_limit_figures(r))
        return Decision(False, key_id=key_id, reason=reason, detail=detail, retry_after_ms=retry, limit=limit)
    raise DecodeError("unknown Decision variant index %d" % variant)


def write_limit_figures(w: Writer, lim: LimitFigures) -> None:
    w.varint(lim.index, 32)
    if lim.kind == "rate":
        w.u32(lim.orders_in_window)  # type: ignore[attr-defined]
        w.u32(lim.max_orders_per_minute)  # type: ignore[attr-defined]
    elif lim.kind == "daily_value":
        w.f64(lim.used)  # type: ignore[attr-defined]
        w.f64(lim.order_value)  # type: ignore[attr-defined]
        w.f64(lim.max_daily_value)  # type: ignore[attr-defined]
    elif lim.kind == "order_value":
        w.f64(lim.order_value)  # type: ignore[attr-defined]
        w.f64(lim.max_order_value)  # type: ignore[attr-defined]
    elif lim.kind == "hours":
        w.string(lim.local_time)  # type: ignore[attr-defined]
        w.string(lim.hours_window)  # type: ignore[attr-defined]
    else:
        raise TypeError("not a LimitFigures: %r" % (lim,))


def read_limit_figures(r: Reader) -> LimitFigures:
    variant = r.variant()
    if variant >= len(LIMIT_FIGURES):
        raise DecodeError("unknown LimitFigures variant index %d" % variant)
    cls = LIMIT_FIGURES[variant]
    if variant == 0:
        return cls(r.u32(), r.u32())  # type: ignore[call-arg]
    if variant == 1:
        return cls(r.f64(), r.f64(), r.f64())  # type: ignore[call-arg]
    if variant == 2:
        return cls(r.f64(), r.f64())  # type: ignore[call-arg]
    return cls(r.string(), r.string())  # type: ignore[call-arg]


# ---- requests ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Hello(Request):
    """The first message of every connection: the newest version the client speaks."""

    VARIANT: ClassVar[int] = 0
    protocol_version: int
    client_name: str

    def write(self, w: Writer) -> None:
        w.u16(self.protocol_version)
        w.string(self.client_name)

    @classmethod
    def read(cls, r: Reader) -> "Hello":
        return cls(r.u16(), r.string())


@dataclasses.dataclass(frozen=True)
class Check(Request):
    """May this token call this endpoint (with this order)? Answered by a Decision."""

    VARIANT: ClassVar[int] = 1
    request_id: int
    token: Token
    iface: Iface
    endpoint: str
    order: Optional[Order] = None
    dry_run: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", _token(self.token))
        object.__setattr__(self, "iface", Iface.parse(self.iface))

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)
        w.string(self.token.expose())
        w.enum(self.iface)
        w.string(self.endpoint)
        w.option(self.order, lambda o: write_order(w, o))
        w.bool(self.dry_run)

    @classmethod
    def read(cls, r: Reader) -> "Check":
        return cls(r.u64(), Token(r.string()), r.enum(Iface), r.string(), r.option(lambda: read_order(r)), r.bool())


@dataclasses.dataclass(frozen=True)
class CheckScope(Request):
    """Does this token hold this scope? (WebSocket push filtering.) Answered by a Decision."""

    VARIANT: ClassVar[int] = 2
    request_id: int
    token: Token
    iface: Iface
    scope: Scope

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", _token(self.token))
        object.__setattr__(self, "iface", Iface.parse(self.iface))
        object.__setattr__(self, "scope", Scope.parse(self.scope))

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)
        w.string(self.token.expose())
        w.enum(self.iface)
        w.enum(self.scope)

    @classmethod
    def read(cls, r: Reader) -> "CheckScope":
        return cls(r.u64(), Token(r.string()), r.enum(Iface), r.enum(Scope))


@dataclasses.dataclass(frozen=True)
class Release(Request):
    """Refund the daily value of an allowed order the broker rejected. Answered by
    :class:`Released` or an Error (``unknown_ticket``, ``already_released``,
    ``ticket_expired``)."""

    VARIANT: ClassVar[int] = 3
    request_id: int
    ticket: int

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)
        w.u64(self.ticket)

    @classmethod
    def read(cls, r: Reader) -> "Release":
        return cls(r.u64(), r.u64())


@dataclasses.dataclass(frozen=True)
class GenKey(Request):
    """Admin: make a key. Answered by :class:`KeyGenerated`."""

    VARIANT: ClassVar[int] = 4
    ADMIN: ClassVar[bool] = True
    request_id: int
    spec: KeySpec

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)
        write_key_spec(w, self.spec)

    @classmethod
    def read(cls, r: Reader) -> "GenKey":
        return cls(r.u64(), read_key_spec(r))


@dataclasses.dataclass(frozen=True)
class ListKeys(Request):
    """Admin: every key record in one answer (:class:`Keys`; at most a frame's worth)."""

    VARIANT: ClassVar[int] = 5
    ADMIN: ClassVar[bool] = True
    request_id: int

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)

    @classmethod
    def read(cls, r: Reader) -> "ListKeys":
        return cls(r.u64())


@dataclasses.dataclass(frozen=True)
class RevokeKey(Request):
    """Admin: remove a key. Answered by :class:`KeyRevoked`."""

    VARIANT: ClassVar[int] = 6
    ADMIN: ClassVar[bool] = True
    request_id: int
    id: str

    def __post_init__(self) -> None:
        validate_key_id(self.id)

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)
        w.string(self.id)

    @classmethod
    def read(cls, r: Reader) -> "RevokeKey":
        return _checked(cls, r.u64(), r.string())


@dataclasses.dataclass(frozen=True)
class BindKey(Request):
    """Admin: change a key's machine binding. Answered by :class:`KeyBound`."""

    VARIANT: ClassVar[int] = 7
    ADMIN: ClassVar[bool] = True
    request_id: int
    id: str
    op: BindOp

    def __post_init__(self) -> None:
        validate_key_id(self.id)
        if not isinstance(self.op, BindOp):
            raise TypeError("BindKey.op is a BindOp")

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)
        w.string(self.id)
        w.varint(self.op.index, 32)
        if self.op.machines is not None:
            w.seq(self.op.machines, w.string)

    @classmethod
    def read(cls, r: Reader) -> "BindKey":
        request_id, key_id = r.u64(), r.string()
        index = r.variant()
        if index >= len(BindOp._KINDS):
            raise DecodeError("unknown BindOp variant index %d" % index)
        kind = BindOp._KINDS[index]
        machines = r.seq(r.string) if kind in (BindOp.ADD, BindOp.REPLACE) else None
        return _checked(cls, request_id, key_id, _checked(BindOp, kind, machines))


@dataclasses.dataclass(frozen=True)
class Reload(Request):
    """Admin: re-read keys.json. Answered by :class:`Reloaded`."""

    VARIANT: ClassVar[int] = 8
    ADMIN: ClassVar[bool] = True
    request_id: int

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)

    @classmethod
    def read(cls, r: Reader) -> "Reload":
        return cls(r.u64())


@dataclasses.dataclass(frozen=True)
class UsageRequest(Request):
    """Admin: a key's consumption today (``Request::Usage``). Answered by :class:`Usage`."""

    VARIANT: ClassVar[int] = 9
    ADMIN: ClassVar[bool] = True
    request_id: int
    id: str

    def __post_init__(self) -> None:
        validate_key_id(self.id)

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)
        w.string(self.id)

    @classmethod
    def read(cls, r: Reader) -> "UsageRequest":
        return _checked(cls, r.u64(), r.string())


@dataclasses.dataclass(frozen=True)
class ListKeysPage(Request):
    """Admin: one page of a listing of any size. ``listing`` 0 starts one; then the
    ``listing`` of the previous page and ``offset`` = records received. Answered by
    :class:`KeysPage` or an Error ``listing_expired``."""

    VARIANT: ClassVar[int] = 10
    ADMIN: ClassVar[bool] = True
    request_id: int
    listing: int = 0
    offset: int = 0

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)
        w.u64(self.listing)
        w.u32(self.offset)

    @classmethod
    def read(cls, r: Reader) -> "ListKeysPage":
        return cls(r.u64(), r.u64(), r.u32())


@dataclasses.dataclass(frozen=True)
class RotateKey(Request):
    """Admin (protocol version 3): a new plaintext for key ``id``, which keeps its id,
    scopes, limits, binding and counters; the old plaintext stays valid for
    ``overlap_secs`` more seconds (never past the key's ``expires_at``). Answered by
    :class:`KeyRotated`."""

    VARIANT: ClassVar[int] = 11
    ADMIN: ClassVar[bool] = True
    SINCE: ClassVar[int] = 3
    request_id: int
    id: str
    overlap_secs: int = 86_400

    def __post_init__(self) -> None:
        validate_key_id(self.id)
        if not isinstance(self.overlap_secs, int) or not 0 <= self.overlap_secs < 2**64:
            raise ValueError("RotateKey.overlap_secs is a number of seconds, 0 to 2^64-1")

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)
        w.string(self.id)
        w.u64(self.overlap_secs)

    @classmethod
    def read(cls, r: Reader) -> "RotateKey":
        return _checked(cls, r.u64(), r.string(), r.u64())


@dataclasses.dataclass(frozen=True)
class KeyActivityRequest(Request):
    """Admin (protocol version 3): when keys were last used, and how long a rotated key's
    old plaintext stays valid (``Request::KeyActivity``). Answered by
    :class:`KeyActivityResponse`."""

    VARIANT: ClassVar[int] = 12
    ADMIN: ClassVar[bool] = True
    SINCE: ClassVar[int] = 3
    request_id: int
    ids: Tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.ids) > MAX_ACTIVITY_IDS:
            raise ValueError("KeyActivity asks about at most %d keys, not %d" % (MAX_ACTIVITY_IDS, len(self.ids)))
        for key_id in self.ids:
            validate_key_id(key_id)

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)
        w.seq(self.ids, w.string)

    @classmethod
    def read(cls, r: Reader) -> "KeyActivityRequest":
        return _checked(cls, r.u64(), tuple(r.seq(r.string)))


@dataclasses.dataclass(frozen=True)
class SessionCheck(Request):
    """Protocol version 4: a decision a long-lived session (a WebSocket, an MCP session)
    asks again and again — may its pushes that need a scope go out, is its key still
    usable (:class:`SessionSubject`) — decided like a CheckScope or a dry-run check of
    ``KeepAlive``, and audited only when its outcome differs from ``previous``, the
    outcome the session had before. Answered by a Decision."""

    VARIANT: ClassVar[int] = 13
    SINCE: ClassVar[int] = 4
    request_id: int
    token: Token
    iface: Iface
    subject: SessionSubject
    previous: SessionOutcome

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", _token(self.token))
        object.__setattr__(self, "iface", Iface.parse(self.iface))
        if not isinstance(self.subject, SessionSubject):
            raise TypeError("SessionCheck.subject is a SessionSubject")
        if not isinstance(self.previous, SessionOutcome):
            raise TypeError("SessionCheck.previous is a SessionOutcome")

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)
        w.string(self.token.expose())
        w.enum(self.iface)
        w.varint(self.subject.index, 32)
        if self.subject.kind == SessionSubject.PUSHES:
            w.enum(self.subject.scope)
            w.u32(self.subject.pushes)  # type: ignore[arg-type]
        w.varint(self.previous.index, 32)
        if not self.previous.allowed:
            w.enum(self.previous.reason)

    @classmethod
    def read(cls, r: Reader) -> "SessionCheck":
        request_id, token, iface = r.u64(), Token(r.string()), r.enum(Iface)
        subject = r.variant()
        if subject == 0:
            what = SessionSubject.keep_alive()
        elif subject == 1:
            what = SessionSubject.for_pushes(r.enum(Scope), r.u32())
        else:
            raise DecodeError("unknown SessionSubject variant index %d" % subject)
        previous = r.variant()
        if previous == 0:
            outcome = SessionOutcome.allow()
        elif previous == 1:
            outcome = SessionOutcome.deny(r.enum(Reason))
        else:
            raise DecodeError("unknown SessionOutcome variant index %d" % previous)
        return cls(request_id, token, iface, what, outcome)


def _write_target(w: Writer, key_id: Optional[str]) -> None:
    """A ``HaltTarget``: ``Key(id)`` (0) or ``All`` (1)."""
    if key_id is None:
        w.varint(1, 32)
    else:
        w.varint(0, 32)
        w.string(key_id)


def _read_target(r: Reader) -> Optional[str]:
    variant = r.variant()
    if variant == 0:
        return _checked(validate_key_id, r.string())
    if variant == 1:
        return None
    raise DecodeError("unknown HaltTarget variant index %d" % variant)


@dataclasses.dataclass(frozen=True)
class HaltRequest(Request):
    """Admin (protocol version 5): halt trading — orders and unlocks refused ``halted`` —
    for key ``key_id``, or for every key when it is ``None``, for ``reason`` (one line of at
    most 200 characters, checked by the daemon). Answered by :class:`Halts`."""

    VARIANT: ClassVar[int] = 14
    ADMIN: ClassVar[bool] = True
    SINCE: ClassVar[int] = 5
    request_id: int
    key_id: Optional[str]
    reason: str

    def __post_init__(self) -> None:
        if self.key_id is not None:
            validate_key_id(self.key_id)

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)
        _write_target(w, self.key_id)
        w.string(self.reason)

    @classmethod
    def read(cls, r: Reader) -> "HaltRequest":
        return _checked(cls, r.u64(), _read_target(r), r.string())


@dataclasses.dataclass(frozen=True)
class Resume(Request):
    """Admin (protocol version 5): lift the halt of key ``key_id``, or of every key when it
    is ``None``. Answered by :class:`Halts`, or an error ``invalid_spec`` when it is not
    halted."""

    VARIANT: ClassVar[int] = 15
    ADMIN: ClassVar[bool] = True
    SINCE: ClassVar[int] = 5
    request_id: int
    key_id: Optional[str]

    def __post_init__(self) -> None:
        if self.key_id is not None:
            validate_key_id(self.key_id)

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)
        _write_target(w, self.key_id)

    @classmethod
    def read(cls, r: Reader) -> "Resume":
        return _checked(cls, r.u64(), _read_target(r))


@dataclasses.dataclass(frozen=True)
class ListHalts(Request):
    """Admin (protocol version 5): the halts in force. Answered by :class:`Halts`."""

    VARIANT: ClassVar[int] = 16
    ADMIN: ClassVar[bool] = True
    SINCE: ClassVar[int] = 5
    request_id: int

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)

    @classmethod
    def read(cls, r: Reader) -> "ListHalts":
        return cls(r.u64())


@dataclasses.dataclass(frozen=True)
class ImportKeys(Request):
    """Admin (protocol version 5): one chunk of a keys.json to load into the key store,
    which may be larger than a frame. ``import_`` (``import`` on the wire) is 0 to start an
    import, then the ``import_`` of the previous answer; ``offset`` the bytes of the file
    sent before this chunk; ``chunk`` the next bytes of the text (at most
    :data:`MAX_KEYS_CHUNK`, cut at a character boundary); ``last`` whether the file ends
    with it (the daemon then checks the whole file and loads it); ``replace``, read with
    the last chunk, whether a key whose id the store holds already replaces it rather than
    refusing the import. Answered by :class:`KeysImported`."""

    VARIANT: ClassVar[int] = 17
    ADMIN: ClassVar[bool] = True
    SINCE: ClassVar[int] = 5
    request_id: int
    import_: int
    offset: int
    chunk: str
    last: bool
    replace: bool = False

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)
        w.u64(self.import_)
        w.u64(self.offset)
        w.string(self.chunk)
        w.bool(self.last)
        w.bool(self.replace)

    @classmethod
    def read(cls, r: Reader) -> "ImportKeys":
        return cls(r.u64(), r.u64(), r.u64(), r.string(), r.bool(), r.bool())


@dataclasses.dataclass(frozen=True)
class ExportKeys(Request):
    """Admin (protocol version 5): one chunk of the key store written as a keys.json.
    ``export`` 0 starts an export (the store is read once, as it is now), then the
    ``export`` of the previous answer; ``offset`` the bytes received so far. Answered by
    :class:`KeysExport`."""

    VARIANT: ClassVar[int] = 18
    ADMIN: ClassVar[bool] = True
    SINCE: ClassVar[int] = 5
    request_id: int
    export: int = 0
    offset: int = 0

    def write(self, w: Writer) -> None:
        w.u64(self.request_id)
        w.u64(self.export)
        w.u64(self.offset)

    @classmethod
    def read(cls, r: Reader) -> "ExportKeys":
        return cls(r.u64(), r.u64(), r.u64())


#: The request classes, by variant index.
REQUESTS: Tuple[Type[Request], ...] = (
    Hello, Check, CheckScope, Release, GenKey, ListKeys, RevokeKey, BindKey, Reload, UsageRequest, ListKeysPage,
    RotateKey, KeyActivityRequest, SessionCheck, HaltRequest, Resume, ListHalts, ImportKeys, ExportKeys,
)


# ---- responses --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class HelloOk(Response):
    """The Hello was accepted: the version the connection speaks, the daemon's version."""

    VARIANT: ClassVar[int] = 0
    protocol_version: int
    server_version: str

    def write(self, w: Writer, version: int) -> None:
        w.u16(self.protocol_version)
        w.string(self.server_version)

    @classmethod
    def read(cls, r: Reader, version: int) -> "HelloOk":
        return cls(r.u16(), r.string())


@dataclasses.dataclass(frozen=True)
class DecisionResponse(Response):
    """The answer to a Check, CheckScope or SessionCheck (or a ``forbidden`` deny of an
    admin request)."""

    VARIANT: ClassVar[int] = 1
    request_id: int
    decision: Decision

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        write_decision(w, self.decision, version)

    @classmethod
    def read(cls, r: Reader, version: int) -> "DecisionResponse":
        return cls(r.u64(), read_decision(r, version))


@dataclasses.dataclass(frozen=True)
class Released(Response):
    """A released ticket: the key whose daily total went down, and the value refunded
    (0 when the order's UTC day is over)."""

    VARIANT: ClassVar[int] = 2
    request_id: int
    key_id: str
    refunded_value: float

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.string(self.key_id)
        w.f64(self.refunded_value)

    @classmethod
    def read(cls, r: Reader, version: int) -> "Released":
        return cls(r.u64(), _checked(validate_key_id, r.string()), r.f64())


@dataclasses.dataclass(frozen=True)
class KeyGenerated(Response):
    """A new key. ``plaintext`` is in this answer and nowhere else: show it once (its
    ``repr()`` is redacted). ``stored_in`` is the keys file it was written to."""

    VARIANT: ClassVar[int] = 3
    request_id: int
    plaintext: Token
    record: KeyRecord
    stored_in: str

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.string(self.plaintext.expose())
        write_key_record(w, self.record)
        w.string(self.stored_in)

    @classmethod
    def read(cls, r: Reader, version: int) -> "KeyGenerated":
        return cls(r.u64(), Token(r.string()), read_key_record(r), r.string())


@dataclasses.dataclass(frozen=True)
class Keys(Response):
    """Every key record, in keys.json order."""

    VARIANT: ClassVar[int] = 4
    request_id: int
    keys: Tuple[KeyRecord, ...]

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.seq(self.keys, lambda k: write_key_record(w, k))

    @classmethod
    def read(cls, r: Reader, version: int) -> "Keys":
        return cls(r.u64(), tuple(r.seq(lambda: read_key_record(r))))


@dataclasses.dataclass(frozen=True)
class KeyRevoked(Response):
    """The key is gone."""

    VARIANT: ClassVar[int] = 5
    request_id: int
    id: str

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.string(self.id)

    @classmethod
    def read(cls, r: Reader, version: int) -> "KeyRevoked":
        return cls(r.u64(), _checked(validate_key_id, r.string()))


@dataclasses.dataclass(frozen=True)
class KeyBound(Response):
    """The key's record after a change of its binding."""

    VARIANT: ClassVar[int] = 6
    request_id: int
    record: KeyRecord

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        write_key_record(w, self.record)

    @classmethod
    def read(cls, r: Reader, version: int) -> "KeyBound":
        return cls(r.u64(), read_key_record(r))


@dataclasses.dataclass(frozen=True)
class Reloaded(Response):
    """keys.json was read again; ``keys_loaded`` keys are in service."""

    VARIANT: ClassVar[int] = 7
    request_id: int
    keys_loaded: int

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.u32(self.keys_loaded)

    @classmethod
    def read(cls, r: Reader, version: int) -> "Reloaded":
        return cls(r.u64(), r.u32())


@dataclasses.dataclass(frozen=True)
class Usage(Response):
    """A key's consumption today: the UTC ``day``, the value of today's allowed orders
    (less released ones) against the key's daily cap, and its orders in the last 60 s
    against its cap."""

    VARIANT: ClassVar[int] = 8
    request_id: int
    id: str
    day: str
    daily_value_used: float
    max_daily_value: Optional[float]
    orders_last_minute: int
    max_orders_per_minute: Optional[int]

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.string(self.id)
        w.string(self.day)
        w.f64(self.daily_value_used)
        w.option(self.max_daily_value, w.f64)
        w.u32(self.orders_last_minute)
        w.option(self.max_orders_per_minute, w.u32)

    @classmethod
    def read(cls, r: Reader, version: int) -> "Usage":
        return cls(r.u64(), _checked(validate_key_id, r.string()), r.string(), r.f64(), r.option(r.f64), r.u32(),
                   r.option(r.u32))


@dataclasses.dataclass(frozen=True)
class ErrorResponse(Response):
    """The request failed (``Response::Error``); ``request_id`` 0 when it could not be
    read (then the daemon closes the connection)."""

    VARIANT: ClassVar[int] = 9
    request_id: int
    kind: ErrorKind
    message: str

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.enum(self.kind)
        w.string(self.message)

    @classmethod
    def read(cls, r: Reader, version: int) -> "ErrorResponse":
        return cls(r.u64(), r.enum(ErrorKind), r.string())


@dataclasses.dataclass(frozen=True)
class KeysPage(Response):
    """One page of a listing: continue with ``listing``; complete once
    ``offset + len(keys) == total``."""

    VARIANT: ClassVar[int] = 10
    request_id: int
    listing: int
    offset: int
    total: int
    keys: Tuple[KeyRecord, ...]

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.u64(self.listing)
        w.u32(self.offset)
        w.u32(self.total)
        w.seq(self.keys, lambda k: write_key_record(w, k))

    @classmethod
    def read(cls, r: Reader, version: int) -> "KeysPage":
        return cls(r.u64(), r.u64(), r.u32(), r.u32(), tuple(r.seq(lambda: read_key_record(r))))


@dataclasses.dataclass(frozen=True)
class KeyRotated(Response):
    """A key's new plaintext (protocol version 3). ``plaintext`` is in this answer and
    nowhere else: show it once (its ``repr()`` is redacted). ``previous_valid_until`` (RFC
    3339, or ``None``): until when the old plaintext is still accepted."""

    VARIANT: ClassVar[int] = 11
    request_id: int
    id: str
    plaintext: Token
    previous_valid_until: Optional[str]
    stored_in: str

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.string(self.id)
        w.string(self.plaintext.expose())
        w.option(self.previous_valid_until, w.string)
        w.string(self.stored_in)

    @classmethod
    def read(cls, r: Reader, version: int) -> "KeyRotated":
        return cls(r.u64(), _checked(validate_key_id, r.string()), Token(r.string()), r.option(r.string), r.string())


@dataclasses.dataclass(frozen=True)
class KeyActivity:
    """One key's activity: ``last_used`` (RFC 3339, to the minute; ``None``: not used since
    the daemon began keeping it) and ``previous_valid_until`` (until when its plaintext
    before the last rotation is accepted; ``None``: no overlap in force)."""

    id: str
    last_used: Optional[str]
    previous_valid_until: Optional[str]


@dataclasses.dataclass(frozen=True)
class KeyActivityResponse(Response):
    """The activity of the keys asked about that keys.json holds, in the order asked
    (``Response::KeyActivity``, protocol version 3)."""

    VARIANT: ClassVar[int] = 12
    request_id: int
    keys: Tuple[KeyActivity, ...]

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)

        def entry(k: KeyActivity) -> None:
            w.string(k.id)
            w.option(k.last_used, w.string)
            w.option(k.previous_valid_until, w.string)

        w.seq(self.keys, entry)

    @classmethod
    def read(cls, r: Reader, version: int) -> "KeyActivityResponse":
        def entry() -> KeyActivity:
            return KeyActivity(_checked(validate_key_id, r.string()), r.option(r.string), r.option(r.string))

        return cls(r.u64(), tuple(r.seq(entry)))


@dataclasses.dataclass(frozen=True)
class Halt:
    """A halt of trading in force: of key ``key_id``, or of every key when it is ``None``;
    why (``reason``), who (``uid``, and ``user`` when the uid has a name) and when
    (``halted_at``, RFC 3339 UTC)."""

    key_id: Optional[str]
    reason: str
    uid: int
    user: Optional[str]
    halted_at: str

    def __str__(self) -> str:
        what = "every key" if self.key_id is None else "key %s" % self.key_id
        who = "uid %d" % self.uid if self.user is None else "uid %d (%s)" % (self.uid, self.user)
        return "trading halted for %s by %s at %s: %s" % (what, who, self.halted_at, self.reason)


@dataclasses.dataclass(frozen=True)
class Halts(Response):
    """The halts in force after a Halt or Resume, or as listed (``Response::Halts``,
    protocol version 5), in keys.json's order."""

    VARIANT: ClassVar[int] = 13
    request_id: int
    halts: Tuple[Halt, ...]

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)

        def entry(h: Halt) -> None:
            _write_target(w, h.key_id)
            w.string(h.reason)
            w.u32(h.uid)
            w.option(h.user, w.string)
            w.string(h.halted_at)

        w.seq(self.halts, entry)

    @classmethod
    def read(cls, r: Reader, version: int) -> "Halts":
        def entry() -> Halt:
            return Halt(_read_target(r), r.string(), r.u32(), r.option(r.string), r.string())

        return cls(r.u64(), tuple(r.seq(entry)))


@dataclasses.dataclass(frozen=True)
class Imported:
    """What an import did, once its last chunk was loaded: keys of the file the store did
    not hold (``added``), keys whose id it held, replaced (``replaced``, with ``replace``
    only), keys in the store after the import (``total``), and where the keys are kept
    (``stored_in``: keys.json's path, or the database)."""

    added: int
    replaced: int
    total: int
    stored_in: str


@dataclasses.dataclass(frozen=True)
class KeysImported(Response):
    """A chunk of an import was received (protocol version 5): continue with ``import_``
    (``import`` on the wire) at ``next_offset``, the bytes received so far; after the last
    chunk, ``done`` says what the import did."""

    VARIANT: ClassVar[int] = 14
    request_id: int
    import_: int
    next_offset: int
    done: Optional[Imported]

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.u64(self.import_)
        w.u64(self.next_offset)

        def imported(i: Imported) -> None:
            w.u32(i.added)
            w.u32(i.replaced)
            w.u32(i.total)
            w.string(i.stored_in)

        w.option(self.done, imported)

    @classmethod
    def read(cls, r: Reader, version: int) -> "KeysImported":
        request_id, import_, next_offset = r.u64(), r.u64(), r.u64()
        return cls(request_id, import_, next_offset, r.option(lambda: Imported(r.u32(), r.u32(), r.u32(), r.string())))


@dataclasses.dataclass(frozen=True)
class KeysExport(Response):
    """A chunk of the key store written as a keys.json (protocol version 5): continue with
    ``export``; ``offset`` is where ``chunk`` starts and ``total`` the length of the whole
    text, in bytes; the export is complete once ``offset`` + the chunk's UTF-8 length ==
    ``total``."""

    VARIANT: ClassVar[int] = 15
    request_id: int
    export: int
    offset: int
    total: int
    chunk: str

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.u64(self.export)
        w.u64(self.offset)
        w.u64(self.total)
        w.string(self.chunk)

    @classmethod
    def read(cls, r: Reader, version: int) -> "KeysExport":
        return cls(r.u64(), r.u64(), r.u64(), r.u64(), r.string())


#: The response classes, by variant index.
RESPONSES: Tuple[Type[Response], ...] = (
    HelloOk, DecisionResponse, Released, KeyGenerated, Keys, KeyRevoked, KeyBound, Reloaded, Usage, ErrorResponse,
    KeysPage, KeyRotated, KeyActivityResponse, Halts, KeysImported, KeysExport,
)


# ---- whole messages ---------------------------------------------------------------------

def encode_request(req: Request) -> bytes:
    """A request's body (no length prefix); the same in every protocol version that has it."""
    w = Writer()
    w.varint(req.VARIANT, 32)
    req.write(w)
    return w.getvalue()


def decode_request(body: bytes) -> Request:
    """The request in a body; :class:`~futu_auth_client.codec.DecodeError` if it is not one."""
    r = Reader(body)
    variant = r.variant()
    if variant >= len(REQUESTS):
        raise DecodeError("unknown Request variant index %d" % variant)
    req = REQUESTS[variant].read(r)
    r.finish()
    return req


def encode_response(resp: Response, version: int = PROTOCOL_VERSION) -> bytes:
    """A response's body as a peer speaking ``version`` reads it."""
    w = Writer()
    w.varint(resp.VARIANT, 32)
    resp.write(w, version)
    return w.getvalue()


def decode_response(body: bytes, version: int = PROTOCOL_VERSION) -> Response:
    """The response in a body written for protocol ``version``."""
    r = Reader(body)
    variant = r.variant()
    if variant >= len(RESPONSES):
        raise DecodeError("unknown Response variant index %d" % variant)
    resp = RESPONSES[variant].read(r, version)
    r.finish()
    return resp


def request_frame(req: Request) -> bytes:
    """A request's whole frame, length prefix included."""
    return frame(encode_request(req))


def response_frame(resp: Response, version: int = PROTOCOL_VERSION) -> bytes:
    """A response's whole frame for a peer speaking ``version``."""
    return frame(encode_response(resp, version))

