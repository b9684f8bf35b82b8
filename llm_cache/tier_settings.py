"""The semantic and synthesis tiers' settings (llm_cache_semantic*, llm_cache_synthesis*), parsed
from their options; both off unless turned on. Raises ValueError with a message fit for the user."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm_cache import embedders
from llm_cache.guards import Guard


@dataclass(frozen=True)
class Semantic:
    embedder: str  # "local", or the URL of an embeddings endpoint
    model: str  # the endpoint's embedding model
    threshold: float  # the cosine a stored turn must reach to answer
    guard: Guard
    tool_results: bool  # a last turn of tool results may be answered too
    block_after: int  # reports of a wrong semantic answer after which an entry is never one again (0: never)


@dataclass(frozen=True)
class Synthesis:
    url: str  # an OpenAI-compatible chat completions endpoint
    model: str
    threshold: float  # the cosine a stored turn must reach to be given to the model
    top_k: int


def parse_semantic(options: Mapping[str, Any]) -> Semantic | None:
    if not options["semantic"]:
        return None
    return Semantic(
        embedder=embedders.parse(options["semantic_embedder"]),
        model=options["semantic_embedding_model"].strip(),
        threshold=parse_cosine("llm_cache_semantic_threshold", options["semantic_threshold"]),
        guard=_guard(options["semantic_guard"]),
        tool_results=options["semantic_tool_results"],
        block_after=_non_negative("llm_cache_semantic_block_after", options["semantic_block_after"]),
    )


def parse_synthesis(options: Mapping[str, Any], semantic: Semantic | None) -> Synthesis | None:
    if not options["synthesis"]:
        return None
    if semantic is None:
        raise ValueError("llm_cache_synthesis needs llm_cache_semantic: it answers from the semantic tier's neighbours")
    url, model = options["synthesis_url"].strip(), options["synthesis_model"].strip()
    if not url.startswith(("http://", "https://")) or not model:
        raise ValueError("llm_cache_synthesis needs llm_cache_synthesis_url (an OpenAI-compatible "
                         "/v1/chat/completions URL) and llm_cache_synthesis_model")
    top_k = options["synthesis_top_k"]
    if not 1 <= top_k <= 20:
        raise ValueError(f"llm_cache_synthesis_top_k must be 1 to 20; got {top_k}")
    return Synthesis(url=url, model=model, top_k=top_k,
                     threshold=parse_cosine("llm_cache_synthesis_threshold", options["synthesis_threshold"]))


def parse_cosine(option: str, value: str) -> float:
    """A similarity between 0 and 1, written as text ("0.85": mitmproxy's --set cannot parse floats)."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{option} must be a number from 0 to 1, such as 0.85; got {value!r}")
    return number


def _guard(value: str) -> Guard:
    try:
        return Guard(value.strip().lower())
    except ValueError:
        raise ValueError(f"llm_cache_semantic_guard must be one of {', '.join(g.value for g in Guard)}; "
                         f"got {value!r}") from None


def _non_negative(option: str, value: int) -> int:
    if value < 0:
        raise ValueError(f"{option} must be 0 or more; got {value}")
    return value
