# A stand-in for MicroPython's `usocket` on the WebAssembly port (tests only): the host is unreachable.
def getaddrinfo(host, port):
    return [(2, 1, 0, "", (host, port))]


class socket:
    def connect(self, addr):
        raise OSError(113)  # EHOSTUNREACH

    def close(self):
        pass
