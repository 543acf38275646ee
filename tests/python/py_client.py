#!/usr/bin/env python3
"""The driver of tests/tests/python_client.rs: this repository's Python client
(futu_auth_client, client/python) as a gateway process would use it, one blocking and
one asyncio client on the same socket.

    py_client.py SOCKET [TIMEOUT_SECONDS]

The first line printed says which package was imported and whether anything but the
standard library and the package was loaded:

    {"ready": true, "module": PATH, "version": ..., "foreign": [MODULE, ...]}

Then, for each JSON line read from stdin, one JSON line is printed. Every command takes
"client": "sync" (the default) or "async", and "timeout" (seconds) for that call.

    {"op": "check", "token", "endpoint", "order"?, "iface"?, "dry_run"?, "acc_id"?, "ref_price"?}
        -> the decision as `futucli check --json` prints it, plus "error" (the exception
           class of a fail-closed deny, or null) and "elapsed_ms"
    {"op": "check_scope", "token", "scope", "iface"?}             -> the same
    {"op": "session_check", "token", "iface", "subject": "keep_alive" | {"scope", "pushes"},
        "previous": "allow" | REASON}                              -> the same
    {"op": "release", "ticket"}                   -> {"key_id", "refunded_value"}
    {"op": "order_event", "ticket", "kind", "filled_qty"?, "fill_price"?}
                                                  -> {"kind", "key_id", "refunded_value", "reason", "message"}
    {"op": "pipeline", "checks": [{"token", "endpoint", "iface"?}, ...]}
        -> {"decisions": [...], "peak_in_flight", "connections_opened"}: all at once, as
           asyncio coroutines ("client": "async") or threads ("client": "sync")
    {"op": "silent", "answer_hello": bool, "token", "endpoint"}
        -> a check against a Unix socket server of this script's own that accepts and
           never answers (or answers Hello and nothing more): the decision, "elapsed_ms"
    {"op": "gen_key", "spec": {"id", "scopes", "limits"?, "allowed_machines"?,
        "expires_at"?, "note"?}}                  -> {"plaintext", "digest", "record", "stored_in"}
    {"op": "list_keys", "paged"?}                 -> {"keys": [record, ...]}
    {"op": "list_keys_page", "listing"?, "offset"?} -> {"listing", "offset", "total", "keys"}
    {"op": "revoke_key", "id"}                    -> {"id"}
    {"op": "bind_key", "id", "bind": "add"|"replace"|"freeze"|"clear", "machines"?}
                                                  -> {"record"}
    {"op": "reload"}                              -> {"keys_loaded"}
    {"op": "usage", "id"}                         -> the Usage fields
    {"op": "rotate_key", "id", "overlap_secs"?}   -> {"id", "plaintext", "digest",
                                                      "previous_valid_until", "stored_in", "repr"}
    {"op": "key_activity", "ids"}                 -> {"keys": [{"id", "last_used",
                                                      "previous_valid_until"}, ...]}
    {"op": "halt", "id"?, "reason"}               -> {"halts": [halt, ...]} (no "id": every key)
    {"op": "resume", "id"?}                       -> {"halts": [halt, ...]}
    {"op": "halts"}                               -> {"halts": [halt, ...]}; a halt is {"key_id",
                                                      "reason", "uid", "user", "halted_at", "text"}
    {"op": "import_keys", "text", "replace"?}     -> {"added", "replaced", "total", "stored_in"}
    {"op": "export_keys"}                         -> {"text"}: the key store as a keys.json
    {"op": "token", "token"}                      -> the token functions' results for it
    {"op": "generate", "n"}                       -> {"tokens": [{"token", "digest"}, ...]}
    {"op": "late_releases", "at_least"?, "within"?}
        -> {"late_releases"}: the orders the client released because they were allowed
           after their caller gave up, once there are "at_least" of them or "within"
           seconds have passed (the asyncio client's loop runs meanwhile, so that it reads
           late answers)
    {"op": "state"}                               -> connections opened, protocol versions,
                                                     late releases

A call that raises answers {"raised": CLASS, "kind": ERROR_KIND or null, "message"}.
"""

import asyncio
import json
import os
import socket
import sys
import sysconfig
import tempfile
import threading
import time

import futu_auth_client as fac
from futu_auth_client import (
    AsyncAuthClient,
    AuthClient,
    AuthError,
    BindOp,
    ClientError,
    KeySpec,
    Limits,
    Order,
    SessionOutcome,
    SessionSubject,
    Token,
    token as tokens,
)


def emit(value) -> None:
    print(json.dumps(value), flush=True)


def foreign_modules():
    """Modules loaded from neither the standard library nor the package."""
    paths = sysconfig.get_paths()
    allowed = [os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib")]
    allowed.append(os.path.realpath(os.path.dirname(fac.__file__)))
    out = []
    for name, mod in sorted(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if not f or name == "__main__":
            continue
        real = os.path.realpath(f)
        if not any(real.startswith(a + os.sep) for a in allowed):
            out.append(name)
    return out


class Driver:
    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.sync = AuthClient(path, timeout=timeout, client_name="py_client.py")
        self.aio = AsyncAuthClient(path, timeout=timeout, client_name="py_client.py (asyncio)")
        self.loop = asyncio.new_event_loop()
        self.timeout = timeout

    def call(self, cmd, method, *args, **kwargs):
        """Runs `method` on the client the command names; returns its result."""
        if "timeout" in cmd:
            kwargs["timeout"] = cmd["timeout"]
        if cmd.get("client", "sync") == "async":
            return self.loop.run_until_complete(getattr(self.aio, method)(*args, **kwargs))
        return getattr(self.sync, method)(*args, **kwargs)

    def decision(self, d, start):
        out = d.to_dict()
        out["allowed"] = d.allowed
        out["error"] = None if d.error is None else type(d.error).__name__
        out["elapsed_ms"] = (time.monotonic() - start) * 1000
        return out

    # ---- commands ---------------------------------------------------------------------

    def op_check(self, cmd):
        start = time.monotonic()
        order = cmd.get("order")
        d = self.call(cmd, "check", cmd["token"], cmd["endpoint"], Order(**order) if order else None,
                      iface=cmd.get("iface", "rest"), dry_run=cmd.get("dry_run", False),
                      acc_id=cmd.get("acc_id"), ref_price=cmd.get("ref_price"))
        return self.decision(d, start)

    def op_order_event(self, cmd):
        o = self.call(cmd, "order_event", cmd["ticket"], cmd["kind"], cmd.get("filled_qty"),
                      cmd.get("fill_price"))
        return {"kind": o.kind, "key_id": o.key_id, "refunded_value": o.refunded_value,
                "reason": None if o.reason is None else str(o.reason.value), "message": o.message}

    def op_check_scope(self, cmd):
        start = time.monotonic()
        d = self.call(cmd, "check_scope", cmd["token"], cmd["scope"], iface=cmd.get("iface", "rest"))
        return self.decision(d, start)

    def op_session_check(self, cmd):
        start = time.monotonic()
        subject = cmd["subject"]
        subject = (SessionSubject.keep_alive() if subject == "keep_alive"
                   else SessionSubject.for_pushes(subject["scope"], subject["pushes"]))
        previous = cmd["previous"]
        previous = SessionOutcome.allow() if previous == "allow" else SessionOutcome.deny(previous)
        d = self.call(cmd, "session_check", cmd["token"], cmd["iface"], subject, previous)
        return self.decision(d, start)

    def op_late_releases(self, cmd):
        at_least, within = cmd.get("at_least", 0), cmd.get("within", 0)
        if cmd.get("client", "sync") == "async":
            async def wait():
                until = time.monotonic() + within
                while self.aio.late_releases < at_least and time.monotonic() < until:
                    await asyncio.sleep(0.01)
                return self.aio.late_releases
            return {"late_releases": self.loop.run_until_complete(wait())}
        until = time.monotonic() + within
        while self.sync.late_releases < at_least and time.monotonic() < until:
            time.sleep(0.01)
        return {"late_releases": self.sync.late_releases}

    def op_release(self, cmd):
        r = self.call(cmd, "release", cmd["ticket"])
        return {"key_id": r.key_id, "refunded_value": r.refunded_value}

    def op_pipeline(self, cmd):
        checks = cmd["checks"]
        start = time.monotonic()
        if cmd.get("client", "sync") == "async":
            decisions, peak = self.loop.run_until_complete(self._pipeline_async(checks))
            opened = self.aio.connections_opened
        else:
            decisions, peak = self._pipeline_threads(checks)
            opened = self.sync.connections_opened
        return {"decisions": [self.decision(d, start) for d in decisions], "peak_in_flight": peak,
                "connections_opened": opened}

    async def _pipeline_async(self, checks):
        await self.aio.connect()
        done = asyncio.Event()
        peak = 0

        async def sample():
            nonlocal peak
            while not done.is_set():
                peak = max(peak, self.aio.in_flight)
                await asyncio.sleep(0)

        sampler = asyncio.ensure_future(sample())
        try:
            decisions = await asyncio.gather(*(self.aio.check(c["token"], c["endpoint"], iface=c.get("iface", "rest"))
                                               for c in checks))
        finally:
            done.set()
            await sampler
        return decisions, peak

    def _pipeline_threads(self, checks):
        self.sync.connect()
        results = [None] * len(checks)
        barrier = threading.Barrier(len(checks))
        peak = 0
        stop = threading.Event()

        def sample():
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, self.sync.in_flight)
                time.sleep(0.0005)

        def caller(i, c):
            barrier.wait()
            results[i] = self.sync.check(c["token"], c["endpoint"], iface=c.get("iface", "rest"))

        sampler = threading.Thread(target=sample)
        sampler.start()
        threads = [threading.Thread(target=caller, args=(i, c)) for i, c in enumerate(checks)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        sampler.join()
        return results, peak

    def op_silent(self, cmd):
        with tempfile.TemporaryDirectory(prefix="pyc-") as tmp:
            path = os.path.join(tmp, "silent.sock")
            server = SilentServer(path, cmd["answer_hello"])
            try:
                timeout = cmd.get("timeout", self.timeout)
                start = time.monotonic()
                if cmd.get("client", "sync") == "async":
                    client = AsyncAuthClient(path, timeout=timeout)
                    d = self.loop.run_until_complete(client.check(cmd["token"], cmd["endpoint"]))
                    self.loop.run_until_complete(client.close())
                else:
                    client = AuthClient(path, timeout=timeout)
                    d = client.check(cmd["token"], cmd["endpoint"])
                    client.close()
                out = self.decision(d, start)
                out["hellos"] = server.hellos
                return out
            finally:
                server.stop()

    def op_gen_key(self, cmd):
        spec = dict(cmd["spec"])
        if "limits" in spec:
            spec["limits"] = Limits(**spec["limits"])
        made = self.call(cmd, "gen_key", KeySpec(**spec))
        return {"plaintext": made.plaintext.expose(), "digest": tokens.digest(made.plaintext),
                "record": made.record.to_dict(), "stored_in": made.stored_in, "repr": repr(made)}

    def op_list_keys(self, cmd):
        return {"keys": [k.to_dict() for k in self.call(cmd, "list_keys", paged=cmd.get("paged", True))]}

    def op_list_keys_page(self, cmd):
        p = self.call(cmd, "list_keys_page", cmd.get("listing", 0), cmd.get("offset", 0))
        return {"listing": p.listing, "offset": p.offset, "total": p.total, "keys": [k.to_dict() for k in p.keys]}

    def op_revoke_key(self, cmd):
        return {"id": self.call(cmd, "revoke_key", cmd["id"])}

    def op_bind_key(self, cmd):
        kind = cmd["bind"]
        op = getattr(BindOp, kind)(cmd["machines"]) if kind in ("add", "replace") else getattr(BindOp, kind)()
        return {"record": self.call(cmd, "bind_key", cmd["id"], op).to_dict()}

    def op_reload(self, cmd):
        return {"keys_loaded": self.call(cmd, "reload")}

    def op_usage(self, cmd):
        u = self.call(cmd, "usage", cmd["id"])
        return {"id": u.id, "day": u.day, "daily_value_used": u.daily_value_used, "max_daily_value": u.max_daily_value,
                "orders_last_minute": u.orders_last_minute, "max_orders_per_minute": u.max_orders_per_minute}

    def op_rotate_key(self, cmd):
        r = self.call(cmd, "rotate_key", cmd["id"], cmd.get("overlap_secs", 86_400))
        return {"id": r.id, "plaintext": r.plaintext.expose(), "digest": tokens.digest(r.plaintext),
                "previous_valid_until": r.previous_valid_until, "stored_in": r.stored_in, "repr": repr(r)}

    def op_key_activity(self, cmd):
        keys = self.call(cmd, "key_activity", cmd["ids"])
        return {"keys": [{"id": k.id, "last_used": k.last_used, "previous_valid_until": k.previous_valid_until}
                         for k in keys]}

    @staticmethod
    def halts(halts):
        return {"halts": [{"key_id": h.key_id, "reason": h.reason, "uid": h.uid, "user": h.user,
                           "halted_at": h.halted_at, "text": str(h)} for h in halts]}

    def op_halt(self, cmd):
        return self.halts(self.call(cmd, "halt", cmd.get("id"), cmd["reason"]))

    def op_resume(self, cmd):
        return self.halts(self.call(cmd, "resume", cmd.get("id")))

    def op_halts(self, cmd):
        return self.halts(self.call(cmd, "halts"))

    def op_import_keys(self, cmd):
        done = self.call(cmd, "import_keys", cmd["text"], replace=cmd.get("replace", False))
        return {"added": done.added, "replaced": done.replaced, "total": done.total, "stored_in": done.stored_in}

    def op_export_keys(self, cmd):
        return {"text": self.call(cmd, "export_keys")}

    def op_token(self, cmd):
        text = cmd["token"]
        t = Token(text)
        bearer = tokens.from_bearer("Bearer " + text)
        query = tokens.from_query("a=1&token=" + text)
        return {
            "digest": tokens.digest(text),
            "digest_of_token": str(t.digest()),
            "shaped": tokens.is_token_shaped(text),
            "redacted": tokens.redact("before %s after" % text),
            "repr": repr(t),
            "str": str(t),
            "format": "%s %r {}".format(t) % (t, t),
            "bearer": None if bearer is None else bearer.expose(),
            "query": None if query is None else query.expose(),
        }

    def op_generate(self, cmd):
        out = []
        for _ in range(cmd.get("n", 1)):
            t = tokens.generate_token()
            out.append({"token": t.expose(), "digest": tokens.digest(t)})
        return {"tokens": out}

    def op_state(self, cmd):
        return {"sync_connections": self.sync.connections_opened, "async_connections": self.aio.connections_opened,
                "sync_version": self.sync.protocol_version, "async_version": self.aio.protocol_version,
                "server_version": self.sync.server_version, "sync_late_releases": self.sync.late_releases,
                "async_late_releases": self.aio.late_releases}


class SilentServer:
    """A Unix socket server that is not futu-authd: it accepts, reads what it is sent,
    answers Hello if told to, and never answers anything else."""

    def __init__(self, path: str, answer_hello: bool) -> None:
        self.answer_hello = answer_hello
        self.hellos = 0
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.held = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                s, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(s)
            if self.answer_hello:
                threading.Thread(target=self._hello, args=(s,), daemon=True).start()

    def _hello(self, s):
        from futu_auth_client.codec import frame_length
        from futu_auth_client.messages import HelloOk, decode_request, response_frame
        try:
            n = frame_length(_recv_exact(s, 4))
            hello = decode_request(_recv_exact(s, n))
            self.hellos += 1
            s.sendall(response_frame(HelloOk(hello.protocol_version, "silent"), 1))
            while s.recv(65536):
                pass  # read and drop every request
        except OSError:
            pass

    def stop(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for s in self.held:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.thread.join(2)


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("closed")
        buf += chunk
    return buf


def main():
    path = sys.argv[1]
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    driver = Driver(path, timeout)
    emit({"ready": True, "module": fac.__file__, "version": fac.__version__, "foreign": foreign_modules()})
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            out = getattr(driver, "op_" + cmd["op"])(cmd)
        except ClientError as e:
            out = {"raised": type(e).__name__, "kind": e.kind.value if isinstance(e, AuthError) else None,
                   "message": str(e)}
        emit(out)


if __name__ == "__main__":
    main()
