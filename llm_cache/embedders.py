"""Where the semantic tier's vectors come from (llm_cache_semantic_embedder).

- `local`: WordLlama (static token embeddings, 256 dimensions) from the weights its wheel ships,
  so nothing is downloaded at run time; a short turn embeds in well under a millisecond.
- a URL: an OpenAI-compatible `/v1/embeddings` or Ollama `/api/embed` endpoint. The request is
  sent through this proxy itself, so it is cached like any other call, appears in mitmweb, and gets
  the real key from llm_cache_upstream_keys.

Both are synchronous: the semantic tier calls them on a thread, off the event loop. The vectors a
cache compares are only those of the same embedder (its `name` is stored with each vector).
"""

import logging
import threading
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from llm_cache import through_proxy
from llm_cache.similarity import unit

logger = logging.getLogger(__name__)

LOCAL = "local"
_WEIGHTS = "l2_supercat_256"  # the one WordLlama model its wheel carries


class Embedder(Protocol):
    name: str

    def embed(self, text: str) -> np.ndarray:
        """The unit vector of a text; raises on any failure."""
        ...


class LocalEmbedder:
    name = f"wordllama:{_WEIGHTS}"

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the weights (~1 s, once): done on a thread when the tier is turned on."""
        with self._lock:
            if self._model is not None:
                return
            # WordLlama.load() looks for its tokenizer in a folder its wheel does not have, then tries
            # the network: the bundled files are opened directly instead.
            import wordllama
            from safetensors import safe_open
            from tokenizers import Tokenizer
            from wordllama.inference import WordLlamaInference

            root = Path(wordllama.__file__).parent
            tokenizer = Tokenizer.from_file(str(root / "tokenizers" / "l2_supercat_tokenizer_config.json"))
            with safe_open(str(root / "weights" / f"{_WEIGHTS}.safetensors"), framework="np", device="cpu") as f:
                weights = f.get_tensor("embedding.weight")
            self._model = WordLlamaInference(weights, tokenizer, binary=False)

    def embed(self, text: str) -> np.ndarray:
        if self._model is None:
            self.load()
        return unit(self._model.embed([text], norm=True)[0])


class EndpointEmbedder:
    """An embeddings endpoint, called through the proxy (llm_cache.through_proxy)."""

    def __init__(self, url: str, model: str, proxy: str | None, ca_file: str | None) -> None:
        self.url, self.model, self.proxy, self.ca_file = url, model, proxy, ca_file
        self.name = name_of(url, model)

    def embed(self, text: str) -> np.ndarray:
        answer = through_proxy.post_json(self.url, {"model": self.model, "input": text}, self.proxy, self.ca_file)
        ollama = self.url.rstrip("/").endswith("/api/embed")
        return unit(answer["embeddings"][0] if ollama else answer["data"][0]["embedding"])


_LOCAL = LocalEmbedder()  # one per process: its weights are loaded once


def preload() -> None:
    """Load the local weights ahead of the first request (a thread's work: ~1 s)."""
    try:
        _LOCAL.load()
    except Exception as e:  # said again, and passed through, by the first request that needs it
        logger.warning("llm-cache: the local embedder cannot be loaded: %s", e)


def name_of(embedder: str, model: str) -> str:
    return _LOCAL.name if embedder == LOCAL else f"{embedder}#{model}"


def make(embedder: str, model: str, proxy: str | None, ca_file: str | None) -> Embedder:
    return _LOCAL if embedder == LOCAL else EndpointEmbedder(embedder, model, proxy, ca_file)


def parse(value: str) -> str:
    """llm_cache_semantic_embedder: `local`, or an http(s) URL. Raises ValueError. The URL is stored
    with every vector (it names the embedder): a credential in it is refused."""
    value = value.strip()
    if value.startswith(("http://", "https://")):
        parts = urlsplit(value)
        if parts.username or parts.password or parts.query:
            raise ValueError("llm_cache_semantic_embedder must not carry a credential (user:password@ or ?key=): "
                             "give the endpoint its key with llm_cache_upstream_keys")
        return value
    if value == LOCAL:
        return value
    raise ValueError("llm_cache_semantic_embedder must be local or the URL of an embeddings endpoint "
                     f"(https://api.openai.com/v1/embeddings, http://localhost:11434/api/embed); got {value!r}")
