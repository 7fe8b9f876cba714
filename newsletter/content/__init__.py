"""Reading issues and rendering them: front-matter, Markdown, templates, numbers, checks."""
