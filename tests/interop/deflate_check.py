#!/usr/bin/env python3
"""Interop check of permessage-deflate with Python `websockets`, both directions.

    deflate_check.py client ws://127.0.0.1:PORT/    # our echo-server --deflate as the server
    deflate_check.py server PORT SNCT CNCT SMWB CMWB  # a websockets echo server demanding
                                                       # these parameters, for our client

Client mode connects once per parameter combination (server/client_no_context_takeover,
server_max_window_bits 9/12/15 or none, client_max_window_bits 9/15 or none), checks that the
response accepted permessage-deflate, and that text and binary messages (small, 100 KiB
compressible, 64 KiB random, empty) come back unchanged. Exit 0 when all do.
"""
import asyncio
import itertools
import os
import sys

import websockets
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory)


async def client(url: str) -> int:
    msgs = ["small", '{"id":1,"name":"x"},' * 5000, os.urandom(65536), b"", "\u00e9\u20ac" * 999]
    combos = list(itertools.product([False, True], [False, True], [None, 9, 12, 15], [None, 9, True]))
    for snct, cnct, smwb, cmwb in combos:
        f = ClientPerMessageDeflateFactory(server_no_context_takeover=snct,
                                           client_no_context_takeover=cnct,
                                           server_max_window_bits=smwb,
                                           client_max_window_bits=cmwb)
        label = f"snct={snct} cnct={cnct} smwb={smwb} cmwb={cmwb}"
        async with websockets.connect(url, extensions=[f], compression=None, max_size=None,
                                      open_timeout=5, close_timeout=5) as ws:
            ext = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            if not ext.startswith("permessage-deflate"):
                print(f"FAIL {label}: not negotiated ({ext!r})")
                return 1
            for _ in range(2):  # twice: context takeover carries over
                for m in msgs:
                    await ws.send(m)
                    reply = await asyncio.wait_for(ws.recv(), 5)
                    if type(reply) is not type(m) or reply != m:
                        print(f"FAIL {label}: message of {len(m)} came back different")
                        return 1
            print(f"ok   {label}: {ext}")
    return 0


async def server(port: int, snct: bool, cnct: bool, smwb, cmwb) -> None:
    f = ServerPerMessageDeflateFactory(server_no_context_takeover=snct,
                                       client_no_context_takeover=cnct,
                                       server_max_window_bits=smwb,
                                       client_max_window_bits=cmwb,
                                       require_client_max_window_bits=False)

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with websockets.serve(echo, "127.0.0.1", port, extensions=[f], compression=None,
                                max_size=None, ping_interval=None):
        print(f"deflate echo on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        await asyncio.get_running_loop().create_future()


def opt(v):
    return None if v == "-" else int(v)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "client":
        sys.exit(asyncio.run(asyncio.wait_for(client(sys.argv[2]), 120)))
    if len(sys.argv) == 7 and sys.argv[1] == "server":
        asyncio.run(server(int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1",
                           opt(sys.argv[5]), opt(sys.argv[6])))
        sys.exit(0)
    print(__doc__, file=sys.stderr)
    sys.exit(2)
