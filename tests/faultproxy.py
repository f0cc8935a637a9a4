"""A TCP proxy on 127.0.0.1 that can delay, black-hole and reset the traffic it carries.

Put between one worker and its database, it makes a network fault for that worker alone:
- `delay(seconds)`: every chunk waits `seconds / 2` in each direction (a round trip costs
  `seconds` more);
- `blackhole()`: nothing gets through, nothing is closed; what was sent meanwhile is held and
  delivered by `heal()`, as TCP retransmits it after a partition ends (a stale write arrives
  late, which is the point);
- `reset()`: every connection is closed with a RST, and new ones are reset at once, until
  `heal()`.
"""

from __future__ import annotations

import collections
import socket
import struct
import threading
import time

__all__ = ["FaultProxy"]


class _Pipe:
    """One direction of one proxied connection. Each chunk is sent `latency / 2` after it
    arrived, in order, without waiting for the chunks before it: pipelined traffic pays the
    delay once, as on a long wire."""

    def __init__(self, proxy: FaultProxy, source: socket.socket, target: socket.socket) -> None:
        self.proxy, self.source, self.target = proxy, source, target
        self.held: list[bytes] = []
        self.lock = threading.Lock()
        self._due: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self._ready = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._send, daemon=True).start()

    def _pump(self) -> None:
        try:
            while True:
                chunk = self.source.recv(65536)
                if not chunk:
                    break
                self.proxy.bytes += len(chunk)
                with self._ready:
                    self._due.append((time.monotonic() + self.proxy.latency / 2, chunk))
                    self._ready.notify()
        except OSError:
            pass
        with self._ready:
            self._due.append((time.monotonic() + self.proxy.latency / 2, None))
            self._ready.notify()

    def _send(self) -> None:
        try:
            while True:
                with self._ready:
                    while not self._due:
                        self._ready.wait()
                    at, chunk = self._due.popleft()
                time.sleep(max(0.0, at - time.monotonic()))
                if chunk is None:
                    break
                with self.lock:
                    if self.proxy.holding or self.held:
                        self.held.append(chunk)
                        continue
                self.target.sendall(chunk)
        except OSError:
            pass
        with _quiet():
            self.target.shutdown(socket.SHUT_WR)

    def release(self) -> None:
        with self.lock:
            held, self.held = self.held, []
            try:
                for chunk in held:
                    self.target.sendall(chunk)
            except OSError:
                pass


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)  # type: ignore[arg-type]


def _reset(sock: socket.socket) -> None:
    """Close with a RST instead of a FIN: the peer sees 'connection reset'."""
    with _quiet():
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with _quiet():
        sock.close()


class FaultProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target_port`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.latency = 0.0
        self.holding = False
        self.resetting = False
        self.bytes = 0
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket, _Pipe, _Pipe]] = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.resetting:
                _reset(client)
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
                server.settimeout(None)
            except OSError:
                _reset(client)
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            up, down = _Pipe(self, client, server), _Pipe(self, server, client)
            with self._lock:
                self._pairs.append((client, server, up, down))

    # --- faults ------------------------------------------------------------------------------
    def delay(self, seconds: float) -> None:
        """Add `seconds` to every round trip (half each way)."""
        self.latency = seconds

    def blackhole(self) -> None:
        """Let nothing through, in either direction, until `heal()`."""
        self.holding = True

    def reset(self) -> None:
        """Reset every connection now, and each new one until `heal()`."""
        self.resetting = True
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server, _, _ in pairs:
            _reset(client)
            _reset(server)

    def heal(self) -> None:
        """Back to normal: held traffic is delivered, no added latency."""
        self.resetting = False
        self.latency = 0.0
        self.holding = False
        with self._lock:
            pairs = list(self._pairs)
        for _, _, up, down in pairs:
            up.release()
            down.release()

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._closed = True
        with _quiet():
            self._listener.close()
        self.reset()
