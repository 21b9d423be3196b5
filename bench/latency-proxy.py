#!/usr/bin/env python3
"""A TCP proxy on loopback that delays every byte by a fixed time in each
direction, for benchmarks of a store far away (bench/s3.sh).

usage: latency-proxy.py LISTEN_PORT TARGET_PORT ONE_WAY_MS

A round trip through it costs 2 x ONE_WAY_MS more than on loopback, while
bandwidth stays loopback's: each chunk read is written out ONE_WAY_MS after
it arrived, in order, without waiting for the chunks before it to be
acknowledged (a long fat pipe, as a distant S3 endpoint is). The kernel's
netem would do the same, but it is not on every machine (nor on this
project's build machines).
"""
import asyncio
import sys
import time


async def pump(reader, writer, delay):
    queue = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        try:
            writer.write_eof()
        except OSError:
            pass

    sender = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            queue.put_nowait((time.monotonic() + delay, data))
    except OSError:
        pass
    queue.put_nowait((0, None))
    try:
        await sender
    except OSError:
        pass


async def main():
    listen, target, one_way_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    delay = one_way_ms / 1000

    async def handle(client_reader, client_writer):
        # A new connection costs a round trip before its first request.
        await asyncio.sleep(2 * delay)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, up_writer, delay), pump(up_reader, client_writer, delay), return_exceptions=True
        )
        for w in (client_writer, up_writer):
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print(f"listening on 127.0.0.1:{listen}", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
