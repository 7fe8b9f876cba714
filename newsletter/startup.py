"""Loading code without the garbage collector walking it.

The command line loads click and its command group (newsletter.cli), a command loads its
modules late (newsletter.cli.main), and the first render loads the renderer's libraries
(Markdown, Jinja2, premailer, cssutils, lxml). Each load allocates tens of thousands of objects
that live until the process exits (modules, classes, functions) and frees almost none, yet
every 700 allocations start a collection that walks the young ones, and the survivors are
walked again by each older collection. Measured on `send` (2026-12-01, tests/test_cli_start.py
counts them): 13 collections while the command line loaded (~4 ms), 20 while `send` loaded
(5-12 ms), 136 during the first render (61-93 ms, ~10% of it); with `loading()`, none.

`loading()` pauses collection while the code loads, then moves everything alive to the
permanent generation (gc.freeze), so no later collection walks it again. The price: garbage
left in reference cycles while loading is kept until the process exits (~9,000 objects after
the first render). Each use is a first load (a command module not imported yet, a process's
first render), so that is paid once a process. Worker processes forked later inherit the
frozen generation: their collections leave it alone too.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """No collection inside; what is alive at the end is never collected (nor walked) again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
