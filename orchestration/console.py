"""What ``elt`` shows in the terminal, and the log file that keeps everything else.

The terminal gets one line per stage (a live bar while the stage works, when the terminal is
one), the warnings and errors of any library in one line each, and the command's own
output; everything at INFO and above, tracebacks included, goes to the run's log file
(``ELT_LOG_DIR``). With ``-v`` the terminal gets everything, tracebacks too.

The stages speak to the terminal through the :data:`PROGRESS` logger (:func:`stage_event`),
so the same events reach a deployment's worker log as plain lines.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from pathlib import Path
from typing import Any

#: The logger of stage events: start, advance (done of total), end.
PROGRESS = logging.getLogger("elt.progress")
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def stage_event(
    stage: str,
    event: str,
    *,
    done: int | None = None,
    total: int | None = None,
    line: str = "",
) -> None:
    """Tell the terminal about a stage: ``start``, ``advance`` (``done`` of ``total``) or
    ``end`` (with the stage's one ``line``)."""
    PROGRESS.info(
        "%s %s %s",
        stage,
        event,
        line or (f"{done}/{total}" if done is not None else ""),
        extra={"elt_stage": stage, "elt_event": event, "elt_done": done, "elt_total": total},
    )


class ConsoleLines(logging.Handler):
    """The terminal's view (see the module docstring). Its name has no leading underscore on
    purpose: Prefect keeps a root handler of the user's and adds its own console only when
    there is none."""

    def __init__(self, verbose: bool = False) -> None:
        super().__init__(logging.DEBUG if verbose else logging.INFO)
        self.verbose = verbose
        self.setFormatter(logging.Formatter(_FORMAT, "%H:%M:%S"))
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.name == PROGRESS.name:
                self._stage(record)
            elif self.verbose:
                self._write(self.format(record))
            elif record.levelno >= logging.WARNING:
                self._write(f"{record.levelname.lower()}: {_first_line(record.getMessage())}")
        except Exception:
            self.handleError(record)

    def _stage(self, record: logging.LogRecord) -> None:
        stage, event = record.__dict__["elt_stage"], record.__dict__["elt_event"]
        if event == "end":
            task = self._tasks.pop(stage, None)
            if task is not None:
                self._bar.remove_task(task)
            self._write(record.getMessage().split(" ", 2)[2])
            if not self._tasks and self._bar is not None:
                self._bar.stop()
                self._bar = None
            return
        if not _is_terminal():
            return
        if self._bar is None:
            self._bar = _new_bar()
            self._bar.start()
        if event == "start":
            self._tasks[stage] = self._bar.add_task(stage, total=None)
        elif event == "advance" and stage in self._tasks:
            done, total = record.__dict__["elt_done"], record.__dict__["elt_total"]
            self._bar.update(self._tasks[stage], completed=done, total=total)

    def _write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()


def _new_bar() -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<11}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _is_terminal() -> bool:
    return sys.stderr.isatty()


def _first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else ""


def setup_logging(verbose: bool) -> None:
    """The terminal handler on the root logger (before Prefect configures its own)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, ConsoleLines):
            root.removeHandler(handler)
    root.addHandler(ConsoleLines(verbose))
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    quiet = ("httpx", "httpcore", "urllib3", "asyncio", "fsspec", "s3fs", "botocore", "aiobotocore")
    for name in quiet if not verbose else ():
        logging.getLogger(name).setLevel(logging.WARNING)


def open_log_file(log_dir: str, command: str) -> Path:
    """Start the log file of one command's run: ``<log_dir>/elt-<command>-<UTC time>.log``."""
    folder = Path(log_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"elt-{command}-{stamp}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    return path.resolve()


class ProgressBar:
    """A bar on the terminal as a ``progress(done, total)`` callback (nothing elsewhere)."""

    def __init__(self, description: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False,
            disable=not _is_terminal(),
        )
        self._task = self._bar.add_task(description, total=None)

    def __enter__(self) -> ProgressBar:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def __call__(self, done: int, total: int) -> None:
        self._bar.update(self._task, completed=done, total=total)
