"""Python `websockets` echo server with permessage-deflate (its default "deflate": zlib's
default level, memLevel 5, 12-bit windows both ways, context takeover): the peer of
bench/deflate.sh. usage: python ws_deflate_echo.py PORT"""
import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main(port):
    async with serve(echo, "127.0.0.1", port, compression="deflate", max_size=None,
                     ping_interval=None, backlog=4096):
        print(f"python websockets deflate echo on 127.0.0.1:{port}", file=sys.stderr)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 9001))
