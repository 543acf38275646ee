#!/usr/bin/env python3
"""The audit file's two DuckDB queries of docs/OPERATIONS.md ("Querying it with DuckDB"),
run on another file through DuckDB's Python package.

    audit_duckdb.py AUDIT_FILE

Each query is the documentation's text to the character, with its path
/var/log/futu-authd/audit.jsonl replaced by AUDIT_FILE. Prints one JSON line:
{"histogram": [[reason, n], ...], "orders_today": n, "queries": {name: documented text}}.
"""

import json
import sys

import duckdb

DOCUMENTED_PATH = "/var/log/futu-authd/audit.jsonl"

HISTOGRAM = """SELECT reason, count(*) AS n
FROM read_ndjson('/var/log/futu-authd/audit.jsonl',
                 columns = {outcome: 'VARCHAR', reason: 'VARCHAR'})
WHERE outcome = 'reject'
GROUP BY reason ORDER BY n DESC;"""

ORDERS_TODAY = """SELECT count(*) AS orders
FROM read_ndjson('/var/log/futu-authd/audit.jsonl',
                 columns = {ts: 'TIMESTAMPTZ', key_id: 'VARCHAR', endpoint: 'VARCHAR'})
WHERE key_id = 'sim-bot' AND regexp_matches(endpoint, 'order', 'i')
  AND CAST(ts AT TIME ZONE 'UTC' AS DATE) = CAST(now() AT TIME ZONE 'UTC' AS DATE);"""


def main() -> int:
    audit = sys.argv[1]
    literal = audit.replace("'", "''")

    def run(query: str) -> list:
        return duckdb.sql(query.replace(DOCUMENTED_PATH, literal)).fetchall()

    histogram = [[reason, n] for reason, n in run(HISTOGRAM)]
    [(orders,)] = run(ORDERS_TODAY)
    print(
        json.dumps(
            {
                "histogram": histogram,
                "orders_today": orders,
                "queries": {"histogram": HISTOGRAM, "orders_today": ORDERS_TODAY},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
