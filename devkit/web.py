"""Serve an ASGI app on a free loopback port for a test: the center service's own server class."""
from center.web.server import WebServer

__all__ = ["WebServer"]
