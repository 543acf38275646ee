#!/usr/bin/env python3
"""The WebSocket client of the four-front-end tests: Python's `websockets`, the way a
browser page or a trading bot would talk to futu-gw-demo's /ws.

    ws_client.py URL [TOKEN]    with TOKEN: sent as `Authorization: Bearer TOKEN`
                                (put it in URL's ?token= to send it there instead)

The first line printed is {"open": true} or {"refused": STATUS, "body": ...}. Then,
for each line read from stdin:

    {"send": {"id", "proto_id", "body"}}  -> {"answer": {...}} (pushes meanwhile are counted)
    {"listen_ms": N}                      -> {"pushes": {"3005": n, ...}, "closed": null or {...}}
    {"wait_close_ms": N}                  -> {"closed": {"code", "reason", "at_ms"} or null}

`at_ms` is the wall clock (ms since the epoch) when the close frame arrived.
"""

import asyncio
import json
import sys
import time

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus


def emit(value) -> None:
    print(json.dumps(value), flush=True)


class Conn:
    def __init__(self, ws):
        self.ws = ws
        self.pushes: dict[str, int] = {}
        self.closed = None

    def note_close(self, e: ConnectionClosed) -> None:
        if self.closed is None:
            rcvd = e.rcvd
            self.closed = {
                "code": rcvd.code if rcvd else None,
                "reason": rcvd.reason if rcvd else None,
                "at_ms": time.time() * 1000,
            }

    async def next_frame(self, timeout: float):
        """The next non-push frame within `timeout` s (pushes are counted), or None."""
        deadline = time.monotonic() + timeout
        while self.closed is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                raw = await asyncio.wait_for(self.ws.recv(), left)
            except asyncio.TimeoutError:
                return None
            except ConnectionClosed as e:
                self.note_close(e)
                return None
            frame = json.loads(raw)
            if "push" in frame:
                key = str(frame["push"])
                self.pushes[key] = self.pushes.get(key, 0) + 1
                continue
            return frame
        return None


async def main() -> int:
    url = sys.argv[1]
    headers = {"Authorization": f"Bearer {sys.argv[2]}"} if len(sys.argv) > 2 else None
    try:
        ws = await websockets.connect(url, additional_headers=headers, open_timeout=10)
    except InvalidStatus as e:
        emit({"refused": e.response.status_code, "body": e.response.body.decode(errors="replace")})
        return 0
    conn = Conn(ws)
    emit({"open": True})
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        if "send" in cmd:
            try:
                await ws.send(json.dumps(cmd["send"]))
            except ConnectionClosed as e:
                conn.note_close(e)
            answer = await conn.next_frame(10)
            emit({"answer": answer, "closed": conn.closed})
        elif "listen_ms" in cmd:
            conn.pushes = {}
            await conn.next_frame(cmd["listen_ms"] / 1000)
            emit({"pushes": conn.pushes, "closed": conn.closed})
        elif "wait_close_ms" in cmd:
            await conn.next_frame(cmd["wait_close_ms"] / 1000)
            emit({"closed": conn.closed})
    await ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
