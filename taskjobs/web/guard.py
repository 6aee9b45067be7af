"""What stands in front of every route: HTTP basic auth (when configured) and the security
headers of every answer. Plain ASGI middleware."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence

from starlette.datastructures import MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskjobs.errors import ConfigurationError

# No script or style but the server's own files, nothing framed, no form sent elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}
REALM = "taskjobs"


def parse_credentials(basic_auth: str | Sequence[str] | None) -> tuple[tuple[bytes, bytes], ...]:
    """``user:password`` pairs, given comma-separated or as a list; a pair without a user or a
    password raises ``ConfigurationError`` naming it (its password hidden)."""
    if not basic_auth:
        return ()
    given = basic_auth.split(",") if isinstance(basic_auth, str) else list(basic_auth)
    pairs = []
    for entry in given:
        user, colon, password = entry.strip().partition(":")
        if not (user and colon and password):
            shown = f"{user}:***" if colon else entry.strip()
            raise ConfigurationError(
                f"invalid basic auth {shown!r}: give user:password, several comma-separated"
            )
        pairs.append((user.encode(), password.encode()))
    return tuple(pairs)


class BasicAuth:
    """Every request but those to ``open_paths`` needs one of ``credentials``; each is compared
    in constant time, and all of them always, so the time taken tells nothing."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        credentials: tuple[tuple[bytes, bytes], ...],
        open_paths: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.credentials = credentials
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        response = PlainTextResponse(
            "Authentication required",
            status_code=401,
            headers={"www-authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
        )
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, encoded = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, _, password = decoded.partition(b":")
        matched = False
        for known_user, known_password in self.credentials:
            same_user = hmac.compare_digest(user, known_user)
            same_password = hmac.compare_digest(password, known_password)
            matched |= same_user & same_password
        return matched


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)
