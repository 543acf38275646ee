#!/usr/bin/env python3
"""Many WebSockets of one key at once, in one process (Python's `websockets`): how a
fleet of idle dashboards would sit on futu-gw-demo's /ws.

    ws_many.py URL TOKEN N SECONDS

Opens N connections one after the other (the key as `Authorization: Bearer TOKEN`),
keeps the ones that opened for SECONDS without sending anything, counting the pushes
they receive, then closes them. Prints one JSON line:

    {"opened": n, "refused": [{"status", "retry_after", "body"}, ...],
     "pushes": {"3005": n, ...}, "closed_by_server": n}
"""

import asyncio
import json
import sys

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def listen(ws, pushes: dict, closed: list, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            async for raw in ws:
                frame = json.loads(raw)
                if "push" in frame:
                    key = str(frame["push"])
                    pushes[key] = pushes.get(key, 0) + 1
    except TimeoutError:
        pass
    except ConnectionClosed:
        closed.append(1)


async def main() -> int:
    url, token, n, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    headers = {"Authorization": f"Bearer {token}"}
    conns, refused = [], []
    for _ in range(n):
        try:
            conns.append(await websockets.connect(url, additional_headers=headers, open_timeout=10))
        except InvalidStatus as e:
            refused.append({
                "status": e.response.status_code,
                "retry_after": e.response.headers.get("Retry-After"),
                "body": e.response.body.decode(errors="replace"),
            })
    pushes: dict = {}
    closed: list = []
    await asyncio.gather(*(listen(ws, pushes, closed, seconds) for ws in conns))
    for ws in conns:
        await ws.close()
    print(json.dumps({
        "opened": len(conns),
        "refused": refused,
        "pushes": pushes,
        "closed_by_server": len(closed),
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
