"""The privacy-first report: figures per issue and over time, as tables, JSON and a page."""
