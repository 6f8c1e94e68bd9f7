"""A progress bar on stderr for long reads, shown only when stderr is a terminal."""

from __future__ import annotations

import contextlib
import sys

from diagnose.capture import Capture


@contextlib.contextmanager
def progress_for(capture: Capture, min_bytes: int = 64 << 20):
    """Yields a `tick()` to call after each chunk; silent for pipes, stdin and small files."""
    total = capture.info.size
    if not sys.stderr.isatty() or not total or total < min_bytes:
        yield lambda: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=_stderr_console(), transient=True) as bar:
        task = bar.add_task("reading", total=total)
        yield lambda: bar.update(task, completed=capture.progress()[0])


def _stderr_console():
    from rich.console import Console

    return Console(file=sys.stderr)
