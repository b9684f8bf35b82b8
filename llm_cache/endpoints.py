"""Which requests are LLM calls: recognised by path first (cheap), then confirmed by the body's shape.

Anything not recognised here is passed through untouched and never recorded.
"""

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Family(StrEnum):
    OPENAI_CHAT = "openai.chat"
    OPENAI_COMPLETIONS = "openai.completions"
    OPENAI_RESPONSES = "openai.responses"
    OPENAI_EMBEDDINGS = "openai.embeddings"
    ANTHROPIC_MESSAGES = "anthropic.messages"

    @property
    def provider(self) -> str:
        return self.value.split(".", 1)[0]


# Longest suffix first: "/chat/completions" must win over "/completions".
_PATH_SUFFIXES: tuple[tuple[str, Family], ...] = (
    ("/v1/messages", Family.ANTHROPIC_MESSAGES),
    ("/chat/completions", Family.OPENAI_CHAT),
    ("/completions", Family.OPENAI_COMPLETIONS),
    ("/responses", Family.OPENAI_RESPONSES),
    ("/embeddings", Family.OPENAI_EMBEDDINGS),
)

# The field that, next to "model", proves the body is the call the path says it is.
_SHAPE_FIELD: dict[Family, str] = {
    Family.OPENAI_CHAT: "messages",
    Family.OPENAI_COMPLETIONS: "prompt",
    Family.OPENAI_RESPONSES: "input",
    Family.OPENAI_EMBEDDINGS: "input",
    Family.ANTHROPIC_MESSAGES: "messages",
}

# Families whose response may be an SSE stream.
STREAMING_FAMILIES = frozenset(
    {Family.OPENAI_CHAT, Family.OPENAI_COMPLETIONS, Family.OPENAI_RESPONSES, Family.ANTHROPIC_MESSAGES}
)


def family_for(method: str, path: str, content_type: str) -> Family | None:
    """The endpoint family a request line points at, or None for traffic we leave alone."""
    if method != "POST":
        return None
    if content_type and "json" not in content_type.lower():
        return None
    route = path.split("?", 1)[0].rstrip("/")
    for suffix, family in _PATH_SUFFIXES:
        if route.endswith(suffix):
            return family
    return None


def has_expected_shape(family: Family, body: Any) -> bool:
    """True when a parsed request body looks like a call of this family (model + its main field)."""
    if not isinstance(body, Mapping):
        return False
    if not isinstance(body.get("model"), str):
        return False
    field = _SHAPE_FIELD[family]
    value = body.get(field)
    if field == "messages":
        return isinstance(value, list)
    return value is not None
