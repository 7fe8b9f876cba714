"""The issue's HTML fragment as an email needs it, where the archive page differs.

Footnotes: Python-Markdown links a marker to its note and back with in-page anchors
(`#fn:1`, `#fnref:1`). Most mail clients break those (Gmail rewrites them, Outlook opens a
browser), so in the email a marker is a plain superscript number, the back-links go, and the
notes sit under a "Notes" heading where the reader finds them by number, as in print.
"""

from __future__ import annotations

NOTES_HEADING = "Notes"


def email_fragment(fragment: str) -> str:
    """`fragment` with footnotes that work without in-page anchors."""
    if "footnote" not in fragment:  # most issues: no parse at all
        return fragment
    import lxml.html  # here: an issue without notes, and `send`'s start, need no lxml

    root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    for sup in root.xpath("//sup[a[contains(@class, 'footnote-ref')]]"):
        number, tail = sup.text_content().strip(), sup.tail
        sup.clear()  # drops the id (an anchor target) and the link, and the tail: restored
        sup.text, sup.tail = number, tail
    for backref in root.xpath("//a[contains(@class, 'footnote-backref')]"):
        # Python-Markdown puts a no-break space before the back-link; it would dangle.
        previous = backref.getprevious()
        parent = backref.getparent()
        if previous is not None:
            previous.tail = (previous.tail or "").rstrip("\xa0 ") + (backref.tail or "")
        else:
            parent.text = (parent.text or "").rstrip("\xa0 ") + (backref.tail or "")
        parent.remove(backref)
    for note in root.xpath("//div[contains(@class, 'footnote')]"):
        for element in note.iter():
            element.attrib.pop("id", None)
        heading = lxml.html.Element("p", {"class": "notes-heading"})
        heading.text = NOTES_HEADING
        rules = note.findall("hr")  # the separator stays above the heading
        note.insert(note.index(rules[0]) + 1 if rules else 0, heading)
    return (root.text or "") + "".join(
        lxml.html.tostring(child, encoding="unicode") for child in root
    )
