"""uvicorn's httptools protocol with a deadline for request headers.

uvicorn times out idle keep-alive connections but not a client that
connects and sends nothing (or half a header): here every request's headers
must arrive within `header_timeout` seconds of its first byte (or of the
connection), else the connection is closed.
"""

import asyncio
from typing import Any


def protocol_class(header_timeout: float) -> Any:
    """The protocol class to give `uvicorn.Config(http=...)`."""
    from uvicorn.protocols.http.httptools_impl import (  # optional: serving
        HttpToolsProtocol,
    )

    class Protocol(HttpToolsProtocol):  # type: ignore[misc]
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(
                header_timeout, self._expire
            )

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            if not self.transport.is_closing():
                self.transport.close()

    return Protocol
