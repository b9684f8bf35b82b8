"""How close two turns are: the cosine of their embeddings, and guards for what embeddings blur.

An embedding averages meaning: "summarise in 3 bullet points" and "in 5 bullet points", "delete the
file" and "don't delete the file", "Celsius to Fahrenheit" and "Fahrenheit to Celsius" come out
nearly identical, and an answer to one is wrong for the other. The guard compares the words that
carry such differences, in order: numbers, negations, names (capitalised words inside a sentence),
code-like tokens (snake_case, dotted.names, paths, camelCase), quoted text, and the word after a
direction (to, from, into, than, before, after, vs). Two turns whose marks differ never match,
however close their vectors are: that is the `marks` guard.

The `strict` guard (the default) also asks that the turns say the same thing in the same words: the
words one has and the other lacks may only be framing ("please", "can you tell me how"), a typo of
a word the other has (diffrence / difference), or a spelling (summarise / summarize), and the words
they share come in the same order. Antonyms (include / exclude), swapped entities and other tasks
then never match; nor do paraphrases in other words, the price of serving no wrong answer.
tests/unit/test_semantic.py measures each guard on a labelled set of pairs.
"""

import os
import re
from collections.abc import Sequence
from enum import StrEnum

# The proxy's numpy work is one small matrix-vector product per lookup: BLAS threads would only
# spin beside mitmproxy's own (1 ms of CPU more per lookup, measured). Set before numpy loads; a
# value the user set wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402  (after the environment above)

_NEGATIONS = frozenset({"not", "no", "never", "none", "nothing", "without", "nor", "cannot", "neither", "avoid",
                        "except", "dont", "don't", "doesnt", "doesn't", "isnt", "isn't", "cant", "can't", "wont",
                        "won't", "shouldnt", "shouldn't", "didnt", "didn't", "arent", "aren't", "wasnt", "wasn't"})
_DIRECTIONS = frozenset({"to", "from", "into", "than", "before", "after", "vs", "versus", "over", "under"})
_TOKEN = re.compile(r"`[^`]*`|\"[^\"]*\"|'[^'\s][^']*'(?!\w)|[\w./:@#+-]+(?:'\w+)?|[.!?;\n]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CODE = re.compile(r"\w+[_./:@#]\w+|[a-z]+[A-Z]\w*")
_SENTENCE_END = frozenset({".", "!", "?", ";", "\n"})
_NAME = "name:"


def marks(text: str) -> list[str]:
    """The words of a turn an embedding may not tell apart, in the order they appear."""
    found: list[str] = []
    sentence_start = True
    after_direction = False
    for token in _TOKEN.findall(text):
        if token in _SENTENCE_END:
            sentence_start, after_direction = True, False
            continue
        word = token.strip(".,:;!?()[]{}")
        lowered = word.lower()
        if not word:
            continue
        if token[0] in "`\"'" and len(token) > 2:
            found.append(token[1:-1].strip().lower())
        elif _NUMBER.search(word):
            found.extend(_NUMBER.findall(word))
        elif lowered in _NEGATIONS or lowered.endswith("n't"):
            found.append("not")
        elif _CODE.search(word):
            found.append(lowered)
        elif word[0].isupper() and not sentence_start and lowered not in _DIRECTIONS and lowered not in _FRAMING:
            found.append(_NAME + lowered)
        elif after_direction and word.isalpha():
            found.append(lowered)
        after_direction = lowered in _DIRECTIONS
        sentence_start = False
    return found


def same_marks(a: str, b: str) -> bool:
    """The guard: both turns name the same numbers, negations, names, code and directions, in the
    same order. A name capitalised in one and not the other still counts as the same."""
    return _comparable(marks(a), b) == _comparable(marks(b), a)


def _comparable(found: list[str], other: str) -> list[str]:
    """A name one turn capitalises and the other writes in lower case (Python / python) is not a
    difference: names both turns contain are left out; the rest must be equal, in order."""
    words = set(re.findall(r"[\w'-]+", other.lower()))
    return [mark for mark in found if not (mark.startswith(_NAME) and mark[len(_NAME):] in words)]


# Words that frame a question without changing it.
_FRAMING = frozenset("""
a an the please pls plz kindly could would can will you u me i i'm im we my just quick quickly how what what's whats
which is are do does of about hey hi hello thanks thank sorry if it's its too much trouble be so kind as wondering
was that this some tell show give let know way there mind help
""".split())
_WORD = re.compile(r"[\w'+#./:@-]+")


class Guard(StrEnum):
    STRICT = "strict"
    MARKS = "marks"
    OFF = "off"


def guard_allows(guard: Guard, a: str, b: str) -> bool:
    if guard is Guard.OFF:
        return True
    return same_marks(a, b) if guard is Guard.MARKS else same_words(a, b)


def same_words(a: str, b: str) -> bool:
    """The strict guard's words: what differs is framing or spelling, and the shared words keep their order."""
    words_a, words_b = _words(a), _words(b)
    only_a, only_b = set(words_a) - set(words_b), set(words_b) - set(words_a)
    if not all(w in _FRAMING or any(_spelled_alike(w, v) for v in only_b) for w in only_a):
        return False
    if not all(w in _FRAMING or any(_spelled_alike(w, v) for v in only_a) for w in only_b):
        return False
    shared = set(words_a) & set(words_b) - _FRAMING
    return _first_order(words_a, shared) == _first_order(words_b, shared)


def _words(text: str) -> list[str]:
    return [w.strip(".,:;!?'-") for w in _WORD.findall(text.lower()) if w.strip(".,:;!?'-")]


def _first_order(words: list[str], shared: set[str]) -> list[str]:
    seen: dict[str, None] = {}
    for word in words:
        if word in shared:
            seen.setdefault(word)
    return list(seen)


def _spelled_alike(a: str, b: str) -> bool:
    """One edit apart (diffrence / difference, summarise / summarize, teh / the), for words of 4
    letters or more, or a word of 3 and a framing word; only words of letters (3.11 / 3.12 and
    app.py / api.py are other things). Not two: increase / decrease and ascending / descending are
    two apart."""
    if not (a.isalpha() and b.isalpha()) or min(len(a), len(b)) < (3 if a in _FRAMING or b in _FRAMING else 4):
        return False
    return _edits(a, b, 1) is not None


def _edits(a: str, b: str, most: int) -> int | None:
    """The edit distance of a and b (a swap of two neighbours is one edit), or None when it is
    over `most` (stopped early: cheap for words)."""
    if abs(len(a) - len(b)) > most:
        return None
    before, previous = [0] * (len(b) + 1), list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb and ca != cb:  # a transposition
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) > most:
            return None
        before, previous = previous, current
    return previous[-1] if previous[-1] <= most else None


def unit(vector: Sequence[float] | np.ndarray) -> np.ndarray:
    """The vector scaled to length 1, as float32 (stored and compared in that form)."""
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("an embedding of length 0 or with non-finite values")
    return array / norm


def to_bytes(vector: np.ndarray) -> bytes:
    return vector.astype("<f4").tobytes()


def ranked(query: np.ndarray, matrix: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k rows of `matrix` (unit vectors) closest to `query`, closest first: (row, cosine). None
    when the dimensions differ (vectors of another model under the same embedder name)."""
    if not matrix.size or matrix.shape[1] != query.size:
        return []
    scores = matrix @ query
    order = np.argsort(-scores)[:k]
    return [(int(i), float(scores[int(i)])) for i in order]
