"""The reader's own words in a reply: no quoted text, no quote headers, no signature.

Deciding "did the reader ask to unsubscribe?" must look only at what the reader wrote: every
reply that quotes our footer quotes the word "unsubscribe". This module turns any message
(any charset, HTML-only or plain) into text and cuts away what the reader did not write.
"""

from __future__ import annotations

import re
from email.message import EmailMessage, Message
from html.parser import HTMLParser

# A line that starts the quoted original in Outlook, Apple Mail, Gmail "forward" and friends.
_SEPARATOR = re.compile(
    r"""^\s*(
        -{2,}\s*(original\s+message|ursprüngliche\s+nachricht|message\s+d'origine|
                 mensaje\s+original|messaggio\s+originale|oorspronkelijk\s+bericht|
                 mensagem\s+original|originalmeddelande|opprinnelig\s+melding|
                 forwarded\s+message|message\s+transféré|weitergeleitete\s+nachricht|
                 mensaje\s+reenviado|messaggio\s+inoltrato|doorgestuurd\s+bericht|
                 原始邮件|元のメッセージ|転送メッセージ)\s*-{2,}
      | begin\s+forwarded\s+message:
      | _{20,} | -{20,}
      | \*?(reply|répondre)\s+above\s+this\s+line\*?
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)

# "From:" lines of an Outlook-style header block, in the languages Outlook ships.
_BLOCK_FROM = re.compile(
    r"^\s*\*?(from|de|von|da|van|från|fra|od|от|差出人|发件人|寄件者|보낸\s*사람)\s?\*?\s?[:：]",
    re.IGNORECASE,
)
_BLOCK_FIELD = re.compile(
    r"""^\s*\*?(sent|date|to|cc|subject|envoyé(\s+le)?|date|à|objet|gesendet|datum|an|betreff|
        enviado|fecha|para|asunto|inviato|data|a|oggetto|verzonden|aan|onderwerp|assunto|
        skickat|till|ämne|sendt|til|emne|送信日時|宛先|件名|发送时间|收件人|主题|
        날짜|받는\s*사람|제목)\s?\*?\s?[:：]""",
    re.IGNORECASE | re.VERBOSE,
)

# The verb of an "On <date>, <name> wrote:" line in common languages.
_WROTE = re.compile(
    r"""(\bwrote|\ba\s+écrit|\bschrieb|\bescribió|\bha\s+scritto|\bscrisse|\bschreef|
        \bescreveu|\bskrev|\bkirjoitti|\bnapisał(\(a\))?|\bнаписал(\(а\))?|\bwrites|
        写道|のメッセージ|님이\s*작성)""",
    re.IGNORECASE | re.VERBOSE,
)
# Japanese and Korean clients: "2024年3月5日(火) 10:00 山田 <a@example.jp>:".
_CJK_HEADER = re.compile(r"^\s*\d{4}\s*[年/.-]\s*\d{1,2}\s*[月/.-].*<[^>]+@[^>]+>\s*[:：]\s*$")

_MOBILE_SIGNOFF = re.compile(
    r"""^\s*(sent\s+from\s+my\s+\S+(\s+\S+){0,3}|sent\s+from\s+(yahoo\s+)?mail\s+for\s+\S+
        |sent\s+from\s+outlook(\s+for\s+\S+)?|get\s+outlook\s+for\s+\S+
        |envoyé\s+de\s+mon\s+\S+|von\s+meinem\s+\S+(\s+\S+)?\s+gesendet|enviado\s+desde\s+mi\s+\S+
        |inviato\s+da(l\s+mio)?\s+\S+|verzonden\s+(vanaf|met)\s+(mijn\s+)?\S+
        |enviado\s+do\s+meu\s+\S+|\S+から送信)\s*$""",
    re.IGNORECASE | re.VERBOSE,
)

QUOTE_MARK = "-----Original Message-----"


def strip_reply(text: str) -> str:
    """The lines the reader wrote, in order: quotes, quote headers and signatures removed.

    Top-posted replies keep what is above the quote; bottom-posted and interleaved replies keep
    the reader's lines between `>` blocks. An Outlook header block or separator ends the reply.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    in_signature = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if _SEPARATOR.match(line) or _is_header_block(lines, i):
            break
        header_len = _quote_header_length(lines, i)
        if header_len:
            nxt = _next_nonblank(lines, i + header_len)
            if nxt is None or not lines[nxt].lstrip().startswith(">"):
                break  # the quote is not marked with ">": everything below it is quoted
            i += header_len
            in_signature = False
            continue
        if line.lstrip().startswith(">"):
            in_signature = False  # a reader's signature ends where the quote resumes
            i += 1
            continue
        if line.rstrip() in ("--", "-- ", "—") or line == "-- ":
            in_signature = True
        elif not in_signature and not _MOBILE_SIGNOFF.match(line):
            kept.append(line.rstrip())
        i += 1
    return _trim_blank(kept)


def _quote_header_length(lines: list[str], i: int, *, max_span: int = 3) -> int:
    """How many lines (1-3) form an "On ... wrote:" header starting at line i; 0 if none."""
    for span in range(1, max_span + 1):
        # "Hi,\nOn ... wrote:": the header starts on the later line, not on the greeting.
        if span > 1 and _quote_header_length(lines, i + span - 1, max_span=1):
            return 0
        chunk = lines[i : i + span]
        if len(chunk) < span or (span > 1 and not chunk[-1].strip()):
            break
        joined = " ".join(part.strip() for part in chunk)
        if joined.startswith(">"):
            return 0
        if _CJK_HEADER.match(joined):
            return span
        ends_with_colon = joined.endswith((":", "："))
        if ends_with_colon and _WROTE.search(joined) and re.search(r"[\d@]", joined):
            return span
    return 0


def _is_header_block(lines: list[str], i: int) -> bool:
    """`From:` followed within four lines by two more header fields (Sent:, To:, Subject:...)."""
    if not _BLOCK_FROM.match(lines[i]):
        return False
    fields = sum(1 for line in lines[i + 1 : i + 6] if _BLOCK_FIELD.match(line))
    return fields >= 2


def _next_nonblank(lines: list[str], start: int) -> int | None:
    for j in range(start, len(lines)):
        if lines[j].strip():
            return j
    return None


def _trim_blank(lines: list[str]) -> str:
    text = "\n".join(lines).strip("\n")
    return re.sub(r"\n{3,}", "\n\n", text)


class _TextExtractor(HTMLParser):
    """HTML to plain text: block elements become line breaks, <blockquote> becomes "> "."""

    _BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}
        | {"pre", "hr", "section", "article", "header", "footer"}
    )
    _SKIP = frozenset(("style", "script", "head", "title"))
    # Client markup that starts the quoted original: Gmail, Thunderbird, Outlook, Yahoo.
    _QUOTE_START = re.compile(
        r"gmail_quote|moz-cite-prefix|divRplyFwdMsg|appendonsend|yahoo_quoted|OutlookMessageHeader"
    )
    _SIGNATURE = re.compile(r"gmail_signature|moz-signature")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = [""]
        self.depth = 0  # blockquote nesting
        self.skip: list[str] = []
        self.signature_depth: int | None = None
        self.open_tags: list[str] = []
        self.quote_started = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        marker = " ".join(value or "" for name, value in attrs if name in ("class", "id"))
        if tag in self._SKIP:
            self.skip.append(tag)
            return
        if tag not in ("br", "hr", "img", "meta", "link", "input"):
            self.open_tags.append(tag)
        if self.signature_depth is None and self._SIGNATURE.search(marker):
            self.signature_depth = len(self.open_tags)
        if not self.quote_started and self._QUOTE_START.search(marker):
            self.quote_started = True
            self._newline()
            self.lines[-1] = QUOTE_MARK
            self._newline()
        if tag == "blockquote":
            self._newline()
            self.depth += 1
        elif tag in self._BLOCK:
            self._newline()

    def handle_endtag(self, tag: str) -> None:
        if self.skip and tag == self.skip[-1]:
            self.skip.pop()
            return
        if tag in self.open_tags:
            while self.open_tags:
                popped = self.open_tags.pop()
                if self.signature_depth is not None and len(self.open_tags) < self.signature_depth:
                    self.signature_depth = None
                if popped == tag:
                    break
        if tag == "blockquote":
            self.depth = max(0, self.depth - 1)
            self._newline()
        elif tag in self._BLOCK:
            self._newline()

    def handle_data(self, data: str) -> None:
        if self.skip or self.signature_depth is not None:
            return
        text = re.sub(r"\s+", " ", data)
        if not text.strip() and not self.lines[-1]:
            return
        if not self.lines[-1] and self.depth:
            self.lines[-1] = "> " * self.depth
        self.lines[-1] += text

    def _newline(self) -> None:
        self.lines[-1] = self.lines[-1].strip() if not self.depth else self.lines[-1].rstrip()
        self.lines.append("")


def html_to_text(html: str) -> str:
    """Readable text from HTML with the stdlib parser; quoted parts keep a `>` prefix."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.replace("\xa0", " ").strip() for line in parser.lines]
    return _trim_blank(lines)


def part_text(part: Message) -> str:
    """A text part decoded from its transfer encoding and charset, never raising."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload() or "")
    charset = part.get_content_charset() or ""
    for candidate in (charset, "utf-8", "cp1252"):
        if not candidate:
            continue
        try:
            return payload.decode(_codec(candidate))
        except (LookupError, UnicodeDecodeError):
            continue
    return payload.decode("utf-8", errors="replace")


def _codec(charset: str) -> str:
    # Mail in the wild labels Shift_JIS and GB2312 text loosely; the supersets decode both.
    aliases = {"shift_jis": "cp932", "x-sjis": "cp932", "sjis": "cp932", "gb2312": "gb18030"}
    return aliases.get(charset.lower(), charset)


def body_text(message: Message) -> str:
    """The message's main text: the first text/plain part, else its HTML as text.

    Attachments and enclosed messages (message/rfc822) are not part of what the reader wrote.
    """
    plain: str | None = None
    html: str | None = None
    for part in _body_parts(message):
        kind = part.get_content_type()
        if kind == "text/plain" and plain is None:
            plain = part_text(part)
        elif kind == "text/html" and html is None:
            html = part_text(part)
    if plain is not None and plain.strip():
        return plain
    if html is not None:
        return html_to_text(html)
    return plain or ""


def _body_parts(message: Message) -> list[Message]:
    if message.is_multipart():
        parts: list[Message] = []
        for sub in message.get_payload():
            if not isinstance(sub, Message) or sub.get_content_type() == "message/rfc822":
                continue
            if sub.get_content_disposition() == "attachment":
                continue
            parts.extend(_body_parts(sub))
        return parts
    return [message]


def own_text(message: EmailMessage | Message) -> str:
    """What the reader of a reply wrote themselves."""
    return strip_reply(body_text(message))
