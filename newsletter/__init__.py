"""newsletter: Markdown issues in, inlined-CSS email, web archive and a resumable send out."""

__version__ = "0.1.0"
