"""A shaping TCP proxy on loopback: round-trip delay and bandwidth caps, like a real network.

Kernel ``netem`` is not available on these machines, so the benchmark models a network in
userspace. :class:`Shaper` listens on 127.0.0.1 and forwards every connection to one
upstream (nginx). Each direction of each connection is a *delay line*: bytes read from one
side are released to the other side ``rtt / 2`` after they arrived, so every request pays one
round trip before the first byte of its response comes back, and a new connection pays one
more round trip before its first request reaches the server (the TCP handshake). The
server-to-client direction is then metered by a token bucket per connection and, optionally,
one bucket shared by all connections (a laptop's single link).

The bytes never enter Python: each direction moves them socket -> pipe -> socket with
``splice(2)``, and the pipe *is* the delay line (sized to hold rate x delay). Python only
keeps a queue of (due time, byte count) per direction, so the proxy's own ceiling is several
GB/s on one core and far above the caps it models; :func:`measure_ceiling` measures it
without any shaping and the suite reports it next to the results.

Usage::

    with Shaper(("127.0.0.1", nginx_port), PROFILES["cross-region"]) as sh:
        url = sh.url            # point clients here

    python bench/shaper.py --profile laptop --upstream 127.0.0.1:8080 --port 9000
    python bench/shaper.py --ceiling
"""

from __future__ import annotations

import argparse
import collections
import errno
import fcntl
import os
import select
import socket
import threading
import time
from dataclasses import dataclass, field

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
MiB = 1024 * 1024
MB = 1_000_000


@dataclass(frozen=True)
class Profile:
    """A network to emulate.

    Parameters
    ----------
    name : str
        Short name used in results.
    rtt : float
        Round-trip time in seconds, added to connection set-up and to every request.
    conn_rate : float or None
        Bytes per second per connection, server to client (``None``: uncapped).
    total_rate : float or None
        Bytes per second shared by all connections (``None``: uncapped).
    """

    name: str
    rtt: float
    conn_rate: float | None = None
    total_rate: float | None = None

    def describe(self) -> str:
        parts = [f"RTT {self.rtt * 1000:g} ms"]
        if self.conn_rate:
            parts.append(f"{self.conn_rate / MB:g} MB/s per connection")
        if self.total_rate:
            parts.append(f"{self.total_rate / MB:g} MB/s total")
        return ", ".join(parts)


PROFILES = {
    "in-region": Profile("in-region", 0.002, 90 * MB),
    "cross-region": Profile("cross-region", 0.070, 25 * MB),
    "laptop": Profile("laptop", 0.025, 12 * MB, 40 * MB),
    "unshaped": Profile("unshaped", 0.0),
}


class TokenBucket:
    """A thread-safe token bucket that lets callers go into debt and tells them how long to wait.

    Taking ``n`` tokens always succeeds; the return value is how long the caller must sleep
    before sending so that the long-run rate never exceeds ``rate``. ``burst`` bounds how much
    an idle bucket saves up.
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self, n: int) -> float:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= n
            return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass
class Stats:
    """What went through the shaper (all connections)."""

    connections: int = 0
    bytes_down: int = 0      # server -> client
    bytes_up: int = 0        # client -> server
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, down: int = 0, up: int = 0, conns: int = 0) -> None:
        with self.lock:
            self.bytes_down += down
            self.bytes_up += up
            self.connections += conns

    def snapshot(self) -> dict:
        with self.lock:
            return {"connections": self.connections, "bytes_down": self.bytes_down, "bytes_up": self.bytes_up}


def _pipe(capacity: int) -> tuple[int, int, int]:
    """A pipe of at least ``capacity`` bytes if the kernel allows (root may exceed pipe-max-size)."""
    r, w = os.pipe()
    size = 0
    for want in (capacity, 1 * MiB, 256 * 1024, 64 * 1024):
        try:
            size = fcntl.fcntl(w, F_SETPIPE_SZ, want)
            break
        except OSError:
            continue
    return r, w, size or 64 * 1024


def _wait(fd: int, events: int, timeout: float | None) -> bool:
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999))))


class _Direction(threading.Thread):
    """One direction of one connection: src socket -> pipe (delay line) -> dst socket."""

    def __init__(self, src: socket.socket, dst: socket.socket, *, delay: float, extra_first: float,
                 buckets: list[TokenBucket], quantum: int, capacity: int, stats: Stats, down: bool,
                 done: "_Connection") -> None:
        super().__init__(daemon=True)
        self.src, self.dst = src, dst
        self.delay, self.extra_first = delay, extra_first
        self.buckets, self.quantum = buckets, quantum
        self.capacity, self.stats, self.down, self.conn = capacity, stats, down, done

    def run(self) -> None:
        try:
            self._pump()
        except OSError:
            pass  # a side went away: the connection ends
        finally:
            self.conn.direction_done()

    def _pump(self) -> None:
        src, dst = self.src.fileno(), self.dst.fileno()
        pr, pw, cap = _pipe(self.capacity)
        try:
            pending: collections.deque[list] = collections.deque()  # [due, bytes]
            in_pipe = 0
            eof = False
            first = True
            while True:
                # Take in whatever has arrived, as long as the delay line has room.
                if not eof and in_pipe < cap:
                    try:
                        n = os.splice(src, pw, cap - in_pipe, flags=os.SPLICE_F_NONBLOCK | os.SPLICE_F_MOVE)
                    except BlockingIOError:
                        n = -1
                    if n == 0:
                        eof = True
                    elif n > 0:
                        due = time.monotonic() + self.delay + (self.extra_first if first else 0.0)
                        first = False
                        if pending and pending[-1][0] >= due - 0.0005:
                            pending[-1][1] += n  # same instant: one entry
                        else:
                            pending.append([due, n])
                        in_pipe += n
                        continue
                if not pending:
                    if eof:
                        try:
                            self.dst.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        return
                    _wait(src, select.POLLIN, None)
                    continue
                now = time.monotonic()
                due, n = pending[0]
                if due > now:
                    # Nothing to release yet: sleep until it is due or more bytes arrive.
                    if not eof and in_pipe < cap:
                        _wait(src, select.POLLIN, due - now)
                    else:
                        time.sleep(due - now)
                    continue
                chunk = min(n, self.quantum)
                wait = max([b.take(chunk) for b in self.buckets], default=0.0)
                if wait > 0:
                    time.sleep(wait)
                moved = 0
                while moved < chunk:
                    try:
                        m = os.splice(pr, dst, chunk - moved, flags=os.SPLICE_F_MOVE)
                    except BlockingIOError:
                        _wait(dst, select.POLLOUT, None)
                        continue
                    if m == 0:
                        raise OSError(errno.EPIPE, "pipe drained unexpectedly")
                    moved += m
                in_pipe -= moved
                if moved == n:
                    pending.popleft()
                else:
                    pending[0][1] -= moved
                if self.down:
                    self.stats.add(down=moved)
                else:
                    self.stats.add(up=moved)
        finally:
            os.close(pr)
            os.close(pw)


class _Connection:
    """A client connection and its upstream connection, closed when both directions end."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.left = 2
        self.lock = threading.Lock()

    def direction_done(self) -> None:
        with self.lock:
            self.left -= 1
            last = self.left == 0
        if last:
            for s in (self.client, self.upstream):
                try:
                    s.close()
                except OSError:
                    pass


class Shaper:
    """The shaping proxy: listens on 127.0.0.1, forwards to ``upstream`` through the profile.

    Parameters
    ----------
    upstream : tuple of (str, int)
        Address of the real server.
    profile : Profile
        The network to emulate.
    port : int, optional
        Port to listen on (default: a free one).
    """

    def __init__(self, upstream: tuple[str, int], profile: Profile = PROFILES["unshaped"], port: int = 0) -> None:
        self.upstream = upstream
        self.profile = profile
        self.stats = Stats()
        self.total = (TokenBucket(profile.total_rate, max(64 * 1024, profile.total_rate * 0.005))
                      if profile.total_rate else None)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(1024)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _quantum(self) -> int:
        # Small enough that the caps are smooth (≤ 10 ms of data per release), large enough
        # that the proxy's own CPU stays small.
        rates = [r for r in (self.profile.conn_rate, self.profile.total_rate) if r]
        return max(16 * 1024, min(1 * MiB, int(min(rates) * 0.010))) if rates else 4 * MiB

    def _capacity(self) -> int:
        # The delay line must hold rate x one-way delay, or it would cap the rate itself.
        rate = self.profile.conn_rate or self.profile.total_rate or 0
        return max(1 * MiB, int(2 * rate * self.profile.rtt) + 256 * 1024) if rate else 4 * MiB

    def start(self) -> "Shaper":
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="shaper-accept")
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        half = self.profile.rtt / 2
        quantum, capacity = self._quantum(), self._capacity()
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._stop.is_set():
                client.close()
                return
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.setblocking(False)
            self.stats.add(conns=1)
            conn = _Connection(client, upstream)
            down_buckets = []
            if self.profile.conn_rate:
                down_buckets.append(TokenBucket(self.profile.conn_rate, max(16 * 1024, self.profile.conn_rate * 0.005)))
            if self.total is not None:
                down_buckets.append(self.total)
            # Client -> server carries the handshake's extra round trip on its first bytes.
            _Direction(client, upstream, delay=half, extra_first=self.profile.rtt, buckets=[], quantum=4 * MiB,
                       capacity=1 * MiB, stats=self.stats, down=False, done=conn).start()
            _Direction(upstream, client, delay=half, extra_first=0.0, buckets=down_buckets, quantum=quantum,
                       capacity=capacity, stats=self.stats, down=True, done=conn).start()

    def stop(self) -> None:
        self._stop.set()
        try:
            # Wake accept() so the thread can see the flag.
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        self.listener.close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> "Shaper":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the shaper's own ceiling ---------------------------------------------------------------


class _Sink:
    """A loopback server that sends ``nbytes`` to every connection (from memory), then closes."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.block = memoryview(os.urandom(4 * MiB))
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(1)  # wait for the client's request byte
            left = self.nbytes
            while left > 0:
                n = min(left, len(self.block))
                conn.sendall(self.block[:n])
                left -= n

    def close(self) -> None:
        self.listener.close()


def _drain(port: int) -> int:
    got = 0
    buf = bytearray(4 * MiB)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"g")
        while True:
            n = s.recv_into(buf)
            if not n:
                return got
            got += n


def measure_ceiling(nbytes: int = 1024 * MiB, streams: int = 1, profile: Profile = PROFILES["unshaped"]) -> dict:
    """Throughput of ``streams`` parallel downloads of ``nbytes`` each through a shaper.

    With the default unshaped profile this is the proxy's own ceiling (the Python sender and
    receiver cost CPU too, so the true ceiling is higher still). Returns bytes per second,
    wall seconds and the same figure without the proxy (direct) for comparison.
    """
    sink = _Sink(nbytes)
    try:
        def run(port: int) -> float:
            results: list[int] = []
            t0 = time.perf_counter()
            threads = [threading.Thread(target=lambda: results.append(_drain(port))) for _ in range(streams)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            secs = time.perf_counter() - t0
            if sum(results) != nbytes * streams:
                raise RuntimeError(f"received {sum(results)} bytes, expected {nbytes * streams}")
            return secs

        direct = run(sink.port)
        with Shaper(("127.0.0.1", sink.port), profile) as sh:
            shaped = run(sh.port)
        total = nbytes * streams
        return {"profile": profile.name, "streams": streams, "bytes": total, "seconds": shaped,
                "bytes_per_second": total / shaped, "direct_seconds": direct, "direct_bytes_per_second": total / direct}
    finally:
        sink.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="unshaped")
    ap.add_argument("--upstream", help="host:port of the real server")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ceiling", action="store_true", help="measure the proxy's own unshaped ceiling and exit")
    ap.add_argument("--mib", type=int, default=1024, help="MiB per stream for --ceiling")
    ap.add_argument("--streams", type=int, default=1)
    args = ap.parse_args(argv)
    if args.ceiling:
        r = measure_ceiling(args.mib * MiB, args.streams, PROFILES[args.profile])
        print(f"{args.profile}: {r['streams']} stream(s) through the shaper {r['bytes_per_second'] / MB:.0f} MB/s, "
              f"direct {r['direct_bytes_per_second'] / MB:.0f} MB/s")
        return 0
    host, _, port = (args.upstream or "").rpartition(":")
    if not port:
        ap.error("--upstream host:port is required")
    sh = Shaper((host or "127.0.0.1", int(port)), PROFILES[args.profile], args.port).start()
    print(f"shaping {sh.url} -> {args.upstream} ({PROFILES[args.profile].describe()}); Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sh.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
