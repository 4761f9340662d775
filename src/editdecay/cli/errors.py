"""What every command shares: the console, logging, and `_user_errors` (one line, exit code 2)."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

log = logging.getLogger(__name__)

console = Console(width=None if sys.stdout.isatty() else 140)

USER_ERRORS = (ValueError, KeyError, FileNotFoundError, RuntimeError)


def setup_logging(verbose: bool) -> None:
    # PEFT still calls a transformers method deprecated for v6; the warning says nothing to our users
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )
    logging.basicConfig(
        level=logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )
    logging.getLogger("editdecay").setLevel(logging.DEBUG if verbose else logging.INFO)


def user_message(err: BaseException) -> str:
    """The error as one line."""
    return " ".join(str(err).split())


@contextmanager
def _user_errors(on_error: Callable[[BaseException], None] | None = None) -> Iterator[None]:
    """A wrong setting, a missing file, an unknown model: one red line and exit code 2, no traceback.
    `on_error` also sees every other failure (the edit job appends it to its log)."""
    try:
        yield
    except typer.Exit:  # click's Exit is a RuntimeError: let a deliberate exit through
        raise
    except USER_ERRORS as err:
        if on_error is not None:
            on_error(err)
        console.print(f"[red]error:[/red] {escape(user_message(err))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except Exception as err:
        if on_error is not None:
            on_error(err)
        raise
