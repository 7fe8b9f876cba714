"""The reader's own words: quotes, quote headers, signatures and HTML handled."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from newsletter.inbox.replytext import body_text, html_to_text, own_text, strip_reply


def test_top_post_keeps_only_the_text_above_an_on_wrote_header() -> None:
    text = (
        "Please unsubscribe me.\n\n"
        "On Tue, 7 Oct 2025 at 09:00, Leader Notes <news@example.com> wrote:\n"
        "> Hello\n> Unsubscribe: mailto:x\n"
    )
    assert strip_reply(text) == "Please unsubscribe me."


def test_bottom_post_keeps_the_reader_lines_between_quotes() -> None:
    text = (
        "On 07/10/2025 10:00, Leader Notes wrote:\n> first\n> unsubscribe here\n\n"
        "My answer.\n\n> more quote\n\nAnd more.\n\n-- \nGus\n"
    )
    assert strip_reply(text) == "My answer.\n\nAnd more."


@pytest.mark.parametrize(
    "header",
    [
        "On Tue, Oct 7, 2025 at 9:00 AM Leader Notes <news@example.com> wrote:",
        "Le mar. 7 oct. 2025 à 09:00, Leader Notes <news@example.com> a écrit :",
        "Am 07.10.2025 um 09:00 schrieb Leader Notes <news@example.com>:",
        "El mar, 7 oct 2025 a las 9:00, Leader Notes (<news@example.com>) escribió:",
        "Il giorno mar 7 ott 2025 alle ore 09:00 Leader Notes <news@example.com> ha scritto:",
        "Op di 7 okt 2025 om 09:00 schreef Leader Notes <news@example.com>:",
        "Em ter., 7 de out. de 2025 às 09:00, Leader Notes <news@example.com> escreveu:",
        "2025年10月7日(火) 9:00 Leader Notes <news@example.com>:",
    ],
)
def test_quote_headers_in_common_languages(header: str) -> None:
    text = f"Thanks!\n\n{header}\n\nQuoted without marks: unsubscribe here.\n"
    assert strip_reply(text) == "Thanks!"


def test_quote_header_split_over_lines_and_a_greeting_just_above() -> None:
    text = "Hi,\nOn Dec 16, 2011, at 12:47 PM, Corey Donohoe\n<reply@example.com>\nwrote:\n\n> x\n"
    assert strip_reply(text) == "Hi,"


def test_a_sentence_starting_with_on_is_not_a_header() -> None:
    text = "On your host you can run: telnet\n\nOn 9 Jan 2014, at 2:47, G wrote:\n\n> q\n"
    assert strip_reply(text) == "On your host you can run: telnet"


@pytest.mark.parametrize(
    "block",
    [
        "-----Original Message-----\nFrom: Leader Notes\nSent: Tuesday\nTo: me\nSubject: x\n",
        "________________________________\nFrom: Leader Notes <news@example.com>\nSent: Tue\n",
        "From: Leader Notes <news@example.com>\nSent: Tuesday 7 October\nTo: Me\nSubject: x\n",
        "-----Ursprüngliche Nachricht-----\nVon: Leader Notes\nGesendet: Dienstag\n",
        "De : Leader Notes\nEnvoyé le : mardi 7 octobre 2025\nÀ : moi\nObjet : x\n",
        "*From:* Leader Notes\n*Sent:* Tuesday\n*To:* me\n*Subject:* x\n",
    ],
)
def test_outlook_blocks_end_the_reply(block: str) -> None:
    assert strip_reply(f"Loved it.\n\n{block}\nunsubscribe\n") == "Loved it."


def test_signatures_and_mobile_signoffs_go_but_similar_sentences_stay() -> None:
    assert strip_reply("Yes please.\n\nSent from my iPhone\n") == "Yes please."
    assert strip_reply("Stop.\n-- \nJo Bloggs\nunsubscribe-me Ltd\n") == "Stop."
    kept = strip_reply("Hi\n\nSent from my desk, which is easier than my phone.\n")
    assert "Sent from my desk" in kept
    assert strip_reply("a fix -- not a signature\n") == "a fix -- not a signature"


def test_html_blockquote_becomes_quoted_text() -> None:
    html = (
        "<div>Great issue, thanks!</div><blockquote type='cite'><p>Hello</p>"
        "<p><a href='mailto:x'>Unsubscribe</a></p></blockquote>"
    )
    text = html_to_text(html)
    assert text.splitlines()[0] == "Great issue, thanks!"
    assert "> Unsubscribe" in text
    assert strip_reply(text) == "Great issue, thanks!"


def test_html_client_quote_containers_and_signatures() -> None:
    html = (
        "<html><head><style>p{color:red}</style></head><body><div>Remove me</div>"
        "<div class='gmail_signature'>Ann | Acme</div>"
        "<div id='divRplyFwdMsg'><b>From:</b> Leader Notes</div><div>Unsubscribe</div>"
        "</body></html>"
    )
    assert strip_reply(html_to_text(html)) == "Remove me"


def _message(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_charsets_latin1_shift_jis_and_a_wrong_label() -> None:
    latin = b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\nMerci de me d\xe9sabonner.\r\n"
    assert own_text(_message(latin)) == "Merci de me désabonner."
    sjis = "配信停止をお願いします。".encode("shift_jis")
    raw = b"Content-Type: text/plain; charset=Shift_JIS\r\n\r\n" + sjis + b"\r\n"
    assert own_text(_message(raw)) == "配信停止をお願いします。"
    mislabelled = b"Content-Type: text/plain; charset=x-unknown\r\n\r\nCaf\xc3\xa9\r\n"
    assert own_text(_message(mislabelled)) == "Café"


def test_body_text_prefers_plain_and_skips_attachments() -> None:
    msg = EmailMessage()
    msg.set_content("plain words")
    msg.add_alternative("<p>html words</p>", subtype="html")
    msg.add_attachment(b"unsubscribe", maintype="text", subtype="plain", filename="a.txt")
    assert body_text(msg).strip() == "plain words"
