"""Where a request carries credentials: the providers' own headers and query parameters, and any
header whose name says it holds one (`*-key`, `*-token`, `*-secret`, Azure's
`Ocp-Apim-Subscription-Key`). They never reach a key, the database or a log; the `credential`
scope keeps entries apart by an HMAC of all of them together."""

from collections.abc import Iterable

CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "x-goog-api-key"})
CREDENTIAL_QUERY_PARAMS = frozenset({"key", "api_key", "api-key", "access_token"})
_CREDENTIAL_SUFFIXES = ("-key", "_key", "-token", "_token", "-secret", "_secret")
# Named like credentials, but new on every request: the SDKs' retry key, a WebSocket handshake's nonce.
_NOT_CREDENTIALS = frozenset({"idempotency-key", "sec-websocket-key"})


def is_credential_header(name: str) -> bool:
    name = name.lower()
    return name in CREDENTIAL_HEADERS or (name.endswith(_CREDENTIAL_SUFFIXES) and name not in _NOT_CREDENTIALS)


def credentials(headers: Iterable[tuple[str, str]], query: Iterable[tuple[str, str]]) -> str:
    """Every credential a request carries, as one canonical text (names lower-cased, sorted), or
    "" when it carries none."""
    found = sorted(
        [(f"header:{name.lower()}", value) for name, value in headers if is_credential_header(name)]
        + [(f"query:{name.lower()}", value) for name, value in query if name.lower() in CREDENTIAL_QUERY_PARAMS]
    )
    return "\n".join(f"{name}={value}" for name, value in found)
