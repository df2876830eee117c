"""Opens N keep-alive connections to jwtgate, sends one authenticated request
on each, then holds them all idle and prints jwtgate's VmRSS (DESIGN.md §12:
≤ 64 MiB at 10 000 idle connections). Exits non-zero unless, when the RSS is
read, all N are still open on both sides (none closed by jwtgate, and jwtgate
holding at least N sockets). Loopback only, bounded in time.

    python3 idle_conns.py PORT TOKEN PID [N]
"""
import asyncio
import os
import sys

PORT, TOKEN, PID = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
N = int(sys.argv[4]) if len(sys.argv) > 4 else 10_000
REQUEST = (f"GET /api/x HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").encode()


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def one(sem, held):
    async with sem:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", PORT), 10)
        writer.write(REQUEST)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head[:60])
        length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
        await reader.readexactly(length)
        held.append((reader, writer))


async def main():
    before = rss_mib(PID)
    held, sem = [], asyncio.Semaphore(500)
    await asyncio.wait_for(asyncio.gather(*(one(sem, held) for _ in range(N))), 120)
    await asyncio.sleep(2)
    after = rss_mib(PID)
    sockets = jwtgate_sockets(PID)
    closed = sum(reader.at_eof() for reader, _ in held)
    print(f"idle keep-alive connections held: {len(held)}; jwtgate VmRSS {before:.1f} MiB before, {after:.1f} MiB with them open")
    for _, writer in held:
        writer.close()
    if len(held) != N or closed or sockets < N:
        sys.exit(f"idle_conns.py: of {N} connections {len(held)} were made and {closed} then closed by jwtgate, "
                 f"which held {sockets} sockets when its RSS was read")


def jwtgate_sockets(pid):
    """How many sockets jwtgate has open (its listeners and upstream ones too)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except FileNotFoundError:
            pass
    return count


asyncio.run(main())
