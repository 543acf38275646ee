"""The token functions: the same results as the Rust crates (proto/src/key/token.rs,
proto/src/key/redact.rs, proto/keys/src/token.rs, client/src/token.rs), and a
plaintext that never shows."""

import copy
import hashlib
import logging
import pickle
import re
import unittest

from futu_auth_client import (
    AuthError,
    ConnectionLost,
    Decision,
    KeyGenerated,
    KeyHash,
    KeyRecord,
    Limits,
    Order,
    Scope,
    Token,
    digest,
    from_bearer,
    from_query,
    generate_token,
    is_token_shaped,
    redact,
)
from futu_auth_client.messages import Check, CheckScope

T = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f"


class TokenFunctions(unittest.TestCase):
    def test_generated_tokens_have_the_documented_shape_and_differ(self):
        seen = set()
        for _ in range(200):
            t = generate_token()
            text = t.expose()
            self.assertRegex(text, r"\Afc_[0-9a-f]{32}\Z")
            self.assertTrue(is_token_shaped(text) and is_token_shaped(t) and t.is_well_formed())
            seen.add(text)
        self.assertEqual(len(seen), 200)

    def test_digest_is_sha256_of_the_plaintext_as_keys_json_holds_it(self):
        self.assertEqual(digest(Token("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        self.assertEqual(digest("test"), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
        t = generate_token()
        self.assertEqual(digest(t), hashlib.sha256(t.expose().encode()).hexdigest())
        self.assertEqual(t.digest(), digest(t.expose()))
        self.assertIsInstance(digest(t), KeyHash)

    def test_key_hashes_accept_a_prefix_and_hide_most_of_the_digest(self):
        hexed = "ab" * 32
        self.assertEqual(KeyHash(hexed), KeyHash("sha256:" + hexed))
        self.assertEqual(KeyHash(hexed.upper()), hexed)
        self.assertEqual(KeyHash(hexed).short, "abababab")
        self.assertLess(len(repr(KeyHash(hexed))), 30)
        self.assertNotIn(hexed, repr(KeyHash(hexed)))
        for bad in ["a1b2...", "zz" * 32, "ab" * 33]:
            with self.assertRaises(ValueError):
                KeyHash(bad)

    def test_token_format_check(self):
        self.assertTrue(is_token_shaped(T))
        for bad in ["fc_8A3F2B9C1E5D7A4B8C2F9E1D3A5B7C9F", T + "0", T[:-1], "fx_" + T[3:], " " + T, None, 5]:
            self.assertFalse(is_token_shaped(bad), bad)

    def test_redact_hides_token_shaped_text_only(self):
        self.assertEqual(redact(T), "fc_<redacted>")
        self.assertEqual(redact("x%sy é" % T), "xfc_<redacted>y é")
        self.assertEqual(redact("Trd_PlaceOrder"), "Trd_PlaceOrder")
        self.assertEqual(redact("fc_short"), "fc_short")
        self.assertEqual(redact(T.upper().replace("FC_", "fc_")), "fc_<redacted>")
        self.assertEqual(redact(T + "a"), "fc_<redacted>a")
        self.assertEqual(redact(T + T), "fc_<redacted>fc_<redacted>")

    def test_bearer_headers_yield_the_token_and_other_schemes_do_not(self):
        self.assertEqual(from_bearer("Bearer %s" % T), Token(T))
        self.assertEqual(from_bearer("bearer  %s " % T), Token(T))
        self.assertIsNone(from_bearer("Basic %s" % T))
        self.assertIsNone(from_bearer("Bearer "))
        self.assertIsNone(from_bearer(T))

    def test_the_query_token_is_found_and_decoded(self):
        self.assertEqual(from_query("?token=%s" % T), Token(T))
        self.assertEqual(from_query("a=1&token=%s&b=2" % T), Token(T))
        self.assertEqual(from_query("token=fc%5Fabc"), Token("fc_abc"))
        self.assertEqual(from_query("token=a+b"), Token("a b"))
        self.assertIsNone(from_query("tokens=x"))
        self.assertIsNone(from_query("token="))
        self.assertIsNone(from_query("token=%zz"))
        self.assertIsNone(from_query("token=%ff"))


class NeverShown(unittest.TestCase):
    def assert_hidden(self, text: str):
        self.assertNotIn(T[3:], text)
        self.assertNotIn(T[3:19], text)

    def test_a_token_never_shows(self):
        t = Token(T)
        for text in [repr(t), str(t), "%s" % t, "{}".format(t), f"{t}", f"{t!r}", repr([t]), repr({"k": t})]:
            self.assert_hidden(text)
            self.assertIn("redacted", text)
        self.assertEqual(t.expose(), T)
        self.assertEqual(t, Token(T))
        self.assertNotEqual(t, Token(T[:-1] + "0"))
        self.assertNotEqual(t, T)  # a Token is not its text
        self.assertIs(copy.copy(t), t)
        self.assertIs(copy.deepcopy(t), t)
        with self.assertRaises(TypeError):
            pickle.dumps(t)
        with self.assertRaises(AttributeError):
            t._plaintext = "x"  # type: ignore[misc]

    def test_messages_and_answers_holding_a_token_do_not_show_it(self):
        order = Order("simulate", "HK", "HK.00700", "BUY", 1, 1)
        record = KeyRecord("k", digest(T), (Scope.QOT_READ,), Limits(), None, "2026-01-01T00:00:00Z")
        for value in [Check(1, T, "rest", "Trd_PlaceOrder", order), CheckScope(2, T, "ws", "qot:read"),
                      KeyGenerated(3, Token(T), record, "/etc/futu/keys.json")]:
            self.assert_hidden(repr(value))
            self.assert_hidden(str(value))

    def test_exceptions_and_decisions_redact_what_they_carry(self):
        for e in [AuthError("invalid_spec", "no key %s here" % T), ConnectionLost("lost %s" % T)]:
            self.assert_hidden(str(e))
            self.assert_hidden(repr(e))
            self.assert_hidden(e.message)
        d = Decision.failed(ConnectionLost("lost %s" % T))
        self.assert_hidden(repr(d))
        self.assert_hidden(d.detail)

    def test_logs_of_the_package_do_not_show_a_token(self):
        # Everything the package logs at any level while a call fails, captured.
        from futu_auth_client import AuthClient
        with self.assertLogs("futu_auth_client", level=logging.DEBUG) as logs:
            logging.getLogger("futu_auth_client").debug("capture")
            AuthClient("/nonexistent/futu/auth.sock").check(T, "Qot_GetBasicQot")
        for line in logs.output:
            self.assert_hidden(line)
        self.assertTrue(any("nonexistent" in line for line in logs.output), logs.output)
        self.assertIsNone(re.search(r"[0-9a-f]{32}", "\n".join(logs.output)))


if __name__ == "__main__":
    unittest.main()
