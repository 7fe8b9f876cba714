"""Exports from other services keep readers' choices (issue 15, part 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

DATA = Path(__file__).parent / "data"


def statuses(root: Path) -> dict[str, str]:
    code, out, err = run_cli(root, "subscribers", "list")
    assert code == 0, err
    return {line.split("\t")[0]: line.split("\t")[1] for line in out.splitlines()}


@pytest.mark.parametrize(
    ("files", "expected", "said"),
    [
        (
            ["mailchimp_subscribed.csv", "mailchimp_unsubscribed.csv", "mailchimp_cleaned.csv"],
            {
                "ada@example.org": "active",
                "grace@example.org": "active",
                "alan@example.org": "unsubscribed",
                "gone@example.org": "bounced",
            },
            "Mailchimp export: 1 cleaned -> bounced",
        ),
        (
            ["substack.csv"],
            {
                "free.reader@example.org": "active",  # free plan, mail enabled
                "paid.reader@example.org": "active",
                "quiet.reader@example.org": "unsubscribed",
            },
            "Substack export: 1 email_disabled -> unsubscribed",
        ),
        (
            ["buttondown.csv"],
            {
                "reg@example.org": "active",
                "left@example.org": "unsubscribed",
                "bad@example.org": "bounced",
            },
            "Buttondown export: 1 unactivated -> skipped",
        ),
        (
            ["listmonk.csv"],
            {"on@example.org": "active", "blocked@example.org": "unsubscribed"},
            "listmonk export: 1 blocklisted -> unsubscribed",
        ),
        (
            ["ghost.csv"],
            {"member@example.org": "active", "silent@example.org": "unsubscribed"},
            "Ghost export: 1 not subscribed to emails -> unsubscribed",
        ),
        (
            ["kit.csv"],
            {
                "kim@example.org": "active",
                "lee@example.org": "unsubscribed",
                "max@example.org": "bounced",
                "ned@example.org": "complained",
            },
            "Kit export: 1 inactive -> skipped",
        ),
    ],
)
def test_each_service_export_keeps_choices(
    publication: Path, files: list[str], expected: dict[str, str], said: str
) -> None:
    output = ""
    for name in files:
        code, out, err = run_cli(publication, "subscribers", "import", str(DATA / name))
        assert code == 0, err
        output += out
    assert said in output
    assert statuses(publication) == expected


def test_first_names_come_from_the_service_columns(publication: Path) -> None:
    run_cli(publication, "subscribers", "import", str(DATA / "kit.csv"))
    code, out, _ = run_cli(publication, "subscribers", "list", "--status", "active")
    assert code == 0 and out == "kim@example.org\tactive\tKim\n"


def test_status_option_imports_a_whole_file_as_suppressions(publication: Path) -> None:
    code, out, err = run_cli(
        publication,
        "subscribers", "import", str(DATA / "mailchimp_subscribed.csv"),
        "--status", "unsubscribed",
    )  # fmt: skip
    assert code == 0, err
    assert "2 subscribed -> unsubscribed" in out
    assert set(statuses(publication).values()) == {"unsubscribed"}
    # Suppressions stay: a later import of the same people as subscribed re-activates nobody.
    run_cli(publication, "subscribers", "import", str(DATA / "mailchimp_subscribed.csv"))
    assert set(statuses(publication).values()) == {"unsubscribed"}


def test_dry_run_reports_and_writes_nothing(publication: Path) -> None:
    code, out, err = run_cli(
        publication, "subscribers", "import", str(DATA / "kit.csv"), "--dry-run"
    )
    assert code == 0, err
    assert "dry run: 4 rows would be imported; nothing written" in out
    assert "1 cancelled -> unsubscribed" in out
    assert not (publication / "subscribers" / "subscribers.db").exists()
