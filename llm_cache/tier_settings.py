"""The semantic and synthesis tiers' settings (llm_cache_semantic*, llm_cache_synthesis*), as
llm_cache.policy parses them from their options; both off unless turned on."""

from dataclasses import dataclass

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
