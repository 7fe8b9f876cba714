"""`newsletter check`: each kind of problem, where it is reported, and the exit code."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

SLUG = "2031-01-check-me"
FRONT_LINES = 4  # ---, title, date, summary


def add_issue(root: Path, body: str, *, extra_front: str = "", date: str = "2031-01-07") -> Path:
    """An issue whose body starts on line FRONT_LINES + 2 (+ extra front-matter lines)."""
    path = root / "content" / f"{SLUG}.md"
    path.write_text(
        f"---\ntitle: Check me\ndate: {date}\nsummary: A test issue.\n{extra_front}---\n{body}\n",
        encoding="utf-8",
    )
    return path


def body_line(offset: int = 0) -> int:
    return FRONT_LINES + 2 + offset


def check(root: Path, *args: str) -> tuple[int, str, str]:
    code, stdout, stderr = run_cli(root, "check", *args)
    assert "Traceback" not in stdout + stderr
    return code, stdout, stderr


def test_the_sample_publication_checks_clean(publication: Path) -> None:
    code, stdout, stderr = check(publication)
    assert (code, stderr) == (0, "")
    assert stdout == "checked 5 issue(s): 0 error(s), 0 warning(s)\n"
    assert check(publication, "--strict")[0] == 0


def test_a_clean_new_issue(publication: Path) -> None:
    add_issue(publication, "Plain words. A stocktake, a TKO and a todo-list are not marks.")
    code, stdout, stderr = check(publication, SLUG)
    assert (code, stderr) == (0, "")
    assert "checked 1 issue(s): 0 error(s), 0 warning(s)" in stdout


def test_broken_link(publication: Path) -> None:
    path = add_issue(publication, "Intro.\n\nSee [the old issue](2020-01-gone.md#top).")
    code, stdout, stderr = check(publication, SLUG)
    assert code == 1
    assert stderr.startswith(f"{path}:{body_line(2)}: error: broken link '2020-01-gone.md#top'")
    assert "1 error(s)" in stdout


def test_broken_image(publication: Path) -> None:
    path = add_issue(publication, "![A chart](images/missing-chart.png)")
    code, _, stderr = check(publication, SLUG)
    assert code == 1
    assert stderr.startswith(
        f"{path}:{body_line()}: error: broken image 'images/missing-chart.png'"
    )
    assert str(publication / "content" / "images" / "missing-chart.png") in stderr


@pytest.mark.parametrize(
    ("markdown", "what"),
    [("[settings](../newsletter.yaml)", "link"), ("![Logo](../templates/email.txt)", "image")],
)
def test_link_outside_content_is_not_published(publication: Path, markdown: str, what: str) -> None:
    path = add_issue(publication, f"Intro.\n\n{markdown}")
    written = markdown.split("(")[1].rstrip(")")
    code, _, stderr = check(publication, SLUG)
    assert code == 1
    assert stderr == (
        f"{path}:{body_line(2)}: error: {what} {written!r} points outside content/, which is "
        "not published; move the file into content/\n"
    )


def test_image_without_alt(publication: Path) -> None:
    path = add_issue(publication, "Text.\n\n![](images/service-chain.png)")
    code, _, stderr = check(publication, SLUG)
    assert code == 1
    assert stderr == (
        f"{path}:{body_line(2)}: error: image 'images/service-chain.png' has no alt text; "
        "write ![what it shows](...)\n"
    )


def test_remote_image_without_alt(publication: Path) -> None:
    add_issue(publication, "![ ](https://cdn.example.org/x.png)")
    code, _, stderr = check(publication, SLUG)
    assert code == 1
    assert "has no alt text" in stderr


@pytest.mark.parametrize("mark", ["TK", "TODO", "FIXME", "lorem", "Lorem"])
def test_leftover_placeholder(publication: Path, mark: str) -> None:
    path = add_issue(publication, f"First line.\n\nThe figure is {mark} percent.")
    code, _, stderr = check(publication, SLUG)
    assert code == 1
    assert stderr == f"{path}:{body_line(2)}: error: leftover placeholder {mark!r}\n"


def test_placeholder_in_front_matter_and_code(publication: Path) -> None:
    path = add_issue(publication, "```\nTODO: remove\n```", extra_front="author: TK\n")
    code, _, stderr = check(publication, SLUG)
    assert code == 1
    lines = stderr.splitlines()
    assert lines == [
        f"{path}:5: error: leftover placeholder 'TK'",
        f"{path}:{body_line(2)}: error: leftover placeholder 'TODO'",
    ]


def test_email_over_100_kb(publication: Path) -> None:
    paragraph = "Serving colleagues well is how we serve customers well, every single day. " * 2
    add_issue(publication, "\n\n".join([paragraph] * 800))
    code, _, stderr = check(publication, SLUG)
    assert code == 1
    assert "error: HTML is" in stderr
    assert "Gmail clips emails over about 100 KB" in stderr
    size_kb = int(stderr.split("HTML is ")[1].split(" KB")[0])
    assert size_kb > 100


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_html_template_without_unsubscribe_link(publication: Path) -> None:
    template = publication / "templates" / "email.html"
    _edit(
        template,
        '<a href="{{ slot.unsubscribe_url }}">email us to unsubscribe</a>',
        "unsubscribe",
    )
    code, stdout, stderr = check(publication)
    assert code == 1
    lines = stderr.splitlines()
    assert len(lines) == 5  # once per issue
    assert all(line.startswith(f"{template}: error: no unsubscribe link") for line in lines)
    assert "5 error(s)" in stdout


def test_unsubscribe_url_outside_a_link_is_not_enough(publication: Path) -> None:
    template = publication / "templates" / "email.html"
    _edit(
        template,
        '<a href="{{ slot.unsubscribe_url }}">email us to unsubscribe</a>',
        "go to {{ slot.unsubscribe_url }}",
    )
    code, _, stderr = check(publication, "2026-10-listening-rounds")
    assert code == 1
    assert f"{template}: error: no unsubscribe link" in stderr


def test_html_template_without_unsubscribe_address(publication: Path) -> None:
    template = publication / "templates" / "email.html"
    _edit(template, '<span class="address">{{ slot.unsubscribe_address }}</span>', "")
    code, _, stderr = check(publication, "2026-10-listening-rounds")
    assert code == 1
    assert stderr == f"{template}: error: no unsubscribe address: expected " + (
        "{{ slot.unsubscribe_address }}\n"
    )


def test_text_template_without_unsubscribe(publication: Path) -> None:
    template = publication / "templates" / "email.txt"
    _edit(template, "{{ slot.unsubscribe_address }}", "")
    _edit(template, "{{ slot.unsubscribe_url }}", "")
    code, _, stderr = check(publication, "2026-10-listening-rounds")
    assert code == 1
    assert stderr.startswith(f"{template}: error: no unsubscribe address or link")


def test_a_custom_rrule_decides_the_scheduled_day(publication: Path) -> None:
    config = publication / "newsletter.yaml"
    lines = config.read_text(encoding="utf-8").splitlines()
    lines = [
        "schedule: {rrule: 'FREQ=MONTHLY;BYDAY=-1TH', time: '09:00'}  # last Thursday"
        if line.startswith("schedule:")
        else line
        for line in lines
    ]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # 2031-01-30 is the last Thursday of January 2031.
    add_issue(publication, "Body.", extra_front="status: ready\n", date="2031-01-30")
    code, stdout, stderr = check(publication, "--strict", SLUG)
    assert (code, stderr) == (0, ""), stdout


def test_ready_issue_off_the_first_tuesday_is_a_warning(publication: Path) -> None:
    # 2031-01-08 is a Wednesday; the first Tuesday of January 2031 is the 7th.
    path = add_issue(publication, "Body.", extra_front="status: ready\n", date="2031-01-08")
    code, stdout, stderr = check(publication, SLUG)
    assert (code, stderr) == (0, "")
    assert stdout.splitlines() == [
        f"{path}:3: warning: ready issue dated 2031-01-08 (wednesday), but the schedule's day "
        "that month is 2031-01-07: it would never be sent by `send --due`",
        "checked 1 issue(s): 0 error(s), 1 warning(s)",
    ]
    code, stdout, _ = check(publication, "--strict", SLUG)
    assert code == 1
    assert "1 warning(s)" in stdout


def test_draft_off_schedule_is_fine(publication: Path) -> None:
    add_issue(publication, "Body.", date="2031-01-08")
    assert check(publication, "--strict", SLUG)[0] == 0


def test_css_warning_from_the_inliner(publication: Path) -> None:
    template = publication / "templates" / "email.html"
    _edit(template, "<style>\n", "<style>\n.oops { colr: red; }\n")
    code, stdout, stderr = check(publication, "2026-10-listening-rounds")
    assert (code, stderr) == (0, "")
    assert f"{template}: warning: CSS: " in stdout
    assert "colr" in stdout
    assert check(publication, "--strict", "2026-10-listening-rounds")[0] == 1
    # Reported for every issue, not only the first one rendered in this process.
    code, stdout, _ = check(publication)
    assert code == 0
    css_lines = [line for line in stdout.splitlines() if "warning: CSS: " in line]
    assert len({line for line in css_lines if "colr" in line}) >= 1
    assert sum("colr" in line for line in css_lines) >= 5


def test_several_problems_are_all_reported_in_line_order(publication: Path) -> None:
    path = add_issue(
        publication,
        "![](images/nope.png)\n\nTK\n\n[x](nowhere.md)",
        extra_front="status: ready\n",
        date="2031-01-14",
    )
    code, stdout, stderr = check(publication, SLUG)
    assert code == 1
    errors = stderr.splitlines()
    offset = 1  # the extra front-matter line
    assert errors == [
        f"{path}:{body_line(offset)}: error: broken image 'images/nope.png': no file "
        f"{publication / 'content' / 'images' / 'nope.png'}",
        f"{path}:{body_line(offset)}: error: image 'images/nope.png' has no alt text; "
        "write ![what it shows](...)",
        f"{path}:{body_line(offset + 2)}: error: leftover placeholder 'TK'",
        f"{path}:{body_line(offset + 4)}: error: broken link 'nowhere.md': no file "
        f"{publication / 'content' / 'nowhere.md'}",
    ]
    assert f"{path}:3: warning: ready issue dated 2031-01-14" in stdout
    assert "4 error(s), 1 warning(s)" in stdout


def test_check_by_path(publication: Path) -> None:
    path = add_issue(publication, "TODO")
    code, stdout, _ = check(publication, str(path))
    assert code == 1
    assert "checked 1 issue(s): 1 error(s)" in stdout
