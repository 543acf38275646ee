#!/usr/bin/env python3
"""A stream of REST orders from several threads at once (Python's http.client, one
keep-alive connection per thread), the way a busy trading bot would place them.

    orders.py HOST:PORT TOKEN THREADS SECONDS ORDER_JSON

Each thread posts ORDER_JSON to /api/order again and again for SECONDS. Prints one JSON
line: {"statuses": {"200": n, "503": m, ...}, "tickets": [ticket of each 200, ...]}.
"""

import http.client
import json
import sys
import threading
import time


def main() -> int:
    addr, token, threads, seconds, order = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    host, port = addr.rsplit(":", 1)
    statuses: dict = {}
    tickets: list = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def work() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        while time.monotonic() < stop:
            try:
                conn.request("POST", "/api/order", body=order, headers=headers)
                res = conn.getresponse()
                body = res.read()
                status = res.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
                status, body = "error", b""
            with lock:
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == 200:
                    tickets.append(json.loads(body).get("ticket"))
        conn.close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(json.dumps({"statuses": statuses, "tickets": tickets}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
