"""The protocol's values: enums, orders, key specs and records, decisions.

Every enum is a ``str`` enum whose value is the name the audit log, metrics, keys.json
and ``futucli --json`` use (``Reason.DAILY_VALUE == "daily_value"``,
``Scope.TRADE_SIMULATE == "trade:simulate"``); on the wire only its index travels, which
is its position in the class (docs/PROTOCOL.md §6). Every argument that takes an enum
also takes its name as a ``str``.

The validated strings of docs/PROTOCOL.md §6 (key ids, fingerprints, symbols in limits,
hours windows, caps, timestamps) are checked when a value is built: a value that breaks
the rule would make the daemon close the connection (``bad_frame``), so it is refused
here with a ``ValueError`` before anything is sent.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as _dt
import decimal
import enum
import math
import re
from typing import Any, ClassVar, Dict, Iterable, Optional, Tuple, Type, TypeVar, Union

from .token import KeyHash, redact

__all__ = [
    "BindOp",
    "DailyValueFigures",
    "Decision",
    "DuplicateFigures",
    "ErrorKind",
    "HoursFigures",
    "Iface",
    "KeyRecord",
    "KeySpec",
    "LimitFigures",
    "Limits",
    "Market",
    "OpenOrdersFigures",
    "Order",
    "OrderEventKind",
    "OrderEventRefusal",
    "OrderValueFigures",
    "PositionFigures",
    "PriceCollarFigures",
    "RateFigures",
    "Reason",
    "Scope",
    "SessionOutcome",
    "SessionSubject",
    "TrdEnv",
    "TrdSide",
    "validate_cap",
    "validate_fingerprint",
    "validate_hours_window",
    "validate_key_id",
    "validate_symbol",
    "validate_timestamp",
]

E = TypeVar("E", bound="WireEnum")


class WireEnum(str, enum.Enum):
    """A protocol enum: its value is its stable name, its wire index its position."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def index(self) -> int:
        """The variant index on the wire."""
        return _indices(type(self))[self]

    @classmethod
    def from_index(cls: Type[E], index: int) -> E:
        """The member with this wire index; ``ValueError`` for an index this client does
        not know (a newer daemon: docs/PROTOCOL.md §4 says to treat it as malformed)."""
        members = list(cls)
        if not 0 <= index < len(members):
            raise ValueError("unknown %s variant index %d" % (cls.__name__, index))
        return members[index]

    @classmethod
    def parse(cls: Type[E], value: Union[str, E]) -> E:
        """The member for ``value``: a member, or its name as in keys.json (``"HK"``,
        ``"qot:read"``, ``"rest"``)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls(value)
            except ValueError:
                pass
        raise ValueError(
            "unknown %s %r (expected one of %s)"
            % (cls.__name__, redact(str(value)), ", ".join(m.value for m in cls))
        )


_INDEX_CACHE: Dict[type, Dict[Any, int]] = {}


def _indices(cls: type) -> Dict[Any, int]:
    table = _INDEX_CACHE.get(cls)
    if table is None:
        table = {m: i for i, m in enumerate(cls)}  # type: ignore[var-annotated]
        _INDEX_CACHE[cls] = table
    return table


class Iface(WireEnum):
    """The front-end a request came through (audit and metric label)."""

    REST = "rest"
    GRPC = "grpc"
    WS = "ws"
    MCP = "mcp"
    CLI = "cli"


class TrdEnv(WireEnum):
    """Simulated (``trade:simulate``) or real (``trade:real``) trading."""

    SIMULATE = "simulate"
    REAL = "real"


class Market(WireEnum):
    """A trading market."""

    HK = "HK"
    US = "US"
    CN = "CN"
    HKCC = "HKCC"
    FUTURES = "FUTURES"
    SG = "SG"
    JP = "JP"
    AU = "AU"
    MY = "MY"
    CA = "CA"


class TrdSide(WireEnum):
    """An order's direction."""

    BUY = "BUY"
    SELL = "SELL"
    SELL_SHORT = "SELL_SHORT"
    BUY_BACK = "BUY_BACK"


class Scope(WireEnum):
    """What a key may do; the names are keys.json's."""

    QOT_READ = "qot:read"
    ACC_READ = "acc:read"
    TRADE_SIMULATE = "trade:simulate"
    TRADE_REAL = "trade:real"
    TRADE_UNLOCK = "trade:unlock"
    #: Protocol version 6: the gateway's management endpoints (``Admin_Status``,
    #: ``Admin_Reload``, ``Admin_Usage``, ``Admin_Halt``). Never sent to, nor read from, a
    #: daemon of an older version.
    ADMIN = "admin"


class Reason(WireEnum):
    """Why a request was refused (the audit log's and metrics' names)."""

    UNKNOWN_KEY = "unknown_key"
    EXPIRED = "expired"
    FROZEN = "frozen"
    MACHINE = "machine"
    SCOPE = "scope"
    UNKNOWN_ENDPOINT = "unknown_endpoint"
    MARKET = "market"
    SYMBOL = "symbol"
    SIDE = "side"
    HOURS = "hours"
    ORDER_VALUE = "order_value"
    DAILY_VALUE = "daily_value"
    RATE = "rate"
    BAD_ORDER = "bad_order"
    FORBIDDEN = "forbidden"
    INTERNAL = "internal"
    #: Protocol version 5: trading is halted for the key or for every key (``futucli
    #: halt``); a daemon tells a client of an older version ``scope`` instead.
    HALTED = "halted"
    #: Protocol version 6: the request names no account, or one not in the key's
    #: ``allowed_acc_ids``. Told ``scope`` before version 6.
    ACCOUNT = "account"
    #: Protocol version 6: a limit order's price is further from the reference price than
    #: ``max_price_deviation_pct``, or the check has no ``ref_price``. Told
    #: ``order_value`` before version 6.
    PRICE_COLLAR = "price_collar"
    #: Protocol version 6: ``max_open_orders`` orders are open already. Told ``rate``
    #: before version 6.
    OPEN_ORDERS = "open_orders"
    #: Protocol version 6: the symbol's position plus this order would pass
    #: ``max_position_value``. Told ``daily_value`` before version 6.
    POSITION = "position"
    #: Protocol version 6: the same order (account, symbol, direction, qty, price) was
    #: allowed within ``duplicate_window_ms``. Told ``rate`` before version 6.
    DUPLICATE = "duplicate"


class OrderEventKind(WireEnum):
    """What became of an allowed order (``OrderEvent``, protocol version 6). A fill
    (``partially_filled``, ``filled``) carries the quantity filled so far and its average
    price; the other kinds carry neither."""

    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def is_fill(self) -> bool:
        """Whether the event carries ``filled_qty`` and ``fill_price``."""
        return self in (OrderEventKind.PARTIALLY_FILLED, OrderEventKind.FILLED)


class OrderEventRefusal(WireEnum):
    """Why the daemon refused an ``OrderEvent`` (protocol version 6); nothing changed."""

    #: No open order has this ticket.
    UNKNOWN_TICKET = "unknown_ticket"
    #: A fill without its figures, figures on another kind, more filled than ordered, a
    #: rejection after a fill.
    BAD_FIGURES = "bad_figures"
    #: The daemon's ledger store does not follow orders.
    NOT_SUPPORTED = "not_supported"


class ErrorKind(WireEnum):
    """Why a request got no regular answer (``Response::Error``)."""

    VERSION = "version"
    BAD_FRAME = "bad_frame"
    HELLO_FIRST = "hello_first"
    UNKNOWN_TICKET = "unknown_ticket"
    ALREADY_RELEASED = "already_released"
    TICKET_EXPIRED = "ticket_expired"
    UNKNOWN_KEY = "unknown_key"
    DUPLICATE_KEY = "duplicate_key"
    INVALID_SPEC = "invalid_spec"
    STORE = "store"
    INTERNAL = "internal"
    LISTING_EXPIRED = "listing_expired"


# ---- validated strings (docs/PROTOCOL.md §6, "Validated strings") ----------------------

_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_FINGERPRINT = re.compile(r"fp_[A-Za-z0-9_-]+\Z")
_SYMBOL_CODE = re.compile(r"[A-Za-z0-9._-]{1,32}\Z")
SYMBOL_PREFIXES = ("HK", "US", "SH", "SZ", "SG", "JP", "AU", "MY", "CA")
_HM = re.compile(r"([0-9]{2}):([0-9]{2})\Z")
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})\Z"
)
#: The largest cap futu-authd counts (10^20).
MAX_CAP = decimal.Decimal(10) ** 20
#: The widest price collar, in percent (a price 100 times the reference).
MAX_PRICE_DEVIATION_PCT = 10_000.0
#: The longest duplicate-order window, in milliseconds (an hour).
MAX_DUPLICATE_WINDOW_MS = 3_600_000


def validate_key_id(value: str) -> str:
    """A key id: 1 to 64 of ``A-Z a-z 0-9 . _ -``, and not shaped like a plaintext."""
    if not isinstance(value, str) or not _KEY_ID.match(value):
        raise ValueError(
            "malformed key id %r (expected 1 to 64 letters, digits, '.', '_' or '-')"
            % (redact(value) if isinstance(value, str) else value,)
        )
    if redact(value) != value:
        raise ValueError(
            "a key id must not look like a key's plaintext (fc_ and 32 hex digits): "
            "ids are public, in audit and metrics"
        )
    return value


def validate_fingerprint(value: str) -> str:
    """A machine fingerprint: ``fp_`` and at least one of ``A-Z a-z 0-9 _ -``, at most
    67 characters in all (``futucli machine-id`` prints this host's)."""
    if not isinstance(value, str) or len(value) > 67 or not _FINGERPRINT.match(value):
        raise ValueError(
            "malformed machine fingerprint %r (expected fp_ followed by letters, digits, _ or -)"
            % (redact(value) if isinstance(value, str) else value,)
        )
    return value


def validate_symbol(value: str) -> str:
    """A symbol of ``Limits.allowed_symbols``: ``MARKET.CODE``, MARKET one of
    ``HK US SH SZ SG JP AU MY CA``, CODE 1 to 32 of ``A-Z a-z 0-9 . - _``."""
    ok = False
    if isinstance(value, str) and "." in value:
        prefix, code = value.split(".", 1)
        ok = prefix in SYMBOL_PREFIXES and _SYMBOL_CODE.match(code) is not None
    if not ok:
        raise ValueError(
            "malformed symbol %r (expected MARKET.CODE such as HK.00700 or US.AAPL, MARKET one of %s)"
            % (redact(value) if isinstance(value, str) else value, ", ".join(SYMBOL_PREFIXES))
        )
    return value


def validate_hours_window(value: str) -> str:
    """An hours window ``HH:MM-HH:MM`` (24-hour, start different from end; an end
    before the start crosses midnight)."""
    def minutes(t: str) -> Optional[int]:
        m = _HM.match(t)
        if not m:
            return None
        h, mi = int(m.group(1)), int(m.group(2))
        return h * 60 + mi if h < 24 and mi < 60 else None

    if not isinstance(value, str) or "-" not in value:
        raise ValueError("malformed hours_window %r: expected HH:MM-HH:MM, e.g. 09:30-16:00" % (value,))
    a, b = value.split("-", 1)
    start, end = minutes(a), minutes(b)
    if start is None or end is None:
        raise ValueError("malformed hours_window %r: not a 24-hour HH:MM-HH:MM window" % (value,))
    if start == end:
        raise ValueError("malformed hours_window %r: start and end are equal, so the window is empty" % (value,))
    return value


def validate_cap(value: float) -> float:
    """A money cap: finite, not negative, at most 8 decimal places as its shortest text
    shows (``0.123456789`` is refused, never rounded), at most 1e20. ``-0`` is 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("a cap is a number, not %s" % type(value).__name__)
    v = float(value)
    if isinstance(value, int) and v != value:
        raise ValueError("cap %d is not exactly a float" % value)
    if not math.isfinite(v):
        raise ValueError("cap %r is not a finite number" % v)
    if v == 0:
        return 0.0
    if v < 0:
        raise ValueError("cap %r is negative; a cap is a finite number that is not negative" % v)
    exact = decimal.Decimal(repr(v))
    # repr() is the shortest text that reads back as v (as the daemon reads caps): it has
    # no trailing zeros after the point, so an exponent below -8 is a ninth decimal place.
    if exact.as_tuple().exponent < -8:  # type: ignore[operator]
        raise ValueError("cap %r has more than 8 decimal places; amounts are counted to 0.00000001" % v)
    if exact > MAX_CAP:
        raise ValueError("cap %r is above 1e20, the largest amount counted" % v)
    return v


def validate_timestamp(value: Union[str, _dt.datetime]) -> str:
    """An RFC 3339 timestamp with an offset. A ``datetime`` must be timezone-aware and
    is written in UTC (``2026-12-31T08:00:00Z``)."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("a timestamp needs a timezone (use datetime.timezone.utc)")
        utc = value.astimezone(_dt.timezone.utc)
        text = utc.strftime("%Y-%m-%dT%H:%M:%S")
        if utc.microsecond:
            text += (".%06d" % utc.microsecond).rstrip("0")
        return text + "Z"
    m = _TIMESTAMP.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError("malformed timestamp %r (expected RFC 3339 with an offset, e.g. 2026-12-31T00:00:00Z)" % (value,))
    try:
        _dt.datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)),
                     int(m.group(4)), int(m.group(5)), min(int(m.group(6)), 59))
    except ValueError as e:
        raise ValueError("malformed timestamp %r: %s" % (value, e)) from None
    return value


def _is_uint(n: object, bits: int) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << bits


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _enum_tuple(cls: Type[E], values: Optional[Iterable[Union[str, E]]]) -> Optional[Tuple[E, ...]]:
    if values is None:
        return None
    if isinstance(values, str):
        raise TypeError("expected a list of %s names, got one str" % cls.__name__)
    return tuple(cls.parse(v) for v in values)


def _str_tuple(values: Optional[Iterable[str]], check) -> Optional[Tuple[str, ...]]:
    if values is None:
        return None
    if isinstance(values, str):
        raise TypeError("expected a list of strings, got one str")
    return tuple(check(v) for v in values)


# ---- orders -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Order:
    """The order an order-write endpoint (``Trd_PlaceOrder`` 2202, ``Trd_ModifyOrder``
    2205, ``Trd_PlaceComboOrder`` 2227, ``Trd_ReconfirmOrder`` 2237) would place. Its
    value is ``qty * price``. The symbol, qty and price are checked by the daemon (a bad
    one is a ``bad_order`` deny), not here."""

    env: TrdEnv
    market: Market
    symbol: str
    side: TrdSide
    qty: float
    price: Optional[float] = None

    def __post_init__(self) -> None:
        _set(self, "env", TrdEnv.parse(self.env))
        _set(self, "market", Market.parse(self.market))
        _set(self, "side", TrdSide.parse(self.side))
        if not isinstance(self.symbol, str):
            raise TypeError("Order.symbol is a str")
        _set(self, "qty", float(self.qty))
        if self.price is not None:
            _set(self, "price", float(self.price))

    def to_dict(self) -> Dict[str, Any]:
        """The order as JSON-ready values, with enum names."""
        return {
            "env": self.env.value, "market": self.market.value, "symbol": self.symbol,
            "side": self.side.value, "qty": self.qty, "price": self.price,
        }


# ---- keys -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Limits:
    """A key's limits; ``None`` is "not set". Every field travels on the wire."""

    allowed_markets: Optional[Tuple[Market, ...]] = None
    allowed_symbols: Optional[Tuple[str, ...]] = None
    allowed_trd_sides: Optional[Tuple[TrdSide, ...]] = None
    max_order_value: Optional[float] = None
    max_daily_value: Optional[float] = None
    max_orders_per_minute: Optional[int] = None
    hours_window: Optional[str] = None
    #: Protocol version 6: the broker accounts an order or account read may name (at
    #: least one, each once); a request naming none is refused ``account``.
    allowed_acc_ids: Optional[Tuple[int, ...]] = None
    #: Protocol version 6: the price collar, in percent of the reference price (above 0,
    #: at most 10 000).
    max_price_deviation_pct: Optional[float] = None
    #: Protocol version 6: orders allowed and not yet filled, cancelled or rejected.
    max_open_orders: Optional[int] = None
    #: Protocol version 6: per symbol, the value of the position in an order's direction
    #: (a cap).
    max_position_value: Optional[float] = None
    #: Protocol version 6: the same order again within this many milliseconds is refused
    #: ``duplicate`` (1 to 3 600 000).
    duplicate_window_ms: Optional[int] = None

    #: The limits protocol version 6 added, in wire order.
    SINCE_V6: ClassVar[Tuple[str, ...]] = ("allowed_acc_ids", "max_price_deviation_pct", "max_open_orders",
                                           "max_position_value", "duplicate_window_ms")

    def __post_init__(self) -> None:
        _set(self, "allowed_markets", _enum_tuple(Market, self.allowed_markets))
        _set(self, "allowed_symbols", _str_tuple(self.allowed_symbols, validate_symbol))
        _set(self, "allowed_trd_sides", _enum_tuple(TrdSide, self.allowed_trd_sides))
        for cap in ("max_order_value", "max_daily_value"):
            if getattr(self, cap) is not None:
                _set(self, cap, validate_cap(getattr(self, cap)))
        for name in ("max_orders_per_minute", "max_open_orders"):
            n = getattr(self, name)
            if n is not None and not _is_uint(n, 32):
                raise ValueError("%s is a u32, got %r" % (name, n))
        if self.hours_window is not None:
            validate_hours_window(self.hours_window)
        ids = self.allowed_acc_ids
        if ids is not None:
            if isinstance(ids, (str, bytes)) or not isinstance(ids, collections.abc.Iterable):
                raise TypeError("allowed_acc_ids is a list of account ids")
            ids = tuple(ids)
            for i, acc in enumerate(ids):
                if not _is_uint(acc, 64):
                    raise ValueError("an account id is a u64, got %r" % (acc,))
                if acc in ids[:i]:
                    raise ValueError("account id %d is listed twice in allowed_acc_ids" % acc)
            if not ids:
                raise ValueError("allowed_acc_ids is empty; list at least one account id, or leave it None for any account")
            _set(self, "allowed_acc_ids", ids)
        pct = self.max_price_deviation_pct
        if pct is not None:
            if isinstance(pct, bool) or not isinstance(pct, (int, float)):
                raise TypeError("max_price_deviation_pct is a number, not %s" % type(pct).__name__)
            pct = float(pct)
            if not (math.isfinite(pct) and 0 < pct <= MAX_PRICE_DEVIATION_PCT):
                raise ValueError("max_price_deviation_pct %r is not a percentage above 0 and at most %g"
                                 % (pct, MAX_PRICE_DEVIATION_PCT))
            _set(self, "max_price_deviation_pct", pct)
        if self.max_position_value is not None:
            _set(self, "max_position_value", validate_cap(self.max_position_value))
        ms = self.duplicate_window_ms
        if ms is not None and not (_is_uint(ms, 64) and 1 <= ms <= MAX_DUPLICATE_WINDOW_MS):
            raise ValueError("duplicate_window_ms is a number of milliseconds from 1 to %d, got %r"
                             % (MAX_DUPLICATE_WINDOW_MS, ms))

    def since_v6(self) -> Tuple[str, ...]:
        """The names of the limits of protocol version 6 that are set: what a daemon of an
        older version cannot be sent (nor send)."""
        return tuple(name for name in self.SINCE_V6 if getattr(self, name) is not None)

    def to_dict(self) -> Dict[str, Any]:
        """The limits that are set, as keys.json writes them."""
        out: Dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            out[f.name] = [x.value if isinstance(x, WireEnum) else x for x in v] if isinstance(v, tuple) else v
        return out


def _machines(values: Optional[Iterable[str]]) -> Optional[Tuple[str, ...]]:
    return _str_tuple(values, validate_fingerprint)


@dataclasses.dataclass(frozen=True)
class KeySpec:
    """What an administrator asks for when making a key (``GenKey``); the daemon adds the
    hash and ``created_at``. ``allowed_machines``: ``None`` any host, ``[]`` frozen, a
    list only those hosts. ``expires_at``: RFC 3339 text or an aware ``datetime``."""

    id: str
    scopes: Tuple[Scope, ...]
    limits: Limits = dataclasses.field(default_factory=Limits)
    allowed_machines: Optional[Tuple[str, ...]] = None
    expires_at: Optional[str] = None
    note: Optional[str] = None

    def __post_init__(self) -> None:
        validate_key_id(self.id)
        _set(self, "scopes", _enum_tuple(Scope, self.scopes))
        if isinstance(self.limits, dict):
            _set(self, "limits", Limits(**self.limits))
        elif not isinstance(self.limits, Limits):
            raise TypeError("KeySpec.limits is a Limits")
        _set(self, "allowed_machines", _machines(self.allowed_machines))
        if self.expires_at is not None:
            _set(self, "expires_at", validate_timestamp(self.expires_at))
        if self.note is not None and not isinstance(self.note, str):
            raise TypeError("KeySpec.note is a str")


@dataclasses.dataclass(frozen=True)
class KeyRecord:
    """One key as keys.json stores it (never the plaintext: ``hash`` is its SHA-256)."""

    id: str
    hash: KeyHash
    scopes: Tuple[Scope, ...]
    limits: Limits
    allowed_machines: Optional[Tuple[str, ...]]
    created_at: str
    expires_at: Optional[str] = None
    note: Optional[str] = None

    @property
    def frozen(self) -> bool:
        """Whether the key is refused everywhere (``allowed_machines`` is ``[]``)."""
        return self.allowed_machines == ()

    def to_dict(self) -> Dict[str, Any]:
        """The record as keys.json writes it (unset fields left out)."""
        out: Dict[str, Any] = {"id": self.id, "hash": str(self.hash), "scopes": [s.value for s in self.scopes]}
        limits = self.limits.to_dict()
        if limits:
            out["limits"] = limits
        if self.allowed_machines is not None:
            out["allowed_machines"] = list(self.allowed_machines)
        out["created_at"] = self.created_at
        if self.expires_at is not None:
            out["expires_at"] = self.expires_at
        if self.note is not None:
            out["note"] = self.note
        return out


class BindOp:
    """A change of a key's machine binding (``BindKey``): build one with
    :meth:`add`, :meth:`replace`, :meth:`freeze` or :meth:`clear`."""

    ADD = "add"
    REPLACE = "replace"
    FREEZE = "freeze"
    CLEAR = "clear"
    _KINDS = (ADD, REPLACE, FREEZE, CLEAR)  # wire order

    __slots__ = ("kind", "machines")

    def __init__(self, kind: str, machines: Optional[Iterable[str]] = None) -> None:
        if kind not in self._KINDS:
            raise ValueError("unknown BindOp %r (expected add, replace, freeze or clear)" % (kind,))
        with_list = kind in (self.ADD, self.REPLACE)
        if with_list != (machines is not None):
            raise ValueError("BindOp %s %s a list of fingerprints" % (kind, "takes" if with_list else "takes no"))
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "machines", _machines(machines))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("BindOp is immutable")

    @classmethod
    def add(cls, machines: Iterable[str]) -> "BindOp":
        """Add these hosts (an unbound key becomes bound to them)."""
        return cls(cls.ADD, machines)

    @classmethod
    def replace(cls, machines: Iterable[str]) -> "BindOp":
        """Exactly these hosts."""
        return cls(cls.REPLACE, machines)

    @classmethod
    def freeze(cls) -> "BindOp":
        """``allowed_machines: []``: refused everywhere until bound again."""
        return cls(cls.FREEZE)

    @classmethod
    def clear(cls) -> "BindOp":
        """``allowed_machines: None``: usable on any host again."""
        return cls(cls.CLEAR)

    @property
    def index(self) -> int:
        """The variant index on the wire."""
        return self._KINDS.index(self.kind)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BindOp):
            return NotImplemented
        return (self.kind, self.machines) == (other.kind, other.machines)

    def __hash__(self) -> int:
        return hash((self.kind, self.machines))

    def __repr__(self) -> str:
        if self.machines is None:
            return "BindOp.%s()" % self.kind
        return "BindOp.%s(%r)" % (self.kind, list(self.machines))


# ---- sessions ---------------------------------------------------------------------------

class SessionSubject:
    """What a long-lived session asks again and again (``SessionCheck``, protocol version
    4): build one with :meth:`keep_alive` or :meth:`for_pushes`. ``kind`` is
    ``keep_alive`` or ``pushes``; a ``pushes`` subject has the ``scope`` its pushes need
    and how many ``pushes`` the decision is for."""

    KEEP_ALIVE = "keep_alive"
    PUSHES = "pushes"
    _KINDS = (KEEP_ALIVE, PUSHES)  # wire order

    __slots__ = ("kind", "scope", "pushes")

    def __init__(self, kind: str, scope: Union[None, str, Scope] = None, pushes: Optional[int] = None) -> None:
        if kind not in self._KINDS:
            raise ValueError("unknown SessionSubject %r (expected keep_alive or pushes)" % (kind,))
        if kind == self.KEEP_ALIVE:
            if scope is not None or pushes is not None:
                raise ValueError("SessionSubject keep_alive takes no scope and no count of pushes")
        else:
            if scope is None:
                raise ValueError("SessionSubject pushes takes the scope the pushes need")
            scope = Scope.parse(scope)
            if isinstance(pushes, bool) or not isinstance(pushes, int) or not 0 <= pushes < 1 << 32:
                raise ValueError("SessionSubject pushes takes how many pushes (a u32), got %r" % (pushes,))
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "scope", scope)
        object.__setattr__(self, "pushes", pushes)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("SessionSubject is immutable")

    @classmethod
    def keep_alive(cls) -> "SessionSubject":
        """Is the session's key still usable? Decided as a dry-run check of the system
        endpoint ``KeepAlive`` (no scope, nothing consumed)."""
        return cls(cls.KEEP_ALIVE)

    @classmethod
    def for_pushes(cls, scope: Union[str, Scope], pushes: int = 1) -> "SessionSubject":
        """May ``pushes`` pushes that need ``scope`` go out? Decided as a ``CheckScope``;
        when refused on a WebSocket (iface ``ws``), the pushes are counted in
        ``futu_ws_filtered_pushes_total``."""
        return cls(cls.PUSHES, scope, pushes)

    @property
    def index(self) -> int:
        """The variant index on the wire."""
        return self._KINDS.index(self.kind)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SessionSubject):
            return NotImplemented
        return (self.kind, self.scope, self.pushes) == (other.kind, other.scope, other.pushes)

    def __hash__(self) -> int:
        return hash((self.kind, self.scope, self.pushes))

    def __repr__(self) -> str:
        if self.kind == self.KEEP_ALIVE:
            return "SessionSubject.keep_alive()"
        return "SessionSubject.for_pushes(%r, %d)" % (self.scope.value, self.pushes)  # type: ignore[union-attr]


class SessionOutcome:
    """What a decision came to, as a session remembers it (``SessionCheck.previous``,
    protocol version 4): :meth:`allow`, or :meth:`deny` for a reason; :meth:`of` a
    decision."""

    __slots__ = ("allowed", "reason")

    def __init__(self, allowed: bool, reason: Union[None, str, Reason] = None) -> None:
        if not isinstance(allowed, bool):
            raise TypeError("SessionOutcome.allowed is a bool")
        if allowed != (reason is None):
            raise ValueError("a SessionOutcome is an allow without a reason or a deny with one")
        object.__setattr__(self, "allowed", allowed)
        object.__setattr__(self, "reason", None if reason is None else Reason.parse(reason))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("SessionOutcome is immutable")

    @classmethod
    def allow(cls) -> "SessionOutcome":
        """Allowed."""
        return cls(True)

    @classmethod
    def deny(cls, reason: Union[str, Reason]) -> "SessionOutcome":
        """Refused for ``reason``."""
        return cls(False, reason)

    @classmethod
    def of(cls, decision: "Decision") -> "SessionOutcome":
        """The outcome of ``decision``: allowed, or refused for its reason (a fail-closed
        deny is ``internal``)."""
        return cls.allow() if decision.allowed else cls.deny(decision.reason or Reason.INTERNAL)

    @property
    def index(self) -> int:
        """The variant index on the wire."""
        return 0 if self.allowed else 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SessionOutcome):
            return NotImplemented
        return (self.allowed, self.reason) == (other.allowed, other.reason)

    def __hash__(self) -> int:
        return hash((self.allowed, self.reason))

    def __repr__(self) -> str:
        if self.allowed:
            return "SessionOutcome.allow()"
        return "SessionOutcome.deny(%r)" % (self.reason.value,)  # type: ignore[union-attr]


# ---- decisions --------------------------------------------------------------------------

class LimitFigures:
    """The figures behind a limit's refusal (protocol version 2); one subclass per limit:
    :class:`RateFigures`, :class:`DailyValueFigures`, :class:`OrderValueFigures`,
    :class:`HoursFigures`, and from version 6 :class:`PriceCollarFigures`,
    :class:`OpenOrdersFigures`, :class:`PositionFigures`, :class:`DuplicateFigures`. ``kind`` is the JSON name (``rate``, ``daily_value``, …)."""

    kind: ClassVar[str] = ""
    index: ClassVar[int] = -1

    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        """``{kind: {field: value}}``, as ``futucli check --json`` prints ``limit``."""
        return {self.kind: dataclasses.asdict(self)}  # type: ignore[call-overload]


@dataclasses.dataclass(frozen=True)
class RateFigures(LimitFigures):
    """``rate``: orders allowed in the last 60 s, and the key's cap."""

    kind: ClassVar[str] = "rate"
    index: ClassVar[int] = 0
    orders_in_window: int
    max_orders_per_minute: int


@dataclasses.dataclass(frozen=True)
class DailyValueFigures(LimitFigures):
    """``daily_value``: today's (UTC) allowed value, this order's value, the key's cap."""

    kind: ClassVar[str] = "daily_value"
    index: ClassVar[int] = 1
    used: float
    order_value: float
    max_daily_value: float


@dataclasses.dataclass(frozen=True)
class OrderValueFigures(LimitFigures):
    """``order_value``: this order's value and the key's cap."""

    kind: ClassVar[str] = "order_value"
    index: ClassVar[int] = 2
    order_value: float
    max_order_value: float


@dataclasses.dataclass(frozen=True)
class HoursFigures(LimitFigures):
    """``hours``: the daemon host's local time (``HH:MM``) and the key's window."""

    kind: ClassVar[str] = "hours"
    index: ClassVar[int] = 3
    local_time: str
    hours_window: str


@dataclasses.dataclass(frozen=True)
class PriceCollarFigures(LimitFigures):
    """``price_collar`` (protocol version 6): the order's limit price, the gateway's
    reference price, how far apart they are (in percent of the reference) and the key's
    collar."""

    kind: ClassVar[str] = "price_collar"
    index: ClassVar[int] = 4
    price: float
    ref_price: float
    deviation_pct: float
    max_price_deviation_pct: float


@dataclasses.dataclass(frozen=True)
class OpenOrdersFigures(LimitFigures):
    """``open_orders`` (protocol version 6): the key's open orders and its cap."""

    kind: ClassVar[str] = "open_orders"
    index: ClassVar[int] = 5
    open_orders: int
    max_open_orders: int


@dataclasses.dataclass(frozen=True)
class PositionFigures(LimitFigures):
    """``position`` (protocol version 6): the symbol's position value in the order's
    direction, what this order would add, and the key's cap."""

    kind: ClassVar[str] = "position"
    index: ClassVar[int] = 6
    position_value: float
    order_value: float
    max_position_value: float


@dataclasses.dataclass(frozen=True)
class DuplicateFigures(LimitFigures):
    """``duplicate`` (protocol version 6): how long ago the same order was allowed, and the
    key's window, in milliseconds."""

    kind: ClassVar[str] = "duplicate"
    index: ClassVar[int] = 7
    since_ms: int
    duplicate_window_ms: int


#: The LimitFigures classes in wire order.
LIMIT_FIGURES = (RateFigures, DailyValueFigures, OrderValueFigures, HoursFigures, PriceCollarFigures,
                 OpenOrdersFigures, PositionFigures, DuplicateFigures)
#: How many of them protocol versions 2 to 5 have.
LIMIT_FIGURES_BEFORE_V6 = 4


@dataclasses.dataclass(frozen=True)
class Decision:
    """The answer to a check: :attr:`allowed`, or a deny with its :attr:`reason`.

    A decision is also what a check returns when the daemon gave none (not running, no
    answer within the deadline, connection lost, an answer that could not be read): a
    deny with reason ``internal`` whose :attr:`error` is the :class:`~futu_auth_client.
    ClientError` that happened. The client fails closed: only the daemon allows.

    ``bool(decision)`` is :attr:`allowed`.
    """

    allowed: bool
    #: The key that matched (always on an allow; on a deny when a key matched).
    key_id: Optional[str] = None
    #: Allow: the scope the endpoint needed (``None`` for connection/system endpoints).
    scope: Optional[Scope] = None
    #: Allow of an order that consumed daily value: pass it to ``release()`` if the broker
    #: rejects the order.
    ticket: Optional[int] = None
    #: Deny: which rule refused.
    reason: Optional[Reason] = None
    #: Deny: one line for a person (never the token).
    detail: str = ""
    #: Deny (version 2): milliseconds until asking again can succeed, where waiting helps.
    retry_after_ms: Optional[int] = None
    #: Deny (version 2): the figures of the limit that refused.
    limit: Optional[LimitFigures] = None
    #: Set when the client, not the daemon, decided (fail closed): why there was no answer.
    error: Optional[BaseException] = dataclasses.field(default=None, compare=False)

    @classmethod
    def allow(cls, key_id: str, scope: Optional[Scope] = None, ticket: Optional[int] = None) -> "Decision":
        """An allow, as the daemon sends it."""
        return cls(True, key_id=key_id, scope=None if scope is None else Scope.parse(scope), ticket=ticket)

    @classmethod
    def deny(cls, reason: Union[str, Reason], key_id: Optional[str] = None, detail: str = "",
             retry_after_ms: Optional[int] = None, limit: Optional[LimitFigures] = None) -> "Decision":
        """A deny, as the daemon sends it."""
        return cls(False, key_id=key_id, reason=Reason.parse(reason), detail=detail,
                   retry_after_ms=retry_after_ms, limit=limit)

    @classmethod
    def failed(cls, error: BaseException) -> "Decision":
        """The deny a check returns when the daemon gave no decision (fail closed)."""
        return cls(False, reason=Reason.INTERNAL, detail=redact(str(error)), error=error)

    @property
    def denied(self) -> bool:
        """``not allowed``."""
        return not self.allowed

    @property
    def from_daemon(self) -> bool:
        """Whether futu-authd made this decision (``False`` for a fail-closed deny)."""
        return self.error is None

    @property
    def retry_after(self) -> Optional[float]:
        """:attr:`retry_after_ms` in seconds (for a ``Retry-After`` header: round up)."""
        return None if self.retry_after_ms is None else self.retry_after_ms / 1000.0

    def __bool__(self) -> bool:
        return self.allowed

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready, as ``futucli check --json`` prints it (``outcome`` ``allow`` or
        ``reject``), plus ``error`` (the exception's class name, or ``None``)."""
        if self.allowed:
            return {"outcome": "allow", "key_id": self.key_id,
                    "scope": None if self.scope is None else self.scope.value, "ticket": self.ticket}
        return {
            "outcome": "reject",
            "reason": None if self.reason is None else self.reason.value,
            "key_id": self.key_id,
            "detail": self.detail,
            "retry_after_ms": self.retry_after_ms,
            "limit": None if self.limit is None else self.limit.to_dict(),
            "error": None if self.error is None else type(self.error).__name__,
        }
