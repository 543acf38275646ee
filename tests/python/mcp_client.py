#!/usr/bin/env python3
"""The MCP client of the four-front-end tests: the official MCP Python SDK (`mcp`),
the way an AI assistant's host would call futu-gw-demo's tools.

    mcp_client.py http URL TOKEN        streamable HTTP, the key as a Bearer token
    mcp_client.py stdio PROGRAM ARG...  stdio, the key in FUTU_MCP_API_KEY (inherited)

One session; then, for each line read from stdin, {"tool": NAME, "arguments": {...}},
one JSON line is printed:

    {"is_error": true or false, "text": "...", "exception": null}
    {"is_error": null, "text": null, "exception": "...", "http_status": 401,
     "http_body": "..."}   (the call itself failed; over HTTP, the refusing response)

A first line {"ready": true, "tools": [...]} says the session is initialized.
"""

import json
import os
import sys

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def emit(value) -> None:
    print(json.dumps(value), flush=True)


def describe(exc: BaseException) -> str:
    """An exception (or a group of them, as anyio raises) in one line."""
    inner = getattr(exc, "exceptions", None)
    if inner:
        return "; ".join(describe(e) for e in inner)
    return f"{type(exc).__name__}: {exc}"


# The last HTTP response of 400 or more, which the SDK reports without its status.
REFUSED: dict = {}


async def note_refusal(response) -> None:
    if response.status_code >= 400:
        await response.aread()
        REFUSED.update(status=response.status_code, body=response.text)


async def serve(session: ClientSession) -> None:
    await session.initialize()
    tools = await session.list_tools()
    emit({"ready": True, "tools": sorted(t.name for t in tools.tools)})
    while True:
        line = await anyio.to_thread.run_sync(sys.stdin.readline)
        if not line:
            return
        call = json.loads(line)
        try:
            with anyio.fail_after(20):
                result = await session.call_tool(call["tool"], call.get("arguments") or {})
            text = "".join(getattr(c, "text", "") for c in result.content)
            emit({"is_error": bool(result.is_error), "text": text, "exception": None})
        except Exception as e:  # the call failed as a call: an HTTP 401, a closed session
            emit({
                "is_error": None,
                "text": None,
                "exception": describe(e),
                "http_status": REFUSED.get("status"),
                "http_body": REFUSED.get("body"),
            })


async def main() -> int:
    mode = sys.argv[1]
    if mode == "http":
        url, token = sys.argv[2], sys.argv[3]
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        http.event_hooks["response"].append(note_refusal)
        async with http:
            async with streamable_http_client(url, http_client=http) as (read, write, *_):
                async with ClientSession(read, write) as session:
                    await serve(session)
    elif mode == "stdio":
        env = {"FUTU_MCP_API_KEY": os.environ.get("FUTU_MCP_API_KEY", "")}
        for k in ("FUTU_AUTH_SOCKET", "FUTU_GW_LOG"):
            if k in os.environ:
                env[k] = os.environ[k]
        server = StdioServerParameters(command=sys.argv[2], args=sys.argv[3:], env=env)
        async with stdio_client(server) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await serve(session)
    else:
        print(f"mode must be http or stdio, not {mode!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(anyio.run(main))
    except BaseException as e:  # say why on one line, for the test's message
        if isinstance(e, SystemExit):
            raise
        emit({"fatal": describe(e)})
        sys.exit(1)
