"""`scripts/llm-cache semantic-eval`: how well the semantic tier would do with an embedder, on a
labelled set of pairs (JSON Lines of {"a", "b", "same"}; the default is the set the tests ship):
right and wrong hits, precision and recall per threshold and guard. Measure before turning the tier
on with another embedder or threshold, on pairs from your own traffic."""

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from llm_cache import embedders
from llm_cache.guards import Guard, guard_allows

PAIRS = Path(__file__).resolve().parents[1] / "tests" / "unit" / "data" / "semantic_pairs.jsonl"
THRESHOLDS = (0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.95)


class Quality(NamedTuple):
    threshold: float
    guard: Guard
    right: int  # hits on pairs that mean the same
    wrong: int  # hits on pairs that do not
    paraphrases: int

    @property
    def precision(self) -> float:
        return self.right / (self.right + self.wrong) if self.right + self.wrong else 1.0

    @property
    def recall(self) -> float:
        return self.right / self.paraphrases if self.paraphrases else 0.0


def read_pairs(path: Path) -> list[dict[str, Any]]:
    pairs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not pairs or not all(isinstance(p.get("a"), str) and isinstance(p.get("b"), str)
                            and isinstance(p.get("same"), bool) for p in pairs):
        raise ValueError(f"{path}: want JSON Lines of {{\"a\": text, \"b\": text, \"same\": true|false}}")
    return pairs


def scores(pairs: Sequence[dict[str, Any]], embedder: embedders.Embedder) -> list[float]:
    return [float(embedder.embed(pair["a"]) @ embedder.embed(pair["b"])) for pair in pairs]


def quality(pairs: Sequence[dict[str, Any]], scored: Sequence[float], threshold: float, guard: Guard) -> Quality:
    hits = [pair for pair, score in zip(pairs, scored, strict=True)
            if score >= threshold and guard_allows(guard, pair["a"], pair["b"])]
    right = sum(pair["same"] for pair in hits)
    return Quality(threshold, guard, right, len(hits) - right, sum(pair["same"] for pair in pairs))


def run(args: argparse.Namespace) -> int:
    pairs = read_pairs(Path(args.pairs))
    # An endpoint is called through the proxy the environment names (and with the CA it trusts),
    # where llm_cache_upstream_keys gives it its key.
    embedder = embedders.make(args.embedder, args.model, os.environ.get("HTTPS_PROXY"), os.environ.get("SSL_CERT_FILE"))
    scored = scores(pairs, embedder)
    rows = [quality(pairs, scored, threshold, guard) for guard in Guard for threshold in THRESHOLDS]
    if args.json:
        print(json.dumps([{"threshold": q.threshold, "guard": q.guard.value, "right": q.right, "wrong": q.wrong,
                           "paraphrases": q.paraphrases, "precision": round(q.precision, 4),
                           "recall": round(q.recall, 4)} for q in rows]))
        return 0
    print(f"{len(pairs)} pairs ({rows[0].paraphrases} that mean the same), embedder {embedder.name}")
    print(f"{'guard':<8}{'threshold':>10}{'right':>7}{'wrong':>7}{'precision':>11}{'recall':>8}")
    for q in rows:
        print(f"{q.guard.value:<8}{q.threshold:>10.2f}{q.right:>7}{q.wrong:>7}{q.precision:>11.3f}{q.recall:>8.3f}")
    return 0
