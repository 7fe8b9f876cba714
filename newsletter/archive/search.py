"""The archive's full-text search: a lunr index built here, searched by lunr.js in the page.

lunr (lunr.py, a port of lunr.js) builds the index at archive time; `search-index.js` holds
it, serialised, with each issue's title, number, date, summary and plain text (for the
passage shown under a result). It is a script, not a .json file: browsers refuse fetch() from
file://, not <script src>, so search works from the filesystem and under any sub-path.
lunr.js (MIT, vendored as newsletter/vendor/lunr.min.js, 2.3.9: the version whose index
format lunr.py writes) loads the index and ranks the results (BM25, field boosts, stemming).

lunr.py's own tokenizer and pipeline cost ~20 ms per 1,000 words (a character loop, then
trimmer, stop-word filter and Porter stemmer per word). Words repeat, so each distinct word
goes through lunr's trimmer, stop-word filter and stemmer once (memoised); each body's terms
are worked out when its Markdown runs and kept in the archive cache with it (`joined_terms`),
and `build_index` computes lunr's index from the finished terms. The file is produced only
when a searchable field of some issue changed.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import lunr
from lunr.idf import idf as lunr_idf
from lunr.stemmer import porter_stemmer
from lunr.stop_word_filter import stop_word_filter
from lunr.token import Token
from lunr.trimmer import trimmer

LIBRARY = "lunr.min.js"
# Title and topics say what an issue is about; a word there outranks one in the body.
FIELDS: tuple[dict[str, Any], ...] = (
    {"field_name": "t", "boost": 10}, {"field_name": "k", "boost": 5},
    {"field_name": "s", "boost": 3}, {"field_name": "b", "boost": 1},
)  # fmt: skip
_TAG = re.compile(r"<[^>]+>")
_SEPARATOR = re.compile(r"[ \t\n\r\f\v\xa0-]+")  # lunr.py's tokenizer splits on these
_BLOCK_END = re.compile(r"</(?:p|li|h[1-6]|td|th|pre|blockquote|dd|dt)>|<br\s*/?>", re.I)


@dataclass(frozen=True)
class SearchDoc:
    """One issue as the search sees it."""

    path: str  # site path of the issue page: the result's link and the index's ref
    title: str
    number: int
    date: str  # as shown
    summary: str
    keywords: str  # topics and headings
    text: str  # the body as plain text
    # joined_terms(text), when the caller has it already (the archive cache keeps it)
    body_terms: str | None = None

    def record(self) -> dict[str, Any]:
        return {"t": self.title, "n": self.number, "d": self.date, "s": self.summary,
                "x": self.text}  # fmt: skip


def plain_text(fragment: str) -> str:
    """Sanitised body HTML -> one line of text: blocks end with a space, inline tags
    (<strong>, <a>) vanish without one, so "<b>word</b>:" stays "word:"."""
    return " ".join(html.unescape(_TAG.sub("", _BLOCK_END.sub(" ", fragment))).split())


@functools.lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    return str(porter_stemmer.stem(word))


def _stemmer(token: Token, i: int | None = None, tokens: list[Token] | None = None) -> Token:
    token.string = _stem(token.string)
    return token


# Serialised under lunr.js's own name, so the page runs its own (identical) stemmer on queries.
_stemmer.label = "stemmer"  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=1 << 16)
def _index_term(word: str) -> str:
    """One lower-case word through lunr's indexing pipeline; "" when it is dropped."""
    token = trimmer(Token(word))
    if not stop_word_filter(token):
        return ""
    return str(_stemmer(token))


def terms(text: str) -> list[str]:
    """What lunr.js would index for `text`: its tokenizer, trimmer, stop words, stemmer."""
    found = (_index_term(word) for word in _SEPARATOR.split(text.lower()) if word)
    return [term for term in found if term]


def joined_terms(text: str) -> str:
    """`terms(text)` in the form the archive cache keeps: one string, a term a line (the
    tokenizer splits on newlines, so no term holds one). Loading it and splitting it again
    costs a tenth of analysing the text. The cache keys bodies by their Markdown, not by this
    analysis: a change to it (lunr's pipeline, the separators) bumps write.ARCHIVE_VERSION."""
    return "\n".join(terms(text))


def _counted(joined: str) -> tuple[dict[str, int], int]:
    """Each distinct term with its count, in first-seen order (the order lunr counts them,
    which decides the term numbers), and how many terms the field has."""
    found = joined.split("\n") if joined else []
    return dict(Counter(found)), len(found)


# lunr's BM25 parameters (lunr.Builder's and lunr.js's defaults).
_K1 = 1.2
_B = 0.75
_NO_METADATA: dict[str, Any] = {}  # lunr keeps a metadata object per posting; ours stay empty


def build_index(docs: Sequence[SearchDoc]) -> dict[str, Any]:
    """The serialised lunr index of `docs` (what lunr.Index.load reads), computed directly.

    Exactly what lunr.py's Builder writes (tests/test_archive_search.py compares them) without
    its per-word Tokens and its vectors' one-element-at-a-time sorted inserts, which made a
    1,000-issue index cost two seconds. Every score depends on every document (the term
    frequencies across documents, the average field length) and term numbers on first-seen
    order, so the whole index is computed again whenever any searchable text changed."""
    names = [str(field["field_name"]) for field in FIELDS]
    empty = {
        "version": lunr.__TARGET_JS_VERSION__,
        "fields": names,
        "fieldVectors": [],
        "invertedIndex": [],
        "pipeline": ["stemmer"],
    }
    if not docs:
        return empty  # a new publication has nothing sent yet: no average length to take
    counted = [_fields(doc) for doc in docs]
    postings: dict[str, dict[str, Any]] = {}
    number: dict[str, int] = {}  # each term's position in the vectors, in first-seen order
    for doc, fields in zip(docs, counted, strict=True):
        for name in names:
            for term in fields[name][0]:
                posting = postings.get(term)
                if posting is None:
                    posting = postings[term] = {field: {} for field in names}
                    posting["_index"] = number[term] = len(number)
                posting[name][doc.path] = _NO_METADATA
    count = len(docs)
    average = {name: sum(fields[name][1] for fields in counted) / count for name in names}
    idf = {term: float(lunr_idf(posting, count)) for term, posting in postings.items()}
    vectors: list[list[Any]] = []
    for doc, fields in zip(docs, counted, strict=True):
        for field in FIELDS:
            name, boost = str(field["field_name"]), float(field["boost"])
            frequencies, length = fields[name]
            elements: list[float] = []
            if frequencies:  # no term, no score: the average may be 0 (no issue has topics)
                norm = _K1 * (1 - _B + _B * (length / average[name]))
                # lunr.py's expression, operation for operation: the rounded scores match.
                scored = sorted(
                    (number[term], round(idf[term] * ((_K1 + 1) * tf) / (norm + tf) * boost, 3))
                    for term, tf in frequencies.items()
                )
                elements = [value for pair in scored for value in pair]
            vectors.append([f"{name}/{doc.path}", elements])
    inverted = [[term, postings[term]] for term in sorted(postings)]
    return {**empty, "fieldVectors": vectors, "invertedIndex": inverted}


def _fields(doc: SearchDoc) -> dict[str, tuple[dict[str, int], int]]:
    body = doc.body_terms if doc.body_terms is not None else joined_terms(doc.text)
    fields = {"t": doc.title, "k": doc.keywords, "s": doc.summary}
    return {**{name: _counted(joined_terms(text)) for name, text in fields.items()},
            "b": _counted(body)}  # fmt: skip


def records_json(docs: Sequence[SearchDoc]) -> str:
    """What the page shows of each result, by ref; also the fingerprint of the index."""
    payload = {doc.path: doc.record() for doc in docs}
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":"))


def search_script(docs: Sequence[SearchDoc]) -> bytes:
    """search-index.js: `window.NEWSLETTER_SEARCH = {index, docs}`."""
    index = json.dumps(build_index(docs), ensure_ascii=True, separators=(",", ":"))
    return f'window.NEWSLETTER_SEARCH = {{"index":{index},"docs":{records_json(docs)}}};\n'.encode()


def library() -> bytes:
    """The vendored lunr.js, copied into the archive next to search.js."""
    return (resources.files("newsletter") / "vendor" / LIBRARY).read_bytes()
