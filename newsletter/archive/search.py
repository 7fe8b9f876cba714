"""The archive's full-text search: a lunr index built here, searched by lunr.js in the page.

lunr (lunr.py, a port of lunr.js) builds the index at archive time; `search-index.js` holds
it, serialised, with each issue's title, number, date, summary and plain text (for the
passage shown under a result). It is a script, not a .json file: browsers refuse fetch() from
file://, not <script src>, so search works from the filesystem and under any sub-path.
lunr.js (MIT, vendored as newsletter/vendor/lunr.min.js, 2.3.9: the version whose index
format lunr.py writes) loads the index and ranks the results (BM25, field boosts, stemming).

lunr.py's own tokenizer and pipeline cost ~20 ms per 1,000 words (a character loop, then
trimmer, stop-word filter and Porter stemmer per word). Words repeat, so each distinct word
goes through lunr's trimmer, stop-word filter and stemmer once (memoised) and the builder gets
the finished terms; the file is produced only when a searchable field of some issue changed.
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
from lunr.builder import Builder
from lunr.field_ref import FieldRef
from lunr.stemmer import porter_stemmer
from lunr.stop_word_filter import stop_word_filter
from lunr.token import Token
from lunr.trimmer import trimmer

LIBRARY = "lunr.min.js"
# Title and topics say what an issue is about; a word there outranks one in the body.
FIELDS = ({"field_name": "t", "boost": 10}, {"field_name": "k", "boost": 5},
          {"field_name": "s", "boost": 3}, {"field_name": "b", "boost": 1})  # fmt: skip
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


class _TermsBuilder(Builder):  # type: ignore[misc]
    """lunr's Builder, given each field as its finished terms.

    `add_terms` does what `Builder.add` does after its tokenizer and pipeline, counting each
    distinct term once instead of making a Token with a deep-copied metadata dict per word
    (two thirds of the time left). tests/test_archive_search.py checks that the index is
    identical to the one lunr.py builds its own way."""

    def add_terms(self, ref: str, fields: dict[str, list[str]]) -> None:
        self._documents[ref] = {}
        self.document_count += 1
        for field_name in self._fields:
            field_terms = Counter(fields[field_name])  # in first-seen order, as lunr counts
            field_ref = str(FieldRef(ref, field_name))
            self.field_term_frequencies[field_ref] = field_terms
            self.field_lengths[field_ref] = len(fields[field_name])
            for term in field_terms:
                posting = self.inverted_index.get(term)
                if posting is None:
                    posting = {name: {} for name in self._fields}
                    posting["_index"] = self.term_index
                    self.term_index += 1
                    self.inverted_index[term] = posting
                posting[field_name].setdefault(ref, {})  # no metadata is kept


def build_index(docs: Sequence[SearchDoc]) -> dict[str, Any]:
    """The serialised lunr index of `docs` (what lunr.Index.load reads)."""
    builder = _TermsBuilder()
    builder.search_pipeline.add(_stemmer)
    builder.ref("ref")
    for field in FIELDS:
        builder.field(**field)
    if not docs:
        # A new publication has nothing sent yet; lunr.py divides by the document count.
        return {
            "version": lunr.__TARGET_JS_VERSION__,
            "fields": [str(field["field_name"]) for field in FIELDS],
            "fieldVectors": [],
            "invertedIndex": [],
            "pipeline": ["stemmer"],
        }
    for doc in docs:
        fields = {"t": doc.title, "k": doc.keywords, "s": doc.summary, "b": doc.text}
        builder.add_terms(doc.path, {name: terms(text) for name, text in fields.items()})
    index: dict[str, Any] = builder.build().serialize()
    return index


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
