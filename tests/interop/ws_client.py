#!/usr/bin/env python3
"""Interop check: Python `websockets` echoes text and binary over wss:// against echo-server.

    ws_client.py wss://127.0.0.1:PORT/ CAFILE

Trusts exactly CAFILE (the server's self-signed certificate) and checks the host name
(`localhost`, which the certificate names). Exit 0 when every reply equals what was sent.
"""
import asyncio
import os
import ssl
import sys

import websockets


async def main(url: str, cafile: str) -> int:
    ctx = ssl.create_default_context(cafile=cafile)  # verifies the chain and the host name
    msgs = [
        "hello over wss",
        "UTF-8: \u00e9\u20ac\U0001f600",
        "x" * 70000,  # 64-bit length, several TLS records
        b"\x00\x01\x02\xff binary",
        os.urandom(200000),
        b"",
    ]
    async with websockets.connect(url, ssl=ctx, server_hostname="localhost",
                                  max_size=None, open_timeout=5, close_timeout=5) as ws:
        tls = ws.transport.get_extra_info("ssl_object")
        print(f"connected: {tls.version()} {tls.cipher()[0]}, "
              f"peer {tls.getpeercert()['subject']}")
        for m in msgs:
            await ws.send(m)
            reply = await asyncio.wait_for(ws.recv(), 5)
            kind = "binary" if isinstance(m, bytes) else "text"
            if type(reply) is not type(m) or reply != m:
                print(f"FAIL {kind} message of {len(m)}: got {type(reply).__name__} of {len(reply)}")
                return 1
            print(f"ok   {kind} message of {len(m)} echoed")
        await ws.close()
        print(f"closed: code {ws.close_code}")
        if ws.close_code != 1000:
            print("FAIL close code is not 1000")
            return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 30)))
