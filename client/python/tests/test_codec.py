"""The wire format: the worked examples of docs/PROTOCOL.md §7 and the golden vectors of
proto/tests/golden.rs, byte for byte, both ways; the encoding rules of §4; malformed
bodies."""

import dataclasses
import math
import os
import re
import unittest

from futu_auth_client import (
    BindOp,
    DailyValueFigures,
    Decision,
    DuplicateFigures,
    ErrorKind,
    HoursFigures,
    Iface,
    KeyHash,
    KeyRecord,
    KeySpec,
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
    Token,
    TrdEnv,
    TrdSide,
)
from futu_auth_client.codec import MAX_FRAME, DecodeError, FrameTooLarge, Reader, Writer, frame, frame_length
from futu_auth_client.messages import (
    PositionUsage,
    PROTOCOL_VERSION,
    PROTOCOL_VERSIONS,
    REQUESTS,
    RESPONSES,
    MAX_KEYS_CHUNK,
    KeyActivity,
    KeyActivityRequest,
    KeyActivityResponse,
    KeyRotated,
    RotateKey,
    BindKey,
    Check,
    CheckScope,
    DecisionResponse,
    ErrorResponse,
    ExportKeys,
    GenKey,
    Halt,
    HaltRequest,
    Halts,
    Hello,
    HelloOk,
    ImportKeys,
    Imported,
    KeyBound,
    KeyGenerated,
    KeyRevoked,
    Keys,
    KeysExport,
    KeysImported,
    KeysPage,
    ListHalts,
    ListKeys,
    ListKeysPage,
    OrderEvent,
    OrderEventDone,
    OrderEventOutcome,
    Release,
    Released,
    Reload,
    Reloaded,
    Resume,
    RevokeKey,
    SessionCheck,
    Usage,
    UsageRequest,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    keys_chunk_end,
    request_frame,
    response_frame,
)

TOKEN = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f"
TOKEN_FIELD = "2366635f3861336632623963316535643761346238633266396531643361356237633966"
HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
HASH_FIELD = "40" + HASH.encode().hex()
SIM_BOT_FIELD = "0773696d2d626f74"
RESEARCH_FIELD = "087265736561726368"
FP_BOT = "fp_bot_host_abc123"
FP_BACKUP = "fp_backup_host_7f3e"
CREATED_AT = "2026-04-15T10:00:00Z"
EXPIRES_AT = "2026-12-31T00:00:00Z"
FULL_LIMITS_FIELDS = [
    "01020001",
    "010108484b2e3030373030",
    "01020001",
    "0100000000006ae840",
    "0100000000006a0841",
    "010a",
    "010b30393a33302d31363a3030",
]
NO_LIMITS_FIELD = "00000000000000"
#: The five limits of version 6, none set.
NO_V6_LIMITS = "0000000000"


def h(*chunks: str) -> bytes:
    return bytes.fromhex("".join(chunks).replace(" ", "").replace("\n", ""))


def full_limits() -> Limits:
    return Limits(allowed_markets=["HK", "US"], allowed_symbols=["HK.00700"], allowed_trd_sides=["BUY", "SELL"],
                  max_order_value=50000, max_daily_value=200000, max_orders_per_minute=10,
                  hours_window="09:30-16:00")


def full_record() -> KeyRecord:
    return KeyRecord(id="sim-bot", hash=KeyHash(HASH), scopes=(Scope.QOT_READ, Scope.TRADE_SIMULATE),
                     limits=full_limits(), allowed_machines=(FP_BOT,), created_at=CREATED_AT,
                     expires_at=EXPIRES_AT, note="paper bot")


FULL_RECORD_FIELDS = [SIM_BOT_FIELD, HASH_FIELD, "020002", *FULL_LIMITS_FIELDS,
                      "01011266705f626f745f686f73745f616263313233",
                      "14323032362d30342d31355431303a30303a30305a",
                      "0114323032362d31322d33315430303a30303a30305a",
                      "0109706170657220626f74"]


def minimal_record(allowed_machines=None) -> KeyRecord:
    return KeyRecord(id="research", hash=KeyHash(HASH), scopes=(Scope.QOT_READ,), limits=Limits(),
                     allowed_machines=allowed_machines, created_at=CREATED_AT)


def check_with_order() -> Check:
    return Check(300, TOKEN, Iface.REST, "Trd_PlaceOrder",
                 Order(TrdEnv.SIMULATE, Market.HK, "HK.00700", TrdSide.BUY, 100.0, 320.5), False)


def v2_deny(reason, detail, retry, limit) -> DecisionResponse:
    return DecisionResponse(2, Decision.deny(reason, "sim-bot", detail, retry, limit))


# ---- the worked examples of docs/PROTOCOL.md §7 -------------------------------------------

HELLO_V2 = "00 00 00 07 00 02 04 72 65 73 74"
HELLO_OK_V2 = "00 00 00 08 00 02 05 30 2e 31 2e 30"
HELLO_V1 = "00 00 00 07 00 01 04 72 65 73 74"
HELLO_OK_V1 = "00 00 00 08 00 01 05 30 2e 31 2e 30"
CHECK_WITH_ORDER = """
00 00 00 57 01 fb 2c 01 23 66 63 5f 38 61 33 66 32 62 39 63 31 65 35 64 37 61 34 62 38 63
32 66 39 65 31 64 33 61 35 62 37 63 39 66 00 0e 54 72 64 5f 50 6c 61 63 65 4f 72 64 65 72
01 00 00 08 48 4b 2e 30 30 37 30 30 00 00 00 00 00 00 00 59 40 01 00 00 00 00 00 08 74 40
00"""
ALLOW = "00 00 00 15 01 fb 2c 01 00 07 73 69 6d 2d 62 6f 74 01 02 01 fc 70 11 01 00"
DENY_V1 = """
00 00 00 25 01 02 01 0b 01 07 73 69 6d 2d 62 6f 74 17 64 61 69 6c 79 20 76 61 6c 75 65 20
63 61 70 20 72 65 61 63 68 65 64"""
DENY_V2 = """
00 00 00 43 01 02 01 0b 01 07 73 69 6d 2d 62 6f 74 17 64 61 69 6c 79 20 76 61 6c 75 65 20
63 61 70 20 72 65 61 63 68 65 64 01 fb 30 75 01 01 00 00 00 00 00 6a 18 41 00 00 00 00 80
4f 02 41 00 00 00 00 80 84 1e 41"""
CHECK_WITHOUT_ORDER = """
00 00 00 39 01 02 23 66 63 5f 38 61 33 66 32 62 39 63 31 65 35 64 37 61 34 62 38 63 32 66
39 65 31 64 33 61 35 62 37 63 39 66 02 0f 51 6f 74 5f 47 65 74 42 61 73 69 63 51 6f 74 00
01"""
#: §7.4's tails of the other limits' denies, as the document quotes them (two pieces each).
RATE_TAIL = ["01 fb 39 30", "01 00 05 05"]
HOURS_TAIL = ["01 fc c0 65 52 00", "01 03 05 30 38 3a 30 30 0b 30 39 3a 33 30 2d 31 36 3a 30 30"]

#: The hex blocks of §7, in the document's order.
SECTION_7_BLOCKS = [HELLO_V2, HELLO_OK_V2, CHECK_WITH_ORDER, ALLOW, DENY_V1, DENY_V2, CHECK_WITHOUT_ORDER]


def find_protocol_md():
    here = os.path.dirname(os.path.abspath(__file__))
    for up in range(1, 6):
        candidate = os.path.join(here, *([".."] * up), "docs", "PROTOCOL.md")
        if os.path.isfile(candidate):
            return os.path.normpath(candidate)
    return None


def hex_of(text: str) -> str:
    return "".join(text.split()).lower()


class ProtocolMdSection7(unittest.TestCase):
    """Each worked example of §7, encoded by this package and decoded back."""

    def assert_request(self, value, vector):
        # The bytes of versions 1 to 5 (a Check of version 6 ends with two fields more).
        for version in (1, 2, 3, 4, 5):
            self.assertEqual(request_frame(value, version).hex(), hex_of(vector))
            body = h(vector)[4:]
            self.assertEqual(frame_length(h(vector)[:4]), len(body))
            self.assertEqual(decode_request(body, version), value)

    def assert_response(self, value, vector, version):
        self.assertEqual(response_frame(value, version).hex(), hex_of(vector))
        self.assertEqual(decode_response(h(vector)[4:], version), value)

    def test_7_1_hello_and_hello_ok_in_both_versions(self):
        self.assert_request(Hello(2, "rest"), HELLO_V2)
        self.assert_request(Hello(1, "rest"), HELLO_V1)
        for version in (1, 2):
            self.assert_response(HelloOk(2, "0.1.0"), HELLO_OK_V2, version)
            self.assert_response(HelloOk(1, "0.1.0"), HELLO_OK_V1, version)

    def test_7_2_check_with_an_order(self):
        self.assert_request(check_with_order(), CHECK_WITH_ORDER)
        self.assertEqual(len(h(CHECK_WITH_ORDER)), 91)

    def test_7_3_the_allow_answer(self):
        value = DecisionResponse(300, Decision.allow("sim-bot", Scope.TRADE_SIMULATE, 70000))
        for version in (1, 2):
            self.assert_response(value, ALLOW, version)
        d = decode_response(h(ALLOW)[4:]).decision
        self.assertTrue(d.allowed and d)
        self.assertEqual((d.key_id, d.scope, d.ticket), ("sim-bot", "trade:simulate", 70000))

    def test_7_4_a_deny_in_version_1_and_version_2(self):
        v1 = v2_deny(Reason.DAILY_VALUE, "daily value cap reached", None, None)
        self.assert_response(v1, DENY_V1, 1)
        v2 = v2_deny(Reason.DAILY_VALUE, "daily value cap reached", 30000,
                     DailyValueFigures(used=400000.0, order_value=150000.0, max_daily_value=500000.0))
        self.assert_response(v2, DENY_V2, 2)
        # The version-2 deny to a version-1 peer is version 1's bytes.
        self.assertEqual(response_frame(v2, 1).hex(), hex_of(DENY_V1))
        d = decode_response(h(DENY_V2)[4:], 2).decision
        self.assertEqual((d.allowed, d.reason, d.retry_after_ms, d.retry_after), (False, "daily_value", 30000, 30.0))
        self.assertEqual(d.limit.to_dict(), {"daily_value": {"used": 400000.0, "order_value": 150000.0,
                                                             "max_daily_value": 500000.0}})

    def test_7_4_the_other_limits_tails(self):
        rate = encode_response(v2_deny(Reason.RATE, "rate", 12345, RateFigures(5, 5)), 2)
        self.assertTrue(rate.hex().endswith(hex_of(" ".join(RATE_TAIL))), rate.hex())
        hours = encode_response(v2_deny(Reason.HOURS, "", 5400000, HoursFigures("08:00", "09:30-16:00")), 2)
        self.assertTrue(hours.hex().endswith(hex_of(" ".join(HOURS_TAIL))), hours.hex())
        order_value = encode_response(v2_deny(Reason.ORDER_VALUE, "", None, OrderValueFigures(120000.0, 100000.0)), 2)
        self.assertTrue(order_value.hex().endswith("00" + "0102" + "00000000004cfd40" + "00000000006af840"))
        other = encode_response(v2_deny(Reason.SCOPE, "x", None, None), 2)
        self.assertTrue(other.hex().endswith("0000"))

    def test_7_5_a_check_without_an_order(self):
        self.assert_request(Check(2, TOKEN, Iface.WS, "Qot_GetBasicQot", None, True), CHECK_WITHOUT_ORDER)

    def test_7_6_a_key_record_with_nothing_optional_set(self):
        body = encode_response(Keys(6, (minimal_record(),)), 5)
        record = body[3:]  # Keys, request_id 6, 1 item
        self.assertEqual(record.hex(), "".join([
            RESEARCH_FIELD, HASH_FIELD, "0100", NO_LIMITS_FIELD, "00",
            "14323032362d30342d31355431303a30303a30305a", "00", "00"]))

    def test_the_vectors_here_are_the_documents(self):
        path = find_protocol_md()
        if path is None:
            self.skipTest("docs/PROTOCOL.md is not next to this package (run from the repository)")
        with open(path, encoding="utf-8") as f:
            doc = f.read()
        section = doc[doc.index("## 7. Worked examples"):doc.index("## 8. Writing a client")]
        blocks = [b for b in re.findall(r"```\n(.*?)```", section, re.S)
                  if re.fullmatch(r"(\s*[0-9a-f]{2})+\s*", b)]
        self.assertEqual([hex_of(b) for b in blocks], [hex_of(v) for v in SECTION_7_BLOCKS])
        quoted = {hex_of(q) for q in re.findall(r"`([0-9a-f]{2}(?:\s+[0-9a-f]{2})*)`", section)}
        for inline in [HELLO_V1, HELLO_OK_V1, *RATE_TAIL, *HOURS_TAIL]:
            self.assertIn(hex_of(inline), quoted)


# ---- the golden vectors of proto/tests/golden.rs ------------------------------------------

def golden_requests():
    """(value, fields) or (value, fields, fields in version 6): the bytes of every version
    from the request's first to 5, and to 6 unless given."""
    return [
        (Check(2, TOKEN, Iface.WS, "Qot_GetBasicQot", None, True),
         ["00000039", "01", "02", TOKEN_FIELD, "02", "0f516f745f4765744261736963516f74", "00", "01"],
         # Version 6: acc_id None, ref_price None.
         ["0000003b", "01", "02", TOKEN_FIELD, "02", "0f516f745f4765744261736963516f74", "00", "01", "00", "00"]),
        (CheckScope(3, TOKEN, Iface.WS, Scope.QOT_READ), ["00000028", "02", "03", TOKEN_FIELD, "02", "00"]),
        (Release(4, 70000), ["00000007", "03", "04", "fc70110100"]),
        (GenKey(5, KeySpec("sim-bot", ["qot:read", "trade:simulate"], full_limits(), [FP_BOT], EXPIRES_AT,
                           "paper bot")),
         ["00000077", "04", "05", SIM_BOT_FIELD, "020002", *FULL_LIMITS_FIELDS,
          "01011266705f626f745f686f73745f616263313233", "0114323032362d31322d33315430303a30303a30305a",
          "0109706170657220626f74"],
         # Version 6: five limits more, none set (a_gen_key_with_16384_markets_round_trips).
         ["0000007c", "04", "05", SIM_BOT_FIELD, "020002", *FULL_LIMITS_FIELDS, NO_V6_LIMITS,
          "01011266705f626f745f686f73745f616263313233", "0114323032362d31322d33315430303a30303a30305a",
          "0109706170657220626f74"]),
        (ListKeys(6), ["00000002", "05", "06"]),
        (RevokeKey(7, "old-bot"), ["0000000a", "06", "07", "076f6c642d626f74"]),
        (BindKey(8, "sim-bot", BindOp.add([FP_BOT])),
         ["0000001f", "07", "08", SIM_BOT_FIELD, "00", "011266705f626f745f686f73745f616263313233"]),
        (BindKey(9, "sim-bot", BindOp.replace([FP_BOT, FP_BACKUP])),
         ["00000033", "07", "09", SIM_BOT_FIELD, "01", "02", "1266705f626f745f686f73745f616263313233",
          "1366705f6261636b75705f686f73745f37663365"]),
        (BindKey(10, "sim-bot", BindOp.freeze()), ["0000000b", "07", "0a", SIM_BOT_FIELD, "02"]),
        (BindKey(11, "sim-bot", BindOp.clear()), ["0000000b", "07", "0b", SIM_BOT_FIELD, "03"]),
        (Reload(12), ["00000002", "08", "0c"]),
        (UsageRequest(13, "sim-bot"), ["0000000a", "09", "0d", SIM_BOT_FIELD]),
        (ListKeysPage(7, 0, 0), ["00000004", "0a070000"]),
        (ListKeysPage(7, 1 << 32, 300), ["0000000e", "0a07fd0000000001000000fb2c01"]),
        # Version 3 (the same bytes as proto/tests/golden.rs pins).
        (RotateKey(7, "bot", 86_400), ["0000000b", "0b", "07", "03626f74", "fc80510100"]),
        (KeyActivityRequest(8, ("bot", "ops")), ["0000000b", "0c", "08", "02", "03626f74", "036f7073"]),
        # Version 4: version_4_session_check, and the SessionCheck of requests().
        (SessionCheck(5, TOKEN, Iface.WS, SessionSubject.for_pushes(Scope.TRADE_SIMULATE, 3),
                      SessionOutcome.deny(Reason.SCOPE)),
         ["0000002c", "0d", "05", TOKEN_FIELD, "02", "01", "02", "03", "01", "04"]),
        (SessionCheck(6, TOKEN, Iface.MCP, SessionSubject.keep_alive(), SessionOutcome.allow()),
         ["00000029", "0d", "06", TOKEN_FIELD, "03", "00", "00"]),
        (SessionCheck(10, TOKEN, Iface.WS, SessionSubject.for_pushes(Scope.QOT_READ, 7), SessionOutcome.allow()),
         ["0000002b", "0d", "0a", TOKEN_FIELD, "02", "01", "00", "07", "00"]),
        # Version 5: version_5_halt_resume_and_list_halts.
        (HaltRequest(9, "bot", "fat finger"), ["00000012", "0e", "09", "00", "03626f74", "0a6661742066696e676572"]),
        (HaltRequest(10, None, "turmoil"), ["0000000b", "0e", "0a", "01", "077475726d6f696c"]),
        (Resume(11, "bot"), ["00000007", "0f", "0b", "00", "03626f74"]),
        (Resume(12, None), ["00000003", "0f", "0c", "01"]),
        (ListHalts(13), ["00000002", "10", "0d"]),
        # Version 5: version_5_import_and_export_of_keys.
        (ImportKeys(9, 0, 0, '{"version": 1,', False, False),
         ["00000015", "11", "09", "00", "00", "0e7b2276657273696f6e223a20312c", "00", "00"]),
        (ImportKeys(10, 300, 14, ' "keys": []}', True, True),
         ["00000015", "11", "0a", "fb2c01", "0e", "0c20226b657973223a205b5d7d", "01", "01"]),
        (ExportKeys(11, 0, 0), ["00000004", "12", "0b", "00", "00"]),
    ]


def golden_responses():
    """(value, fields, versions): versions whose bytes these are."""
    return [
        (HelloOk(1, "0.1.0"), ["00000008", "00", "01", "05302e312e30"], (1, 2)),
        (Released(4, "sim-bot", 32050.0), ["00000012", "02", "04", SIM_BOT_FIELD, "00000000804cdf40"], (1, 2)),
        (KeyGenerated(5, Token(TOKEN), full_record(), "/etc/futu/keys.json"),
         ["00000105", "03", "05", TOKEN_FIELD, *FULL_RECORD_FIELDS, "132f6574632f667574752f6b6579732e6a736f6e"],
         (1, 2)),
        (Keys(6, (minimal_record(),)),
         ["0000006e", "04", "06", "01", RESEARCH_FIELD, HASH_FIELD, "0100", NO_LIMITS_FIELD, "00",
          "14323032362d30342d31355431303a30303a30305a", "00", "00"], (1, 2)),
        (KeyRevoked(7, "old-bot"), ["0000000a", "05", "07", "076f6c642d626f74"], (1, 2)),
        (KeyBound(10, minimal_record(())),
         ["0000006e", "06", "0a", RESEARCH_FIELD, HASH_FIELD, "0100", NO_LIMITS_FIELD, "0100",
          "14323032362d30342d31355431303a30303a30305a", "00", "00"], (1, 2)),
        (Reloaded(12, 3), ["00000003", "07", "0c", "03"], (1, 2)),
        (Usage(13, "sim-bot", "2026-04-15", 32050.0, 200000.0, 2, 10),
         ["00000029", "08", "0d", SIM_BOT_FIELD, "0a323032362d30342d3135", "00000000804cdf40",
          "0100000000006a0841", "02", "010a"], (1, 2, 3, 4, 5)),
        (Usage(13, "sim-bot", "2026-04-15", 32050.0, 200000.0, 2, 10, 3, 10,
               (PositionUsage("HK.00700", 1500.0, 0.0),), 200000.0),
         ["0000004f", "08", "0d", SIM_BOT_FIELD, "0a323032362d30342d3135", "00000000804cdf40",
          "0100000000006a0841", "02", "010a", "03", "010a", "01", "08484b2e3030373030", "0000000000709740", "0000000000000000",
          "0100000000006a0841"], (6,)),
        (ErrorResponse(0, ErrorKind.VERSION, "unsupported protocol version 2"),
         ["00000022", "09", "00", "00", "1e756e737570706f727465642070726f746f636f6c2076657273696f6e2032"], (1, 2)),
        (KeysPage(7, 5, 0, 1, ()), ["00000006", "0a0705000100"], (1, 2)),
        (KeyRotated(7, "bot", Token("fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f"), "2026-12-01T08:00:00Z", "k"),
         ["00000042", "0b", "07", "03626f74",
          "2366635f3861336632623963316535643761346238633266396531643361356237633966",
          "01", "14323032362d31322d30315430383a30303a30305a", "016b"], (3,)),
        (KeyActivityResponse(8, (KeyActivity("bot", "2026-11-30T08:00:00Z", None),)),
         ["0000001e", "0c", "08", "01", "03626f74", "01", "14323032362d31312d33305430383a30303a30305a", "00"], (3,)),
        (v2_deny(Reason.DAILY_VALUE, "daily value cap reached", None, None),
         ["00000027", hex_of(DENY_V1)[8:], "00", "00"], (2,)),
        (v2_deny(Reason.RATE, "rate", 12345, RateFigures(5, 5)),
         ["0000001a", "01", "02", "01", "0c", "010773696d2d626f74", "0472617465", "01fb3930", "01", "00", "05",
          "05"], (2,)),
        (v2_deny(Reason.ORDER_VALUE, "", None, OrderValueFigures(120000.0, 100000.0)),
         ["00000021", "01", "02", "01", "0a", "010773696d2d626f74", "00", "00", "01", "02", "00000000004cfd40",
          "00000000006af840"], (2,)),
        (v2_deny(Reason.HOURS, "", 5400000, HoursFigures("08:00", "09:30-16:00")),
         ["00000028", "01", "02", "01", "09", "010773696d2d626f74", "00", "01fcc0655200", "01", "03", "0530383a3030",
          "0b30393a33302d31363a3030"], (2,)),
        # Version 5: version_5_halt_resume_and_list_halts.
        (Halts(9, (Halt(None, "turmoil", 0, "root", "2026-12-06T09:00:00Z"),
                   Halt("bot", "fat finger", 1000, "alice", "2026-12-06T10:00:00Z"))),
         ["00000057", "0d", "09", "02",
          "01", "077475726d6f696c", "00", "0104726f6f74", "14323032362d31322d30365430393a30303a30305a",
          "00", "03626f74", "0a6661742066696e676572", "fbe803", "0105616c696365",
          "14323032362d31322d30365431303a30303a30305a"], (5,)),
        (Halts(13, ()), ["00000003", "0d", "0d", "00"], (5,)),
        (Halts(1, (Halt("bot", "r", 4242, None, "2026-12-06T10:00:00Z"),)),
         ["00000023", "0d", "01", "01", "00", "03626f74", "0172", "fb9210", "00",
          "14323032362d31322d30365431303a30303a30305a"], (5,)),
        # Version 5: version_5_import_and_export_of_keys.
        (KeysImported(9, 300, 14, None), ["00000007", "0e", "09", "fb2c01", "0e", "00"], (5,)),
        (KeysImported(10, 300, 26, Imported(2, 1, 5, "k")),
         ["0000000c", "0e", "0a", "fb2c01", "1a", "01", "02", "01", "05", "016b"], (5,)),
        (KeysExport(11, 7, 0, 2, "{}"), ["00000008", "0f", "0b", "07", "00", "02", "027b7d"], (5,)),
    ]


#: "trading halted for key bot by uid 1000 (alice) at 2026-12-06T10:00:00Z: fat finger",
#: its length (82) and bytes (HALTED_DETAIL in proto/tests/golden.rs).
HALTED_DETAIL = ("52"
                 "74726164696e672068616c74656420666f72206b657920626f742062792075696420313030302028616c69636529"
                 "20617420323032362d31322d30365431303a30303a30305a3a206661742066696e676572")


class GoldenVectors(unittest.TestCase):
    def test_every_request_has_its_pinned_bytes_and_reads_back(self):
        for value, fields, *v6 in golden_requests():
            for version in range(value.SINCE, 7):
                with self.subTest(value=type(value).__name__, version=version):
                    vector = "".join(v6[0] if v6 and version >= 6 else fields)
                    self.assertEqual(request_frame(value, version).hex(), vector)
                    self.assertEqual(decode_request(bytes.fromhex(vector)[4:], version), value)
            if value.SINCE > 1:
                with self.assertRaises(ValueError):
                    encode_request(value, value.SINCE - 1)
                with self.assertRaises(DecodeError):
                    decode_request(encode_request(value), value.SINCE - 1)

    def test_every_response_has_its_pinned_bytes_and_reads_back(self):
        for value, fields, versions in golden_responses():
            for version in versions:
                with self.subTest(value=type(value).__name__, version=version):
                    vector = "".join(fields)
                    self.assertEqual(response_frame(value, version).hex(), vector)
                    self.assertEqual(decode_response(bytes.fromhex(vector)[4:], version), value)

    def test_every_message_class_is_in_its_variant_slot(self):
        self.assertEqual([cls.VARIANT for cls in REQUESTS], list(range(20)))
        self.assertEqual([cls.VARIANT for cls in RESPONSES], list(range(17)))
        admin = {cls.__name__ for cls in REQUESTS if cls.ADMIN}
        self.assertEqual(admin, {"GenKey", "ListKeys", "RevokeKey", "BindKey", "Reload", "UsageRequest",
                                 "ListKeysPage", "RotateKey", "KeyActivityRequest", "HaltRequest", "Resume",
                                 "ListHalts", "ImportKeys", "ExportKeys"})

    def test_each_request_names_the_first_version_that_has_it(self):
        self.assertEqual((PROTOCOL_VERSION, PROTOCOL_VERSIONS), (6, (1, 2, 3, 4, 5, 6)))
        since = {cls.__name__: cls.SINCE for cls in REQUESTS if cls.SINCE > 1}
        self.assertEqual(since, {"RotateKey": 3, "KeyActivityRequest": 3, "SessionCheck": 4, "HaltRequest": 5,
                                 "Resume": 5, "ListHalts": 5, "ImportKeys": 5, "ExportKeys": 5, "OrderEvent": 6})

    def test_keys_chunks_end_at_a_character_boundary_within_60_kib(self):
        # The cases of keys_chunk_end's test in proto/src/message.rs.
        text = ("\u00e9" * MAX_KEYS_CHUNK).encode("utf-8")  # two bytes a character
        self.assertEqual(keys_chunk_end(text, 0), MAX_KEYS_CHUNK)
        odd = ("a" + "\u00e9" * MAX_KEYS_CHUNK).encode("utf-8")
        self.assertEqual(keys_chunk_end(odd, 0), MAX_KEYS_CHUNK - 1, "not inside a character")
        self.assertEqual(keys_chunk_end(b"short", 0), 5)
        self.assertEqual(keys_chunk_end(b"short", 5), 5)
        four = ("\U0001f600" * MAX_KEYS_CHUNK).encode("utf-8")  # four bytes a character
        self.assertEqual(keys_chunk_end(four, 4), 4 + MAX_KEYS_CHUNK)
        self.assertEqual(keys_chunk_end(four, 5 * 4), 5 * 4 + MAX_KEYS_CHUNK)
        self.assertEqual(keys_chunk_end(b"aaa" + four, 0), MAX_KEYS_CHUNK - 1)
        self.assertEqual(MAX_KEYS_CHUNK, 61440)

    def test_a_halted_deny_is_halted_in_version_5_and_scope_before(self):
        detail = "trading halted for key bot by uid 1000 (alice) at 2026-12-06T10:00:00Z: fat finger"
        halted = DecisionResponse(4, Decision.deny(Reason.HALTED, "bot", detail))
        as_scope = DecisionResponse(4, Decision.deny(Reason.SCOPE, "bot", detail))

        def head(reason):
            return ["01", "04", "01", reason, "0103626f74", HALTED_DETAIL]

        v5 = "".join(["0000005e", *head("10"), "00", "00"])
        self.assertEqual(response_frame(halted, 5).hex(), v5)
        self.assertEqual(decode_response(h(v5)[4:], 5), halted)
        before = "".join(["0000005e", *head("04"), "00", "00"])
        for version in (2, 3, 4):
            with self.subTest(version=version):
                self.assertEqual(response_frame(halted, version).hex(), before)
                self.assertEqual(decode_response(h(before)[4:], version), as_scope)
                with self.assertRaises(DecodeError):
                    decode_response(encode_response(halted, 5), version)
        v1 = "".join(["0000005c", *head("04")])
        self.assertEqual(response_frame(halted, 1).hex(), v1)
        self.assertEqual(decode_response(h(v1)[4:], 1), as_scope)
        self.assertEqual(str(Halt("bot", "fat finger", 1000, "alice", "2026-12-06T10:00:00Z")), detail)
        self.assertEqual(str(Halt(None, "turmoil", 0, None, "2026-12-06T09:00:00Z")),
                         "trading halted for every key by uid 0 at 2026-12-06T09:00:00Z: turmoil")

    def test_session_subjects_and_outcomes_are_values(self):
        self.assertEqual(SessionSubject.for_pushes("qot:read"), SessionSubject("pushes", Scope.QOT_READ, 1))
        self.assertEqual(SessionSubject.for_pushes("qot:read", 2).scope, Scope.QOT_READ)
        self.assertNotEqual(SessionSubject.for_pushes("qot:read", 2), SessionSubject.for_pushes("qot:read", 3))
        self.assertEqual(repr(SessionSubject.keep_alive()), "SessionSubject.keep_alive()")
        self.assertEqual(SessionOutcome.deny("scope"), SessionOutcome(False, Reason.SCOPE))
        self.assertEqual(len({SessionOutcome.allow(), SessionOutcome.allow(), SessionOutcome.deny("rate")}), 2)
        self.assertEqual(SessionOutcome.of(Decision.allow("research", "qot:read")), SessionOutcome.allow())
        self.assertEqual(SessionOutcome.of(Decision.deny("expired", "research", "expired")),
                         SessionOutcome.deny("expired"))
        self.assertEqual(SessionOutcome.of(Decision.failed(RuntimeError("no answer"))), SessionOutcome.deny("internal"))
        for bad in [lambda: SessionSubject.for_pushes("qot"), lambda: SessionSubject.for_pushes("qot:read", -1),
                    lambda: SessionSubject.for_pushes("qot:read", 1 << 32), lambda: SessionSubject("pushes"),
                    lambda: SessionSubject("keep_alive", "qot:read"), lambda: SessionOutcome(False),
                    lambda: SessionOutcome(True, "scope"), lambda: SessionOutcome.deny("bored")]:
            with self.assertRaises(ValueError):
                bad()
        with self.assertRaises(AttributeError):
            SessionSubject.keep_alive().kind = "pushes"  # type: ignore[misc]
        with self.assertRaises(TypeError):
            SessionCheck(1, TOKEN, Iface.WS, "keep_alive", SessionOutcome.allow())  # type: ignore[arg-type]

    def test_a_deny_read_in_the_other_version_is_malformed_not_misread(self):
        value = v2_deny(Reason.RATE, "rate", 1, None)
        with self.assertRaises(DecodeError):
            decode_response(encode_response(value, 2), 1)
        with self.assertRaises(DecodeError):
            decode_response(encode_response(value, 1), 2)


# ---- protocol version 6: the pre-trade risk limits (proto/tests/golden.rs) ------------------

#: The fields of check_with_order()'s body, in every version (CHECK_WITH_ORDER_V5 in
#: proto/tests/golden.rs).
CHECK_WITH_ORDER_V5 = ["01", "fb2c01", TOKEN_FIELD, "00", "0e5472645f506c6163654f72646572", "01", "00", "00",
                       "08484b2e3030373030", "00", "0000000000005940", "010000000000087440", "00"]
TEN = "0000000000002440"


def deny_d(reason, limit=None, retry=None) -> DecisionResponse:
    return DecisionResponse(1, Decision.deny(reason, None, "d", retry, limit))


def v6_limits() -> Limits:
    return Limits(allowed_acc_ids=[281756], max_price_deviation_pct=5, max_open_orders=10,
                  max_position_value=100000, duplicate_window_ms=500)


#: v6_limits() on the wire: seven Nones, then the five limits of version 6 (by the rules
#: of docs/PROTOCOL.md §4: a u64 sequence, an f64, a u32, a cap, a u64).
V6_LIMITS_FIELDS = [NO_LIMITS_FIELD, "0101fc9c4c0400", "010000000000001440", "010a", "0100000000006af840",
                    "01fbf401"]


class Version6(unittest.TestCase):
    def test_a_check_ends_with_its_account_and_reference_price_and_older_ones_are_unchanged(self):
        # a_version_6_check_ends_with_its_account_and_reference_price_and_older_ones_are_unchanged
        plain = check_with_order()
        old = "".join(["00000057", *CHECK_WITH_ORDER_V5])
        for version in (1, 2, 3, 4, 5):
            self.assertEqual(request_frame(plain, version).hex(), old)
            self.assertEqual(decode_request(h(old)[4:], version), plain)
        v6 = "".join(["00000059", *CHECK_WITH_ORDER_V5, "00", "00"])
        self.assertEqual(request_frame(plain).hex(), v6)
        self.assertEqual(decode_request(h(v6)[4:], 6), plain)
        with_both = Check(300, TOKEN, Iface.REST, "Trd_PlaceOrder", plain.order, False, acc_id=281756, ref_price=390.0)
        v6 = "".join(["00000066", *CHECK_WITH_ORDER_V5,
                      "01fc9c4c0400",         # acc_id Some(281756): fc then u32 LE
                      "010000000000607840"])  # ref_price Some(390.0)
        self.assertEqual(request_frame(with_both, 6).hex(), v6)
        self.assertEqual(decode_request(h(v6)[4:], 6), with_both)
        # An older daemon could not read them: refused before any byte.
        self.assertEqual(with_both.needs(), (6, "Check with acc_id, ref_price"))
        self.assertEqual(Check(1, TOKEN, "rest", "x", acc_id=0).needs(), (6, "Check with acc_id"))
        self.assertEqual(plain.needs(), (1, "Check"))
        for version in (1, 5):
            with self.assertRaisesRegex(ValueError, "needs protocol version 6; this connection speaks %d" % version):
                encode_request(with_both, version)
        with self.assertRaises(DecodeError):
            decode_request(h(v6)[4:], 5)  # trailing bytes
        for bad in [dict(acc_id=-1), dict(acc_id=1 << 64), dict(acc_id=True), dict(acc_id=1.0)]:
            with self.assertRaises(ValueError):
                Check(1, TOKEN, "rest", "x", **bad)
        with self.assertRaises(TypeError):
            Check(1, TOKEN, "rest", "x", ref_price="390")

    def test_order_event_and_its_answers_have_pinned_bytes(self):
        # order_event_and_its_answer_have_pinned_bytes
        event = OrderEvent(7, 300, OrderEventKind.FILLED, 10.0, 388.2)
        vector = "".join(["00000018", "13", "07", "fb2c01", "02", "010000000000002440", "013333333333437840"])
        self.assertEqual(request_frame(event).hex(), vector)
        self.assertEqual(decode_request(h(vector)[4:]), event)
        self.assertEqual(OrderEvent(7, 300, "filled", 10, 388.2), event)
        accepted = OrderEvent(8, 300, "accepted")
        self.assertEqual(request_frame(accepted).hex(), "00000008" "13" "08" "fb2c01" "00" "00" "00")
        for value, fields in [
            (OrderEventDone(7, OrderEventOutcome.duplicate_of("bot")), ["00000007", "10", "07", "01", "03626f74"]),
            (OrderEventDone(7, OrderEventOutcome.applied_to("bot", 0.0)),
             ["0000000f", "10", "07", "00", "03626f74", "0000000000000000"]),
            (OrderEventDone(7, OrderEventOutcome.refused_for(OrderEventRefusal.UNKNOWN_TICKET, "x")),
             ["00000006", "10", "07", "02", "00", "0178"]),
            (OrderEventDone(9, OrderEventOutcome.refused_for("not_supported", "")),
             ["00000005", "10", "09", "02", "02", "00"]),
        ]:
            with self.subTest(outcome=value.outcome.kind):
                vector = "".join(fields)
                self.assertEqual(response_frame(value, 6).hex(), vector)
                self.assertEqual(decode_response(h(vector)[4:], 6), value)
        # A peer of version 5 never sends one, nor is sent one.
        with self.assertRaises(DecodeError):
            decode_request(encode_request(event), 5)
        with self.assertRaisesRegex(ValueError, "OrderEvent needs protocol version 6"):
            encode_request(event, 5)
        with self.assertRaises(ValueError):
            OrderEvent(1, 2, "settled")
        done = OrderEventOutcome.applied_to("bot", 388.2)
        self.assertEqual((done.applied, done.duplicate, done.refused, done.refunded_value), (True, False, False, 388.2))
        self.assertTrue(OrderEventOutcome.refused_for("bad_figures", "m").refused)
        for bad in [lambda: OrderEventOutcome("applied", key_id="bot"), lambda: OrderEventOutcome("refused"),
                    lambda: OrderEventOutcome("duplicate", key_id="bot", message="m"),
                    lambda: OrderEventOutcome("done", key_id="bot"),
                    lambda: OrderEventOutcome.refused_for("bored", "m")]:
            with self.assertRaises(ValueError):
                bad()

    def test_a_price_collar_deny_has_pinned_figures_and_is_told_as_order_value_before(self):
        # a_version_6_deny_has_pinned_figures_and_is_told_as_its_nearest_reason_before
        collar = deny_d(Reason.PRICE_COLLAR, PriceCollarFigures(10.0, 10.0, 10.0, 10.0))
        v6 = "".join(["0000002a", "01", "01", "01", "12", "00", "0164", "00", "01", "04", TEN, TEN, TEN, TEN])
        self.assertEqual(response_frame(collar, 6).hex(), v6)
        self.assertEqual(decode_response(h(v6)[4:], 6), collar)
        v5 = "".join(["00000009", "01", "01", "01", "0a", "00", "0164", "00", "00"])
        self.assertEqual(response_frame(collar, 5).hex(), v5)
        self.assertEqual(response_frame(deny_d(Reason.ORDER_VALUE), 5).hex(), v5)
        self.assertEqual(decode_response(h(v5)[4:], 5), deny_d(Reason.ORDER_VALUE))
        with self.assertRaises(DecodeError):
            decode_response(h(v6)[4:], 5)
        self.assertEqual(collar.decision.limit.to_dict(), {"price_collar": {
            "price": 10.0, "ref_price": 10.0, "deviation_pct": 10.0, "max_price_deviation_pct": 10.0}})

    def test_each_new_reason_is_told_as_its_nearest_before_version_6_with_its_retry_and_no_figures(self):
        cases = [
            (Reason.ACCOUNT, None, Reason.SCOPE, "11", ["00"]),
            (Reason.OPEN_ORDERS, OpenOrdersFigures(10, 10), Reason.RATE, "13", ["01", "05", "0a", "0a"]),
            (Reason.POSITION, PositionFigures(90000.0, 20000.0, 100000.0), Reason.DAILY_VALUE, "14",
             ["01", "06", "0000000000f9f540", "000000000088d340", "00000000006af840"]),
            (Reason.DUPLICATE, DuplicateFigures(300, 1000), Reason.RATE, "15", ["01", "07", "fb2c01", "fbe803"]),
        ]
        for reason, figures, told, index, limit_fields in cases:
            with self.subTest(reason=reason.value):
                value = deny_d(reason, figures, 700)
                body = "".join(["01", "01", "01", index, "00", "0164", "01fbbc02", *limit_fields])
                self.assertEqual(encode_response(value, 6).hex(), body)
                self.assertEqual(decode_response(h(body), 6), value)
                for version in (2, 3, 4, 5):
                    self.assertEqual(decode_response(encode_response(value, version), version),
                                     deny_d(told, None, 700))
                self.assertEqual(decode_response(encode_response(value, 1), 1), deny_d(told))
                if figures is not None:
                    # Version-6 figures under an older reason are not a message of version 5.
                    with self.assertRaises(DecodeError):
                        decode_response(encode_response(deny_d(told, figures), 6), 5)

    def test_an_allow_of_the_scope_admin_is_told_with_no_scope_before_version_6(self):
        allow = DecisionResponse(3, Decision.allow("ops", Scope.ADMIN))
        self.assertEqual(encode_response(allow, 6).hex(), "010300036f7073" "0105" "00")
        self.assertEqual(decode_response(encode_response(allow, 6), 6), allow)
        self.assertEqual(encode_response(allow, 5).hex(), "010300036f7073" "00" "00")
        with self.assertRaises(DecodeError):
            decode_response(h("010300036f7073" "0105" "00"), 5)
        # Requests of the scope admin need version 6.
        scope = CheckScope(4, TOKEN, Iface.REST, Scope.ADMIN)
        self.assertEqual(scope.needs(), (6, "CheckScope of scope admin"))
        self.assertEqual(encode_request(scope).hex(), "0204" + TOKEN_FIELD + "00" + "05")
        with self.assertRaises(DecodeError):
            decode_request(encode_request(scope), 5)
        pushes = SessionCheck(5, TOKEN, Iface.WS, SessionSubject.for_pushes("admin"), SessionOutcome.allow())
        self.assertEqual(pushes.needs(), (6, "SessionCheck of pushes of scope admin"))
        with self.assertRaises(ValueError):
            encode_request(pushes, 5)

    def test_a_session_remembering_a_new_reason_tells_an_older_daemon_the_nearest(self):
        check = SessionCheck(6, TOKEN, Iface.WS, SessionSubject.keep_alive(), SessionOutcome.deny("position"))
        self.assertEqual(encode_request(check, 6).hex(), "0d06" + TOKEN_FIELD + "02" "00" "0114")
        self.assertEqual(encode_request(check, 5).hex(), "0d06" + TOKEN_FIELD + "02" "00" "010b")
        self.assertEqual(decode_request(encode_request(check, 6), 6), check)

    def test_key_records_carry_twelve_limits_from_version_6_and_seven_before(self):
        keys = Keys(6, (minimal_record(),))
        v6 = "".join(["00000073", "04", "06", "01", RESEARCH_FIELD, HASH_FIELD, "0100", NO_LIMITS_FIELD,
                      NO_V6_LIMITS, "00", "14323032362d30342d31355431303a30303a30305a", "00", "00"])
        self.assertEqual(response_frame(keys, 6).hex(), v6)
        self.assertEqual(decode_response(h(v6)[4:], 6), keys)
        self.assertEqual(len(encode_response(keys, 6)), len(encode_response(keys, 5)) + 5)
        for version in (1, 2, 3, 4, 5):
            self.assertEqual(decode_response(encode_response(keys, version), version), keys)
        with self.assertRaises(DecodeError):
            decode_response(h(v6)[4:], 5)
        # Every version-6 limit set, both ways.
        rec = dataclasses.replace(minimal_record(), limits=v6_limits())
        bound = KeyBound(10, rec)
        v6 = "".join(["0000008c", "06", "0a", RESEARCH_FIELD, HASH_FIELD, "0100", *V6_LIMITS_FIELDS, "00",
                      "14323032362d30342d31355431303a30303a30305a", "00", "00"])
        self.assertEqual(response_frame(bound, 6).hex(), v6)
        self.assertEqual(decode_response(h(v6)[4:], 6), bound)
        self.assertEqual(rec.to_dict()["limits"], {"allowed_acc_ids": [281756], "max_price_deviation_pct": 5.0,
                                                   "max_open_orders": 10, "max_position_value": 100000.0,
                                                   "duplicate_window_ms": 500})

    def test_a_record_with_version_6_settings_is_an_error_to_an_older_peer(self):
        # a_record_with_version_6_settings_is_an_error_to_an_older_peer_and_in_full_to_a_newer
        rec = dataclasses.replace(minimal_record(), scopes=(Scope.QOT_READ, Scope.ADMIN),
                                  limits=Limits(max_open_orders=10))
        for resp in [Keys(4, (rec,)), KeysPage(4, 1, 0, 1, (rec,)), KeyBound(4, rec),
                     KeyGenerated(4, Token(TOKEN), rec, "k")]:
            with self.subTest(resp=type(resp).__name__):
                told = decode_response(encode_response(resp, 5), 5)
                self.assertIsInstance(told, ErrorResponse)
                self.assertEqual((told.request_id, told.kind), (4, ErrorKind.INTERNAL))
                self.assertIn("key research has scope admin, max_open_orders", told.message)
                self.assertEqual(decode_response(encode_response(resp, 6), 6), resp)

    def test_a_gen_key_with_version_6_settings_needs_version_6(self):
        spec = KeySpec("sim-bot", ["qot:read"], v6_limits())
        gen = GenKey(5, spec)
        self.assertEqual(gen.needs(), (6, "GenKey with allowed_acc_ids, max_price_deviation_pct, max_open_orders, "
                                          "max_position_value, duplicate_window_ms"))
        vector = "".join(["05", SIM_BOT_FIELD, "0100", *V6_LIMITS_FIELDS, "00", "00", "00"])
        self.assertEqual(encode_request(gen).hex(), "04" + vector)
        self.assertEqual(decode_request(encode_request(gen)), gen)
        with self.assertRaises(ValueError):
            encode_request(gen, 5)
        admin = GenKey(5, KeySpec("ops", ["admin"]))
        self.assertEqual(admin.needs(), (6, "GenKey with scope admin"))
        with self.assertRaises(DecodeError):
            decode_request(encode_request(admin), 5)

    def test_the_limits_of_version_6_are_checked_when_built(self):
        self.assertEqual(Limits().since_v6(), ())
        self.assertEqual(Limits(max_open_orders=0).since_v6(), ("max_open_orders",))
        for bad in [dict(allowed_acc_ids=[]), dict(allowed_acc_ids=[1, 1]), dict(allowed_acc_ids=[-1]),
                    dict(allowed_acc_ids=[1 << 64]), dict(max_price_deviation_pct=0),
                    dict(max_price_deviation_pct=10000.5), dict(max_price_deviation_pct=float("nan")),
                    dict(max_open_orders=1 << 32), dict(max_position_value=-1), dict(max_position_value=1e-9),
                    dict(duplicate_window_ms=0), dict(duplicate_window_ms=3600001)]:
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                Limits(**bad)
        with self.assertRaises(TypeError):
            Limits(allowed_acc_ids="281756")
        self.assertEqual(Limits(max_price_deviation_pct=10000, duplicate_window_ms=3600000).max_price_deviation_pct,
                         10000.0)
        # A value that breaks a rule, read from the wire, is a malformed frame.
        with self.assertRaises(DecodeError):
            decode_response(h("06", "0a", RESEARCH_FIELD, HASH_FIELD, "0100", NO_LIMITS_FIELD, "0100000000",
                              "00", "14323032362d30342d31355431303a30303a30305a", "00", "00"), 6)


# ---- the rules of §4 ----------------------------------------------------------------------

class EncodingRules(unittest.TestCase):
    def test_varints_are_as_documented(self):
        cases = [(0, "00"), (250, "fa"), (251, "fbfb00"), (300, "fb2c01"), (65535, "fbffff"),
                 (65536, "fc00000100"), (70000, "fc70110100"), ((1 << 32) - 1, "fcffffffff"),
                 (1 << 32, "fd0000000001000000"), ((1 << 64) - 1, "fdffffffffffffffff")]
        for n, hexed in cases:
            w = Writer()
            w.u64(n)
            self.assertEqual(w.getvalue().hex(), hexed, n)
            self.assertEqual(Reader(bytes.fromhex(hexed)).u64(), n)
            self.assertEqual(encode_request(ListKeys(n)).hex(), "05" + hexed)

    def test_values_that_do_not_fit_their_field_are_refused(self):
        w = Writer()
        for bad in (-1, 1 << 64):
            with self.assertRaises(ValueError):
                w.u64(bad)
        with self.assertRaises(ValueError):
            w.u16(1 << 16)
        with self.assertRaises(ValueError):
            encode_request(Hello(70000, "x"))

    def test_a_string_of_300_bytes_has_a_three_byte_length(self):
        body = encode_response(ErrorResponse(1, ErrorKind.INTERNAL, "x" * 300))
        self.assertEqual(body[:6].hex(), "09010afb2c01")
        self.assertEqual(len(body), 306)

    def test_f64s_are_little_endian_binary64(self):
        w = Writer()
        w.f64(100.0)
        w.f64(320.5)
        self.assertEqual(w.getvalue().hex(), "0000000000005940" + "0000000000087440")
        r = Reader(w.getvalue())
        self.assertEqual((r.f64(), r.f64()), (100.0, 320.5))
        nan = Check(1, TOKEN, "rest", "Trd_PlaceOrder", Order("real", "US", "US.AAPL", "SELL_SHORT", math.nan, None))
        back = decode_request(encode_request(nan))
        self.assertTrue(math.isnan(back.order.qty))

    def test_enums_travel_as_their_index(self):
        names = ["unknown_key", "expired", "frozen", "machine", "scope", "unknown_endpoint", "market", "symbol",
                 "side", "hours", "order_value", "daily_value", "rate", "bad_order", "forbidden", "internal",
                 "halted", "account", "price_collar", "open_orders", "position", "duplicate"]
        self.assertEqual([r.value for r in Reason], names)
        self.assertEqual([r.index for r in Reason], list(range(22)))
        kinds = ["version", "bad_frame", "hello_first", "unknown_ticket", "already_released", "ticket_expired",
                 "unknown_key", "duplicate_key", "invalid_spec", "store", "internal", "listing_expired"]
        self.assertEqual([k.value for k in ErrorKind], kinds)
        self.assertEqual([i.value for i in Iface], ["rest", "grpc", "ws", "mcp", "cli"])
        self.assertEqual([s.value for s in Scope], ["qot:read", "acc:read", "trade:simulate", "trade:real",
                                                    "trade:unlock", "admin"])
        self.assertEqual([k.value for k in OrderEventKind], ["accepted", "partially_filled", "filled", "cancelled",
                                                             "rejected"])
        self.assertEqual([k.value for k in OrderEventRefusal], ["unknown_ticket", "bad_figures", "not_supported"])
        self.assertEqual([m.value for m in Market], ["HK", "US", "CN", "HKCC", "FUTURES", "SG", "JP", "AU", "MY",
                                                     "CA"])
        self.assertEqual([s.value for s in TrdSide], ["BUY", "SELL", "SELL_SHORT", "BUY_BACK"])
        self.assertEqual([e.value for e in TrdEnv], ["simulate", "real"])
        self.assertEqual(str(Reason.DAILY_VALUE), "daily_value")
        self.assertEqual(Reason.RATE, "rate")
        self.assertEqual(Scope.parse("trade:real").index, 3)
        with self.assertRaises(ValueError):
            Scope.parse("trade")

    def test_frames_are_limited_to_64_kib_of_body(self):
        self.assertEqual(MAX_FRAME, 65536)
        fits = Check(2 ** 64 - 1, TOKEN, "rest", "", None, True)
        base = len(encode_request(fits))
        # A 3-byte string length from 251 on: grow the endpoint to exactly 64 KiB of body.
        n = MAX_FRAME - base - 2
        body = encode_request(Check(2 ** 64 - 1, TOKEN, "rest", "e" * n, None, True))
        self.assertEqual(len(body), MAX_FRAME)
        self.assertEqual(frame(body)[:4], b"\x00\x01\x00\x00")
        with self.assertRaises(FrameTooLarge):
            frame(body + b"\x00")
        self.assertEqual(frame_length(b"\x00\x01\x00\x00"), MAX_FRAME)
        for announced in (b"\x00\x01\x00\x01", b"\xff\xff\xff\xff"):
            with self.assertRaises(FrameTooLarge):
                frame_length(announced)


class MalformedBodies(unittest.TestCase):
    def assert_malformed_request(self, body: bytes):
        with self.assertRaises(DecodeError, msg=body.hex()):
            decode_request(body)

    def test_trailing_bytes_are_malformed(self):
        body = encode_request(Hello(1, "rest")) + b"\x00"
        with self.assertRaisesRegex(DecodeError, "1 trailing bytes"):
            decode_request(body)

    def test_unknown_variant_indices_are_malformed(self):
        self.assert_malformed_request(bytes([11]))
        with self.assertRaises(DecodeError):
            decode_response(bytes([11]))
        self.assert_malformed_request(h("07080773696d2d626f7404"))  # BindOp 0..=3
        with self.assertRaises(DecodeError):
            decode_response(h("01020210"))  # Decision 0..=1
        with self.assertRaises(DecodeError):
            decode_response(h("0102011600000000"))  # Reason 0..=21
        with self.assertRaises(DecodeError):
            decode_response(h("0102011100000000"), 5)  # Reason 0..=16 in version 5
        self.assertEqual(decode_response(h("09010b00")).kind, ErrorKind.LISTING_EXPIRED)
        with self.assertRaises(DecodeError):
            decode_response(h("09010c00"))  # ErrorKind 0..=11
        self.assert_malformed_request(h("140100"))  # Request 0..=19
        with self.assertRaises(DecodeError):
            decode_response(h("110100"))  # Response 0..=16
        with self.assertRaises(DecodeError):
            decode_response(h("1001030000"))  # OrderEventOutcome 0..=2
        with self.assertRaises(DecodeError):
            decode_response(h("010201", "0c", "00", "00", "00", "01", "08", "0000"))  # LimitFigures 0..=7
        self.assert_malformed_request(h("0f0b02"))  # HaltTarget 0..=1
        session = "0d05" + TOKEN_FIELD + "02"
        self.assertEqual(decode_request(h(session, "0102030104")).previous, SessionOutcome.deny("scope"))
        self.assert_malformed_request(h(session, "020203", "00"))  # SessionSubject 0..=1
        self.assert_malformed_request(h(session, "00", "02"))  # SessionOutcome 0..=1
        self.assert_malformed_request(h(session, "00", "0116"))  # Reason 0..=21
        self.assert_malformed_request(h(session, "0106", "03", "00"))  # Scope 0..=5
        with self.assertRaises(DecodeError):
            decode_request(h(session, "00", "0111"), 5)  # Reason 0..=16 in version 5
        with self.assertRaises(DecodeError):
            decode_request(h(session, "0105", "03", "00"), 5)  # Scope 0..=4 in version 5

    def test_every_cut_of_a_message_is_malformed(self):
        body = encode_request(check_with_order())
        for cut in range(len(body)):
            self.assert_malformed_request(body[:cut])

    def test_bool_and_option_tags_other_than_0_and_1_are_malformed(self):
        body = bytearray(encode_request(check_with_order()))
        bad_bool = bytearray(body)
        bad_bool[-1] = 2
        self.assert_malformed_request(bytes(bad_bool))
        order_tag = 1 + 3 + 36 + 1 + 15
        self.assertEqual(body[order_tag], 1)
        body[order_tag] = 2
        self.assert_malformed_request(bytes(body))

    def test_varint_tags_wider_than_the_field_are_malformed(self):
        self.assert_malformed_request(h("00fc010000000472657374"))  # u16 in the u32 form
        self.assert_malformed_request(h("fd0500000000000000"))  # a variant index in the u64 form
        self.assert_malformed_request(h("05fe"))
        self.assert_malformed_request(h("05ff"))

    def test_invalid_utf8_is_malformed(self):
        self.assert_malformed_request(h("000102ffff"))

    def test_validated_strings_in_a_message_are_malformed_when_broken(self):
        self.assert_malformed_request(h("0607") + b"\x03a b")  # RevokeKey "a b"
        self.assert_malformed_request(h("0708") + b"\x07sim-bot\x00\x01\x03bot")  # fingerprint "bot"
        record = bytearray(encode_response(Keys(6, (minimal_record(),))))
        at = record.index(HASH.encode())
        record[at] = ord("z")  # not hex
        with self.assertRaises(DecodeError):
            decode_response(bytes(record))

    def test_a_sequence_longer_than_its_bytes_is_malformed(self):
        with self.assertRaises(DecodeError):
            decode_response(h("0406fc00000100"))  # Keys claiming 65536 records in 0 bytes


class ValidatedStrings(unittest.TestCase):
    def test_key_ids(self):
        self.assertEqual(KeySpec("sim-bot", []).id, "sim-bot")
        for bad in ["", "a b", "x" * 65, TOKEN, "é"]:
            with self.assertRaises(ValueError):
                RevokeKey(1, bad)
        try:
            RevokeKey(1, TOKEN)
        except ValueError as e:
            self.assertNotIn(TOKEN[3:], str(e))

    def test_fingerprints_symbols_and_hours_windows(self):
        BindOp.add(["fp_bot_host_abc123"])
        for bad in ["fp_", "bot", "fp_" + "a" * 65, "fp_a b"]:
            with self.assertRaises(ValueError):
                BindOp.add([bad])
        for ok in ["HK.00700", "US.AAPL", "US.BRK.B", "SH.600519", "SZ.000001"]:
            Limits(allowed_symbols=[ok])
        for bad in ["AAPL", "XX.AAPL", "US.", ".AAPL", "US.AA PL", "us.AAPL"]:
            with self.assertRaises(ValueError):
                Limits(allowed_symbols=[bad])
        for ok in ["09:30-16:00", "22:00-04:00"]:
            Limits(hours_window=ok)
        for bad in ["9:30-16:00", "09:30-09:30", "24:00-01:00", "09:60-10:00", "09:30"]:
            with self.assertRaises(ValueError):
                Limits(hours_window=bad)

    def test_caps(self):
        self.assertEqual(Limits(max_order_value=2530.5).max_order_value, 2530.5)
        self.assertEqual(Limits(max_order_value=1e20).max_order_value, 1e20)
        self.assertEqual(Limits(max_order_value=0.00000001).max_order_value, 1e-8)
        negative_zero = Limits(max_daily_value=-0.0).max_daily_value
        self.assertEqual(math.copysign(1, negative_zero), 1.0)
        for bad in [-0.01, math.nan, math.inf, 0.123456789, 1e-9, 5e-324, 1e300]:
            with self.assertRaises(ValueError, msg=repr(bad)):
                Limits(max_order_value=bad)

    def test_timestamps(self):
        import datetime as dt
        for ok in ["2026-12-31T00:00:00Z", "2026-12-31T08:00:00+08:00", "2026-12-31T08:00:00.5+08:00"]:
            self.assertEqual(KeySpec("a", [], expires_at=ok).expires_at, ok)
        aware = dt.datetime(2026, 12, 31, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
        self.assertEqual(KeySpec("a", [], expires_at=aware).expires_at, "2026-12-31T00:00:00Z")
        for bad in ["2026-12-31", "2026-12-31T00:00:00", "2026-02-30T00:00:00Z", dt.datetime(2026, 1, 1)]:
            with self.assertRaises(ValueError):
                KeySpec("a", [], expires_at=bad)


if __name__ == "__main__":
    unittest.main()
