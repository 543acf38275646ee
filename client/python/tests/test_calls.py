"""The client's core without a socket: each call's steps driven by hand as a transport
drives them (paging, the session check's fallback, failing closed), the connection's
pipeline fed bytes cut anywhere, the Hello's version negotiation, and both clients
offering the same calls."""

import asyncio
import concurrent.futures
import inspect
import time
import unittest

from futu_auth_client import (
    AsyncAuthClient,
    AuthClient,
    AuthError,
    ClientError,
    ConnectionLost,
    DeadlineExceeded,
    Decision,
    ErrorKind,
    ForbiddenError,
    InvalidRequest,
    KeyHash,
    KeyRecord,
    KeySpec,
    Limits,
    OrderEventKind,
    OrderEventRefusal,
    ProtocolError,
    Reason,
    Scope,
    SessionOutcome,
    SessionSubject,
    VersionTooOld,
)
from futu_auth_client._calls import Ask, Calls, Operation
from futu_auth_client._connection import Handshake, Pipeline, Tally
from futu_auth_client.messages import (
    MAX_KEYS_CHUNK,
    Check,
    CheckScope,
    DecisionResponse,
    ErrorResponse,
    GenKey,
    HelloOk,
    ImportKeys,
    Imported,
    KeysImported,
    KeysPage,
    ListKeysPage,
    OrderEvent,
    OrderEventDone,
    OrderEventOutcome,
    Release,
    Released,
    SessionCheck,
    decode_request,
    encode_response,
    request_frame,
    response_frame,
)

T = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f"


def record(key_id):
    return KeyRecord(key_id, KeyHash("ab" * 32), (Scope.QOT_READ,), Limits(), None, "2026-01-01T00:00:00Z")


class ByHand(Calls):
    """A client whose transport is a function: ``answer(request)`` returns the daemon's
    answer or raises the ClientError a transport would (nothing is connected)."""

    def __init__(self, answer, timeout=5.0):
        super().__init__("/nonexistent", timeout)
        self._conn = None
        self.answer = answer
        self.sent = []

    def _run(self, steps, timeout):
        op = self._operation(steps, timeout)
        while not op.done:
            self.sent.append(op.request)
            try:
                resp = self.answer(op.request)
            except ClientError as e:
                op.fail(e)
            else:
                op.answer(resp)
        return op.result


class Steps(unittest.TestCase):
    def test_a_listing_is_paged_and_started_again_when_it_expires(self):
        keys = [record("k%d" % i) for i in range(5)]
        expired = []

        def daemon(req):
            if req.listing == 9 and req.offset == 2 and not expired:
                expired.append(req.request_id)
                return ErrorResponse(req.request_id, ErrorKind.LISTING_EXPIRED, "listing 9 is gone")
            return KeysPage(req.request_id, 9, req.offset, 5, tuple(keys[req.offset:req.offset + 2]))
        auth = ByHand(daemon)
        self.assertEqual([k.id for k in auth.list_keys()], ["k0", "k1", "k2", "k3", "k4"])
        self.assertEqual([(r.listing, r.offset) for r in auth.sent], [(0, 0), (9, 2), (0, 0), (9, 2), (9, 4)])
        self.assertEqual(len({r.request_id for r in auth.sent}), 5, "a fresh id for each request")
        self.assertTrue(all(isinstance(r, ListKeysPage) for r in auth.sent))

    def test_a_listing_that_keeps_expiring_is_given_up_after_four_tries(self):
        def daemon(req):
            if req.listing == 0:
                return KeysPage(req.request_id, 9, 0, 3, (record("k0"),))
            return ErrorResponse(req.request_id, ErrorKind.LISTING_EXPIRED, "listing 9 is gone")
        auth = ByHand(daemon)
        with self.assertRaises(AuthError) as e:
            auth.list_keys()
        self.assertEqual(e.exception.kind, ErrorKind.LISTING_EXPIRED)
        self.assertEqual(len(auth.sent), 8)

    def test_an_older_daemon_is_asked_the_equivalent_of_a_session_check(self):
        def v3(req):
            if isinstance(req, SessionCheck):
                raise VersionTooOld("SessionCheck", 4, 3)
            return DecisionResponse(req.request_id, Decision.allow("research", getattr(req, "scope", None)))
        auth = ByHand(v3)
        pushes = auth.session_check(T, "ws", SessionSubject.for_pushes("qot:read", 3), SessionOutcome.allow())
        alive = auth.session_check(T, "mcp", SessionSubject.keep_alive(), SessionOutcome.allow())
        self.assertTrue(pushes.allowed and alive.allowed)
        self.assertEqual([type(r) for r in auth.sent], [SessionCheck, CheckScope, SessionCheck, Check])
        self.assertEqual(auth.sent[1].scope, Scope.QOT_READ)
        self.assertEqual((auth.sent[3].endpoint, auth.sent[3].dry_run, auth.sent[3].order), ("KeepAlive", True, None))

    def test_the_session_check_fallback_keeps_the_first_request_s_deadline(self):
        def slow_v3(req):
            time.sleep(0.06)
            raise VersionTooOld("SessionCheck", 4, 3)
        auth = ByHand(slow_v3, timeout=0.05)
        d = auth.session_check(T, "ws", SessionSubject.keep_alive(), SessionOutcome.allow())
        self.assertEqual(d.reason, Reason.INTERNAL)
        self.assertIsInstance(d.error, DeadlineExceeded)
        self.assertEqual(d.error.timeout, 0.05)
        self.assertEqual([type(r) for r in auth.sent], [SessionCheck], "nothing asked past the deadline")

    def test_checks_fail_closed_and_the_other_calls_raise(self):
        def lost(req):
            raise ConnectionLost("gone")
        auth = ByHand(lost)
        for d in [auth.check(T, "Qot_GetBasicQot"), auth.check_scope(T, "qot:read"),
                  auth.session_check(T, "ws", SessionSubject.keep_alive(), SessionOutcome.allow())]:
            self.assertEqual((d.allowed, d.reason, d.from_daemon), (False, Reason.INTERNAL, False))
            self.assertIsInstance(d.error, ConnectionLost)
        with self.assertRaises(ConnectionLost):
            auth.release(7)

    def test_an_answer_of_the_wrong_kind_is_a_protocol_error(self):
        auth = ByHand(lambda req: KeysPage(req.request_id, 1, 0, 0, ()))
        self.assertIsInstance(auth.check(T, "Qot_GetBasicQot").error, ProtocolError)
        with self.assertRaises(ProtocolError):
            auth.reload()

    def test_error_answers_and_forbidden_admin_denies_raise_typed_exceptions(self):
        def daemon(req):
            if isinstance(req, GenKey):
                return DecisionResponse(req.request_id, Decision.deny("forbidden", None, "admin requests need an admin"))
            return ErrorResponse(req.request_id, ErrorKind.UNKNOWN_KEY, "no key")
        auth = ByHand(daemon)
        with self.assertRaises(ForbiddenError):
            auth.gen_key(KeySpec("new", ["qot:read"]))
        with self.assertRaises(AuthError) as e:
            auth.usage("nobody")
        self.assertEqual(e.exception.kind, ErrorKind.UNKNOWN_KEY)
        # A check's Error answer is a deny, and a check's forbidden deny is the daemon's.
        self.assertIsInstance(auth.check(T, "Qot_GetBasicQot").error, AuthError)

    def test_a_request_that_cannot_be_built_never_reaches_the_transport(self):
        auth = ByHand(lambda req: self.fail("sent %r" % (req,)))
        self.assertIsInstance(auth.check(T, "Qot_GetBasicQot", iface="telnet").error, InvalidRequest)
        self.assertIsInstance(auth.check(T, "x" * 70000).error, InvalidRequest)
        with self.assertRaises(InvalidRequest):
            auth.revoke_key("a" * 70000)
        self.assertEqual(auth.sent, [])

    def test_an_empty_text_is_imported_as_one_last_chunk(self):
        auth = ByHand(lambda req: KeysImported(req.request_id, 5, 0, Imported(0, 0, 3, "k")))
        self.assertEqual(auth.import_keys(""), Imported(0, 0, 3, "k"))
        self.assertEqual(auth.sent, [ImportKeys(auth.sent[0].request_id, 0, 0, "", True, False)])

    def test_an_import_or_export_answered_otherwise_is_a_protocol_error(self):
        auth = ByHand(lambda req: KeysPage(req.request_id, 1, 0, 0, ()))
        with self.assertRaises(ProtocolError):
            auth.import_keys("{}")
        with self.assertRaises(ProtocolError):
            auth.export_keys()
        # What the last chunk's answer said before it: an import done early.
        auth = ByHand(lambda req: KeysImported(req.request_id, 5, MAX_KEYS_CHUNK, Imported(0, 0, 3, "k")))
        with self.assertRaisesRegex(ProtocolError, "ends at %d" % MAX_KEYS_CHUNK):
            auth.import_keys("x" * (MAX_KEYS_CHUNK + 1))
        self.assertEqual(len(auth.sent), 1)

    def test_order_events_are_checked_before_they_are_sent_and_answered_with_their_outcome(self):
        auth = ByHand(lambda req: OrderEventDone(req.request_id, OrderEventOutcome.applied_to("bot", 0.0)))
        self.assertEqual(auth.order_event(300, "filled", 10, 388.2), OrderEventOutcome.applied_to("bot", 0.0))
        self.assertEqual(auth.order_event(300, OrderEventKind.CANCELLED).kind, "applied")
        self.assertEqual(auth.sent, [OrderEvent(auth.sent[0].request_id, 300, "filled", 10.0, 388.2),
                                     OrderEvent(auth.sent[1].request_id, 300, "cancelled")])
        auth.sent.clear()
        for args in [(300, "settled"), (300, "filled"), (300, "partially_filled", 10), (300, "filled", 10, 0),
                     (300, "filled", float("inf"), 1), (300, "filled", -1, 1), (300, "filled", 1, "2"),
                     (300, "accepted", 1, 1), (300, "rejected", None, 1), (-1, "accepted"), (1 << 64, "accepted"),
                     (True, "accepted")]:
            with self.subTest(args=args), self.assertRaises(InvalidRequest):
                auth.order_event(*args)
        self.assertEqual(auth.sent, [])
        auth = ByHand(lambda req: OrderEventDone(req.request_id, OrderEventOutcome.refused_for("not_supported", "no")))
        outcome = auth.order_event(300, "accepted")
        self.assertEqual((outcome.refused, outcome.reason, outcome.message), (True, OrderEventRefusal.NOT_SUPPORTED,
                                                                              "no"))
        auth = ByHand(lambda req: Released(req.request_id, "bot", 1.0))
        with self.assertRaises(ProtocolError):
            auth.order_event(300, "accepted")

    def test_a_check_carries_its_account_and_reference_price(self):
        auth = ByHand(lambda req: DecisionResponse(req.request_id, Decision.allow("bot")))
        self.assertTrue(auth.check(T, "Trd_GetFunds", acc_id=281756))
        self.assertTrue(auth.check(T, "Trd_PlaceOrder", None, "rest", True, None, acc_id=1, ref_price=390))
        self.assertEqual([(r.acc_id, r.ref_price) for r in auth.sent], [(281756, None), (1, 390.0)])
        self.assertIsInstance(auth.check(T, "Trd_GetFunds", acc_id=-1).error, InvalidRequest)
        self.assertIsInstance(auth.check(T, "Trd_GetFunds", ref_price="1").error, InvalidRequest)
        self.assertEqual(len(auth.sent), 2)

    def test_an_operation_is_done_when_its_steps_return(self):
        def steps():
            return "nothing asked"
            yield  # a generator
        op = Operation(steps(), iter(range(1, 10)).__next__, 1.0)
        self.assertTrue(op.done)
        self.assertEqual(op.result, "nothing asked")


class Pipelines(unittest.TestCase):
    def pipeline(self, version=4):
        hello = Handshake("test")
        hello.version, hello.server_version = version, "fake"
        ids = iter(range(1000, 2000))
        self.late_releases = Tally()
        return Pipeline(hello, ids.__next__, self.late_releases)

    def test_answers_cut_anywhere_and_out_of_order_reach_their_waiters(self):
        p = self.pipeline()
        waiters = {}
        for rid in (1, 2, 3):
            waiters[rid] = concurrent.futures.Future()
            p.register(Check(rid, T, "rest", "E%d" % rid), waiters[rid])
        data = b"".join(response_frame(DecisionResponse(rid, Decision.allow("k%d" % rid)), 4) for rid in (3, 1, 2))
        for i in range(len(data)):
            self.assertEqual(p.receive(data[i:i + 1]), [])
        self.assertEqual({rid: w.result(0).decision.key_id for rid, w in waiters.items()},
                         {1: "k1", 2: "k2", 3: "k3"})
        self.assertEqual(p.in_flight, 0)

    def test_an_allow_nobody_waits_for_becomes_the_release_of_its_ticket(self):
        p = self.pipeline()
        late = concurrent.futures.Future()
        p.register(Check(5, T, "rest", "Trd_PlaceOrder"), late)
        self.assertTrue(p.forget(5), "given up before its answer came")
        frames = p.receive(response_frame(DecisionResponse(5, Decision.allow("sim-bot", None, 70005)), 4)
                           + response_frame(DecisionResponse(6, Decision.allow("sim-bot")), 4)
                           + response_frame(DecisionResponse(7, Decision.deny("rate", "sim-bot", "too fast")), 4))
        self.assertEqual(len(frames), 1, "only an allow with a ticket is released")
        release = decode_request(frames[0][4:])
        self.assertEqual((type(release), release.ticket, release.request_id), (Release, 70005, 1000))
        self.assertEqual(self.late_releases.value, 1)
        self.assertFalse(late.done())

    def test_a_fatal_error_then_the_close_fails_every_waiter(self):
        p = self.pipeline()
        w = concurrent.futures.Future()
        p.register(Check(1, T, "rest", "Qot_GetBasicQot"), w)
        p.receive(response_frame(ErrorResponse(0, ErrorKind.BAD_FRAME, "malformed message"), 4))
        self.assertTrue(p.fail(p.closed()))
        self.assertFalse(p.fail(ConnectionLost), "ended once")
        self.assertIsInstance(w.exception(0), ProtocolError)
        self.assertIn("bad_frame", str(w.exception(0)))
        with self.assertRaises(ProtocolError):
            p.register(Check(2, T, "rest", "Qot_GetBasicQot"), concurrent.futures.Future())

    def test_a_close_inside_a_frame_and_bytes_that_are_not_the_protocol(self):
        p = self.pipeline()
        p.receive(response_frame(DecisionResponse(1, Decision.allow("k")), 4)[:5])
        self.assertIsInstance(p.closed()(), ConnectionLost)
        self.assertIn("inside a frame", str(p.closed()()))
        with self.assertRaises(ProtocolError):
            self.pipeline().receive(b"\x00\x00\x00\x02\x63\x00")
        with self.assertRaises(ProtocolError):
            self.pipeline().receive(b"\x00\x01\x00\x01")

    def test_a_request_newer_than_the_connection_is_refused_before_it_is_registered(self):
        p = self.pipeline(version=3)
        with self.assertRaises(VersionTooOld):
            p.register(SessionCheck(1, T, "ws", SessionSubject.keep_alive(), SessionOutcome.allow()),
                       concurrent.futures.Future())
        self.assertEqual(p.in_flight, 0)

    def test_a_request_with_a_value_of_version_6_is_refused_on_an_older_connection(self):
        p = self.pipeline(version=5)
        with self.assertRaises(VersionTooOld) as e:
            p.register(Check(1, T, "rest", "Trd_GetFunds", acc_id=7), concurrent.futures.Future())
        self.assertEqual((e.exception.request, e.exception.needs, e.exception.speaks), ("Check with acc_id", 6, 5))
        for req in [OrderEvent(2, 300, "accepted"), CheckScope(3, T, "rest", "admin"),
                    GenKey(4, KeySpec("ops", ["qot:read"], Limits(max_open_orders=1)))]:
            with self.assertRaises(VersionTooOld):
                p.register(req, concurrent.futures.Future())
        self.assertEqual(p.in_flight, 0)
        # What may go is written in the connection's version.
        plain = Check(5, T, "rest", "Qot_GetBasicQot")
        def steps():
            return (yield from Ask(lambda rid: plain))
        op = Operation(steps(), iter(range(1, 10)).__next__, 1.0)
        p.register(op.request, concurrent.futures.Future())
        self.assertEqual(op.frame, request_frame(op.request, 6))
        self.assertEqual(op.frame_for(6), op.frame)
        for version in (1, 5):
            self.assertEqual(op.frame_for(version), request_frame(op.request, version))
            self.assertEqual(len(op.frame_for(version)), len(op.frame) - 2)

    def test_asyncio_futures_wait_alike(self):
        async def main():
            p = self.pipeline()
            fut = asyncio.get_running_loop().create_future()
            p.register(Check(1, T, "rest", "Qot_GetBasicQot"), fut)
            p.receive(response_frame(DecisionResponse(1, Decision.allow("k")), 4))
            return (await fut).decision.key_id
        self.assertEqual(asyncio.run(main()), "k")


class Hellos(unittest.TestCase):
    def test_versions_are_offered_newest_first_until_one_is_spoken(self):
        hello = Handshake("test")
        offered = []
        while True:
            offered.append(decode_request(hello.offer[4:]).protocol_version)
            if offered[-1] > 2:
                refusal = encode_response(ErrorResponse(0, ErrorKind.VERSION, "not spoken here"), 1)
                self.assertFalse(hello.answer(refusal))
                continue
            body = encode_response(HelloOk(2, "fake"), 1)
            self.assertEqual(hello.length(len(body).to_bytes(4, "big")), len(body))
            self.assertTrue(hello.answer(body))
            break
        self.assertEqual(offered, [6, 5, 4, 3, 2])
        self.assertEqual((hello.version, hello.server_version), (2, "fake"))

    def test_a_refusal_of_the_oldest_version_or_another_error_is_raised(self):
        hello = Handshake("test")
        for _ in range(5):
            self.assertFalse(hello.answer(encode_response(ErrorResponse(0, ErrorKind.VERSION, "no"), 1)))
        with self.assertRaises(AuthError):
            hello.answer(encode_response(ErrorResponse(0, ErrorKind.VERSION, "no"), 1))
        with self.assertRaises(AuthError):
            Handshake("test").answer(encode_response(ErrorResponse(0, ErrorKind.INTERNAL, "broken"), 1))
        with self.assertRaises(ProtocolError):
            Handshake("test").answer(encode_response(HelloOk(7, "future"), 1))
        with self.assertRaises(ProtocolError):
            Handshake("test").length(b"\x00\x01\x00\x01")


class BothClients(unittest.TestCase):
    def test_both_clients_offer_the_same_calls_blocking_and_as_coroutines(self):
        def calls(cls):
            return {n: getattr(cls, n) for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))}
        sync, aio = calls(AuthClient), calls(AsyncAuthClient)
        self.assertEqual(sorted(sync), sorted(aio))
        self.assertIn("list_keys", sync)
        for name in sync:
            self.assertEqual(inspect.signature(sync[name]), inspect.signature(aio[name]), name)
            self.assertFalse(inspect.iscoroutinefunction(sync[name]), name)
            self.assertTrue(inspect.iscoroutinefunction(aio[name]), name)
            self.assertTrue(sync[name].__doc__ and aio[name].__doc__, name)


if __name__ == "__main__":
    unittest.main()
