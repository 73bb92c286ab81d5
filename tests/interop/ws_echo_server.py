#!/usr/bin/env python3
"""Interop peer: a Python `websockets` echo server for the blocking client.

    ws_echo_server.py PORT [CERT KEY]

Listens on 127.0.0.1:PORT (wss:// with CERT and KEY) and echoes every message, text as
text and binary as binary, with no size limit. Runs until stopped.
"""
import asyncio
import ssl
import sys

import websockets


async def echo(ws):
    async for msg in ws:
        await ws.send(msg)


async def main(port: int, cert: str | None, key: str | None) -> None:
    ctx = None
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
    async with websockets.serve(echo, "127.0.0.1", port, ssl=ctx, max_size=None):
        print(f"listening on {'wss' if ctx else 'ws'}://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    if len(sys.argv) not in (2, 4):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    asyncio.run(main(int(sys.argv[1]), *(sys.argv[2:4] or [None, None])))
