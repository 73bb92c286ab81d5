"""Tests examples/dumb-increment.c (the lws-style API) with Python `websockets`.

    test_lws.py PORT FILE
Exits non-zero (an AssertionError or a timeout) on any difference.
"""
import asyncio
import sys
import time
import urllib.request

from websockets.asyncio.client import connect

PORT, FILE = int(sys.argv[1]), sys.argv[2]
URL = f"ws://127.0.0.1:{PORT}/"


async def numbers(ws, n):
    return [int(await asyncio.wait_for(ws.recv(), 5)) for _ in range(n)]


async def main():
    # dumb-increment: two connections, each its own counter; reset
    a = await connect(URL, subprotocols=["dumb-increment-protocol"])
    assert a.subprotocol == "dumb-increment-protocol"
    got = await numbers(a, 5)
    assert got == list(range(5)), got
    b = await connect(URL, subprotocols=["dumb-increment-protocol"])
    assert (await numbers(b, 3)) == [0, 1, 2]
    await a.send("reset\n")
    seq = await numbers(a, 40)
    assert 0 in seq[1:], seq  # went back to 0 after counting on
    i = seq.index(0, 1)
    assert seq[i:i + 3] == [0, 1, 2], seq
    print("dumb-increment: per-session counters, reset: ok")

    # the wsi of a closed connection gets -1 from outside callbacks, 0 from the rest
    await b.close()
    await a.close()
    await asyncio.sleep(0.3)
    async with connect(URL, subprotocols=["lws-test"]) as t:
        await t.send("stale?")
        got = await asyncio.wait_for(t.recv(), 5)
        assert got == "stale have=1 writable=-1 write=-1 flow=-1 bin=0", got
        # the same from inside a callback (requests about other connections are carried
        # out after it): -1 for the stale wsi, 1 and 0 for an open one
        async with connect(URL, subprotocols=["dumb-increment-protocol"]) as d:
            await asyncio.wait_for(d.recv(), 5)
            await t.send("stale-in?")
            got = await asyncio.wait_for(t.recv(), 5)
            assert got == "stale-in have=1 writable=-1 flow=-1 live=1 live-writable=1 live-flow=0", got

        # pieces of rx_buffer_size 16, frame info per piece
        await t.send("x" * 40)
        pieces = [await asyncio.wait_for(t.recv(), 5) for _ in range(3)]
        want = [
            "piece len=16 bin=0 final=0 remaining=24",
            "piece len=16 bin=0 final=0 remaining=8",
            "piece len=8 bin=0 final=1 remaining=0",
        ]
        for p, w in zip(pieces, want):
            assert p.startswith(w + " proto=lws-test user=the-context-user fd-ok=1"), (p, w)
        await t.send(b"\x01\x02\x03")
        p = await asyncio.wait_for(t.recv(), 5)
        assert p.startswith("piece len=3 bin=1 final=1 remaining=0 "), p
        print("lws-test: stale wsi refused (outside and inside callbacks); pieces, lws_frame_is_binary, is_final_fragment, remaining_packet_payload, get_protocol, context_user: ok")

        # rx flow control: paused for 300 ms by the callback, resumed by the main loop
        t0 = time.monotonic()
        await t.send("flow")
        await t.send("after")
        p = await asyncio.wait_for(t.recv(), 5)
        waited = time.monotonic() - t0
        assert p.startswith("piece len=5 "), p
        assert waited >= 0.25, waited
        print(f"lws-test: rx_flow_control(0) held the next message {waited * 1000:.0f} ms: ok")

        # cancel_service from a thread wakes a 10 s service
        await t.send("cancel?")
        p = await asyncio.wait_for(t.recv(), 8)
        ms = int(p.split("=")[1])
        assert p.startswith("cancel ") and 90 <= ms < 2000, p
        print(f"lws-test: libwebsocket_cancel_service woke service after {ms} ms: ok")

    # HTTP: serve_http_file with extra headers, return_http_status
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/file", timeout=5) as r:
        body = r.read()
        assert r.status == 200 and r.headers["X-Served-By"] == "dumb-increment", r.headers
        assert r.headers["Content-Type"] == "text/plain"
        assert body == open(FILE, "rb").read()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{PORT}/other", timeout=5)
        raise AssertionError("no 404")
    except urllib.error.HTTPError as e:
        assert e.code == 404 and b"nothing here" in e.read(), e
    print("http: serve_http_file (headers, body), return_http_status 404: ok")


asyncio.run(main())
