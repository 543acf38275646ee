"""The encoding rules of docs/PROTOCOL.md §2 and §4: frames, varints, strings, options,
sequences, enums and ``f64``s (bincode 2, standard configuration).

:class:`Writer` and :class:`Reader` are the only code that knows the bytes;
:mod:`futu_auth_client.messages` describes each message with them.
"""

from __future__ import annotations

import struct
from typing import Callable, List, Optional, Type, TypeVar

__all__ = [
    "MAX_FRAME",
    "DecodeError",
    "FrameTooLarge",
    "Reader",
    "Writer",
    "frame",
    "frame_length",
]

#: The largest frame body either side accepts, in bytes (64 KiB).
MAX_FRAME = 65536

T = TypeVar("T")

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")
_PREFIX = struct.Struct(">I")


class DecodeError(ValueError):
    """Bytes that are not a valid message: cut short, trailing bytes, an unknown variant
    index, a bad tag, invalid UTF-8, a field too wide for its type."""


class FrameTooLarge(ValueError):
    """A body over :data:`MAX_FRAME` bytes: not sent, and not read when announced."""


def frame(body: bytes) -> bytes:
    """The frame of one message body: its length as a big-endian ``u32``, then the body."""
    if len(body) > MAX_FRAME:
        raise FrameTooLarge("%d bytes is over the %d-byte frame limit" % (len(body), MAX_FRAME))
    return _PREFIX.pack(len(body)) + body


def frame_length(prefix: bytes) -> int:
    """The body length a frame's 4 prefix bytes announce; :class:`FrameTooLarge` over the
    limit (decided from the prefix alone, before anything is read)."""
    (n,) = _PREFIX.unpack(prefix)
    if n > MAX_FRAME:
        raise FrameTooLarge("a frame of %d bytes announced, the limit is %d" % (n, MAX_FRAME))
    return n


class Writer:
    """Appends encoded values to a message body."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def getvalue(self) -> bytes:
        """The body written so far."""
        return bytes(self.buf)

    def u8(self, b: int) -> None:
        self.buf.append(b)

    def varint(self, n: int, bits: int = 64) -> None:
        """An unsigned integer of ``bits`` bits (16, 32 or 64), in its shortest form."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError("an unsigned integer is an int, not %s" % type(n).__name__)
        if not 0 <= n < 1 << bits:
            raise ValueError("%d does not fit in an unsigned %d-bit field" % (n, bits))
        if n < 251:
            self.buf.append(n)
        elif n < 1 << 16:
            self.buf.append(0xFB)
            self.buf += _U16.pack(n)
        elif n < 1 << 32:
            self.buf.append(0xFC)
            self.buf += _U32.pack(n)
        else:
            self.buf.append(0xFD)
            self.buf += _U64.pack(n)

    def u16(self, n: int) -> None:
        self.varint(n, 16)

    def u32(self, n: int) -> None:
        self.varint(n, 32)

    def u64(self, n: int) -> None:
        self.varint(n, 64)

    def bool(self, b: bool) -> None:
        if not isinstance(b, bool):
            raise TypeError("expected a bool, got %s" % type(b).__name__)
        self.buf.append(1 if b else 0)

    def f64(self, x: float) -> None:
        """8 bytes, IEEE-754 binary64, little-endian."""
        self.buf += _F64.pack(float(x))

    def string(self, s: str) -> None:
        """Byte length (varint), then the UTF-8 bytes."""
        if not isinstance(s, str):
            raise TypeError("expected a str, got %s" % type(s).__name__)
        data = s.encode("utf-8")
        self.varint(len(data))
        self.buf += data

    def option(self, value: Optional[T], write: Callable[[T], None]) -> None:
        """``00`` for None, ``01`` and the value for Some."""
        if value is None:
            self.buf.append(0)
        else:
            self.buf.append(1)
            write(value)

    def seq(self, items, write: Callable[[T], None]) -> None:
        """Element count (varint), then the elements."""
        items = list(items)
        self.varint(len(items))
        for item in items:
            write(item)

    def enum(self, member) -> None:
        """A variant without fields: its index."""
        self.varint(member.index, 32)


class Reader:
    """Reads encoded values from one message body, strictly: every rule broken is a
    :class:`DecodeError`."""

    __slots__ = ("body", "pos")

    def __init__(self, body: bytes) -> None:
        self.body = bytes(body)
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.body):
            raise DecodeError("message cut short: %d more bytes needed at byte %d" % (end - len(self.body), self.pos))
        out = self.body[self.pos:end]
        self.pos = end
        return out

    def u8(self) -> int:
        if self.pos >= len(self.body):
            raise DecodeError("message cut short at byte %d" % self.pos)
        b = self.body[self.pos]
        self.pos += 1
        return b

    def varint(self, bits: int = 64) -> int:
        """An unsigned integer of ``bits`` bits; a tag wider than the field is malformed."""
        at = self.pos
        tag = self.u8()
        if tag < 251:
            return tag
        if tag == 0xFB:
            return _U16.unpack(self.take(2))[0]
        if tag == 0xFC and bits >= 32:
            return _U32.unpack(self.take(4))[0]
        if tag == 0xFD and bits >= 64:
            return _U64.unpack(self.take(8))[0]
        raise DecodeError("varint tag 0x%02x at byte %d is not valid for a %d-bit field" % (tag, at, bits))

    def u16(self) -> int:
        return self.varint(16)

    def u32(self) -> int:
        return self.varint(32)

    def u64(self) -> int:
        return self.varint(64)

    def bool(self) -> bool:
        at = self.pos
        b = self.u8()
        if b > 1:
            raise DecodeError("bool byte 0x%02x at byte %d" % (b, at))
        return b == 1

    def f64(self) -> float:
        return _F64.unpack(self.take(8))[0]

    def string(self) -> str:
        n = self.varint()
        at = self.pos
        data = self.take(n)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("invalid UTF-8 in the string at byte %d" % at) from None

    def option(self, read: Callable[[], T]) -> Optional[T]:
        at = self.pos
        tag = self.u8()
        if tag == 0:
            return None
        if tag == 1:
            return read()
        raise DecodeError("option tag 0x%02x at byte %d" % (tag, at))

    def seq(self, read: Callable[[], T]) -> List[T]:
        n = self.varint()
        # Every element takes at least one byte: a count beyond what is left is a lie.
        if n > len(self.body) - self.pos:
            raise DecodeError("a sequence of %d elements in %d bytes" % (n, len(self.body) - self.pos))
        return [read() for _ in range(n)]

    def enum(self, cls: Type[T]) -> T:
        """A variant without fields of enum ``cls`` (a :class:`~futu_auth_client.types.WireEnum`)."""
        index = self.varint(32)
        try:
            return cls.from_index(index)  # type: ignore[attr-defined]
        except ValueError as e:
            raise DecodeError(str(e)) from None

    def variant(self) -> int:
        """An enum's variant index."""
        return self.varint(32)

    def finish(self) -> None:
        """Asserts the whole body was read."""
        if self.pos != len(self.body):
            raise DecodeError("%d trailing bytes after the message" % (len(self.body) - self.pos))
