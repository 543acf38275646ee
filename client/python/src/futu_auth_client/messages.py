"""Every message of the protocol (docs/PROTOCOL.md §5), both ways.

Requests are what a client sends, responses what futu-authd answers; each class knows its
variant index and writes and reads its fields in wire order, for the protocol version a
connection speaks. A Deny gained ``retry_after_ms`` and ``limit`` in version 2 and a
reason, ``halted``, in version 5, which a peer of an older version is told as ``scope``.
Version 6 appended ``acc_id`` and ``ref_price`` to a Check and five fields to a
:class:`~futu_auth_client.types.Limits` (in every key spec and key record), and added the
scope ``admin``, five reasons (each told to an older peer as its nearest, without its
figures) and ``OrderEvent``; on a connection of version 5 or older every message keeps its
bytes. Versions 3 to 6 added requests at the end of the enum (``SINCE`` says which version
has a request, :meth:`Request.needs` which one can carry it as it is): a daemon of an
older version cannot read them, so they are not sent to it.

>>> from futu_auth_client.messages import Hello, encode_request
>>> encode_request(Hello(2, "rest")).hex()
'00020472657374'
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Type, Union

from .codec import DecodeError, Reader, Writer, frame
from .token import KeyHash, Token
from .types import (
    LIMIT_FIGURES,
    LIMIT_FIGURES_BEFORE_V6,
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
    OrderEventKind,
    OrderEventRefusal,
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
    "OrderEvent",
    "OrderEventDone",
    "OrderEventOutcome",
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
PROTOCOL_VERSION = 6
#: Every version it speaks, oldest first.
PROTOCOL_VERSIONS = (1, 2, 3, 4, 5, 6)
#: The first protocol version with :attr:`Reason.HALTED`.
HALTED_SINCE = 5
#: The first protocol version with the pre-trade risk limits: a Check's ``acc_id`` and
#: ``ref_price``, the five limits after ``hours_window``, the scope ``admin``, the reasons
#: after ``halted`` and their figures, ``OrderEvent``.
RISK_SINCE = 6
#: What a peer older than :data:`RISK_SINCE` is told for each reason of version 6.
_NEAREST_BEFORE_V6 = {
    Reason.ACCOUNT: Reason.SCOPE,
    Reason.PRICE_COLLAR: Reason.ORDER_VALUE,
    Reason.OPEN_ORDERS: Reason.RATE,
    Reason.POSITION: Reason.DAILY_VALUE,
    Reason.DUPLICATE: Reason.RATE,
}
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

    def needs(self) -> Tuple[int, str]:
        """The first protocol version that can carry this request as it is, and what to
        call it when a connection cannot: ``SINCE`` and the request's name, or a later
        version for a value only that version has (a Check naming an account, the scope
        ``admin``, a limit of version 6)."""
        name = type(self).__name__
        if name.endswith("Request"):
            name = name[:-len("Request")]  # KeyActivityRequest is Request::KeyActivity
        return self.SINCE, name

    def write(self, w: Writer, version: int) -> None:
        raise NotImplementedError

    @classmethod
    def read(cls, r: Reader, version: int) -> "Request":
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


def write_limits(w: Writer, lim: Limits, version: int = PROTOCOL_VERSION) -> None:
    """Seven fields before protocol version 6 (whose limits must not be set: see
    :func:`newer_than_v5`), twelve from it."""
    w.option(lim.allowed_markets, lambda v: w.seq(v, w.enum))
    w.option(lim.allowed_symbols, lambda v: w.seq(v, w.string))
    w.option(lim.allowed_trd_sides, lambda v: w.seq(v, w.enum))
    w.option(lim.max_order_value, w.f64)
    w.option(lim.max_daily_value, w.f64)
    w.option(lim.max_orders_per_minute, w.u32)
    w.option(lim.hours_window, w.string)
    if version >= RISK_SINCE:
        w.option(lim.allowed_acc_ids, lambda v: w.seq(v, w.u64))
        w.option(lim.max_price_deviation_pct, w.f64)
        w.option(lim.max_open_orders, w.u32)
        w.option(lim.max_position_value, w.f64)
        w.option(lim.duplicate_window_ms, w.u64)
    elif lim.since_v6():
        raise ValueError("limits %s need protocol version %d" % (", ".join(lim.since_v6()), RISK_SINCE))


def read_limits(r: Reader, version: int = PROTOCOL_VERSION) -> Limits:
    fields: Dict[str, Any] = dict(
        allowed_markets=r.option(lambda: r.seq(lambda: r.enum(Market))),
        allowed_symbols=r.option(lambda: r.seq(r.string)),
        allowed_trd_sides=r.option(lambda: r.seq(lambda: r.enum(TrdSide))),
        max_order_value=r.option(r.f64),
        max_daily_value=r.option(r.f64),
        max_orders_per_minute=r.option(r.u32),
        hours_window=r.option(r.string))
    if version >= RISK_SINCE:
        fields.update(
            allowed_acc_ids=r.option(lambda: r.seq(r.u64)),
            max_price_deviation_pct=r.option(r.f64),
            max_open_orders=r.option(r.u32),
            max_position_value=r.option(r.f64),
            duplicate_window_ms=r.option(r.u64))
    return _checked(Limits, **fields)


def read_scope(r: Reader, version: int) -> Scope:
    """A scope; ``admin`` is malformed before protocol version 6."""
    scope = r.enum(Scope)
    if scope == Scope.ADMIN and version < RISK_SINCE:
        raise DecodeError("scope admin in a message of protocol version %d, which does not have it" % version)
    return scope


def newer_than_v5(scopes: Sequence[Scope], limits: Limits) -> List[str]:
    """What of a key's ``scopes`` and ``limits`` a peer older than protocol version 6
    cannot be told: ``scope admin`` and the version-6 limits that are set, by name."""
    newer = ["scope admin"] if Scope.ADMIN in scopes else []
    return newer + list(limits.since_v6())


def _machines(w: Writer, machines: Optional[Sequence[str]]) -> None:
    w.option(machines, lambda v: w.seq(v, w.string))


def _read_machines(r: Reader) -> Optional[List[str]]:
    return r.option(lambda: r.seq(r.string))


def write_key_spec(w: Writer, spec: KeySpec, version: int = PROTOCOL_VERSION) -> None:
    w.string(spec.id)
    w.seq(spec.scopes, w.enum)
    write_limits(w, spec.limits, version)
    _machines(w, spec.allowed_machines)
    w.option(spec.expires_at, w.string)
    w.option(spec.note, w.string)


def read_key_spec(r: Reader, version: int = PROTOCOL_VERSION) -> KeySpec:
    return _checked(KeySpec, id=r.string(), scopes=r.seq(lambda: read_scope(r, version)),
                    limits=read_limits(r, version), allowed_machines=_read_machines(r), expires_at=r.option(r.string),
                    note=r.option(r.string))


def write_key_record(w: Writer, rec: KeyRecord, version: int = PROTOCOL_VERSION) -> None:
    w.string(rec.id)
    w.string(str(rec.hash))
    w.seq(rec.scopes, w.enum)
    write_limits(w, rec.limits, version)
    _machines(w, rec.allowed_machines)
    w.string(rec.created_at)
    w.option(rec.expires_at, w.string)
    w.option(rec.note, w.string)


def read_key_record(r: Reader, version: int = PROTOCOL_VERSION) -> KeyRecord:
    key_id = _checked(validate_key_id, r.string())
    key_hash = _checked(KeyHash, r.string())
    scopes = tuple(r.seq(lambda: read_scope(r, version)))
    limits = read_limits(r, version)
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
    nearest one that version has (``halted`` is ``scope`` before version 5; before
    version 6 ``account`` is ``scope``, ``price_collar`` ``order_value``, ``open_orders``
    and ``duplicate`` ``rate``, ``position`` ``daily_value``)."""
    if reason == Reason.HALTED and version < HALTED_SINCE:
        return Reason.SCOPE
    if version < RISK_SINCE:
        return _NEAREST_BEFORE_V6.get(reason, reason)
    return reason


def figures_in(figures: LimitFigures, version: int) -> bool:
    """Whether a peer of protocol ``version`` can read ``figures`` (those of the limits of
    version 6 need it)."""
    return figures.index < LIMIT_FIGURES_BEFORE_V6 or version >= RISK_SINCE


def write_decision(w: Writer, d: Decision, version: int) -> None:
    """``d`` as a peer of ``version`` is told it: a reason its version lacks as the nearest
    it has, without figures it cannot read; an allow of the scope ``admin`` with no
    scope before version 6."""
    if d.error is not None:
        raise ValueError("a fail-closed decision of the client is not a message")
    if d.allowed:
        scope = d.scope
        if scope == Scope.ADMIN and version < RISK_SINCE:
            scope = None
        w.varint(0, 32)
        w.string(d.key_id or "")
        w.option(scope, w.enum)
        w.option(d.ticket, w.u64)
        return
    w.varint(1, 32)
    w.enum(reason_told_in(d.reason, version))
    w.option(d.key_id, w.string)
    w.string(d.detail)
    if version >= 2:
        limit = d.limit if d.limit is None or figures_in(d.limit, version) else None
        w.option(d.retry_after_ms, w.u64)
        w.option(limit, lambda lim: write_limit_figures(w, lim))


def read_decision(r: Reader, version: int) -> Decision:
    variant = r.variant()
    if variant == 0:
        return Decision(True, key_id=_checked(validate_key_id, r.string()),
                        scope=r.option(lambda: read_scope(r, version)), ticket=r.option(r.u64))
    if variant == 1:
        reason = read_reason(r, version)
        key_id = r.option(lambda: _checked(validate_key_id, r.string()))
        detail = r.string()
        retry = limit = None
        if version >= 2:
            retry = r.option(r.u64)
            limit = r.option(lambda: read_limit_figures(r, version))
        return Decision(False, key_id=key_id, reason=reason, detail=detail, retry_after_ms=retry, limit=limit)
    raise DecodeError("unknown Decision variant index %d" % variant)


def read_reason(r: Reader, version: int) -> Reason:
    """A reason; one the protocol ``version`` does not have is malformed."""
    reason = r.enum(Reason)
    if reason_told_in(reason, version) != reason:
        raise DecodeError("reason %s in a message of protocol version %d, which does not have it" % (reason, version))
    return reason


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
    elif lim.kind == "price_collar":
        for value in (lim.price, lim.ref_price, lim.deviation_pct, lim.max_price_deviation_pct):  # type: ignore[attr-defined]
            w.f64(value)
    elif lim.kind == "open_orders":
        w.u32(lim.open_orders)  # type: ignore[attr-defined]
        w.u32(lim.max_open_orders)  # type: ignore[attr-defined]
    elif lim.kind == "position":
        w.f64(lim.position_value)  # type: ignore[attr-defined]
        w.f64(lim.order_value)  # type: ignore[attr-defined]
        w.f64(lim.max_position_value)  # type: ignore[attr-defined]
    elif lim.kind == "duplicate":
        w.u64(lim.since_ms)  # type: ignore[attr-defined]
        w.u64(lim.duplicate_window_ms)  # type: ignore[attr-defined]
    else:
        raise TypeError("not a LimitFigures: %r" % (lim,))


def read_limit_figures(r: Reader, version: int = PROTOCOL_VERSION) -> LimitFigures:
    variant = r.variant()
    if variant >= len(LIMIT_FIGURES):
        raise DecodeError("unknown LimitFigures variant index %d" % variant)
    cls = LIMIT_FIGURES[variant]
    if not figures_in(cls, version):  # type: ignore[arg-type]
        raise DecodeError("figures %s in a message of protocol version %d, which does not have them"
                          % (cls.kind, version))
    if variant == 0:
        return cls(r.u32(), r.u32())  # type: ignore[call-arg]
    if variant == 1:
        return cls(r.f64(), r.f64(), r.f64())  # type: ignore[call-arg]
    if variant == 2:
        return cls(r.f64(), r.f64())  # type: ignore[call-arg]
    if variant == 3:
        return cls(r.string(), r.string())  # type: ignore[call-arg]
    if variant == 4:
        return cls(r.f64(), r.f64(), r.f64(), r.f64())  # type: ignore[call-arg]
    if variant == 5:
        return cls(r.u32(), r.u32())  # type: ignore[call-arg]
    if variant == 6:
        return cls(r.f64(), r.f64(), r.f64())  # type: ignore[call-arg]
    return cls(r.u64(), r.u64())  # type: ignore[call-arg]


# ---- requests ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Hello(Request):
    """The first message of every connection: the newest version the client speaks."""

    VARIANT: ClassVar[int] = 0
    protocol_version: int
    client_name: str

    def write(self, w: Writer, version: int) -> None:
        w.u16(self.protocol_version)
        w.string(self.client_name)

    @classmethod
    def read(cls, r: Reader, version: int) -> "Hello":
        return cls(r.u16(), r.string())


@dataclasses.dataclass(frozen=True)
class Check(Request):
    """May this token call this endpoint (with this order)? Answered by a Decision.

    Protocol version 6 appends ``acc_id``, the broker account the request is for (an
    order's, or the one an account read reads), and ``ref_price``, the gateway's reference
    price (its last quote) for the order's symbol, for the price collar. A Check with
    either set needs version 6; without them it is the same bytes as before on a
    connection of version 5 or older, and two ``None`` bytes more from version 6."""

    VARIANT: ClassVar[int] = 1
    request_id: int
    token: Token
    iface: Iface
    endpoint: str
    order: Optional[Order] = None
    dry_run: bool = False
    acc_id: Optional[int] = None
    ref_price: Optional[float] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", _token(self.token))
        object.__setattr__(self, "iface", Iface.parse(self.iface))
        acc = self.acc_id
        if acc is not None and (isinstance(acc, bool) or not isinstance(acc, int) or not 0 <= acc < 1 << 64):
            raise ValueError("Check.acc_id is an account id (a u64), got %r" % (acc,))
        if self.ref_price is not None:
            if isinstance(self.ref_price, bool) or not isinstance(self.ref_price, (int, float)):
                raise TypeError("Check.ref_price is a number, not %s" % type(self.ref_price).__name__)
            object.__setattr__(self, "ref_price", float(self.ref_price))

    def needs(self) -> Tuple[int, str]:
        newer = [name for name in ("acc_id", "ref_price") if getattr(self, name) is not None]
        return (RISK_SINCE, "Check with " + ", ".join(newer)) if newer else super().needs()

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.string(self.token.expose())
        w.enum(self.iface)
        w.string(self.endpoint)
        w.option(self.order, lambda o: write_order(w, o))
        w.bool(self.dry_run)
        if version >= RISK_SINCE:
            w.option(self.acc_id, w.u64)
            w.option(self.ref_price, w.f64)

    @classmethod
    def read(cls, r: Reader, version: int) -> "Check":
        fields = [r.u64(), Token(r.string()), r.enum(Iface), r.string(), r.option(lambda: read_order(r)), r.bool()]
        if version >= RISK_SINCE:
            fields += [r.option(r.u64), r.option(r.f64)]
        return cls(*fields)


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

    def needs(self) -> Tuple[int, str]:
        return (RISK_SINCE, "CheckScope of scope admin") if self.scope == Scope.ADMIN else super().needs()

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.string(self.token.expose())
        w.enum(self.iface)
        w.enum(self.scope)

    @classmethod
    def read(cls, r: Reader, version: int) -> "CheckScope":
        return cls(r.u64(), Token(r.string()), r.enum(Iface), read_scope(r, version))


@dataclasses.dataclass(frozen=True)
class Release(Request):
    """Refund the daily value of an allowed order the broker rejected. Answered by
    :class:`Released` or an Error (``unknown_ticket``, ``already_released``,
    ``ticket_expired``)."""

    VARIANT: ClassVar[int] = 3
    request_id: int
    ticket: int

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.u64(self.ticket)

    @classmethod
    def read(cls, r: Reader, version: int) -> "Release":
        return cls(r.u64(), r.u64())


@dataclasses.dataclass(frozen=True)
class GenKey(Request):
    """Admin: make a key. Answered by :class:`KeyGenerated`."""

    VARIANT: ClassVar[int] = 4
    ADMIN: ClassVar[bool] = True
    request_id: int
    spec: KeySpec

    def needs(self) -> Tuple[int, str]:
        newer = newer_than_v5(self.spec.scopes, self.spec.limits)
        return (RISK_SINCE, "GenKey with " + ", ".join(newer)) if newer else super().needs()

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        write_key_spec(w, self.spec, version)

    @classmethod
    def read(cls, r: Reader, version: int) -> "GenKey":
        return cls(r.u64(), read_key_spec(r, version))


@dataclasses.dataclass(frozen=True)
class ListKeys(Request):
    """Admin: every key record in one answer (:class:`Keys`; at most a frame's worth)."""

    VARIANT: ClassVar[int] = 5
    ADMIN: ClassVar[bool] = True
    request_id: int

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)

    @classmethod
    def read(cls, r: Reader, version: int) -> "ListKeys":
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

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.string(self.id)

    @classmethod
    def read(cls, r: Reader, version: int) -> "RevokeKey":
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

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.string(self.id)
        w.varint(self.op.index, 32)
        if self.op.machines is not None:
            w.seq(self.op.machines, w.string)

    @classmethod
    def read(cls, r: Reader, version: int) -> "BindKey":
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

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)

    @classmethod
    def read(cls, r: Reader, version: int) -> "Reload":
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

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.string(self.id)

    @classmethod
    def read(cls, r: Reader, version: int) -> "UsageRequest":
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

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.u64(self.listing)
        w.u32(self.offset)

    @classmethod
    def read(cls, r: Reader, version: int) -> "ListKeysPage":
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

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.string(self.id)
        w.u64(self.overlap_secs)

    @classmethod
    def read(cls, r: Reader, version: int) -> "RotateKey":
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

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.seq(self.ids, w.string)

    @classmethod
    def read(cls, r: Reader, version: int) -> "KeyActivityRequest":
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

    def needs(self) -> Tuple[int, str]:
        if self.subject.scope == Scope.ADMIN:
            return RISK_SINCE, "SessionCheck of pushes of scope admin"
        return super().needs()

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.string(self.token.expose())
        w.enum(self.iface)
        w.varint(self.subject.index, 32)
        if self.subject.kind == SessionSubject.PUSHES:
            w.enum(self.subject.scope)
            w.u32(self.subject.pushes)  # type: ignore[arg-type]
        w.varint(self.previous.index, 32)
        if not self.previous.allowed:
            # What a daemon of this version would have told the session.
            w.enum(reason_told_in(self.previous.reason, version))  # type: ignore[arg-type]

    @classmethod
    def read(cls, r: Reader, version: int) -> "SessionCheck":
        request_id, token, iface = r.u64(), Token(r.string()), r.enum(Iface)
        subject = r.variant()
        if subject == 0:
            what = SessionSubject.keep_alive()
        elif subject == 1:
            what = SessionSubject.for_pushes(read_scope(r, version), r.u32())
        else:
            raise DecodeError("unknown SessionSubject variant index %d" % subject)
        previous = r.variant()
        if previous == 0:
            outcome = SessionOutcome.allow()
        elif previous == 1:
            outcome = SessionOutcome.deny(read_reason(r, version))
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

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        _write_target(w, self.key_id)
        w.string(self.reason)

    @classmethod
    def read(cls, r: Reader, version: int) -> "HaltRequest":
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

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        _write_target(w, self.key_id)

    @classmethod
    def read(cls, r: Reader, version: int) -> "Resume":
        return _checked(cls, r.u64(), _read_target(r))


@dataclasses.dataclass(frozen=True)
class ListHalts(Request):
    """Admin (protocol version 5): the halts in force. Answered by :class:`Halts`."""

    VARIANT: ClassVar[int] = 16
    ADMIN: ClassVar[bool] = True
    SINCE: ClassVar[int] = 5
    request_id: int

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)

    @classmethod
    def read(cls, r: Reader, version: int) -> "ListHalts":
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

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.u64(self.import_)
        w.u64(self.offset)
        w.string(self.chunk)
        w.bool(self.last)
        w.bool(self.replace)

    @classmethod
    def read(cls, r: Reader, version: int) -> "ImportKeys":
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

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.u64(self.export)
        w.u64(self.offset)

    @classmethod
    def read(cls, r: Reader, version: int) -> "ExportKeys":
        return cls(r.u64(), r.u64(), r.u64())


@dataclasses.dataclass(frozen=True)
class OrderEvent(Request):
    """Protocol version 6: what became of an allowed order, by the ``ticket`` of its
    allow, as the broker told the gateway (:class:`~futu_auth_client.types.OrderEventKind`).
    A fill (``partially_filled``, ``filled``) carries ``filled_qty``, the quantity the
    order has filled so far (cumulative, not this fill's), and ``fill_price``, their
    average price; the other kinds carry neither. An event sent twice changes nothing.
    Answered by :class:`OrderEventDone`."""

    VARIANT: ClassVar[int] = 19
    SINCE: ClassVar[int] = RISK_SINCE
    request_id: int
    ticket: int
    kind: OrderEventKind
    filled_qty: Optional[float] = None
    fill_price: Optional[float] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", OrderEventKind.parse(self.kind))
        for name in ("filled_qty", "fill_price"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise TypeError("OrderEvent.%s is a number, not %s" % (name, type(value).__name__))
                object.__setattr__(self, name, float(value))

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.u64(self.ticket)
        w.enum(self.kind)
        w.option(self.filled_qty, w.f64)
        w.option(self.fill_price, w.f64)

    @classmethod
    def read(cls, r: Reader, version: int) -> "OrderEvent":
        return cls(r.u64(), r.u64(), r.enum(OrderEventKind), r.option(r.f64), r.option(r.f64))


#: The request classes, by variant index.
REQUESTS: Tuple[Type[Request], ...] = (
    Hello, Check, CheckScope, Release, GenKey, ListKeys, RevokeKey, BindKey, Reload, UsageRequest, ListKeysPage,
    RotateKey, KeyActivityRequest, SessionCheck, HaltRequest, Resume, ListHalts, ImportKeys, ExportKeys, OrderEvent,
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
        write_key_record(w, self.record, version)
        w.string(self.stored_in)

    @classmethod
    def read(cls, r: Reader, version: int) -> "KeyGenerated":
        return cls(r.u64(), Token(r.string()), read_key_record(r, version), r.string())


@dataclasses.dataclass(frozen=True)
class Keys(Response):
    """Every key record, in keys.json order."""

    VARIANT: ClassVar[int] = 4
    request_id: int
    keys: Tuple[KeyRecord, ...]

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.seq(self.keys, lambda k: write_key_record(w, k, version))

    @classmethod
    def read(cls, r: Reader, version: int) -> "Keys":
        return cls(r.u64(), tuple(r.seq(lambda: read_key_record(r, version))))


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
        write_key_record(w, self.record, version)

    @classmethod
    def read(cls, r: Reader, version: int) -> "KeyBound":
        return cls(r.u64(), read_key_record(r, version))


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
class PositionUsage:
    """One symbol's position in :class:`Usage` (protocol version 6), as
    ``max_position_value`` counts it: in each direction, the value held plus the open
    orders that would add to it."""

    symbol: str
    long: float
    short: float


@dataclasses.dataclass(frozen=True)
class Usage(Response):
    """A key's consumption today: the UTC ``day``, the value of today's allowed orders
    (less released ones) against the key's daily cap, and its orders in the last 60 s
    against its cap; from protocol version 6 also its open orders and its positions (empty
    from an older daemon)."""

    VARIANT: ClassVar[int] = 8
    request_id: int
    id: str
    day: str
    daily_value_used: float
    max_daily_value: Optional[float]
    orders_last_minute: int
    max_orders_per_minute: Optional[int]
    open_orders: int = 0
    max_open_orders: Optional[int] = None
    positions: Tuple[PositionUsage, ...] = ()
    max_position_value: Optional[float] = None

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        w.string(self.id)
        w.string(self.day)
        w.f64(self.daily_value_used)
        w.option(self.max_daily_value, w.f64)
        w.u32(self.orders_last_minute)
        w.option(self.max_orders_per_minute, w.u32)
        if version >= RISK_SINCE:
            w.u32(self.open_orders)
            w.option(self.max_open_orders, w.u32)

            def position(p: PositionUsage) -> None:
                w.string(p.symbol)
                w.f64(p.long)
                w.f64(p.short)

            w.seq(self.positions, position)
            w.option(self.max_position_value, w.f64)

    @classmethod
    def read(cls, r: Reader, version: int) -> "Usage":
        base = (r.u64(), _checked(validate_key_id, r.string()), r.string(), r.f64(), r.option(r.f64), r.u32(),
                r.option(r.u32))
        if version < RISK_SINCE:
            return cls(*base)
        open_orders = r.u32()
        max_open_orders = r.option(r.u32)
        positions = tuple(r.seq(lambda: PositionUsage(r.string(), r.f64(), r.f64())))
        return cls(*base, open_orders, max_open_orders, positions, r.option(r.f64))


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
        w.seq(self.keys, lambda k: write_key_record(w, k, version))

    @classmethod
    def read(cls, r: Reader, version: int) -> "KeysPage":
        return cls(r.u64(), r.u64(), r.u32(), r.u32(), tuple(r.seq(lambda: read_key_record(r, version))))


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


@dataclasses.dataclass(frozen=True)
class OrderEventOutcome:
    """What an :class:`OrderEvent` came to (protocol version 6); ``kind`` is one of:

    * ``applied``: the event changed the ledger; ``key_id`` is the order's key and
      ``refunded_value`` the daily value given back (a rejection; otherwise 0).
    * ``duplicate``: applied before, or the order is finished already; nothing changed
      (an event may be sent again safely). ``key_id`` is the order's key.
    * ``refused``: nothing changed; ``reason`` says why
      (:class:`~futu_auth_client.types.OrderEventRefusal`: ``unknown_ticket``,
      ``bad_figures``, ``not_supported``) and ``message`` is one line for a person.

    Build one with :meth:`applied_to`, :meth:`duplicate_of` or :meth:`refused_for`."""

    APPLIED: ClassVar[str] = "applied"
    DUPLICATE: ClassVar[str] = "duplicate"
    REFUSED: ClassVar[str] = "refused"
    _KINDS: ClassVar[Tuple[str, ...]] = (APPLIED, DUPLICATE, REFUSED)  # wire order

    kind: str
    key_id: Optional[str] = None
    refunded_value: Optional[float] = None
    reason: Optional[OrderEventRefusal] = None
    message: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in self._KINDS:
            raise ValueError("unknown OrderEventOutcome %r (expected applied, duplicate or refused)" % (self.kind,))
        refused = self.kind == self.REFUSED
        if refused != (self.key_id is None) or (self.kind == self.APPLIED) != (self.refunded_value is not None) \
                or refused != (self.reason is not None) or refused != (self.message is not None):
            raise ValueError("an OrderEventOutcome %s has %s" % (self.kind, {
                self.APPLIED: "a key_id and a refunded_value", self.DUPLICATE: "a key_id only",
                self.REFUSED: "a reason and a message only"}[self.kind]))
        if self.key_id is not None:
            validate_key_id(self.key_id)
        if self.reason is not None:
            object.__setattr__(self, "reason", OrderEventRefusal.parse(self.reason))

    @classmethod
    def applied_to(cls, key_id: str, refunded_value: float = 0.0) -> "OrderEventOutcome":
        """The event changed the ledger of the order of ``key_id``."""
        return cls(cls.APPLIED, key_id=key_id, refunded_value=float(refunded_value))

    @classmethod
    def duplicate_of(cls, key_id: str) -> "OrderEventOutcome":
        """The event was applied before, or the order of ``key_id`` is finished."""
        return cls(cls.DUPLICATE, key_id=key_id)

    @classmethod
    def refused_for(cls, reason: Union[str, OrderEventRefusal], message: str) -> "OrderEventOutcome":
        """The event was refused for ``reason``."""
        return cls(cls.REFUSED, reason=OrderEventRefusal.parse(reason), message=message)

    @property
    def applied(self) -> bool:
        """Whether the event changed the ledger."""
        return self.kind == self.APPLIED

    @property
    def duplicate(self) -> bool:
        """Whether the event had been applied before (or the order was finished)."""
        return self.kind == self.DUPLICATE

    @property
    def refused(self) -> bool:
        """Whether the daemon refused the event."""
        return self.kind == self.REFUSED

    @property
    def index(self) -> int:
        """The variant index on the wire."""
        return self._KINDS.index(self.kind)


@dataclasses.dataclass(frozen=True)
class OrderEventDone(Response):
    """What an :class:`OrderEvent` came to (protocol version 6): its ``outcome``."""

    VARIANT: ClassVar[int] = 16
    request_id: int
    outcome: OrderEventOutcome

    def write(self, w: Writer, version: int) -> None:
        w.u64(self.request_id)
        o = self.outcome
        w.varint(o.index, 32)
        if o.kind == OrderEventOutcome.REFUSED:
            w.enum(o.reason)
            w.string(o.message)  # type: ignore[arg-type]
        else:
            w.string(o.key_id)  # type: ignore[arg-type]
            if o.kind == OrderEventOutcome.APPLIED:
                w.f64(o.refunded_value)  # type: ignore[arg-type]

    @classmethod
    def read(cls, r: Reader, version: int) -> "OrderEventDone":
        request_id = r.u64()
        variant = r.variant()
        if variant == 0:
            outcome = OrderEventOutcome.applied_to(_checked(validate_key_id, r.string()), r.f64())
        elif variant == 1:
            outcome = OrderEventOutcome.duplicate_of(_checked(validate_key_id, r.string()))
        elif variant == 2:
            outcome = OrderEventOutcome.refused_for(r.enum(OrderEventRefusal), r.string())
        else:
            raise DecodeError("unknown OrderEventOutcome variant index %d" % variant)
        return cls(request_id, outcome)


#: The response classes, by variant index.
RESPONSES: Tuple[Type[Response], ...] = (
    HelloOk, DecisionResponse, Released, KeyGenerated, Keys, KeyRevoked, KeyBound, Reloaded, Usage, ErrorResponse,
    KeysPage, KeyRotated, KeyActivityResponse, Halts, KeysImported, KeysExport, OrderEventDone,
)


# ---- whole messages ---------------------------------------------------------------------

def encode_request(req: Request, version: int = PROTOCOL_VERSION) -> bytes:
    """A request's body (no length prefix) as a peer speaking ``version`` reads it;
    ``ValueError`` for a request that version cannot carry (:meth:`Request.needs`)."""
    needs, what = req.needs()
    if version < needs:
        raise ValueError("%s needs protocol version %d; this connection speaks %d" % (what, needs, version))
    w = Writer()
    w.varint(req.VARIANT, 32)
    req.write(w, version)
    return w.getvalue()


def decode_request(body: bytes, version: int = PROTOCOL_VERSION) -> Request:
    """The request in a body written for protocol ``version``;
    :class:`~futu_auth_client.codec.DecodeError` if it is not one of that version."""
    r = Reader(body)
    variant = r.variant()
    if variant >= len(REQUESTS):
        raise DecodeError("unknown Request variant index %d" % variant)
    cls = REQUESTS[variant]
    if version < cls.SINCE:
        raise DecodeError("request %s in a message of protocol version %d, which does not have it"
                          % (cls.__name__, version))
    req = cls.read(r, version)
    r.finish()
    return req


def _records(resp: Response) -> Tuple[KeyRecord, ...]:
    if isinstance(resp, (KeyGenerated, KeyBound)):
        return (resp.record,)
    if isinstance(resp, (Keys, KeysPage)):
        return resp.keys
    return ()


def told_in(resp: Response, version: int) -> Response:
    """``resp`` as a peer of ``version`` may receive it. Before protocol version 6 a
    response carrying a key record with the scope ``admin`` or a version-6 limit is an
    Error ``internal`` naming the key (its bytes would be a frame that peer cannot read,
    or a key shown with less than it has); the other changes (a reason, figures, a scope)
    are the Decision's own (:func:`write_decision`)."""
    if version < RISK_SINCE:
        for rec in _records(resp):
            newer = newer_than_v5(rec.scopes, rec.limits)
            if newer:
                return ErrorResponse(resp.request_id, ErrorKind.INTERNAL,  # type: ignore[attr-defined]
                                     "key %s has %s, which protocol version %d cannot carry; use a client of "
                                     "protocol version %d" % (rec.id, ", ".join(newer), version, RISK_SINCE))
    return resp


def encode_response(resp: Response, version: int = PROTOCOL_VERSION) -> bytes:
    """A response's body as a peer speaking ``version`` reads it (:func:`told_in`)."""
    resp = told_in(resp, version)
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


def request_frame(req: Request, version: int = PROTOCOL_VERSION) -> bytes:
    """A request's whole frame for a peer speaking ``version``, length prefix included."""
    return frame(encode_request(req, version))


def response_frame(resp: Response, version: int = PROTOCOL_VERSION) -> bytes:
    """A response's whole frame for a peer speaking ``version``."""
    return frame(encode_response(resp, version))

