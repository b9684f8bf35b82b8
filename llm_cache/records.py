"""The plain data a cache entry is made of, shared by the addon and the storage layer."""

from collections.abc import Iterable
from dataclasses import dataclass

# Never stored: they describe one connection or one encoding of the body, not the answer, or they
# are per-user state (cookies). Our own headers are added fresh on every answer.
_UNSTORED_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "trailer", "transfer-encoding", "upgrade", "content-length", "content-encoding", "set-cookie",
    "set-cookie2",
})


def storable_headers(fields: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [
        (name, value)
        for name, value in fields
        if name.lower() not in _UNSTORED_HEADERS
        and not name.lower().startswith("x-llm-cache")
        and _is_text(name + value)
    ]


def _is_text(value: str) -> bool:
    """Headers that are not valid UTF-8 (mitmproxy keeps their bytes as surrogates) are not kept."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Record:
    """A stored response. `body` is decoded: JSON, or the SSE bytes of a recorded stream."""

    key: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    is_stream: bool
    created_at: float
    family: str = ""
    host: str = ""
    model: str = ""
    request: bytes = b""  # the canonical request, for inspection
    input_tokens: int | None = None
    output_tokens: int | None = None
