"""The static web archive built from the same issues: pages, search, writing files."""
