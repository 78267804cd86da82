"""MicroPython's `usocket`, as micropython-lib's umqtt.simple uses it, over a CPython socket.

A stream socket there: `read(n)` blocks for n bytes (fewer only at end of stream), returns None when
non-blocking and nothing is waiting; `write(buf, n)` writes the first n bytes. Blocking reads give up
after TIMEOUT_S with OSError, as a board's socket timeout would (no test hangs on a dead link)."""
from __future__ import annotations

import socket as _socket
import ssl as _ssl

TIMEOUT_S = 10.0
getaddrinfo = _socket.getaddrinfo


class socket:  # noqa: N801 - the name umqtt.simple calls
    def __init__(self, *args):
        self._s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        self._s.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        self._s.settimeout(TIMEOUT_S)
        self._blocking = True

    def connect(self, addr) -> None:
        self._s.connect(addr[:2])

    def setblocking(self, flag: bool) -> None:
        self._blocking = flag

    def read(self, n: int):
        if not self._blocking:
            self._s.setblocking(False)
            try:
                first = self._s.recv(n)
            except (BlockingIOError, _ssl.SSLWantReadError):
                return None
            finally:
                self._s.settimeout(TIMEOUT_S)
            if not first:
                return b""
        else:
            first = b""
        buf = bytearray(first)
        while len(buf) < n:
            chunk = self._s.recv(n - len(buf))
            if not chunk:
                break
            buf += chunk
        return bytes(buf)

    def write(self, buf, n: int | None = None) -> int:
        if isinstance(buf, str):  # a MicroPython stream writes a str as its UTF-8 bytes
            buf = buf.encode()
        data = bytes(buf if n is None else buf[:n])
        self._s.sendall(data)
        return len(data)

    def close(self) -> None:
        self._s.close()


class _TLS(socket):
    """A `usocket.socket` whose stream runs through TLS (what MicroPython's ssl.wrap_socket returns)."""

    def __init__(self, plain: socket, ctx, server_hostname: str | None):
        self._s = ctx.wrap_socket(plain._s, server_hostname=server_hostname)
        self._s.settimeout(TIMEOUT_S)
        self._blocking = True


def wrap_socket(sock: socket, cert_reqs: int = 0, cadata: bytes | None = None, server_hostname: str | None = None,
                **_) -> socket:
    """MicroPython's `ssl.wrap_socket` (the `ussl` that umqtt.simple 1.3 imports), over CPython's ssl."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = bool(server_hostname) and cert_reqs == ssl.CERT_REQUIRED
    ctx.verify_mode = ssl.CERT_REQUIRED if cert_reqs == ssl.CERT_REQUIRED else ssl.CERT_NONE
    if cadata:
        ctx.load_verify_locations(cadata=cadata)
    return _TLS(sock, ctx, server_hostname)
