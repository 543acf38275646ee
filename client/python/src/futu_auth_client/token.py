"""Key plaintexts and their digests, the same rules as the Rust crates.

A key's plaintext is ``fc_`` followed by 32 lower-case hex digits (128 bits from the
operating system's random source). It is shown once when the key is made and stored
nowhere: keys.json keeps only its SHA-256, as 64 lower-case hex characters.

* :class:`Token` wraps a plaintext so that ``repr()``, ``str()``, f-strings, logs and
  exceptions show ``Token(<redacted>)``; :meth:`Token.expose` gives the text.
* :func:`generate_token` makes a new plaintext, :func:`digest` its keys.json ``hash``
  (a :class:`KeyHash`), byte for byte what ``futucli gen-key`` and futu-authd compute.
* :func:`is_token_shaped` checks the format; :func:`redact` hides anything shaped like a
  plaintext in text that is about to be echoed.
* :func:`from_bearer` and :func:`from_query` find the key in what a front-end receives.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Optional, Union

__all__ = [
    "PREFIX",
    "KeyHash",
    "Token",
    "TokenLike",
    "digest",
    "from_bearer",
    "from_query",
    "generate_token",
    "is_token_shaped",
    "redact",
]

#: Every plaintext starts with this.
PREFIX = "fc_"

_TOKEN_SHAPE = re.compile(r"fc_[0-9a-f]{32}\Z")
# What redact() hides: `fc_` and 32 hex digits of either case, anywhere in a text (the
# Rust rule, `u8::is_ascii_hexdigit`).
_TOKEN_ANYWHERE = re.compile(r"fc_[0-9A-Fa-f]{32}")
_HEX64 = re.compile(r"[0-9A-Fa-f]{64}\Z")

#: The text shown for a redacted plaintext.
REDACTED = "fc_<redacted>"


class Token:
    """A key's plaintext. Never shown by ``repr()``/``str()``; compared in constant time.

    >>> t = Token("fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f")
    >>> t
    Token(<redacted>)
    >>> t.expose()[:3]
    'fc_'
    """

    __slots__ = ("_plaintext",)

    def __init__(self, plaintext: Union[str, "Token"]) -> None:
        if isinstance(plaintext, Token):
            plaintext = plaintext.expose()
        if not isinstance(plaintext, str):
            raise TypeError("a token is a str (the key's plaintext), not %s" % type(plaintext).__name__)
        object.__setattr__(self, "_plaintext", plaintext)

    def expose(self) -> str:
        """The plaintext: for sending to futu-authd, hashing, or showing once to the person
        who made the key."""
        return self._plaintext

    def is_well_formed(self) -> bool:
        """Whether the plaintext has the documented shape (``fc_`` and 32 lower-case hex
        digits). futu-authd does not require it: a malformed token is simply unknown."""
        return is_token_shaped(self._plaintext)

    def digest(self) -> "KeyHash":
        """The SHA-256 of the plaintext, as keys.json stores it (see :func:`digest`)."""
        return digest(self)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Token is immutable")

    def __repr__(self) -> str:
        return "Token(<redacted>)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Token):
            return hmac.compare_digest(self._plaintext.encode("utf-8", "surrogatepass"),
                                       other._plaintext.encode("utf-8", "surrogatepass"))
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Token, self._plaintext))

    def __copy__(self) -> "Token":
        return self

    def __deepcopy__(self, memo: dict) -> "Token":
        return self

    def __reduce__(self):
        # Pickling would write the plaintext wherever the pickle goes: refuse.
        raise TypeError("a Token is not picklable: the plaintext is kept nowhere")


#: What the client methods accept as a token: a :class:`Token` or the plaintext itself.
TokenLike = Union[Token, str]


class KeyHash(str):
    """The SHA-256 of a plaintext as keys.json holds it: 64 lower-case hex characters.

    A ``str`` (compare it with the ``hash`` of a keys.json record directly), whose
    ``repr()`` shows only the first 8 characters, like the Rust ``KeyHash``'s ``Debug``.
    """

    __slots__ = ()

    def __new__(cls, text: str) -> "KeyHash":
        if isinstance(text, KeyHash):
            return text
        if not isinstance(text, str):
            raise TypeError("a key hash is a str of 64 hex characters")
        hexpart = text[len("sha256:"):] if text.startswith("sha256:") else text
        if not _HEX64.match(hexpart):
            raise ValueError(
                "malformed hash: expected 64 hex characters of a SHA-256 digest "
                "(optionally prefixed sha256:), got %d characters" % len(text)
            )
        return str.__new__(cls, hexpart.lower())

    @property
    def hex(self) -> str:  # type: ignore[override]
        """The 64 lower-case hex characters."""
        return str(self)

    @property
    def short(self) -> str:
        """The first 8 hex characters: enough to tell keys apart in a listing."""
        return str.__str__(self)[:8]

    def __repr__(self) -> str:
        return "KeyHash(%s\u2026)" % self.short


def is_token_shaped(text: object) -> bool:
    """Whether ``text`` is exactly a plaintext's format: ``fc_`` and 32 lower-case hex
    digits (what :func:`generate_token` makes)."""
    if isinstance(text, Token):
        text = text.expose()
    return isinstance(text, str) and _TOKEN_SHAPE.match(text) is not None


def redact(text: str) -> str:
    """``text`` with anything shaped like a plaintext (``fc_`` and 32 hex digits, of
    either case) replaced by ``fc_<redacted>``: for caller-supplied strings that are
    echoed in messages or logs, in case a token was put where it does not belong. The
    same rule and result as the daemon's."""
    return _TOKEN_ANYWHERE.sub(REDACTED, text)


def generate_token() -> Token:
    """A new plaintext from the operating system's random source (128 bits): ``fc_`` and
    32 lower-case hex digits, as ``futucli gen-key`` makes them."""
    return Token(PREFIX + secrets.token_bytes(16).hex())


def digest(token: TokenLike) -> KeyHash:
    """The SHA-256 of a plaintext's UTF-8 bytes, as stored in keys.json's ``hash``."""
    text = token.expose() if isinstance(token, Token) else token
    if not isinstance(text, str):
        raise TypeError("digest() takes a Token or the plaintext as a str")
    return KeyHash(hashlib.sha256(text.encode("utf-8")).hexdigest())


def from_bearer(header_value: str) -> Optional[Token]:
    """The token of an ``Authorization`` header value (REST) or ``authorization``
    metadata (gRPC): ``Bearer fc_…``, the scheme in any case. ``None`` when it is not a
    bearer token."""
    value = header_value.strip()
    if " " not in value:
        return None
    scheme, rest = value.split(" ", 1)
    if scheme.lower() != "bearer":
        return None
    token = rest.strip()
    return Token(token) if token else None


def from_query(query: str) -> Optional[Token]:
    """The ``token`` parameter of a URL query string (WebSocket: ``/ws?token=fc_…``),
    percent-escapes and ``+`` decoded. ``None`` when absent, empty or badly escaped."""
    if query.startswith("?"):
        query = query[1:]
    value = None
    for pair in query.split("&"):
        if "=" not in pair:
            continue
        k, v = pair.split("=", 1)
        if k == "token":
            value = v
            break
    if value is None:
        return None
    decoded = _percent_decode(value)
    return Token(decoded) if decoded else None


def _percent_decode(s: str) -> Optional[str]:
    raw = s.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == 0x25:  # '%'
            pair = raw[i + 1:i + 3]
            if len(pair) != 2 or not all(chr(b) in "0123456789abcdefABCDEF" for b in pair):
                return None
            out.append(int(pair, 16))
            i += 3
        elif c == 0x2B:  # '+'
            out.append(0x20)
            i += 1
        else:
            out.append(c)
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return None
