"""Address normalisation (the fast path agrees with email-validator) and real-world CSV files."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email

from newsletter.errors import StoreError
from newsletter.store.addresses import (
    InvalidAddress,
    _fast_normalise,
    clean_name,
    normalise_address,
)
from newsletter.store.csvio import CsvReader, ImportRejected
from newsletter.store.store import Store, open_sqlite

TRICKY = [
    "plain@example.com",
    "Mixed.Case@Example.COM",
    "first.last+tag@sub.example.org",
    "o'reilly@example.net",
    "a!#$%&'*+/=?^_`{|}~-z@example.com",
    "x@a.b.c.d.example.com",
    "1@example.com",
    "user@123.example.com",
    "user@example.c0m",
    "user@example.123",
    "user@example.c",
    "user@example.-com",
    "user@-example.com",
    "user@example-.com",
    "user@ex--ample.com",
    "user@ab--cd.example.com",
    "user@xn--bcher-kva.example",
    "user@xn--bcher-kva.de",
    "user@xn--zz.com",
    "user@localhost",
    "user@example",
    "user@example.test",
    "user@sub.example.local",
    "user@example.invalid",
    "user@example.onion",
    "user@1.2.3.4",
    "user@[192.0.2.1]",
    "user@[IPv6:2001:db8::1]",
    "Info@example.com",
    "POSTMASTER@example.com",
    "news@example.com",
    "user.@example.com",
    ".user@example.com",
    "us..er@example.com",
    "user@@example.com",
    "@example.com",
    "user@",
    "user",
    "user@.example.com",
    "user@example..com",
    "user@example.com.",
    "us er@example.com",
    '"quoted"@example.com',
    '"quoted user"@example.com',
    "user(comment)@example.com",
    "Jane <jane@example.com>",
    "user@exa_mple.com",
    "user@exam ple.com",
    "user@example.com\n",
    "user\r\n@example.com",
    "a" * 64 + "@example.com",
    "a" * 65 + "@example.com",
    "a@" + "b" * 63 + ".com",
    "a@" + "b" * 64 + ".com",
    "a@" + ".".join(["b" * 60] * 4) + ".com",
    "x" * 240 + "@example.com",
    "x" * 243 + "@e.com",
    "x" * 244 + "@e.com",
    "zoë@example.com",
    "user@bücher.de",
    "USER@BÜCHER.DE",
    "用户@例子.广告",
    "user@example.com\u200b",
    "user@ｅxample.com",
    "user＠example.com",
    "user@example。com",
    "ǅ@example.com",
    "\u0301user@example.com",
]


def validator(text: str) -> str | None:
    try:
        return str(validate_email(text, check_deliverability=False).normalized)
    except EmailNotValidError:
        return None


def ours(text: str) -> str | None:
    try:
        return normalise_address(text).email
    except InvalidAddress:
        return None


@pytest.mark.parametrize("text", TRICKY)
def test_fast_path_accepts_only_what_email_validator_accepts_and_normalises_alike(
    text: str,
) -> None:
    fast = _fast_normalise(text)
    if fast is not None:
        assert validator(text) == fast
    assert ours(text) == validator(text.strip())


def test_fast_path_agrees_with_email_validator_on_random_ascii_addresses() -> None:
    rng = random.Random(20261125)
    alphabet = "abcXYZ019.-_+!#'`~" * 8 + '@ "(),:;<>[\\]é'
    labels = ["example", "com", "org", "a", "Co", "x-y", "9", "b2"] * 3 + [
        "xn--", "xn--bcher-kva", "ab--c", "-x", "x-", "", "localhost", "test", "a_b", "123",
    ]  # fmt: skip
    fast_hits = 0
    for _ in range(5000):
        local = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        domain = ".".join(rng.choice(labels) for _ in range(rng.randint(1, 4)))
        text = f"{local}@{domain}"
        fast = _fast_normalise(text)
        if fast is not None:
            fast_hits += 1
            assert validator(text) == fast, text
        assert ours(text) == validator(text.strip()), text  # we trim; it does not
    assert fast_hits > 500  # the fast path really is the common path


def test_identity_ignores_case_and_keeps_the_address_as_given() -> None:
    a = normalise_address("  Jane.Doe@Example.COM ")
    b = normalise_address("jane.doe@example.com")
    assert a.email == "Jane.Doe@example.com"
    assert a.key == b.key == "jane.doe@example.com"
    idn = normalise_address("Zoë@XN--BCHER-KVA.DE")
    assert idn.email == "Zoë@bücher.de"
    assert idn.key == normalise_address("zoë@Bücher.de").key


def test_names_lose_line_breaks_controls_and_bidi_overrides_but_keep_joiners() -> None:
    assert clean_name("  Jane\r\nBcc: evil@example.com ") == "Jane Bcc: evil@example.com"
    assert clean_name("\u202eenaJ\u202c") == "enaJ"
    assert clean_name("می\u200cخواهم") == "می\u200cخواهم"
    assert clean_name("Zoe\u0308") == "Zoë"  # NFC
    assert clean_name("   ") is None
    assert clean_name(None) is None


def write(tmp_path: Path, content: str | bytes, name: str = "list.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def rows_of(path: Path, skip_invalid: bool = False) -> list[tuple[int, str, str | None, str]]:
    reader = CsvReader(path, skip_invalid=skip_invalid)
    return [(r.line, r.address.email, r.first_name, r.status) for r in reader]


def test_header_names_from_real_exports(tmp_path: Path) -> None:
    for header in ("email,name", "E-mail,First_Name", "Email Address,First Name,Last Name"):
        path = write(tmp_path, f"{header}\r\nada@example.com,Ada,Lovelace\r\n")
        assert rows_of(path) == [(2, "ada@example.com", "Ada", "active")], header
    reordered = write(tmp_path, "first_name,e-mail\nAda,ada@example.com\n")
    assert rows_of(reordered) == [(2, "ada@example.com", "Ada", "active")]


def test_no_header_with_or_without_a_name_column(tmp_path: Path) -> None:
    assert rows_of(write(tmp_path, "ada@example.com\ngrace@example.org\n")) == [
        (1, "ada@example.com", None, "active"),
        (2, "grace@example.org", None, "active"),
    ]
    assert rows_of(write(tmp_path, "Ada,ada@example.com\n")) == [
        (1, "ada@example.com", "Ada", "active")
    ]


def test_bom_semicolons_excel_sep_line_crlf_and_tabs(tmp_path: Path) -> None:
    expected = [(2, "zoe@example.com", "Zoë", "active"), (3, "jose@example.org", "José", "active")]
    bom_semicolon = "\ufeffE-Mail;Vorname\r\nzoe@example.com;Zoë\r\njose@example.org;José\r\n"
    assert rows_of(write(tmp_path, bom_semicolon)) == expected
    sep_line = "sep=;\r\nemail;name\r\nzoe@example.com;Zoë\r\njose@example.org;José\r\n"
    assert [r[1:] for r in rows_of(write(tmp_path, sep_line))] == [e[1:] for e in expected]
    tabs = "email\tname\nzoe@example.com\tZoë\njose@example.org\tJosé\n"
    assert rows_of(write(tmp_path, tabs)) == expected
    quoted = 'name;email\r\n"Doe; Jane";jane@example.com\r\n'
    assert rows_of(write(tmp_path, quoted)) == [(2, "jane@example.com", "Doe; Jane", "active")]


def test_blank_lines_and_padded_rows_are_skipped_and_line_numbers_stay_true(
    tmp_path: Path,
) -> None:
    content = (
        "\r\n\r\nemail,name,,\r\nada@example.com,Ada,,\r\n,,,\r\n\r\n"
        '"grace@example.org","Grace\r\nHopper",,\r\nnot-an-address,X,,\r\n'
    )
    path = write(tmp_path, content)
    with pytest.raises(ImportRejected) as caught:
        rows_of(path)
    assert [(p.line, p.field) for p in caught.value.problems] == [(9, "email")]
    assert "not-an-address" in caught.value.problems[0].message
    assert rows_of(path, skip_invalid=True) == [
        (4, "ada@example.com", "Ada", "active"),
        (7, "grace@example.org", "Grace Hopper", "active"),
    ]


def test_every_invalid_row_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "email\nok@example.com\nbad@\n\n@example.com\nok2@example.com\n,\n")
    reader = CsvReader(path)
    with pytest.raises(ImportRejected) as caught:
        list(reader)
    assert [p.line for p in caught.value.problems] == [3, 5]
    assert caught.value.total == 2
    assert str(caught.value).startswith(f"{path}:3: email: 'bad@'")


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"email,name\nada@example.com,Ada\nfran@example.com,Fran\xe7oise\n")
    with pytest.raises(StoreError) as caught:
        rows_of(path)
    assert (caught.value.line, str(caught.value.path)) == (3, str(path))
    assert "not UTF-8 (byte 0xe7)" in caught.value.message


def test_a_file_without_an_email_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as caught:
        rows_of(write(tmp_path, "\nname,phone\nAda,123\n"))
    assert (caught.value.line, caught.value.field) == (2, "header")


def test_status_column_is_read_and_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "email,status\na@example.com,Unsubscribed\nb@example.com,\n")
    assert [r[3] for r in rows_of(path)] == ["unsubscribed", "active"]
    bad = write(tmp_path, "email,status\na@example.com,gone\n")
    with pytest.raises(ImportRejected) as caught:
        rows_of(bad)
    assert caught.value.problems[0].field == "status"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with open_sqlite(tmp_path / "db" / "subscribers.db") as opened:
        yield opened  # type: ignore[misc]


def test_import_counts_duplicates_existing_and_case_variants(store: Store, tmp_path: Path) -> None:
    store.subscribers.add("old@example.com", source="command", consent=None)
    path = write(
        tmp_path,
        "email,name\nada@example.com,Ada\nADA@Example.com,Ada\nold@example.com,\n"
        + "".join(f"r{i}@example.net,\n" for i in range(2500))
        + "r7@EXAMPLE.NET,\n",
    )
    report = store.imports.import_subscribers(
        CsvReader(path), source="import list.csv", batch_size=1000
    )
    assert (report.added, report.duplicates, report.existing) == (2501, 2, 1)
    ada = store.subscribers.get_by_email("ada@example.com")
    assert ada is not None and ada.consent_source == "import list.csv"
    assert [kind for _, kind, _, _ in store.events.events(ada)] == ["subscribed"]


def test_invalid_rows_roll_back_the_whole_import(store: Store, tmp_path: Path) -> None:
    rows = "".join(f"r{i}@example.org\n" for i in range(5000)) + "broken@@example.org\n"
    path = write(tmp_path, "email\n" + rows)
    with pytest.raises(ImportRejected) as caught:
        store.imports.import_subscribers(CsvReader(path), source="import", batch_size=1000)
    assert caught.value.problems[0].line == 5002
    assert store.subscribers.counts()["active"] == 0
    report = store.imports.import_subscribers(CsvReader(path, skip_invalid=True), source="import")
    assert report.added == 5000


def test_reimport_never_reactivates_suppressed_readers(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "email\nu@example.com\nb@example.com\nc@example.com\nf@example.com\n")
    store.imports.import_subscribers(CsvReader(path), source="import")
    for email, action in (("u", "unsubscribe"), ("b", "bounce"), ("c", "complain")):
        reader = store.subscribers.get_by_email(f"{email}@example.com")
        assert reader is not None
        if action == "unsubscribe":
            store.subscribers.unsubscribe(reader, source="reply", detail=None)
        elif action == "bounce":
            store.subscribers.record_bounce(
                reader, hard=True, issue_slug="x", detail="550", soft_limit=3
            )
        else:
            store.subscribers.mark_complained(reader, detail="abuse report")
    store.subscribers.forget("f@example.com", reason="erasure request")
    report = store.imports.import_subscribers(CsvReader(path), source="import again")
    assert report.added == 0
    assert report.suppressed_rows == [
        (2, "u@example.com", "unsubscribed"),
        (3, "b@example.com", "bounced"),
        (4, "c@example.com", "complained"),
        (5, "f@example.com", "forgotten"),
    ]
    assert store.subscribers.counts() == {
        "active": 0, "unsubscribed": 1, "bounced": 1, "complained": 1, "forgotten": 1,
    }  # fmt: skip


def test_export_then_import_elsewhere_keeps_suppressions(store: Store, tmp_path: Path) -> None:
    from newsletter.store.csvio import write_csv

    for name in ("a", "b", "c"):
        store.subscribers.add(f"{name}@example.com", name.upper(), source="command", consent=None)
    b = store.subscribers.get_by_email("b@example.com")
    assert b is not None
    store.subscribers.unsubscribe(b, source="reply", detail=None)
    exported = tmp_path / "export.csv"
    with exported.open("w", encoding="utf-8", newline="") as out:
        write_csv(
            out, ((s.email, s.first_name, s.status) for s in store.subscribers.iter_subscribers())
        )
    with open_sqlite(tmp_path / "other" / "subscribers.db") as other:
        other.subscribers.add("b@example.com", source="command", consent=None)
        report = other.imports.import_subscribers(CsvReader(exported), source="import export.csv")
        assert (report.added, report.status_applied) == (2, 1)
        assert other.subscribers.counts()["active"] == 2
        moved = other.subscribers.get_by_email("B@example.com")
        assert moved is not None and moved.status == "unsubscribed"
        assert (
            other.subscribers.add("b@example.com", source="command", consent=None).outcome
            == "suppressed"
        )
