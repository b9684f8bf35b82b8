"""scripts/bench --semantic: what the semantic tier (llm_cache_semantic) costs.

The semantic proxy runs on its own copy of the pre-filled cache, to which this adds what a run
with the tier on would have recorded: the vector of each stored turn the semantic hits are answered
from (computed here by the tier's own code: llm_cache.turns, llm_cache.keys, the local embedder),
and the entry of the long-turn request. A request whose exact key is stored can only be recorded
again with `Cache-Control: no-cache`, and such a request skips the lookups, the semantic one with
them: it is recorded without a vector. The bench checks before measuring that the paraphrases are
answered `HIT-SEMANTIC`, which they are only when the vectors are where the tier looks.

Two semantic hits, both of a turn changed only in framing, case or punctuation (the strict guard):
- short turn: the hit request (a --body-kb system prompt, then a 2-word user turn), asked with
  "please" in front; its answer comes from the entry the exact hits read.
- long turn: a one-line system prompt, then a --body-kb user turn: the embedding of the whole of
  it is part of every such request.
"""

import time
from pathlib import Path
from typing import Any

import orjson

import cache_models
from llm_cache import batches, embedders, keys, similarity, turns
from llm_cache.endpoints import Family
from llm_cache.records import Embedded

SHORT_STORED = "bench hit"  # the exact hits' last turn
# "Bench hit!" passes the strict guard too, at 0.82 (a 2-word turn's punctuation moves the local
# embedder's cosine); this one is at 0.91, well over the default threshold (0.75).
SHORT_ASKED = "please bench hit"
LONG_TAIL_STORED, LONG_TAIL_ASKED = " Bench long hit.", " bench long hit!"


def long_turn_body(kb: int, asked: bool = False) -> bytes:
    """A chat body whose --body-kb is its last user turn (the stored one, or its paraphrase)."""
    text = ("You are a careful coding agent. Follow the repository's conventions. " * 400)[: kb * 1024]
    turn = ("Please: " + text + LONG_TAIL_ASKED) if asked else (text + LONG_TAIL_STORED)
    return orjson.dumps({"model": "gpt-4o-mini", "temperature": 0,
                         "messages": [{"role": "system", "content": "You are a careful coding agent."},
                                      {"role": "user", "content": turn}]})


def vector_row(body: bytes, entry_key: str, now: float) -> dict[str, Any]:
    """The cache_vector row the tier records with the entry of `body` sent to
    https://api.openai.com/v1/chat/completions (default key rules, no profile, the shared scope)."""
    turn = turns.last_turn(Family.OPENAI_CHAT, keys.parse_json(body))
    assert turn is not None
    target = keys.make_target("POST", "https", "api.openai.com", 443, "/v1/chat/completions", (), ())
    context = keys.cache_key(target, keys.body_digest(turn.context, family=Family.OPENAI_CHAT))
    embedder = embedders.make(embedders.LOCAL, "", None, None)
    embedded = Embedded(context, embedder.name, turn.text, similarity.to_bytes(embedder.embed(turn.text)))
    return batches.vector_row(entry_key, embedded, now)


def add_to_cache(db_file: Path, entries: list[dict[str, Any]], vectors: list[tuple[bytes, str]]) -> None:
    """Entry rows, then the vector of each (body, entry key)."""
    now = time.time()
    db = cache_models.open_database(f"sqlite:///{db_file}")
    with db.atomic():
        if entries:
            cache_models.CacheEntry.insert_many(entries).execute()
        cache_models.CacheVector.insert_many([vector_row(body, key, now) for body, key in vectors]).execute()
    db.close()


def counts(db_file: Path) -> tuple[int, int]:
    """(entries, vectors) in a cache file."""
    db = cache_models.open_database(f"sqlite:///{db_file}")
    found = cache_models.CacheEntry.select().count(), cache_models.CacheVector.select().count()
    db.close()
    return found
