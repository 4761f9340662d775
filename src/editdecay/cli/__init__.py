"""The `editdecay` command line: thin wrappers over the Python API that print small tables.

Option defaults and help come from the dataclass fields they fill (EditJob, MendConfig, the
registry's and the reproduction's defaults), so a default is written once. Errors the user can fix
(a wrong setting, a missing file) print one line and exit with code 2: see `errors._user_errors`.

Modules: `edit` (edit, mend-train), `study` (run, grid, report, reproduce), `analyse`, `info`
(models, data), `attack`, `forensics`, `finetune`,
`errors` (the console, logging and the shared error handling).
"""

from __future__ import annotations

import os
import sys

import typer

from ..models.registry import ALLOW_DOWNLOAD_ENV, DEFAULT_DEVICE
from . import analyse as _analyse
from . import attack as _attack
from . import edit as _edit
from . import finetune as _finetune
from . import forensics as _forensics
from . import info as _info
from . import study as _study
from .edit import _overrides, _parse_layers
from .errors import USER_ERRORS, _user_errors, console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Edit facts into causal LMs, fine-tune them, and measure which edits survive.",
)


@app.callback()
def _global_options(
    device: str = typer.Option(
        DEFAULT_DEVICE,
        "--device",
        envvar="EDITDECAY_DEVICE",
        help="where models run: auto (a CUDA GPU if there is one, else the CPU), "
        "cpu, cuda or cuda:N",
    ),
    allow_download: bool = typer.Option(
        False,
        "--allow-download",
        envvar=ALLOW_DOWNLOAD_ENV,
        help="let a --model that is neither registered, a local directory nor in the local "
        "Hugging Face cache be fetched from the hub (default: offline)",
    ),
):
    """Edit facts into causal LMs, fine-tune them, and measure which edits survive."""
    from ..models.registry import DEVICE_ENV, resolve_device

    try:
        resolve_device(device)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--device") from None
    os.environ[DEVICE_ENV] = device  # every model load in this process (and local workers) reads it
    if allow_download:
        os.environ[ALLOW_DOWNLOAD_ENV] = "1"


app.command()(_edit.edit)
app.command("mend-train")(_edit.mend_train)
app.command()(_info.models)
app.command()(_info.data)
app.command()(_study.run)
app.command()(_study.grid)
app.command()(_study.report)
app.command()(_study.reproduce)
app.command("pack-store")(_study.pack_store)
app.command()(_analyse.analyse)
app.command()(_attack.attack)
app.command()(_attack.export)
app.command()(_attack.evaluate)
app.command()(_attack.triggers)
app.command()(_forensics.forensics)
app.command()(_forensics.detect)
app.command()(_finetune.finetune)
app.command()(_finetune.repair)

__all__ = ["app", "console", "USER_ERRORS", "_user_errors", "_overrides", "_parse_layers"]


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
