"""Running the web app: uvicorn, on one address and port, until interrupted."""

from __future__ import annotations

import ipaddress

import uvicorn
from starlette.applications import Starlette


def is_loopback(address: str) -> bool:
    """Whether ``address`` is reachable from this machine only."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def run(app: Starlette, *, address: str, port: int) -> None:
    """Serve ``app`` until interrupted; the client address comes from a reverse proxy's
    ``X-Forwarded-For`` only when the proxy runs on this machine (uvicorn's default)."""
    uvicorn.run(app, host=address, port=port, log_level="warning", proxy_headers=True)
