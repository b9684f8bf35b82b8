"""What embeddings blur, checked in words before a semantic answer is served (llm_cache_semantic_guard).

An embedding averages meaning: "summarise in 3 bullet points" and "in 5 bullet points", "delete the
file" and "don't delete the file", "Celsius to Fahrenheit" and "Fahrenheit to Celsius" come out
nearly identical, and an answer to one is wrong for the other.

- `marks`: the words that carry such differences must match, in order: numbers, negations, names
  (words either turn capitalises inside a sentence), code-like tokens (snake_case, dotted.names,
  paths, camelCase), quoted text, and the word after a direction (to, from, into, than, before, after,
  vs).
- `strict` (the default): the turns say the same thing in the same words. The words one has and the
  other lacks may only be framing ("please", "can you tell me how"), a typo of a word the other has
  (diffrence / difference), or a spelling (summarise / summarize); and the words they share come in
  the same order. Antonyms, swapped entities, other tenses and other tasks never match; nor do
  paraphrases in other words, the price of serving no wrong answer.
- `off`: the vectors alone.

tests/unit/test_semantic.py measures each on a labelled set of pairs.
"""

import re
from enum import StrEnum


class Guard(StrEnum):
    STRICT = "strict"
    MARKS = "marks"
    OFF = "off"


def guard_allows(guard: Guard, a: str, b: str) -> bool:
    if guard is Guard.OFF:
        return True
    return same_marks(a, b) if guard is Guard.MARKS else same_words(a, b)


# Words that frame a question without changing it. Not tense (was, will), degree (too, much),
# reference (this, that) or condition (if): those change what is asked.
_FRAMING = frozenset("""
a an the please pls plz kindly could would can you u me i i'm im we my just quick quickly how what what's whats
which is are do does of about hey hi hello thanks thank sorry tell show give let know way mind help
""".split())
_NEGATIONS = frozenset({"not", "no", "never", "none", "nothing", "without", "nor", "cannot", "neither", "avoid",
                        "except", "dont", "don't", "doesnt", "doesn't", "isnt", "isn't", "cant", "can't", "wont",
                        "won't", "shouldnt", "shouldn't", "didnt", "didn't", "arent", "aren't", "wasnt", "wasn't"})
_DIRECTIONS = frozenset({"to", "from", "into", "than", "before", "after", "vs", "versus", "over", "under"})
_TOKEN = re.compile(r"`[^`]*`|\"[^\"]*\"|'[^'\s][^']*'(?!\w)|[\w./:@#+-]+(?:'\w+)?|[.!?;\n]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CODE = re.compile(r"\w+[_./:@#]\w+|[a-z]+[A-Z]\w*")
_SENTENCE_END = frozenset({".", "!", "?", ";", "\n"})
_WORD = re.compile(r"[\w'+#./:@-]+")


def marks(text: str, names: frozenset[str] = frozenset()) -> list[str]:
    """The words of a turn an embedding may not tell apart, in the order they appear. `names`: words
    (lower case) that are names wherever they stand, in any case (those the other turn capitalises)."""
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
        elif lowered in names or _is_name(word, sentence_start):
            found.append(lowered)
        elif after_direction and word.isalpha():
            found.append(lowered)
        after_direction = lowered in _DIRECTIONS
        sentence_start = False
    return found


def same_marks(a: str, b: str) -> bool:
    """The marks guard: both turns name the same numbers, negations, names, code and directions, in
    the same order. A name capitalised in one turn and not in the other is a name in both."""
    names = _names(a) | _names(b)
    return marks(a, names) == marks(b, names)


def _is_name(word: str, sentence_start: bool) -> bool:
    lowered = word.lower()
    return word[0].isupper() and not sentence_start and lowered not in _DIRECTIONS and lowered not in _FRAMING


def _names(text: str) -> frozenset[str]:
    found, sentence_start = set(), True
    for token in _TOKEN.findall(text):
        if token in _SENTENCE_END:
            sentence_start = True
            continue
        word = token.strip(".,:;!?()[]{}")
        if not word:
            continue
        if word[0].isalpha() and _is_name(word, sentence_start):
            found.add(word.lower())
        sentence_start = False
    return frozenset(found)


def same_words(a: str, b: str) -> bool:
    """The strict guard: what differs is framing or spelling, and the words the turns share (framing
    words too: "do you know me" is not "do I know you") come in the same order."""
    words_a, words_b = _words(a), _words(b)
    only_a, only_b = set(words_a) - set(words_b), set(words_b) - set(words_a)
    if not all(w in _FRAMING or any(_spelled_alike(w, v) for v in only_b) for w in only_a):
        return False
    if not all(w in _FRAMING or any(_spelled_alike(w, v) for v in only_a) for w in only_b):
        return False
    shared = set(words_a) & set(words_b)
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
    """A typo or a spelling, not another word: one edit apart (diffrence / difference, summarise /
    summarize), words of letters only (3.11 / 3.12 and app.py / api.py are other things) of 5 letters
    or more with the same first letter (cats / bats, lose / lost, affect / effect are other words),
    or a word of 3 and a framing word (teh / the). Not two edits: increase / decrease and ascending /
    descending are two apart."""
    if not (a.isalpha() and b.isalpha()):
        return False
    if a in _FRAMING or b in _FRAMING:
        if min(len(a), len(b)) < 3:
            return False
    elif min(len(a), len(b)) < 5 or a[0] != b[0]:
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
