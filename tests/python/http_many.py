#!/usr/bin/env python3
"""The same HTTP request many times over keep-alive connections (Python's http.client),
reconnecting whenever the server closes one: how a scanner hammers a front door.

    http_many.py METHOD URL COUNT [HEADER: VALUE ...]

The body, if any, is read from stdin. Prints one JSON line: {"statuses": {"401": n, ...}}
("error": the connection failed without an answer).
"""

import http.client
import json
import sys
from urllib.parse import urlsplit


def main() -> int:
    method, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    headers = dict(h.split(": ", 1) for h in sys.argv[4:])
    body = sys.stdin.buffer.read() or None
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    statuses: dict = {}
    conn = None

    def once():
        nonlocal conn
        fresh = conn is None
        if fresh:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            conn.request(method, target, body=body, headers=headers)
            res = conn.getresponse()
            res.read()
            if res.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
            return str(res.status)
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = None
            # A kept-alive connection the server closed meanwhile: asked again on a new
            # one, as every HTTP client does; a new one that fails is an error.
            return "error" if fresh else None

    for _ in range(count):
        status = once() or once() or "error"
        statuses[status] = statuses.get(status, 0) + 1
    print(json.dumps({"statuses": statuses}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
