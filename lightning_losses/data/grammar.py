"""A small probabilistic grammar: the NLP recipe's bundled, offline, licence-free corpus.

The grammar has known structure a tiny causal LM can learn in minutes: subject–verb number
agreement (`the cat sleeps` / `the cats sleep`), adjective chains, prepositional phrases,
relative clauses and embedded `that`-clauses (bounded recursion), and documents whose
sentences share a topic noun. Generation is deterministic in the seed, so "bundling" the corpus
means bundling this generator (a few KB) rather than megabytes of text.

Example:
    >>> from lightning_losses.data.grammar import generate_corpus
    >>> text = generate_corpus(num_docs=2, seed=0)
    >>> text.count("\\n\\n") >= 1 and text.endswith("\\n")
    True
"""

from __future__ import annotations

import random

__all__ = ["GRAMMAR_NOUNS", "generate_corpus", "generate_document", "generate_sentence"]

# (singular, plural) pairs; agreement is the structure the model has to learn.
GRAMMAR_NOUNS = [
    ("cat", "cats"),
    ("dog", "dogs"),
    ("child", "children"),
    ("farmer", "farmers"),
    ("bird", "birds"),
    ("teacher", "teachers"),
    ("river", "rivers"),
    ("king", "kings"),
    ("sailor", "sailors"),
    ("wolf", "wolves"),
    ("mouse", "mice"),
    ("baker", "bakers"),
    ("garden", "gardens"),
    ("ship", "ships"),
    ("mountain", "mountains"),
    ("city", "cities"),
    ("doctor", "doctors"),
    ("horse", "horses"),
    ("painter", "painters"),
    ("queen", "queens"),
]
_TRANSITIVE = [
    ("sees", "see"),
    ("likes", "like"),
    ("follows", "follow"),
    ("finds", "find"),
    ("helps", "help"),
    ("watches", "watch"),
    ("remembers", "remember"),
    ("carries", "carry"),
    ("visits", "visit"),
    ("paints", "paint"),
]
_INTRANSITIVE = [
    ("sleeps", "sleep"),
    ("runs", "run"),
    ("sings", "sing"),
    ("waits", "wait"),
    ("laughs", "laugh"),
    ("works", "work"),
    ("falls", "fall"),
    ("shines", "shine"),
]
_SAY = [("says", "say"), ("thinks", "think"), ("knows", "know"), ("hopes", "hope")]
_ADJ = [
    "old",
    "young",
    "small",
    "big",
    "quiet",
    "happy",
    "brave",
    "green",
    "dark",
    "clever",
    "tired",
    "gentle",
]
_PREP = ["near", "behind", "under", "beside", "across", "with"]
_ADV = ["slowly", "quickly", "today", "again", "often", "never", "always"]
_DET_SG = ["the", "a", "every", "this", "that"]
_DET_PL = ["the", "some", "many", "these", "those", "two", "three"]


def _noun_phrase(rng: random.Random, plural: bool, depth: int, topic: int | None) -> str:
    idx = topic if topic is not None and rng.random() < 0.4 else rng.randrange(len(GRAMMAR_NOUNS))
    words = [rng.choice(_DET_PL if plural else _DET_SG)]
    while rng.random() < 0.35 and len(words) < 3:
        words.append(rng.choice(_ADJ))
    words.append(GRAMMAR_NOUNS[idx][1 if plural else 0])
    if depth < 2 and rng.random() < 0.15:
        words += [rng.choice(_PREP), _noun_phrase(rng, rng.random() < 0.4, depth + 1, None)]
    elif depth < 2 and rng.random() < 0.12:
        # Relative clause: the verb agrees with the *head* noun, across the clause.
        words += ["who" if rng.random() < 0.5 else "that", _verb_phrase(rng, plural, depth + 1)]
    return " ".join(words)


def _verb_phrase(rng: random.Random, plural: bool, depth: int, topic: int | None = None) -> str:
    k = 1 if plural else 0
    u = rng.random()
    if u < 0.45:
        out = [rng.choice(_TRANSITIVE)[k], _noun_phrase(rng, rng.random() < 0.4, depth + 1, topic)]
    elif u < 0.85 or depth >= 2:
        out = [rng.choice(_INTRANSITIVE)[k]]
    else:
        out = [rng.choice(_SAY)[k], "that", _clause(rng, depth + 1, topic)]
    if rng.random() < 0.25:
        out.append(rng.choice(_ADV))
    return " ".join(out)


def _clause(rng: random.Random, depth: int, topic: int | None) -> str:
    plural = rng.random() < 0.4
    return f"{_noun_phrase(rng, plural, depth, topic)} {_verb_phrase(rng, plural, depth, topic)}"


def generate_sentence(rng: random.Random, topic: int | None = None) -> str:
    """One sentence (capitalised, ending with a period).

    Args:
        rng: the random source.
        topic: index into `GRAMMAR_NOUNS` that noun phrases prefer, or `None`.

    Returns:
        The sentence.
    """
    s = _clause(rng, 0, topic)
    if rng.random() < 0.15:
        s += " and " + _clause(rng, 1, topic)
    return s[0].upper() + s[1:] + "."


def generate_document(rng: random.Random, min_sentences: int = 3, max_sentences: int = 8) -> str:
    """A paragraph of sentences sharing a topic noun.

    Args:
        rng: the random source.
        min_sentences: fewest sentences.
        max_sentences: most sentences.

    Returns:
        The paragraph (one line).
    """
    topic = rng.randrange(len(GRAMMAR_NOUNS))
    n = rng.randint(min_sentences, max_sentences)
    return " ".join(generate_sentence(rng, topic) for _ in range(n))


def generate_corpus(num_docs: int = 3000, seed: int = 0) -> str:
    """`num_docs` paragraphs separated by blank lines (about 330 characters per document).

    Args:
        num_docs: number of documents.
        seed: generator seed (the corpus is a pure function of it).

    Returns:
        The corpus, ending with a newline.
    """
    rng = random.Random(seed)
    return "\n\n".join(generate_document(rng) for _ in range(num_docs)) + "\n"
