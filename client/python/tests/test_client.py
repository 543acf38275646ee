"""Both clients against fake daemons (tests/fakes.py): answers matched by request id in
any order, version negotiation, deadlines, reconnection, failing closed whatever goes
wrong, session checks (and what an older daemon is asked instead), and the release of an
order allowed after its caller gave up."""

import asyncio
import json
import os
import sys
import threading
import time
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fakes import CLOSE, FakeDaemon, SocketDir  # noqa: E402

from futu_auth_client import _connection  # noqa: E402
from futu_auth_client import (  # noqa: E402
    AsyncAuthClient,
    AuthClient,
    AuthError,
    ConnectError,
    ConnectionLost,
    DeadlineExceeded,
    Decision,
    ErrorKind,
    ForbiddenError,
    Iface,
    InvalidRequest,
    KeyHash,
    KeyRecord,
    KeySpec,
    Limits,
    Order,
    OrderEventKind,
    OrderEventRefusal,
    PriceCollarFigures,
    ProtocolError,
    RateFigures,
    Reason,
    Scope,
    SessionOutcome,
    SessionSubject,
    UnavailableError,
    VersionTooOld,
)
from futu_auth_client.messages import (  # noqa: E402
    Check,
    CheckScope,
    DecisionResponse,
    MAX_KEYS_CHUNK,
    ErrorResponse,
    ExportKeys,
    GenKey,
    ImportKeys,
    Imported,
    KeysExport,
    KeysImported,
    KeysPage,
    ListKeysPage,
    OrderEvent,
    OrderEventDone,
    OrderEventOutcome,
    Release,
    Released,
    SessionCheck,
    UsageRequest,
    keys_chunk_end,
)

T = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f"
STRANGER = "fc_00000000000000000000000000000000"
#: Slack on top of a deadline, for a loaded machine.
SLACK = 0.25


def first_backoff(seconds):
    """The clients made inside wait `seconds` after their first failed connection attempt,
    not 10 ms: a test whose next call must come while the backoff lasts cannot count on
    10 ms between two statements on a loaded machine."""
    return mock.patch.object(_connection, "FIRST_BACKOFF", seconds)


def record(key_id: str) -> KeyRecord:
    return KeyRecord(key_id, KeyHash("ab" * 32), (Scope.QOT_READ,), Limits(), None, "2026-01-01T00:00:00Z")


def decide(daemon, req, version):
    """A daemon's rules in miniature: T is key `research` (qot:read); an endpoint `E<n>`
    is answered with key `k<n>` so that a caller can tell its own answer."""
    if isinstance(req, Check):
        if req.endpoint.startswith("E"):
            return [DecisionResponse(req.request_id, Decision.allow("k" + req.endpoint[1:]))]
        if req.token.expose() != T:
            return [DecisionResponse(req.request_id, Decision.deny("unknown_key", None, "no key has this token"))]
        if req.endpoint == "Trd_PlaceOrder":
            return [DecisionResponse(req.request_id, Decision.deny(
                "rate", "research", "5 orders in the last 60 s", 1234, RateFigures(5, 5)))]
        return [DecisionResponse(req.request_id, Decision.allow("research", Scope.QOT_READ))]
    if isinstance(req, CheckScope):
        return [DecisionResponse(req.request_id, Decision.allow("research", req.scope))]
    if isinstance(req, SessionCheck):
        if req.token.expose() != T:
            return [DecisionResponse(req.request_id, Decision.deny("unknown_key", None, "no key has this token"))]
        if req.subject.kind == SessionSubject.KEEP_ALIVE:
            return [DecisionResponse(req.request_id, Decision.allow("research"))]
        return [DecisionResponse(req.request_id, Decision.allow("research", req.subject.scope))]
    if isinstance(req, Release):
        if req.ticket == 7:
            return [Released(req.request_id, "research", 388.2)]
        return [ErrorResponse(req.request_id, ErrorKind.UNKNOWN_TICKET, "no outstanding ticket has this number")]
    if isinstance(req, GenKey):
        if req.spec.id == "taken":
            return [ErrorResponse(req.request_id, ErrorKind.DUPLICATE_KEY, "a key with id taken exists")]
        return [DecisionResponse(req.request_id, Decision.deny("forbidden", None, "admin requests need an admin"))]
    if isinstance(req, UsageRequest):
        return [ErrorResponse(req.request_id, ErrorKind.UNKNOWN_KEY, "no key %s" % req.id)]
    return [ErrorResponse(req.request_id, ErrorKind.INTERNAL, "not in this fake")]


def run(coro):
    return asyncio.run(coro)


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = SocketDir()
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.stop()
        self.dir.cleanup()

    def daemon(self, handler=decide, name="auth.sock", **kw) -> FakeDaemon:
        d = FakeDaemon(self.dir.path(name), handler, **kw)
        self.daemons.append(d)
        return d

    def assert_fail_closed(self, d: Decision, error_type):
        self.assertFalse(d.allowed)
        self.assertFalse(d)
        self.assertEqual(d.reason, Reason.INTERNAL)
        self.assertFalse(d.from_daemon)
        self.assertIsInstance(d.error, error_type, d)
        self.assertTrue(d.detail)


class Decisions(Base):
    def test_decisions_are_read_as_the_daemon_sent_them(self):
        d = self.daemon()
        with AuthClient(d.path, timeout=5) as auth:
            allow = auth.check(T, "Qot_GetBasicQot")
            self.assertTrue(allow.allowed and allow.from_daemon)
            self.assertEqual((allow.key_id, allow.scope, allow.ticket, allow.reason), ("research", "qot:read", None,
                                                                                    None))
            deny = auth.check(STRANGER, "Qot_GetBasicQot", iface="grpc")
            self.assertEqual((deny.allowed, deny.reason, deny.key_id), (False, "unknown_key", None))
            rate = auth.check(T, "Trd_PlaceOrder", Order("simulate", "HK", "HK.00700", "SELL", 100, 388.2))
            self.assertEqual((rate.reason, rate.retry_after_ms, rate.limit), ("rate", 1234, RateFigures(5, 5)))
            self.assertEqual(rate.to_dict()["limit"], {"rate": {"orders_in_window": 5, "max_orders_per_minute": 5}})
            scope = auth.check_scope(T, "trade:real", iface="ws")
            self.assertEqual(scope.scope, Scope.TRADE_REAL)
            self.assertEqual(auth.protocol_version, 2)
            self.assertEqual(auth.server_version, "fake")
        sent = [r for r in d.requests if isinstance(r, (Check, CheckScope))]
        self.assertEqual([r.iface.value for r in sent], ["rest", "grpc", "rest", "ws"])
        self.assertEqual(len({r.request_id for r in sent}), 4, "fresh request ids")
        self.assertEqual(sent[2].order.price, 388.2)
        self.assertEqual(d.offered, [6])

    def test_errors_and_refusals_of_the_other_calls_raise_typed_exceptions(self):
        d = self.daemon()
        auth = AuthClient(d.path, timeout=5)
        self.assertEqual(auth.release(7), Released(auth_last_id(d), "research", 388.2))
        with self.assertRaises(AuthError) as e:
            auth.release(8)
        self.assertEqual(e.exception.kind, ErrorKind.UNKNOWN_TICKET)
        self.assertIn("no outstanding ticket", e.exception.message)
        with self.assertRaises(AuthError) as e:
            auth.gen_key(KeySpec("taken", ["qot:read"]))
        self.assertEqual(e.exception.kind, "duplicate_key")
        with self.assertRaises(ForbiddenError) as e:
            auth.gen_key(KeySpec("new", ["qot:read"]))
        self.assertIn("admin", e.exception.detail)
        with self.assertRaises(AuthError) as e:
            auth.usage("nobody")
        self.assertEqual(e.exception.kind, ErrorKind.UNKNOWN_KEY)
        auth.close()

    def test_an_error_answering_a_check_is_a_deny(self):
        def broken(daemon, req, version):
            return [ErrorResponse(req.request_id, ErrorKind.INTERNAL, "the ledger is unreachable")]
        d = self.daemon(broken)
        with AuthClient(d.path, timeout=5) as auth:
            self.assert_fail_closed(auth.check(T, "Qot_GetBasicQot"), AuthError)

    def test_a_request_that_cannot_be_sent_is_a_deny_and_sends_nothing(self):
        d = self.daemon()
        with AuthClient(d.path, timeout=5) as auth:
            self.assert_fail_closed(auth.check(T, "Qot_GetBasicQot", iface="telnet"), InvalidRequest)
            self.assert_fail_closed(auth.check(T, "x" * 70000), InvalidRequest)
            self.assert_fail_closed(auth.check(T, "Trd_PlaceOrder", {"env": "simulate"}), InvalidRequest)
            self.assertTrue(auth.check(T, "Qot_GetBasicQot").allowed)
        self.assertEqual(len(d.requests), 1)


def auth_last_id(d: FakeDaemon) -> int:
    with d.lock:
        return d.requests[-1].request_id


class Pipelining(Base):
    def reverse_after(self, n):
        """A handler that holds answers until `n` requests arrived, then answers them last
        first: only matching by request id gets them to their callers."""
        held = []

        def handler(daemon, req, version):
            held.extend(decide(daemon, req, version))
            if len(held) < n:
                return None
            out = list(reversed(held))
            held.clear()
            return out
        return handler

    def test_threads_share_one_connection_and_each_gets_its_own_answer(self):
        n = 40
        d = self.daemon(self.reverse_after(n))
        auth = AuthClient(d.path, timeout=10)
        auth.connect()
        results = [None] * n
        barrier = threading.Barrier(n)

        def caller(i):
            barrier.wait()
            results[i] = auth.check(T, "E%d" % i)
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([r.key_id for r in results], ["k%d" % i for i in range(n)])
        self.assertEqual((auth.connections_opened, d.connections), (1, 1))
        self.assertEqual(auth.in_flight, 0)
        auth.close()

    def test_two_hundred_coroutines_in_flight_on_one_connection(self):
        n = 200
        d = self.daemon(self.reverse_after(n))

        async def main():
            async with AsyncAuthClient(d.path, timeout=10) as auth:
                await auth.connect()
                calls = [asyncio.ensure_future(auth.check(T, "E%d" % i)) for i in range(n)]
                for _ in range(3):
                    await asyncio.sleep(0)
                peak = auth.in_flight
                results = await asyncio.gather(*calls)
                return peak, results, auth.connections_opened
        peak, results, opened = run(main())
        self.assertEqual(peak, n)
        self.assertEqual([r.key_id for r in results], ["k%d" % i for i in range(n)])
        self.assertEqual((opened, d.connections), (1, 1))


class Versions(Base):
    def test_a_daemon_of_version_1_is_spoken_to_in_version_1(self):
        def v1(daemon, req, version):
            return [DecisionResponse(req.request_id, Decision.deny("rate", "sim-bot", "too fast", 5, RateFigures(1, 1)))]
        d = self.daemon(v1, versions=(1,), negotiates=False)
        with AuthClient(d.path, timeout=5) as auth:
            deny = auth.check(T, "Trd_PlaceOrder")
            self.assertEqual(auth.protocol_version, 1)
        # The fake wrote version 1's bytes (no retry, no figures), read as such.
        self.assertTrue(deny.from_daemon)
        self.assertEqual((deny.reason, deny.key_id, deny.detail), ("rate", "sim-bot", "too fast"))
        self.assertIsNone(deny.retry_after_ms)
        self.assertIsNone(deny.limit)
        self.assertEqual(d.offered, [6, 5, 4, 3, 2, 1])

        async def main():
            async with AsyncAuthClient(d.path, timeout=5) as auth:
                return await auth.check(T, "Trd_PlaceOrder"), auth.protocol_version
        deny, version = run(main())
        self.assertEqual((deny.reason, deny.retry_after_ms, version), ("rate", None, 1))
        self.assertEqual(d.offered, [6, 5, 4, 3, 2, 1] * 2)

    def test_a_hello_answered_with_a_newer_version_is_not_a_daemon_to_talk_to(self):
        d = self.daemon(hello_version=7)
        with AuthClient(d.path, timeout=5) as auth:
            self.assert_fail_closed(auth.check(T, "Qot_GetBasicQot"), ProtocolError)
        self.assertEqual(d.requests, [])

    def test_version_3_requests_are_not_sent_to_an_older_daemon(self):
        d = self.daemon()  # speaks versions 1 and 2
        with AuthClient(d.path, timeout=5) as auth:
            with self.assertRaises(ProtocolError) as e:
                auth.rotate_key("sim-bot", 3600)
            self.assertIn("RotateKey needs protocol version 3", str(e.exception))
            with self.assertRaises(ProtocolError):
                auth.key_activity(["sim-bot"])
            self.assertEqual(auth.protocol_version, 2)

        async def main():
            async with AsyncAuthClient(d.path, timeout=5) as auth:
                with self.assertRaises(ProtocolError):
                    await auth.rotate_key("sim-bot")
                with self.assertRaises(ProtocolError):
                    await auth.key_activity(["sim-bot"])
        run(main())
        self.assertEqual(d.requests, [], "nothing sent that a version-2 daemon cannot read")


class Sessions(Base):
    PUSHES = SessionSubject.for_pushes("acc:read", 5)
    KEEP_ALIVE = SessionSubject.keep_alive()

    def ask_both(self, d):
        """The same two session checks from each client: pushes, and a keep-alive of an
        unknown token."""
        with AuthClient(d.path, timeout=5) as auth:
            sync = [auth.session_check(T, "ws", self.PUSHES, SessionOutcome.deny("scope")),
                    auth.session_check(STRANGER, "mcp", self.KEEP_ALIVE, SessionOutcome.allow())]
            version = auth.protocol_version

        async def main():
            async with AsyncAuthClient(d.path, timeout=5) as auth:
                return [await auth.session_check(T, "ws", self.PUSHES, SessionOutcome.deny("scope")),
                        await auth.session_check(STRANGER, Iface.MCP, self.KEEP_ALIVE, SessionOutcome.allow()),
                        auth.protocol_version]
        *aio, aio_version = run(main())
        self.assertEqual(sync, aio)
        self.assertEqual((version, aio_version), (max(d.versions),) * 2)
        return sync

    def test_a_daemon_of_version_4_is_asked_the_session_check(self):
        d = self.daemon(versions=(1, 2, 3, 4))
        pushes, alive = self.ask_both(d)
        self.assertEqual((pushes.allowed, pushes.key_id, pushes.scope), (True, "research", Scope.ACC_READ))
        self.assertEqual((alive.allowed, alive.reason, alive.from_daemon), (False, Reason.UNKNOWN_KEY, True))
        sent = [(type(r), r.iface, r.subject, r.previous) for r in d.requests]
        self.assertEqual(sent, [
            (SessionCheck, Iface.WS, self.PUSHES, SessionOutcome.deny("scope")),
            (SessionCheck, Iface.MCP, self.KEEP_ALIVE, SessionOutcome.allow()),
        ] * 2)

    def test_an_older_daemon_is_asked_the_scope_check_or_dry_run_instead(self):
        d = self.daemon(versions=(1, 2, 3))
        pushes, alive = self.ask_both(d)
        self.assertEqual((pushes.allowed, pushes.scope), (True, Scope.ACC_READ))
        self.assertEqual(alive.reason, Reason.UNKNOWN_KEY)
        self.assertFalse(any(isinstance(r, SessionCheck) for r in d.requests), "nothing of version 4 sent")
        self.assertEqual(d.requests[:2], [
            CheckScope(d.requests[0].request_id, T, Iface.WS, Scope.ACC_READ),
            Check(d.requests[1].request_id, STRANGER, Iface.MCP, "KeepAlive", None, True),
        ])
        self.assertEqual([type(r) for r in d.requests[2:]], [CheckScope, Check])
        self.assertEqual(d.connections, 2, "one connection each, no reconnection")

    def test_a_session_check_fails_closed(self):
        d = self.daemon(lambda daemon, req, version: None, versions=(4,))
        with AuthClient(d.path, timeout=0.2) as auth:
            auth.connect(timeout=5)
            self.assert_fail_closed(auth.session_check(T, "ws", self.PUSHES, SessionOutcome.allow()),
                                    DeadlineExceeded)
            self.assert_fail_closed(auth.session_check(T, "ws", "pushes", SessionOutcome.allow()), InvalidRequest)
            self.assert_fail_closed(auth.session_check(T, "ws", self.KEEP_ALIVE, "allow"), InvalidRequest)
        self.assertEqual(len(d.requests), 1, "only the well-formed one was sent")

    def test_a_request_newer_than_the_connection_is_never_sent(self):
        d = self.daemon()  # speaks versions 1 and 2
        with AuthClient(d.path, timeout=5) as auth:
            with self.assertRaises(VersionTooOld) as e:
                auth.call(lambda rid: SessionCheck(rid, T, "ws", self.KEEP_ALIVE, SessionOutcome.allow()))
            self.assertEqual((e.exception.request, e.exception.needs, e.exception.speaks), ("SessionCheck", 4, 2))
        self.assertEqual(d.requests, [])


def risk(daemon, req, version):
    """A daemon of version 6 in miniature: a check names its account and reference price
    back in its detail; ticket 300 is an order it follows; keys list with every version-6
    limit."""
    if isinstance(req, Check):
        if req.acc_id is not None and req.acc_id != 281756:
            return [DecisionResponse(req.request_id, Decision.deny("account", "bot", "account %d" % req.acc_id))]
        if req.ref_price is not None:
            return [DecisionResponse(req.request_id, Decision.deny(
                "price_collar", "bot", "collar", None, PriceCollarFigures(400.0, req.ref_price, 2.5, 2.0)))]
        return [DecisionResponse(req.request_id, Decision.allow("bot", None, 300))]
    if isinstance(req, OrderEvent):
        if req.ticket != 300:
            return [OrderEventDone(req.request_id, OrderEventOutcome.refused_for("unknown_ticket", "no ticket"))]
        if req.kind == OrderEventKind.ACCEPTED:
            return [OrderEventDone(req.request_id, OrderEventOutcome.duplicate_of("bot"))]
        return [OrderEventDone(req.request_id, OrderEventOutcome.applied_to("bot", 0.0))]
    if isinstance(req, ListKeysPage):
        rec = KeyRecord("bot", KeyHash("ab" * 32), (Scope.TRADE_SIMULATE, Scope.ADMIN),
                        Limits(allowed_acc_ids=[281756], max_price_deviation_pct=2, max_open_orders=5,
                               max_position_value=1e6, duplicate_window_ms=1000), None, "2026-01-01T00:00:00Z")
        return [KeysPage(req.request_id, 1, 0, 1, (rec,))]
    return decide(daemon, req, version)


class RiskLimits(Base):
    """Protocol version 6: a check's account and reference price, the new reasons and
    figures, order events, key records with the new limits."""

    def test_a_daemon_of_version_6_is_told_the_account_the_price_and_the_order_s_events(self):
        d = self.daemon(risk, versions=(1, 2, 3, 4, 5, 6))
        order = Order("simulate", "HK", "HK.00700", "BUY", 100, 400.0)
        with AuthClient(d.path, timeout=5) as auth:
            allow = auth.check(T, "Trd_PlaceOrder", order, acc_id=281756)
            account = auth.check(T, "Trd_PlaceOrder", order, acc_id=1)
            collar = auth.check(T, "Trd_PlaceOrder", order, acc_id=281756, ref_price=390.0)
            outcomes = [auth.order_event(allow.ticket, "accepted"),
                        auth.order_event(allow.ticket, "partially_filled", filled_qty=40, fill_price=399.5),
                        auth.order_event(allow.ticket, OrderEventKind.FILLED, 100, 399.8),
                        auth.order_event(7, "cancelled")]
            keys = auth.list_keys()
            self.assertEqual(auth.protocol_version, 6)
        self.assertEqual((allow.allowed, allow.ticket), (True, 300))
        self.assertEqual((account.reason, account.detail), (Reason.ACCOUNT, "account 1"))
        self.assertEqual((collar.reason, collar.limit), (Reason.PRICE_COLLAR, PriceCollarFigures(400.0, 390.0, 2.5, 2.0)))
        self.assertEqual([o.kind for o in outcomes], ["duplicate", "applied", "applied", "refused"])
        self.assertEqual(outcomes[3].reason, OrderEventRefusal.UNKNOWN_TICKET)
        self.assertEqual((keys[0].scopes, keys[0].limits.max_open_orders, keys[0].limits.allowed_acc_ids),
                         ((Scope.TRADE_SIMULATE, Scope.ADMIN), 5, (281756,)))
        checks = [r for r in d.requests if isinstance(r, Check)]
        self.assertEqual([(r.acc_id, r.ref_price) for r in checks], [(281756, None), (1, None), (281756, 390.0)])
        events = [r for r in d.requests if isinstance(r, OrderEvent)]
        self.assertEqual([(e.ticket, e.kind.value, e.filled_qty, e.fill_price) for e in events],
                         [(300, "accepted", None, None), (300, "partially_filled", 40.0, 399.5),
                          (300, "filled", 100.0, 399.8), (7, "cancelled", None, None)])

        async def main():
            async with AsyncAuthClient(d.path, timeout=5) as auth:
                d1 = await auth.check(T, "Trd_PlaceOrder", order, acc_id=281756, ref_price=390.0)
                o1 = await auth.order_event(300, "rejected")
                with self.assertRaises(InvalidRequest):
                    await auth.order_event(300, "filled")
                return d1, o1
        collar, rejected = run(main())
        self.assertEqual((collar.reason, rejected.applied), (Reason.PRICE_COLLAR, True))

    def test_a_daemon_older_than_version_6_is_not_asked(self):
        d = self.daemon(risk, versions=(1, 2, 3, 4, 5))
        with AuthClient(d.path, timeout=5) as auth:
            with self.assertRaises(VersionTooOld) as e:
                auth.order_event(300, "accepted")
            self.assertEqual((e.exception.request, e.exception.needs, e.exception.speaks), ("OrderEvent", 6, 5))
            refused = auth.check(T, "Trd_GetFunds", acc_id=281756)
            self.assert_fail_closed(refused, VersionTooOld)
            self.assertIn("Check with acc_id needs protocol version 6", refused.detail)
            self.assert_fail_closed(auth.check(T, "Trd_PlaceOrder", ref_price=1.0), VersionTooOld)
            self.assert_fail_closed(auth.check_scope(T, "admin"), VersionTooOld)
            with self.assertRaises(VersionTooOld):
                auth.gen_key(KeySpec("ops", ["admin"]))
            self.assertEqual(d.requests, [], "nothing sent that a version-5 daemon cannot read")
            # A check without them is version 5's bytes, and is answered.
            self.assertTrue(auth.check(T, "Trd_GetFunds"))
            self.assertEqual(auth.protocol_version, 5)

        async def main():
            async with AsyncAuthClient(d.path, timeout=5) as auth:
                with self.assertRaises(VersionTooOld):
                    await auth.order_event(300, "accepted")
                return await auth.check(T, "Trd_GetFunds", acc_id=1)
        self.assert_fail_closed(run(main()), VersionTooOld)
        self.assertEqual([(type(r), r.acc_id) for r in d.requests], [(Check, None)])


class LateReleases(Base):
    LATE = Order("simulate", "HK", "HK.00700", "SELL", 100, 388.2)
    TIMELY = Order("simulate", "HK", "HK.00700", "SELL", 1, 388.2)

    def late_daemon(self, delay=0.4, burst=1):
        """A daemon that allows every order with a ticket (70000 + its request id): an
        order of 1 at once, any other `delay` seconds late, once `burst` of them arrived;
        a check of endpoint `Slow` late too, without a ticket; releases are answered."""
        held = []

        def handler(daemon, req, version):
            if isinstance(req, Check) and req.order is not None:
                allow = DecisionResponse(req.request_id, Decision.allow("sim-bot", "trade:simulate",
                                                                        70000 + req.request_id))
                if req.order.qty == 1:
                    return [allow]
                held.append(allow)
                if len(held) < burst:
                    return None
                time.sleep(delay)
                out = list(held)
                held.clear()
                return out
            if isinstance(req, Check) and req.endpoint == "Slow":
                time.sleep(delay)
                return [DecisionResponse(req.request_id, Decision.allow("sim-bot"))]
            if isinstance(req, Release):
                return [Released(req.request_id, "sim-bot", 38820.0)]
            return decide(daemon, req, version)
        return self.daemon(handler)

    def released(self, d):
        with d.lock:
            return [r.ticket for r in d.requests if isinstance(r, Release)]

    def allowed_late(self, d):
        with d.lock:
            return [70000 + r.request_id for r in d.requests if isinstance(r, Check) and r.order is not None
                    and r.order.qty != 1]

    def wait_released(self, d, n, sleep=time.sleep):
        until = time.monotonic() + 5
        while len(self.released(d)) < n and time.monotonic() < until:
            sleep(0.01)
        return self.released(d)

    def test_an_order_allowed_after_its_deadline_is_released_on_the_same_connection(self):
        d = self.late_daemon()
        auth = AuthClient(d.path, timeout=0.1)
        auth.connect(timeout=5)
        self.assert_fail_closed(auth.check(T, "Trd_PlaceOrder", self.LATE), DeadlineExceeded)
        self.assertEqual(self.wait_released(d, 1), self.allowed_late(d))
        self.assertEqual(auth.late_releases, 1)
        # An order answered in time is the caller's to place: not released. Neither is a
        # late allow without a ticket.
        timely = auth.check(T, "Trd_PlaceOrder", self.TIMELY, timeout=5)
        self.assertTrue(timely.allowed and timely.ticket)
        self.assert_fail_closed(auth.check(T, "Slow"), DeadlineExceeded)
        time.sleep(0.5)
        self.assertTrue(auth.check(T, "Qot_GetBasicQot", timeout=5).allowed)
        self.assertEqual(len(self.released(d)), 1)
        self.assertEqual(auth.late_releases, 1)
        self.assertEqual((auth.connections_opened, d.connections), (1, 1), "the release's answer was dropped")
        auth.close()

    def test_a_burst_of_late_orders_is_released_whole_while_answers_flow(self):
        n = 20
        d = self.late_daemon(delay=0.3, burst=n)
        auth = AuthClient(d.path, timeout=0.1)
        auth.connect(timeout=5)
        results = [None] * n
        barrier = threading.Barrier(n)

        def caller(i):
            barrier.wait()
            results[i] = auth.check(T, "Trd_PlaceOrder", self.LATE)
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            self.assert_fail_closed(r, DeadlineExceeded)
        self.assertEqual(sorted(self.wait_released(d, n)), sorted(self.allowed_late(d)))
        self.assertEqual(auth.late_releases, n)
        self.assertTrue(auth.check(T, "Qot_GetBasicQot", timeout=5).allowed)
        auth.close()

    def test_the_async_client_releases_after_a_deadline_or_a_cancellation(self):
        d = self.late_daemon()

        async def main():
            async with AsyncAuthClient(d.path, timeout=0.1) as auth:
                await auth.connect(timeout=5)
                self.assert_fail_closed(await auth.check(T, "Trd_PlaceOrder", self.LATE), DeadlineExceeded)
                first = await self.async_wait_released(d, 1)
                # Cancelled by its caller before the answer came.
                task = asyncio.ensure_future(auth.check(T, "Trd_PlaceOrder", self.LATE, timeout=5))
                await asyncio.sleep(0.1)
                task.cancel()
                with self.assertRaises(asyncio.CancelledError):
                    await task
                both = await self.async_wait_released(d, 2)
                timely = await auth.check(T, "Trd_PlaceOrder", self.TIMELY, timeout=5)
                self.assertTrue(timely.allowed)
                self.assert_fail_closed(await auth.check(T, "Slow"), DeadlineExceeded)
                await asyncio.sleep(0.5)
                self.assertTrue((await auth.check(T, "Qot_GetBasicQot", timeout=5)).allowed)
                return first, both, auth.late_releases, auth.connections_opened
        first, both, late, opened = run(main())
        self.assertEqual(len(first), 1)
        self.assertEqual(both, self.allowed_late(d))
        self.assertEqual(self.released(d), both, "nothing else released")
        self.assertEqual((late, opened, d.connections), (2, 1, 1))

    async def async_wait_released(self, d, n):
        until = time.monotonic() + 5
        while len(self.released(d)) < n and time.monotonic() < until:
            await asyncio.sleep(0.01)
        return self.released(d)


class Deadlines(Base):
    def assert_denied_in_time(self, check, timeout):
        start = time.monotonic()
        d = check()
        took = time.monotonic() - start
        self.assert_fail_closed(d, DeadlineExceeded)
        self.assertGreaterEqual(took, timeout * 0.9)
        self.assertLessEqual(took, timeout + SLACK)

    def test_a_daemon_that_never_says_hello(self):
        d = self.daemon(hello=False)
        with first_backoff(1.0):
            auth = AuthClient(d.path, timeout=0.2)
        self.assert_denied_in_time(lambda: auth.check(T, "Qot_GetBasicQot"), 0.2)
        # Right after, the backoff answers at once, still a deny.
        start = time.monotonic()
        again = auth.check(T, "Qot_GetBasicQot")
        self.assertLess(time.monotonic() - start, 0.1)
        self.assert_fail_closed(again, UnavailableError)
        auth.close()

        async def main():
            async with AsyncAuthClient(d.path, timeout=0.2) as a:
                return await a.check(T, "Qot_GetBasicQot")
        self.assert_denied_in_time(lambda: run(main()), 0.2)

    def test_a_daemon_that_says_hello_then_nothing(self):
        d = self.daemon(lambda daemon, req, version: None)
        auth = AuthClient(d.path, timeout=0.2)
        auth.connect(timeout=5)
        for _ in range(2):
            self.assert_denied_in_time(lambda: auth.check(T, "Qot_GetBasicQot"), 0.2)
            self.assert_denied_in_time(lambda: auth.check_scope(T, "qot:read"), 0.2)
        with self.assertRaises(DeadlineExceeded):
            auth.usage("research")
        # A call's own timeout.
        self.assert_denied_in_time(lambda: auth.check(T, "Qot_GetBasicQot", timeout=0.4), 0.4)
        self.assertEqual(auth.connections_opened, 1, "a late answer does not cost the connection")
        auth.close()

        async def main():
            async with AsyncAuthClient(d.path, timeout=0.2) as a:
                await a.connect(timeout=5)
                start = time.monotonic()
                r = await a.check(T, "Qot_GetBasicQot")
                return r, time.monotonic() - start, a.in_flight
        r, took, in_flight = run(main())
        self.assert_fail_closed(r, DeadlineExceeded)
        self.assertLessEqual(took, 0.2 + SLACK)
        self.assertEqual(in_flight, 0)


class FailClosed(Base):
    def test_no_daemon_is_a_deny_at_once_and_an_error_for_the_other_calls(self):
        path = self.dir.path("absent.sock")
        with first_backoff(0.5):
            auth = AuthClient(path, timeout=0.5)
        start = time.monotonic()
        d = auth.check(T, "Qot_GetBasicQot")
        self.assertLess(time.monotonic() - start, 0.5)
        self.assert_fail_closed(d, ConnectError)
        self.assertTrue(d.error.is_not_running)
        with self.assertRaises(UnavailableError) as e:
            auth.usage("research")
        self.assertTrue(e.exception.is_not_running)
        time.sleep(0.5)  # past the first backoff
        with self.assertRaises(ConnectError):
            auth.reload()

        async def main():
            a = AsyncAuthClient(path, timeout=0.5)
            return await a.check(T, "Qot_GetBasicQot")
        self.assert_fail_closed(run(main()), ConnectError)

    def test_an_answer_that_cannot_be_read_is_a_deny_and_the_next_call_reconnects(self):
        def garbage_once(daemon, req, version):
            if daemon.connections == 1:
                return [b"\x00\x00\x00\x02\x63\x00"]  # Response variant 99
            return decide(daemon, req, version)
        d = self.daemon(garbage_once)
        with AuthClient(d.path, timeout=5) as auth:
            self.assert_fail_closed(auth.check(T, "Qot_GetBasicQot"), ProtocolError)
            self.assertTrue(auth.check(T, "Qot_GetBasicQot").allowed)
            self.assertEqual(auth.connections_opened, 2)

    def test_a_frame_announced_over_64_kib_is_a_deny(self):
        d = self.daemon(lambda daemon, req, version: [b"\x00\x01\x00\x01"])
        with AuthClient(d.path, timeout=5) as auth:
            self.assert_fail_closed(auth.check(T, "Qot_GetBasicQot"), ProtocolError)

        async def main():
            async with AsyncAuthClient(d.path, timeout=5) as a:
                return await a.check(T, "Qot_GetBasicQot")
        self.assert_fail_closed(run(main()), ProtocolError)

    def test_a_connection_closed_before_the_answer_is_a_deny_and_the_next_call_reconnects(self):
        def close_once(daemon, req, version):
            if daemon.connections == 1:
                return CLOSE
            return decide(daemon, req, version)
        d = self.daemon(close_once)
        with AuthClient(d.path, timeout=5) as auth:
            self.assert_fail_closed(auth.check(T, "Qot_GetBasicQot"), ConnectionLost)
            self.assertTrue(auth.check(T, "Qot_GetBasicQot").allowed)

        d2 = self.daemon(close_once, name="b.sock")

        async def main():
            async with AsyncAuthClient(d2.path, timeout=5) as a:
                return await a.check(T, "Qot_GetBasicQot"), await a.check(T, "Qot_GetBasicQot")
        first, second = run(main())
        self.assert_fail_closed(first, ConnectionLost)
        self.assertTrue(second.allowed)

    def test_a_fatal_error_then_close_is_a_deny(self):
        # An Error answering no request (id 0), then the close: what the daemon does
        # with a frame it cannot read.
        d = self.daemon(lambda daemon, req, version: [ErrorResponse(0, ErrorKind.BAD_FRAME, "malformed message"),
                                                      CLOSE])
        with AuthClient(d.path, timeout=5) as auth:
            deny = auth.check(T, "Qot_GetBasicQot")
        self.assert_fail_closed(deny, ProtocolError)
        self.assertIn("bad_frame", deny.detail)

    def test_a_closed_client_denies(self):
        d = self.daemon()
        auth = AuthClient(d.path, timeout=5)
        self.assertTrue(auth.check(T, "Qot_GetBasicQot").allowed)
        auth.close()
        self.assert_fail_closed(auth.check(T, "Qot_GetBasicQot"), ConnectionLost)

    def test_a_restarted_daemon_is_reconnected_to(self):
        d = self.daemon()
        auth = AuthClient(d.path, timeout=5)
        self.assertTrue(auth.check(T, "Qot_GetBasicQot").allowed)
        d.stop()
        self.daemons.remove(d)
        down = auth.check(T, "Qot_GetBasicQot")
        self.assertFalse(down.allowed)
        self.assertIsInstance(down.error, (ConnectionLost, ConnectError))
        self.daemon()
        time.sleep(0.05)  # past the first backoff
        self.assertTrue(auth.check(T, "Qot_GetBasicQot").allowed)
        auth.close()

    def test_the_async_client_survives_a_new_event_loop(self):
        d = self.daemon()
        auth = AsyncAuthClient(d.path, timeout=5)
        self.assertTrue(run(auth.check(T, "Qot_GetBasicQot")).allowed)
        self.assertTrue(run(auth.check(T, "Qot_GetBasicQot")).allowed)


class Paging(Base):
    def test_a_listing_expired_under_way_is_started_again(self):
        keys = [record("k%d" % i) for i in range(5)]
        state = {"expired_once": False}

        def pages(daemon, req, version):
            assert isinstance(req, ListKeysPage)
            if req.listing == 0:
                return [KeysPage(req.request_id, 9, 0, 5, tuple(keys[:2]))]
            if req.offset == 2 and not state["expired_once"]:
                state["expired_once"] = True
                return [ErrorResponse(req.request_id, ErrorKind.LISTING_EXPIRED, "listing 9 is gone")]
            return [KeysPage(req.request_id, 9, req.offset, 5, tuple(keys[req.offset:req.offset + 2]))]
        d = self.daemon(pages)
        with AuthClient(d.path, timeout=5) as auth:
            self.assertEqual([k.id for k in auth.list_keys()], ["k0", "k1", "k2", "k3", "k4"])
        asked = [(r.listing, r.offset) for r in d.requests]
        self.assertEqual(asked, [(0, 0), (9, 2), (0, 0), (9, 2), (9, 4)])



class KeysStore:
    """A daemon's key store in miniature for ImportKeys and ExportKeys: an import's chunks
    are kept by its id until the last one, which loads them (the file's ids counted, a
    taken one refused unless ``replace``); an export hands out ``text`` a chunk at a time,
    cut as the daemon cuts it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.imports = {}
        self.loaded = []
        self.ids = {"taken"}

    def __call__(self, daemon, req, version):
        if isinstance(req, ImportKeys):
            import_ = req.import_ or 300 + len(self.imports)
            received = self.imports.setdefault(import_, [])
            have = sum(len(c.encode("utf-8")) for c in received)
            if req.offset != have:
                return [ErrorResponse(req.request_id, ErrorKind.INVALID_SPEC, "a chunk at offset %d" % req.offset)]
            received.append(req.chunk)
            next_offset = have + len(req.chunk.encode("utf-8"))
            if not req.last:
                return [KeysImported(req.request_id, import_, next_offset, None)]
            text = "".join(self.imports.pop(import_))
            ids = set(json.loads(text)["keys_ids"])
            if ids & self.ids and not req.replace:
                return [ErrorResponse(req.request_id, ErrorKind.DUPLICATE_KEY, "the store holds taken already")]
            self.loaded.append(text)
            replaced = len(ids & self.ids)
            self.ids |= ids
            done = Imported(len(ids) - replaced, replaced, len(self.ids), "/etc/futu/keys.json")
            return [KeysImported(req.request_id, import_, next_offset, done)]
        if isinstance(req, ExportKeys):
            data = self.text.encode("utf-8")
            end = keys_chunk_end(data, req.offset)
            return [KeysExport(req.request_id, req.export or 7, req.offset, len(data),
                               data[req.offset:end].decode("utf-8"))]
        return [ErrorResponse(req.request_id, ErrorKind.INTERNAL, "not in this fake")]


def big_keys_text(n: int) -> str:
    """A JSON text of over 60 KiB whose multi-byte characters (two, three and four bytes)
    fall on the chunk boundaries: some chunk must end short of 60 KiB."""
    notes = ["\u00e9t\u00e9 \u6771\u4eac \U0001f600 %05d" % i for i in range(n)]
    return json.dumps({"version": 1, "keys_ids": ["k%d" % i for i in range(n)], "notes": notes},
                      ensure_ascii=False)


class KeysTransfer(Base):
    V5 = (1, 2, 3, 4, 5)

    def test_an_import_of_over_60_kib_goes_in_chunks_cut_at_character_boundaries(self):
        text = big_keys_text(6000)
        data = text.encode("utf-8")
        self.assertGreater(len(data), 3 * MAX_KEYS_CHUNK)
        store = KeysStore("{}")
        d = self.daemon(store, versions=self.V5)
        with AuthClient(d.path, timeout=5) as auth:
            done = auth.import_keys(text)
        self.assertEqual(done, Imported(6000, 0, 6001, "/etc/futu/keys.json"))
        self.assertEqual(store.loaded, [text])
        chunks = [r for r in d.requests if isinstance(r, ImportKeys)]
        self.assertEqual(len(chunks), len(d.requests))
        sizes = [len(r.chunk.encode("utf-8")) for r in chunks]
        # As much as fits: each chunk but the last ends within a character (at most four
        # bytes) of 60 KiB, where a character starts (not on a UTF-8 continuation byte).
        self.assertTrue(all(MAX_KEYS_CHUNK - 4 < n <= MAX_KEYS_CHUNK for n in sizes[:-1]), sizes)
        self.assertTrue(0 < sizes[-1] <= MAX_KEYS_CHUNK, sizes)
        self.assertTrue(any(n < MAX_KEYS_CHUNK for n in sizes[:-1]),
                        "a chunk that ends short of a character it would cut: %s" % sizes)
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self.assertEqual([r.offset for r in chunks], offsets)
        self.assertEqual(sum(sizes), len(data))
        self.assertTrue(all(data[at] & 0xC0 != 0x80 for at in offsets), "cut inside a character")
        self.assertEqual([r.import_ for r in chunks], [0] + [300] * (len(chunks) - 1))
        self.assertEqual([r.last for r in chunks], [False] * (len(chunks) - 1) + [True])
        self.assertFalse(any(r.replace for r in chunks))
        for r in chunks:  # each cut where a character starts
            self.assertEqual(r.chunk.encode("utf-8"), data[r.offset:r.offset + len(r.chunk.encode("utf-8"))])
        self.assertEqual(len({r.request_id for r in chunks}), len(chunks))

        # The same file again: its ids are taken, refused unless replace (sent with each chunk).
        async def main():
            async with AsyncAuthClient(d.path, timeout=5) as auth:
                with self.assertRaises(AuthError) as e:
                    await auth.import_keys(text)
                self.assertEqual(e.exception.kind, ErrorKind.DUPLICATE_KEY)
                return await auth.import_keys(text, replace=True)
        del d.requests[:]
        self.assertEqual(run(main()), Imported(0, 6000, 6001, "/etc/futu/keys.json"))
        self.assertEqual(store.loaded, [text, text])
        self.assertEqual([r.replace for r in d.requests], [False] * len(chunks) + [True] * len(chunks))

    def test_a_short_file_is_one_last_chunk(self):
        store = KeysStore("{}")
        d = self.daemon(store, versions=self.V5)
        with AuthClient(d.path, timeout=5) as auth:
            self.assertEqual(auth.import_keys('{"keys_ids": ["a", "taken"]}', replace=True),
                             Imported(1, 1, 2, "/etc/futu/keys.json"))
        self.assertEqual([(r.import_, r.offset, r.last, r.replace) for r in d.requests], [(0, 0, True, True)])

    def test_an_export_in_several_chunks_is_put_together(self):
        text = big_keys_text(4000)
        self.assertGreater(len(text.encode("utf-8")), 2 * MAX_KEYS_CHUNK)
        d = self.daemon(KeysStore(text), versions=self.V5)
        with AuthClient(d.path, timeout=5) as auth:
            self.assertEqual(auth.export_keys(), text)
        asked = [(r.export, r.offset) for r in d.requests]
        self.assertEqual(asked[0], (0, 0))
        self.assertGreater(len(asked), 2)
        self.assertTrue(all(e == 7 for e, _ in asked[1:]), asked)
        data = text.encode("utf-8")
        at = 0
        for _, offset in asked:
            self.assertEqual(offset, at)
            at = keys_chunk_end(data, at)
        self.assertEqual(at, len(data))

        async def main():
            async with AsyncAuthClient(d.path, timeout=5) as auth:
                return await auth.export_keys()
        self.assertEqual(run(main()), text)
        small = self.daemon(KeysStore('{"version": 1}'), name="small.sock", versions=self.V5)
        with AuthClient(small.path, timeout=5) as auth:
            self.assertEqual(auth.export_keys(), '{"version": 1}')
        self.assertEqual(len(small.requests), 1)

    def test_answers_at_other_offsets_are_protocol_errors(self):
        text = big_keys_text(3000)

        def skewed(daemon, req, version):
            if isinstance(req, ImportKeys):
                if req.last:
                    return [KeysImported(req.request_id, 300, 1, None)]  # no `done`
                return [KeysImported(req.request_id, 300, req.offset + len(req.chunk.encode("utf-8")) + 1, None)]
            if req.offset == 0:
                return [KeysExport(req.request_id, 7, 0, 10, "{}")]
            return [KeysExport(req.request_id, 7, req.offset + 1, 10, "{}")]
        d = self.daemon(skewed, versions=self.V5)
        with AuthClient(d.path, timeout=5) as auth:
            with self.assertRaisesRegex(ProtocolError, "ends at"):
                auth.import_keys(text)
            self.assertEqual(len(d.requests), 1, "no chunk sent after a wrong next_offset")
            with self.assertRaisesRegex(ProtocolError, "without what it did"):
                auth.import_keys("{}")
            with self.assertRaisesRegex(ProtocolError, "a chunk at 3 of an export asked at 2"):
                auth.export_keys()

        def empty(daemon, req, version):
            return [KeysExport(req.request_id, 7, req.offset, 10, "{}" if req.offset == 0 else "")]
        d = self.daemon(empty, name="empty.sock", versions=self.V5)

        async def main():
            async with AsyncAuthClient(d.path, timeout=5) as auth:
                with self.assertRaisesRegex(ProtocolError, "an empty chunk at 2 of an export of 10 bytes"):
                    await auth.export_keys()
        run(main())

    def test_a_daemon_older_than_version_5_is_not_asked(self):
        d = self.daemon(KeysStore("{}"), versions=(1, 2, 3, 4))
        with AuthClient(d.path, timeout=5) as auth:
            with self.assertRaises(VersionTooOld) as e:
                auth.import_keys("{}")
            self.assertEqual((e.exception.request, e.exception.needs, e.exception.speaks), ("ImportKeys", 5, 4))
            with self.assertRaises(VersionTooOld) as e:
                auth.export_keys()
            self.assertEqual(e.exception.request, "ExportKeys")

        async def main():
            async with AsyncAuthClient(d.path, timeout=5) as auth:
                with self.assertRaises(VersionTooOld):
                    await auth.import_keys("{}")
                with self.assertRaises(VersionTooOld):
                    await auth.export_keys()
        run(main())
        self.assertEqual(d.requests, [], "nothing sent that a version-4 daemon cannot read")

    def test_a_text_that_cannot_be_sent_is_refused_before_anything_is(self):
        d = self.daemon(KeysStore("{}"), versions=self.V5)
        with AuthClient(d.path, timeout=5) as auth:
            for text, replace in [(b"{}", False), ("{}", "yes"), ("\ud800", False)]:
                with self.assertRaises(InvalidRequest):
                    auth.import_keys(text, replace)
            with mock.patch("futu_auth_client._calls.MAX_IMPORT_LEN", 10):
                with self.assertRaisesRegex(InvalidRequest, "longer than an import takes"):
                    auth.import_keys('{"version": 1}')
        self.assertEqual(d.requests, [])


if __name__ == "__main__":
    unittest.main()
