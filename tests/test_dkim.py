"""newsletter.mail.dkim: real signatures verified by dkimpy against the matching public key."""

from __future__ import annotations

import base64
import email
import itertools
import shutil
import subprocess
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import dkim as dkimpy
import pytest

from newsletter.errors import ConfigError
from newsletter.mail import canonical, dkim
from newsletter.mail.message import IssueMessage
from newsletter.settings import Config, DkimConfig, WebConfig

REQUIRED = {
    b"from",
    b"subject",
    b"date",
    b"message-id",
    b"to",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
}


@dataclass(frozen=True)
class Reader:
    email: str
    first_name: str | None
    token: str


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_der: bytes

    def dns(self, name: bytes, timeout: int = 5) -> bytes:
        assert name == b"news2026._domainkey.example.com."
        return b"v=DKIM1; k=rsa; p=" + base64.b64encode(self.public_der)


def _generate(folder: Path) -> KeyPair:
    private = folder / "dkim.pem"
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor openssl is installed")
        subprocess.run(
            ["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True
        )
        der = subprocess.run(
            ["openssl", "pkey", "-in", str(private), "-pubout", "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        return KeyPair(private, der)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(private, der)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return _generate(tmp_path_factory.mktemp("dkim"))


@pytest.fixture
def config(keys: KeyPair, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("TEST_DKIM_KEY", str(keys.private_path))
    return Config(
        root=Path("/nonexistent"),
        name="Leader Notes",
        sender="Leader Notes <news@example.com>",
        reply_to="news@example.com",
        web=WebConfig(public_url="https://example.com/web/"),
        dkim=DkimConfig(selector="news2026", domain="example.com", private_key_env="TEST_DKIM_KEY"),
    )


def issue_bytes(config: Config, subject: str = "January notes") -> bytes:
    skeleton = IssueMessage(
        config, slug="2026-01-notes", subject=subject, date=datetime(2026, 1, 6, 9, tzinfo=UTC)
    )
    reader = Reader("reader@example.org", "Zoë", "abcdefghijklmnopqrstuvwxyz234567")
    return skeleton.render(reader, html="<p>Hello Zoë</p>", text="Hello Zoë\n")


def signed_headers(data: bytes) -> set[bytes]:
    message = email.message_from_bytes(data)
    fields = dict(
        part.strip().split("=", 1)
        for part in "".join(str(message["DKIM-Signature"]).split()).split(";")
        if part.strip()
    )
    return {name.encode() for name in fields["h"].split(":")}


def test_every_issue_message_is_signed_and_verifies(config: Config, keys: KeyPair) -> None:
    data = issue_bytes(config)
    assert data.startswith(b"DKIM-Signature: ")
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in data
    assert signed_headers(data) >= REQUIRED
    assert dkimpy.verify(data, dnsfunc=keys.dns)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"https://example.com/web/unsubscribe/", b"https://evil.example/unsubscribe/"),
        (b"Subject: January notes", b"Subject: February notes"),
        (b"Hello Zo=C3=AB", b"Hello Bob"),
        (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b""),
    ],
)
def test_a_changed_header_or_body_fails_verification(
    config: Config, keys: KeyPair, old: bytes, new: bytes
) -> None:
    data = issue_bytes(config)
    assert old in data
    assert not dkimpy.verify(data.replace(old, new, 1), dnsfunc=keys.dns)


def test_a_header_added_later_fails_verification(config: Config, keys: KeyPair) -> None:
    # No web URL: no List-Unsubscribe-Post, which is still signed (as absent).
    data = issue_bytes(replace(config, web=WebConfig()))
    assert b"List-Unsubscribe-Post" not in data
    assert dkimpy.verify(data, dnsfunc=keys.dns)
    head, _, body = data.partition(b"\r\n\r\n")
    forged = head + b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n" + body
    assert not dkimpy.verify(forged, dnsfunc=keys.dns)


def test_without_dkim_config_messages_are_unchanged(config: Config) -> None:
    plain = replace(config, dkim=None)
    assert (
        dkim.sign(plain, b"From: a@example.com\r\n\r\nx\r\n") == b"From: a@example.com\r\n\r\nx\r\n"
    )
    assert not issue_bytes(plain).startswith(b"DKIM-Signature")


def test_missing_key_settings_are_one_line_config_errors(
    config: Config, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TEST_DKIM_KEY")
    with pytest.raises(ConfigError, match=r"\$TEST_DKIM_KEY, which is not set") as err:
        dkim.check(config)
    assert err.value.field == "dkim.private_key_env"
    monkeypatch.setenv("TEST_DKIM_KEY", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="cannot read the DKIM private key"):
        dkim.sign(config, b"From: a@example.com\r\n\r\nx\r\n")
    (tmp_path / "bad.pem").write_text("not a key\n")
    monkeypatch.setenv("TEST_DKIM_KEY", str(tmp_path / "bad.pem"))
    with pytest.raises(ConfigError, match="not a PEM RSA private key"):
        dkim.check(config)
    assert config.dkim is not None
    no_selector = replace(config, dkim=replace(config.dkim, selector=""))
    with pytest.raises(ConfigError) as err:
        dkim.check(no_selector)
    assert err.value.field == "dkim.selector"


def welcome_mail(config: Config, first_name: str) -> bytes:
    """The web's welcome mail (the sign-up's) to reader@example.org, as `serve` sends it."""
    from newsletter.mail import webmail

    repo = replace(config, root=Path(__file__).resolve().parent.parent)
    web = "https://example.com/web/unsubscribe/abcdefghijklmnop"
    return webmail.compose(
        repo,
        webmail.mail_environment(repo),
        webmail.WELCOME_TEMPLATE,
        to="reader@example.org",
        now=datetime(2026, 1, 6, 9, tzinfo=UTC),
        context={"first_name": first_name, "resource_url": None, "unsubscribe_url": web},
        unsubscribe=("mailto:news+abcdefghijklmnop@example.com?subject=unsubscribe", web),
    ).data


def test_the_web_mails_are_signed_too(config: Config, keys: KeyPair) -> None:
    data = welcome_mail(config, "Zoë\r\nBcc: x@evil.example")
    assert data.startswith(b"DKIM-Signature: ")
    assert signed_headers(data) >= REQUIRED
    assert dkimpy.verify(data, dnsfunc=keys.dns)
    message = email.message_from_bytes(data)
    assert message["Bcc"] is None
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


LONG_SUBJECT = "Ünïcödé notes: " + "a very long subject that must fold over several lines " * 4


@pytest.mark.parametrize("canonicalization", [b"relaxed/relaxed", b"simple/simple"])
def test_both_canonicalizations_verify_with_folded_non_ascii_headers(
    config: Config, keys: KeyPair, canonicalization: bytes
) -> None:
    unsigned = issue_bytes(replace(config, dkim=None), subject=LONG_SUBJECT)
    assert b"=?utf-8?" in unsigned and b"\r\n " in unsigned.partition(b"\r\n\r\n")[0]
    key = dkim.private_key(config.dkim)  # type: ignore[arg-type]
    (unsigned_header,) = dkim.unsigned_headers(
        unsigned, signers=[(dkim.RSA_SHA256, b"news2026")], domain=b"example.com",
        canonicalization=canonicalization, timestamp=1767690000,
    )  # fmt: skip
    header = unsigned_header.complete(key)
    signed = header + unsigned
    assert f"c={canonicalization.decode()};".encode() in header
    assert all(len(line) <= 78 for line in header.split(b"\r\n"))
    assert dkimpy.verify(signed, dnsfunc=keys.dns)
    assert not dkimpy.verify(signed.replace(b"Hello Zo=C3=AB", b"Hello Bob", 1), dnsfunc=keys.dns)


@pytest.mark.parametrize(
    "c", ["relaxed/relaxed", "relaxed/simple", "simple/relaxed", "simple/simple"]
)
def test_each_canonicalization_the_settings_allow_verifies_for_every_kind_of_mail(
    config: Config, keys: KeyPair, c: str
) -> None:
    """`dkim.canonicalization` chosen: issue mail (its pieces' way, signed directly and on a
    signing thread) and the web's mail, with folded non-ASCII headers and runs of blanks."""
    assert config.dkim is not None
    chosen = replace(config, dkim=replace(config.dkim, canonicalization=c))  # type: ignore[arg-type]
    mails = [
        issue_bytes(chosen, subject=LONG_SUBJECT),
        welcome_mail(chosen, "Zoë  O'Neil,\tJr"),
        *(data for _, data, _ in on_a_thread(chosen)),
    ]
    for data in mails:
        signature = email.message_from_bytes(data)["DKIM-Signature"]
        assert f"c={c};" in "".join(str(signature).split())
        assert dkimpy.verify(data, dnsfunc=keys.dns)


def test_a_canonicalization_newsletter_yaml_cannot_have_is_a_one_line_error(
    publication: Path,
) -> None:
    from newsletter.config import load_config

    path = publication / "newsletter.yaml"
    path.write_text(
        path.read_text(encoding="utf-8")
        + "dkim: {selector: s, domain: example.com, canonicalization: loose/loose}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="expected one of relaxed/relaxed") as err:
        load_config(publication)
    assert err.value.field == "dkim.canonicalization"


def test_an_ed25519_or_short_key_is_a_one_line_error(
    config: Config, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = serialization.Encoding.PEM
    plain = serialization.NoEncryption()
    other = ed25519.Ed25519PrivateKey.generate().private_bytes(
        pem, serialization.PrivateFormat.PKCS8, plain
    )
    (tmp_path / "ed.pem").write_bytes(other)
    monkeypatch.setenv("TEST_DKIM_KEY", str(tmp_path / "ed.pem"))
    with pytest.raises(ConfigError, match="DKIM signs with RSA"):
        dkim.check(config)
    if shutil.which("openssl") is None:  # cryptography refuses to make a key this weak
        return
    short = subprocess.run(["openssl", "genrsa", "512"], check=True, capture_output=True).stdout
    (tmp_path / "short.pem").write_bytes(short)
    monkeypatch.setenv("TEST_DKIM_KEY", str(tmp_path / "short.pem"))
    with pytest.raises(ConfigError, match="512 bits"):
        dkim.check(config)


def test_editor_notices_are_signed(config: Config, keys: KeyPair, tmp_path: Path) -> None:
    from email.message import EmailMessage

    from newsletter.schedule.notices import transport_notifier

    notice = EmailMessage()
    notice["From"] = config.sender
    notice["To"] = config.reply_to
    notice["Subject"] = "[Leader Notes] No issue ready for Tue 2027-01-05 09:00 GMT"
    notice["Date"] = "Tue, 05 Jan 2027 09:00:00 +0000"
    notice["Message-ID"] = "<schedule.1@example.com>"
    notice.set_content("Nothing was sent to readers.\n")
    transport_notifier(replace(config, root=tmp_path))(notice)
    (written,) = (tmp_path / "outbox" / "schedule-notices").glob("*.eml")
    assert dkimpy.verify(written.read_bytes(), dnsfunc=keys.dns)


CANONICAL_CASES = (
    b"",
    b"\r\n",
    b"\r\n\r\n",
    b"one line\r\n",
    b"no final CRLF",
    b"soft=\r\nbreak =C3=A9\r\n\r\n\r\n",
    b"two  spaces\r\n",
    b"a tab\there\r\n",
    b"trailing blank \r\n",
    b"trailing tab\t\r\nend\r\n",
    b" \r\n \r\n",
    b"bare LF\nline\n",
    b"mixed \n ends\r\n\r\n",
    b"<td>      indented\t \t HTML  =\r\n  \r\n\t\r\n",
    b"runs of " + b" " * 17 + b"spaces" + b" " * 33 + b"\r\n",
)


@pytest.mark.parametrize("body", CANONICAL_CASES)
@pytest.mark.parametrize("c", [b"relaxed/relaxed", b"simple/simple", b"relaxed/simple"])
def test_the_fast_body_canonicalisation_is_dkimpys(body: bytes, c: bytes) -> None:
    from dkim.canonicalization import CanonicalizationPolicy

    policy = CanonicalizationPolicy.from_c_value(c)
    assert canonical.canonical_body(policy, body) == policy.canonicalize_body(body)


def test_the_fast_body_canonicalisation_on_every_short_body() -> None:
    """Every body of up to 5 pieces from blanks, letters and line ends, relaxed."""
    from dkim.canonicalization import CanonicalizationPolicy

    policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    pieces = (b" ", b"\t", b"a", b"\r\n", b"\n", b"\r")
    for size in range(6):
        for combination in itertools.product(pieces, repeat=size):
            body = b"".join(combination)
            assert canonical.canonical_body(policy, body) == policy.canonicalize_body(body), body


def test_the_fast_parse_is_dkimpys_on_every_short_message() -> None:
    """Header lines, folds, blank lines, CRLF, bare LF and bare CR in every order (up to 6)."""
    pieces = (b"A: b", b"\r\n", b"\n", b" c", b"\r", b"x")
    for size in range(7):
        for combination in itertools.product(pieces, repeat=size):
            message = b"".join(combination)
            try:  # dkimpy fails a fold before any header with an IndexError
                expected: object = dkimpy.rfc822_parse(message)
            except (dkimpy.MessageFormatError, IndexError) as exc:
                expected = type(exc)
            try:
                got: object = canonical.parse(message)
            except (dkimpy.MessageFormatError, IndexError) as exc:
                got = type(exc)
            assert got == expected, message


def test_the_body_in_pieces_hashes_as_the_whole_body_or_says_it_cannot() -> None:
    """Every body of up to 4 pieces (blanks, letters, line ends, soft breaks) cut in every
    way: hashed piece by piece it gives the whole body's hash, or None (the whole way then)."""
    import hashlib

    from dkim.canonicalization import CanonicalizationPolicy

    policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    head = b"From: a@example.com\r\nSubject: x\r\n\r\n"
    alphabet = (b" ", b"\t", b"a", b"\r\n", b"=\r\n", b"\n", b"\r", b"")
    taken = 0
    for size in range(1, 5):
        for pieces in itertools.product(alphabet, repeat=size):
            whole = b"".join(pieces)
            got = canonical.hashed_in_pieces(policy, head + whole, pieces)
            if got is None:
                continue
            taken += 1
            expected = hashlib.sha256(canonical.canonical_body(policy, whole)).digest()
            assert got == expected, pieces
    assert taken > 500  # most bodies take the fast way


def test_an_issue_signed_from_its_pieces_verifies(
    config: Config, keys: KeyPair, publication: Path
) -> None:
    """The send's way: bodies from the per-issue templates (BodyEncoder), signed piece by
    piece, for readers whose names hold blanks, tabs and non-ASCII; dkimpy verifies each."""
    from conftest import SAMPLE_TODAY

    from newsletter.config import load_config
    from newsletter.content.issues import find_issue, load_issues
    from newsletter.delivery import send as delivery
    from newsletter.mail.bodies import BodyEncoder

    sample = replace(load_config(publication), dkim=config.dkim)
    issues = load_issues(sample, SAMPLE_TODAY)
    issue = find_issue(sample, issues, "2026-07-your-first-customer-sits-next-to-you")
    rendered, skeleton = delivery.prepare(sample, issue, issues)
    bodies = BodyEncoder(rendered)
    assert bodies.fast
    for name in ("Zoë", "  two  spaces  ", "tab\tname", "", "李小龙 O'Neil, Jr"):
        reader = Reader("reader@example.org", name, "abcdefghijklmnopqrstuvwxyz234567")
        html, text = bodies.encode(reader)
        data = skeleton.render_encoded(reader, html=html, text=text)
        assert dkimpy.verify(data, dnsfunc=keys.dns), name
        after_headers = data.partition(b"\r\n\r\n")[2]
        policy = dkimpy.CanonicalizationPolicy.from_c_value(dkim.DEFAULT_CANONICALIZATION)
        body = [skeleton._body_head, *text, skeleton._between, *html, skeleton._tail]
        assert b"".join(body) == after_headers
        assert canonical.hashed_in_pieces(policy, data, body) is not None  # the fast way was taken


FIELD_PIECES = (b"A: b", b"\r\n", b" c", b"\t", b"  ", b"x:", b"\r\n ")


@pytest.mark.parametrize("c", [b"relaxed/relaxed", b"simple/simple"])
def test_the_fast_header_canonicalisation_is_dkimpys_on_every_short_header(c: bytes) -> None:
    """Fields made of names, values, folds and runs of blanks, up to 5 pieces: the same
    canonical fields as dkimpy's, where dkimpy can parse them at all."""
    policy = dkimpy.CanonicalizationPolicy.from_c_value(c)
    for size in range(1, 6):
        for combination in itertools.product(FIELD_PIECES, repeat=size):
            head = b"".join(combination) + b"\r\n\r\n"
            try:
                headers, _ = dkimpy.rfc822_parse(head)
            except (dkimpy.MessageFormatError, IndexError):
                continue
            expected = [tuple(field) for field in policy.canonicalize_headers(headers)]
            assert canonical.canonical_fields(policy, headers) == expected, head


@pytest.mark.parametrize("c", [b"relaxed/relaxed", b"simple/simple"])
def test_a_header_block_in_pieces_gives_the_whole_blocks_fields_or_says_it_cannot(
    c: bytes,
) -> None:
    """Every header block of up to 4 pieces cut every way: piece by piece, the fields of
    the whole block, or None (then the signer parses the whole message)."""
    policy = dkimpy.CanonicalizationPolicy.from_c_value(c)
    alphabet = (b"A: b\r\n", b"B:  c\r\n", b" fold\r\n", b"\r\n", b"C: d", b"\tx\r\n")
    taken = 0
    for size in range(1, 5):
        for cut in itertools.product(alphabet, repeat=size):
            pieces = [*cut[:-1], cut[-1] + b"\r\n"]  # the last piece ends the block
            message = b"".join(pieces) + b"body\r\n"
            got = canonical.fields_in_pieces(policy, message, pieces)
            if got is None:
                continue
            taken += 1
            headers, _ = canonical.parse(message)
            assert got == canonical.canonical_fields(policy, headers), pieces
    assert taken > 20


def test_header_selection_is_dkimpys() -> None:
    """The last instance of each signed name first, then the ones before it; absent names
    (null signatures) select nothing."""
    names = [b"from", b"to", b"x", b"from", b"from", b"subject"]
    for fields in itertools.product([b"From", b"to", b"Subject", b"X"], repeat=5):
        headers = [(name, b" %d\r\n" % n) for n, name in enumerate(fields)]
        assert canonical.select_fields(headers, names) == dkimpy.select_headers(headers, names)


@pytest.mark.parametrize("canonicalization", [b"relaxed/relaxed", b"simple/simple"])
def test_a_signature_from_pieces_is_the_signature_of_the_whole(
    config: Config, keys: KeyPair, canonicalization: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The send's pieces (header lines, body parts) give byte for byte the header the whole
    message gives, for long folded non-ASCII subjects too."""
    skeleton = IssueMessage(
        replace(config, dkim=None),
        slug="2026-01-notes",
        subject=LONG_SUBJECT,
        date=datetime(2026, 1, 6, 9, tzinfo=UTC),
    )
    reader = Reader("reader@example.org", "Zoë  O'Neil", "abcdefghijklmnopqrstuvwxyz234567")
    seen: dict[str, object] = {}

    def keep(config: Config, message: bytes, **pieces: object) -> dkim.Pending:
        seen.update(pieces, message=message)
        return dkim.Pending(message)

    with monkeypatch.context() as patch:  # what the skeleton hands the signer
        patch.setattr(dkim, "sign_later", keep)
        data = skeleton.render(reader, html="<p>Hello  Zoë</p>\n", text="Hello\tZoë \n")
    key = dkim.private_key(config.dkim)  # type: ignore[arg-type]
    common = dict(signers=[(dkim.RSA_SHA256, b"news2026")], domain=b"example.com",
                  timestamp=1767690000, canonicalization=canonicalization)  # fmt: skip
    whole = dkim.unsigned_headers(data, **common)[0].complete(key)  # type: ignore[arg-type]
    pieces = dkim.unsigned_headers(
        data,
        body=seen["body"],  # type: ignore[arg-type]
        head=seen["head"],  # type: ignore[arg-type]
        **common,  # type: ignore[arg-type]
    )[0].complete(key)
    assert pieces == whole
    assert dkimpy.verify(pieces + data, dnsfunc=keys.dns)


THREAD_READERS = [Reader(f"r{n}@example.org", f"Reader {n}", f"token{n:027d}") for n in range(8)]


def on_a_thread(config: Config) -> list[tuple[Reader, bytes, bytes]]:
    """Each of THREAD_READERS' messages signed the send's way (on a signing thread) and
    directly: (reader, the first, the second)."""
    from concurrent.futures import ThreadPoolExecutor

    skeleton = IssueMessage(
        config, slug="2026-01-notes", subject="Notes", date=datetime(2026, 1, 6, 9, tzinfo=UTC)
    )
    html, text = b"<p>Hi</p>\r\n", b"Hi\r\n"
    with ThreadPoolExecutor(1) as executor:
        later = [
            skeleton.render_later(r, html=html, text=text, executor=executor)
            for r in THREAD_READERS
        ]
        return [
            (reader, pending.result(), skeleton.render_encoded(reader, html=html, text=text))
            for reader, pending in zip(THREAD_READERS, later, strict=True)
        ]


def test_signing_on_an_executor_gives_the_same_message(config: Config, keys: KeyPair) -> None:
    """The send's way (the RSA operation on another thread) and the direct way agree."""
    for reader, data, direct in on_a_thread(config):
        assert dkimpy.verify(data, dnsfunc=keys.dns)
        assert email.message_from_bytes(data)["To"] == f"Reader {reader.email[1]} <{reader.email}>"
        assert _unstamped(data) == _unstamped(direct)


def _unstamped(data: bytes) -> bytes:
    """The message less its t= (the signing second) and b= (which covers t=)."""
    import re

    data = re.sub(rb"t=\d+;", b"t=;", data)
    return re.sub(rb"b=[A-Za-z0-9+/=\r\n\t]+\r\n(?=[A-Z])", b"b=\r\n", data, count=1)
