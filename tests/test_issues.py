"""Issue loading: every loading error through `newsletter check`, then the defaults."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from pathlib import Path

import pytest
from conftest import SAMPLE_TODAY, run_cli
from slugify import slugify as python_slugify

from newsletter import links
from newsletter.config import load_config
from newsletter.content.issues import KNOWN_KEYS, Epigraph, Issue, find_issue, load_issues
from newsletter.errors import IssueError
from newsletter.store.store import open_store

ERROR_LINE = re.compile(r"^error: (?P<path>.+?):(?P<line>\d+): (?P<rest>.*)$")


def write(root: Path, name: str, text: str | bytes) -> Path:
    path = root / "content" / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def check_fails(root: Path) -> re.Match[str]:
    """`newsletter check` exits 2 with exactly one `error: file:line: ...` line, no traceback."""
    code, stdout, stderr = run_cli(root, "check")
    assert code == 2, (stdout, stderr)
    assert "Traceback" not in stdout + stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    match = ERROR_LINE.match(lines[0])
    assert match, lines[0]
    return match


def first_tuesday(year: int, month: int) -> dt.date:
    day = next(d for d in range(1, 8) if calendar.weekday(year, month, d) == calendar.TUESDAY)
    return dt.date(year, month, day)


# -- loading errors, through the real CLI ------------------------------------------------------


def test_missing_title(publication: Path) -> None:
    bad = write(publication, "2031-01-untitled.md", "---\nsummary: no title here\n---\nBody\n")
    match = check_fails(publication)
    assert match["path"] == str(bad)
    assert match["line"] == "2"
    assert match["rest"].startswith("title: ")
    assert "missing title" in match["rest"]


def test_blank_title_is_missing(publication: Path) -> None:
    bad = write(publication, "2031-01-blank.md", "---\nsummary: s\ntitle: '  '\n---\nBody\n")
    match = check_fails(publication)
    assert match["path"] == str(bad)
    assert "missing title" in match["rest"]


def test_unknown_key_lists_the_known_ones(publication: Path) -> None:
    bad = write(
        publication,
        "2031-01-typo.md",
        "---\ntitle: Typo\nsummary: s\nsubtitle: oops\n---\nBody\n",
    )
    match = check_fails(publication)
    assert match["path"] == str(bad)
    assert match["line"] == "4"
    assert match["rest"].startswith("subtitle: unknown key")
    for key in KNOWN_KEYS:
        assert key in match["rest"]


@pytest.mark.parametrize("value", ["2031-02-30", "next tuesday", "01/02/2031", "2031-1-5"])
def test_bad_date(publication: Path, value: str) -> None:
    bad = write(publication, "2031-02-dated.md", f"---\ntitle: Dated\ndate: {value}\n---\nBody\n")
    match = check_fails(publication)
    assert match["path"] == str(bad)
    assert match["line"] == "3"
    assert match["rest"].startswith("date: expected a date YYYY-MM-DD")


def test_malformed_yaml_names_the_line(publication: Path) -> None:
    text = "---\ntitle: Broken\nsummary: fine\ntags: [one, two\nauthor: Jane\n---\nBody\n"
    bad = write(publication, "2031-03-broken.md", text)
    match = check_fails(publication)
    assert match["path"] == str(bad)
    # The unclosed flow sequence opens on line 4; PyYAML notices it on the next line.
    assert match["line"] in ("4", "5")
    assert "malformed YAML" in match["rest"]


def test_malformed_yaml_tab_indent(publication: Path) -> None:
    bad = write(publication, "2031-03-tabs.md", "---\ntitle: Tabs\nepigraph:\n\ttext: x\n---\n")
    match = check_fails(publication)
    assert match["path"] == str(bad)
    assert match["line"] == "4"
    assert "malformed YAML" in match["rest"]


@pytest.mark.parametrize(
    ("front", "kind"), [("- title\n- date", "list"), ("just a sentence", "str"), ("42", "int")]
)
def test_front_matter_not_a_mapping(publication: Path, front: str, kind: str) -> None:
    bad = write(publication, "2031-04-list.md", f"---\n{front}\n---\nBody\n")
    match = check_fails(publication)
    assert match["path"] == str(bad)
    assert match["line"] == "2"
    assert "front-matter must be a mapping" in match["rest"]
    assert kind in match["rest"]


def test_non_utf8_file_names_the_line(publication: Path) -> None:
    text = "---\ntitle: Caf\xe9\nsummary: s\n---\nBody\n".encode("latin-1")
    bad = write(publication, "2031-05-latin1.md", text)
    match = check_fails(publication)
    assert match["path"] == str(bad)
    assert match["line"] == "2"
    assert "not UTF-8" in match["rest"]
    assert "0xe9" in match["rest"]


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_file(publication: Path, text: str) -> None:
    bad = write(publication, "2031-06-empty.md", text)
    match = check_fails(publication)
    assert match["path"] == str(bad)
    assert match["line"] == "1"
    assert "empty file" in match["rest"]


def test_no_front_matter(publication: Path) -> None:
    bad = write(publication, "2031-06-plain.md", "# Just Markdown\n\nNo front-matter.\n")
    match = check_fails(publication)
    assert match["path"] == str(bad)
    assert match["line"] == "1"
    assert "front-matter" in match["rest"]


def test_unclosed_front_matter(publication: Path) -> None:
    bad = write(publication, "2031-06-open.md", "---\ntitle: Open\nBody without a fence\n")
    match = check_fails(publication)
    assert match["path"] == str(bad)
    assert "never closed" in match["rest"]


def test_duplicate_key_is_not_silently_dropped(publication: Path) -> None:
    bad = write(
        publication, "2031-01-twice.md", "---\ntitle: One\nsummary: s\ntitle: Two\n---\nB\n"
    )
    match = check_fails(publication)
    assert match["path"] == str(bad)
    assert match["line"] == "4"
    assert match["rest"] == "title: duplicate key (also on line 2); keep one"


def test_two_ready_issues_on_one_date_are_a_check_error_naming_both(publication: Path) -> None:
    head = "---\ntitle: T\ndate: 2031-07-01\nstatus: ready\n---\n"
    a = write(publication, "2031-07-a.md", head + "A\n")
    b = write(publication, "2031-07-b.md", head + "B\n")
    code, _, stderr = run_cli(publication, "check")
    assert code == 1 and "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "two ready issues on 2031-07-01" in line]
    assert len(errors) == 2
    assert str(a) in errors[0] and "2031-07-b" in errors[0]
    assert str(b) in errors[1] and "2031-07-a" in errors[1]


def test_drafts_on_one_date_block_nothing(publication: Path) -> None:
    # Both default to the first Tuesday of July 2031 (2031-07-01): two drafts, one day.
    write(publication, "2031-07-a.md", "---\ntitle: A\nsummary: a\n---\nA\n")
    write(publication, "2031-07-b.md", "---\ntitle: B\nsummary: b\n---\nB\n")
    code, stdout, stderr = run_cli(publication, "check")
    assert code == 0, stderr
    assert "0 error(s)" in stdout


def test_a_draft_on_a_ready_issues_date_is_a_warning(publication: Path) -> None:
    write(publication, "2031-07-a.md", "---\ntitle: A\nsummary: a\nstatus: ready\n---\nA\n")
    draft = write(publication, "2031-07-b.md", "---\ntitle: B\nsummary: b\n---\nB\n")
    code, stdout, _ = run_cli(publication, "check")
    assert code == 0
    assert f"{draft}: warning: draft dated 2031-07-01, the day of ready issue 2031-07-a" in stdout
    strict = run_cli(publication, "check", "--strict")
    assert strict.code == 1


def test_two_issues_same_slug(publication: Path) -> None:
    first = write(publication, "Foo.md", "---\ntitle: Upper\ndate: 2031-08-05\n---\nA\n")
    second = write(publication, "foo.md", "---\ntitle: Lower\ndate: 2031-09-02\n---\nB\n")
    match = check_fails(publication)
    assert {match["path"], str(first), str(second)} == {str(first), str(second)}
    other = first if match["path"] == str(second) else second
    assert match["line"] == "1"
    assert "same slug 'foo'" in match["rest"]
    assert str(other) in match["rest"]


def test_a_free_number_is_honoured_and_the_unfixed_ones_make_room(publication: Path) -> None:
    # The sample's ready issues are numbered 1..4; none is fixed yet (nothing sent).
    write(publication, "2031-10-dup.md",
          "---\ntitle: Dup\nsummary: s\nnumber: 2\nstatus: ready\n---\nB\n")  # fmt: skip
    assert run_cli(publication, "check").code == 0
    issues = load_issues(load_config(publication, environ={}), SAMPLE_TODAY)
    assert [i.number for i in issues if i.is_ready] == [1, 3, 4, 5, 2]


def test_a_number_two_unfixed_issues_ask_for_is_a_warning(publication: Path) -> None:
    head = "---\ntitle: T\nsummary: s\nnumber: 40\nstatus: ready\n"
    write(publication, "2031-10-first.md", head + "---\nB\n")
    second = write(publication, "2031-11-second.md", head + "---\nB\n")
    code, stdout, _ = run_cli(publication, "check")
    assert code == 0
    assert (
        f"{second}:4: warning: number: 40 is also asked for by 2031-10-first (earlier); "
        "this issue takes No. 41 instead" in stdout
    )


def test_a_number_equal_to_a_fixed_one_is_an_error_naming_both(publication: Path) -> None:
    config = load_config(publication, environ={})
    with open_store(config) as store:
        store.numbers.fix_numbers({"2026-08-handoffs-are-the-product": 2}, how="sent")
    path = write(publication, "2031-10-dup.md",
                 "---\ntitle: Dup\nsummary: s\nnumber: 2\nstatus: ready\n---\nB\n")  # fmt: skip
    code, _, stderr = run_cli(publication, "check")
    assert code == 1
    assert (
        f"{path}:4: error: number: 2 is already the fixed number of "
        "2026-08-handoffs-are-the-product" in stderr
    )


@pytest.mark.parametrize(
    ("line", "key", "expected"),
    [
        ("status: published", "status", "expected draft or ready"),
        ("number: zero", "number", "expected a positive whole number"),
        ("number: 0", "number", "expected a positive whole number"),
        ("number: true", "number", "expected a positive whole number"),
        ("status: Ready", "status", "expected draft or ready"),
        ("tags: leadership", "tags", "expected a list"),
        ("tags: ['!!']", "tags", "needs at least one letter or digit"),
        ("summary: [a, b]", "summary", "expected text"),
        ("epigraph: [a, b]", "epigraph", "expected {text: ..., author: ...}"),
        ("epigraph: {author: Someone}", "epigraph", "expected {text: ..., author: ...}"),
        ("epigraph: {text: a, source: b}", "epigraph", "expected {text: ..., author: ...}"),
    ],
)
def test_bad_values_name_their_key(publication: Path, line: str, key: str, expected: str) -> None:
    bad = write(publication, "2031-11-values.md", f"---\ntitle: Values\n{line}\n---\nBody\n")
    match = check_fails(publication)
    assert match["path"] == str(bad)
    assert match["line"] == "3"
    assert match["rest"].startswith(f"{key}: ")
    assert expected in match["rest"]


def test_loading_error_in_a_real_subprocess(publication: Path) -> None:
    """The installed console script, not just the click group, prints one line and exits 2."""
    import subprocess
    import sys

    bad = write(publication, "2031-12-typo.md", "---\ntitle: T\ncolour: red\n---\nBody\n")
    script = Path(sys.executable).parent / "newsletter"
    if not script.exists():
        pytest.skip(f"no console script at {script}")
    done = subprocess.run(
        [str(script), "--root", str(publication), "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(f"error: {bad}:3: colour: unknown key")


# -- loading: defaults and derived fields ------------------------------------------------------


@pytest.fixture
def empty(publication: Path) -> Path:
    """The sample publication's settings and templates, with no issues."""
    for path in (publication / "content").glob("*.md"):
        path.unlink()
    return publication


def load(root: Path, today: dt.date = dt.date(2027, 3, 10)) -> list[Issue]:
    return load_issues(load_config(root, environ={}), today=today)


def test_date_defaults_to_first_tuesday_of_the_file_name_month(empty: Path) -> None:
    write(empty, "2027-03-spring.md", "---\ntitle: Spring\n---\nBody\n")
    write(empty, "2027-06-summer.md", "---\ntitle: Summer\n---\nBody\n")
    issues = load(empty)
    assert [i.date for i in issues] == [first_tuesday(2027, 3), first_tuesday(2027, 6)]
    assert issues[0].date == dt.date(2027, 3, 2)
    assert issues[1].date == dt.date(2027, 6, 1)  # the 1st itself is a Tuesday


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (dt.date(2027, 3, 1), dt.date(2027, 3, 2)),  # this month's is still ahead
        (dt.date(2027, 3, 2), dt.date(2027, 3, 2)),  # today is the day
        (dt.date(2027, 3, 10), dt.date(2027, 4, 6)),  # passed: next month's
        (dt.date(2027, 12, 20), dt.date(2028, 1, 4)),  # across the year end
    ],
)
def test_date_without_prefix_is_the_next_first_tuesday(
    empty: Path, today: dt.date, expected: dt.date
) -> None:
    write(empty, "no-date-prefix.md", "---\ntitle: Whenever\n---\nBody\n")
    (issue,) = load(empty, today)
    assert issue.date == expected
    assert issue.date.weekday() == calendar.TUESDAY


def test_explicit_date_wins_over_the_file_name(empty: Path) -> None:
    write(empty, "2027-03-x.md", "---\ntitle: X\ndate: 2027-03-09\n---\nBody\n")
    (issue,) = load(empty)
    assert issue.date == dt.date(2027, 3, 9)


def test_defaults_and_slug(empty: Path) -> None:
    path = write(empty, "2027-03-Serve Inside Out.md", "---\ntitle: '  Serve  '\n---\n\nHello\n")
    (issue,) = load(empty)
    assert issue.slug == "2027-03-serve-inside-out"
    assert issue.title == "Serve"
    assert issue.status == "draft"
    assert not issue.is_ready
    assert issue.summary == ""
    assert issue.tags == ()
    assert issue.author is None
    assert issue.epigraph is None
    assert issue.number is None  # a draft has no number
    assert issue.path == path
    assert issue.body.strip() == "Hello"
    assert issue.body_line == 4


def test_numbers_follow_date_order_and_respect_explicit_ones(empty: Path) -> None:
    # File names sort differently from dates, so numbering must follow the dates.
    write(empty, "c.md", "---\ntitle: C\ndate: 2027-01-05\nstatus: ready\n---\n")
    write(empty, "a.md", "---\ntitle: A\ndate: 2027-02-02\nnumber: 10\nstatus: ready\n---\n")
    write(empty, "b.md", "---\ntitle: B\ndate: 2027-03-02\nstatus: ready\n---\n")
    write(empty, "d.md", "---\ntitle: D\ndate: 2026-12-01\nstatus: ready\n---\n")
    write(empty, "e.md", "---\ntitle: E (a draft)\ndate: 2027-01-19\n---\n")
    issues = load(empty)
    assert [(i.slug, i.number) for i in issues] == [
        ("d", 1), ("c", 2), ("e", None), ("a", 10), ("b", 11)
    ]  # fmt: skip


def test_explicit_number_lower_than_an_automatic_one_takes_it(empty: Path) -> None:
    write(empty, "a.md", "---\ntitle: A\ndate: 2027-01-05\nstatus: ready\n---\n")
    write(empty, "b.md", "---\ntitle: B\ndate: 2027-02-02\nnumber: 1\nstatus: ready\n---\n")
    assert [(i.slug, i.number) for i in load(empty)] == [("a", 2), ("b", 1)]


def test_epigraph_forms(empty: Path) -> None:
    write(empty, "a.md", "---\ntitle: A\ndate: 2027-01-05\nepigraph: '  Go and look. '\n---\n")
    write(
        empty,
        "b.md",
        "---\ntitle: B\ndate: 2027-02-02\nepigraph:\n  text: Well done.\n  author: Ben\n---\n",
    )
    write(empty, "c.md", "---\ntitle: C\ndate: 2027-03-02\nepigraph: {text: Only text}\n---\n")
    a, b, c = load(empty)
    assert a.epigraph == Epigraph("Go and look.", None)
    assert b.epigraph == Epigraph("Well done.", "Ben")
    assert c.epigraph == Epigraph("Only text", None)


def test_tags_are_a_tuple_without_duplicates(empty: Path) -> None:
    write(empty, "a.md", "---\ntitle: A\ntags: [service, ' teams ', service, 2027]\n---\n")
    (issue,) = load(empty)
    assert issue.tags == ("service", "teams", "2027")


def test_all_keys_load(empty: Path) -> None:
    write(
        empty,
        "2027-05-full.md",
        "---\n"
        "title: 'Listening: Rounds'\n"
        "date: 2027-05-04\n"
        "summary: Go where the work is.\n"
        "tags: [listening]\n"
        "author: Jane Example\n"
        "status: ready\n"
        "epigraph: {text: Look., author: Someone}\n"
        "number: 7\n"
        "---\n"
        "Body\n",
    )
    (issue,) = load(empty)
    assert issue.title == "Listening: Rounds"
    assert issue.date == dt.date(2027, 5, 4)
    assert issue.summary == "Go where the work is."
    assert issue.tags == ("listening",)
    assert issue.author == "Jane Example"
    assert issue.is_ready
    assert issue.epigraph == Epigraph("Look.", "Someone")
    assert issue.number == 7


def test_crlf_and_bom_files_load(empty: Path) -> None:
    write(empty, "a.md", "\ufeff---\r\ntitle: Windows\r\n---\r\nLine\r\n".encode())
    (issue,) = load(empty)
    assert issue.title == "Windows"
    assert issue.body == "Line\n"


def test_the_sample_publication_loads(publication: Path) -> None:
    issues = load(publication)
    assert len(issues) >= 4
    ready = [i for i in issues if i.is_ready]
    assert [i.number for i in ready] == list(range(1, len(ready) + 1))
    assert all(i.number is None for i in issues if not i.is_ready)
    assert all(i.date.weekday() == calendar.TUESDAY for i in issues)
    features = {
        "epigraph": any(i.epigraph for i in issues),
        "tags": any(i.tags for i in issues),
        "table": any("|---" in i.body or "| ---" in i.body for i in issues),
        "image": any("![" in i.body for i in issues),
        "heading": any("\n## " in i.body for i in issues),
        "list": any("\n- " in i.body or "\n1. " in i.body for i in issues),
    }
    assert all(features.values()), features


# -- find_issue ------------------------------------------------------------------------------------


def test_find_issue_by_slug_and_by_path(publication: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(publication, environ={})
    issues = load_issues(config, SAMPLE_TODAY)
    slug = "2026-10-listening-rounds"
    by_slug = find_issue(config, issues, slug)
    assert by_slug.slug == slug
    absolute = str(publication / "content" / f"{slug}.md")
    assert find_issue(config, issues, absolute) is by_slug
    monkeypatch.chdir(publication)
    assert find_issue(config, issues, f"content/{slug}.md") is by_slug
    monkeypatch.chdir(publication / "content")
    assert find_issue(config, issues, f"{slug}.md") is by_slug


def test_find_issue_unknown_slug_lists_the_known_ones(publication: Path) -> None:
    config = load_config(publication, environ={})
    issues = load_issues(config, SAMPLE_TODAY)
    with pytest.raises(IssueError) as caught:
        find_issue(config, issues, "2026-11-nothing")
    assert caught.value.field == "ISSUE"
    assert "2026-10-listening-rounds" in caught.value.message


def test_find_issue_path_outside_content(publication: Path, tmp_path: Path) -> None:
    config = load_config(publication, environ={})
    issues = load_issues(config, SAMPLE_TODAY)
    stray = tmp_path / "stray.md"
    stray.write_text("---\ntitle: Stray\n---\n", encoding="utf-8")
    with pytest.raises(IssueError) as caught:
        find_issue(config, issues, str(stray))
    assert "not in this publication's content/ folder" in caught.value.message


def test_check_unknown_issue_is_one_line(publication: Path) -> None:
    code, _, stderr = run_cli(publication, "check", "2026-11-nothing")
    assert code == 2
    assert stderr.count("\n") == 1
    assert stderr.startswith("error: ISSUE: no issue '2026-11-nothing'")


@pytest.mark.parametrize(
    "text",
    ["2026-07-your-first-customer", "a", "a-b", "abc-def", "x1-2y", "ab--cd", "-ab", "ab-",
     "Ab-cd", "ab cd", "ab_cd", "straße", "Привет мир", "a-b-c-d-e-f-g-h"],
)  # fmt: skip
@pytest.mark.parametrize("max_length", [0, 1, 3, 4, 5, 8, 15, 27, 40])
def test_a_name_that_is_already_a_slug_is_kept_as_python_slugify_keeps_it(
    text: str, max_length: int
) -> None:
    """links.slugify returns a slug unchanged without python-slugify (a fast start): always
    what python-slugify itself returns, with or without a length limit."""
    expected = python_slugify(text, max_length=max_length, word_boundary=bool(max_length))
    assert links.slugify(text, max_length=max_length) == expected
