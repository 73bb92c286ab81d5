"""Tests a wsServer-API server (C or Scheme) with the Python `websockets` client.

    test_wsserver.py echo PORT      an echo server: text, binary, empty, large, fragmented
                                    messages come back whole; many clients at once
    test_wsserver.py threads PORT   tests/threads.c: sends from C threads, broadcast,
                                    ws_ping's threshold, stale handles
Exits non-zero (an AssertionError or a timeout) on any difference.
"""
import asyncio
import os
import socket
import struct
import sys

from websockets.asyncio.client import connect

MODE, PORT = sys.argv[1], int(sys.argv[2])
URL = f"ws://127.0.0.1:{PORT}/"


async def echo_checks():
    async with connect(URL, max_size=None) as ws:
        for msg in ["hello", "ünïcödé ✓", "", "x" * 70000]:
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), 10)
            assert got == msg, (len(got), len(msg))
        for msg in [b"\x00\x01\x02\xff", b"", os.urandom(1 << 20)]:
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), 10)
            assert got == msg, (len(got), len(msg))
        # a fragmented message is delivered whole: one message back
        await ws.send(["frag", "mented ", "text"])
        assert await asyncio.wait_for(ws.recv(), 10) == "fragmented text"
        await ws.send([b"\x01" * 1000, b"\x02" * 3000])
        assert await asyncio.wait_for(ws.recv(), 10) == b"\x01" * 1000 + b"\x02" * 3000
    # many clients at once (wsServer's limit is 8)
    clients = [await connect(URL) for _ in range(200)]
    try:
        await asyncio.gather(*(c.send(f"client {i}") for i, c in enumerate(clients)))
        got = await asyncio.gather(*(asyncio.wait_for(c.recv(), 20) for c in clients))
        assert got == [f"client {i}" for i in range(len(clients))]
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    print("echo: text, binary, empty, 1 MiB, fragmented, 200 clients: ok")


async def ask(ws, q):
    await ws.send(q)
    return await asyncio.wait_for(ws.recv(), 10)


def raw_client():
    """A client that never answers pings: handshake by hand, then frames read raw."""
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    s.sendall(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def read_frame(s):
    def exact(n):
        b = b""
        while len(b) < n:
            c = s.recv(n - len(b))
            assert c, "connection ended"
            b += c
        return b

    b0, b1 = exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exact(8))[0]
    return b0 & 0x0F, exact(n)


def send_masked(s, opcode, payload):
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    s.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body)


async def threads_checks():
    # sends from 8 C threads at once, 500 messages each, all arrive, each thread's in order
    async with connect(URL, max_size=None) as ws:
        await ws.send("spawn 8 500")
        seen = {i: [] for i in range(8)}
        for _ in range(8 * 500):
            t, k = (await asyncio.wait_for(ws.recv(), 20)).split()
            seen[int(t[1:])].append(int(k))
        assert all(v == list(range(500)) for v in seen.values()), {i: len(v) for i, v in seen.items()}
        st = await ask(ws, "state?")
        assert st == "state 1 fd-ok=1 addr=127.0.0.1", st
    print("threads: 8 threads x 500 sends, in order per thread: ok")

    # broadcast from a thread reaches every client
    a, b = await connect(URL), await connect(URL)
    assert (await ask(a, "count?")) == "count 2"
    await a.send("bcast to all")
    assert await asyncio.wait_for(a.recv(), 10) == "to all"
    assert await asyncio.wait_for(b.recv(), 10) == "to all"
    await a.close()
    await b.close()
    print("threads: broadcast (NULL client) from a thread, ws_get_connections: ok")

    # ws_ping(client, 2): a client answering pings stays; one that does not is closed
    async with connect(URL) as ws:
        await ws.send("pingme")
        await asyncio.sleep(1.2)
        assert (await ask(ws, "state?")).startswith("state 1 "), "pinged client dropped"
    s = raw_client()
    send_masked(s, 1, b"pingme")
    pings = 0
    while True:
        op, payload = read_frame(s)
        if op == 9:
            pings += 1
            assert payload == struct.pack("!i", pings), payload
            continue
        assert op == 8, op
        assert struct.unpack("!H", payload[:2])[0] == 1008, payload
        break
    assert pings == 3, pings
    s.close()
    print("threads: ws_ping threshold 2: answered pings keep the client, 3 unanswered close it (1008): ok")

    # close from a thread, then every call on the stale handle fails, also when its slot
    # is taken by a new client
    ws = await connect(URL)
    await ws.send("closeme")
    await asyncio.wait_for(ws.wait_closed(), 10)
    assert ws.close_code == 1000, ws.close_code
    await asyncio.sleep(0.2)
    async with connect(URL) as ws2:
        got = await ask(ws2, "stale?")
        assert got == "stale same-slot=1 state=-1 fd=-1 addr=NULL close=-1 send=-1 bin=-1 frame=-1", got
        await ws2.send("still works")
        assert await asyncio.wait_for(ws2.recv(), 10) == "still works"
    print("threads: ws_close_client from a thread; stale handle (slot reused) gets -1/NULL: ok")

    # a burst of whole messages in one write: most are read with more frames behind them
    # (delivered where they lie, the NUL lent by the next byte); every one echoes intact,
    # and threads.c logs an ERROR for any message without its NUL (run.sh fails on it)
    s = raw_client()
    msgs = [(1, f"burst {i}".encode()) for i in range(24)] + [(2, b"\x00\x01\xff"), (1, b""), (2, b"")]
    burst = b""
    for op, payload in msgs:
        mask = os.urandom(4)
        burst += bytes([0x80 | op, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    s.sendall(burst)
    for op, payload in msgs:
        assert read_frame(s) == (op, payload), (op, payload)
    s.close()
    print("threads: a burst of 27 messages in one write, NUL-terminated, echoed intact: ok")


asyncio.run(echo_checks() if MODE == "echo" else threads_checks())
