"""Shared pieces of the command line: the typer apps, consoles, options, config merging."""

from __future__ import annotations

import logging
import sys
import traceback
import warnings
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from promptembed import __version__
from promptembed.config import Config, EmbedderConfig, load_config
from promptembed.templates import BUILTIN_TEMPLATES

GLOBAL_FLAGS = frozenset({"-v", "--verbose", "-q", "--quiet"})


class GlobalFlagsGroup(TyperGroup):
    """The root command group; ``-v``/``-q`` work before or after the subcommand.

    Click reads a group's options only before its subcommand, but users (and the CLI's
    own hints, "-v for the traceback") put them anywhere: they are moved to the front.
    Everything after ``--`` is left alone.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Hoist the global flags, then parse as usual."""
        end = args.index("--") if "--" in args else len(args)
        flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
        rest = [a for a in args[:end] if a not in GLOBAL_FLAGS] + args[end:]
        return super().parse_args(ctx, flags + rest)


app = typer.Typer(
    cls=GlobalFlagsGroup,
    help="Sentence embeddings from generative LLMs through prompts.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

eval_app = typer.Typer(help="Evaluate an embedder.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

console = Console()

err = Console(stderr=True, soft_wrap=True)

# Options shared by every command that builds an embedder. Each overrides the
# config file's [embedder] table when given.

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]

ModelOpt = Annotated[str | None, typer.Option(help="Alias, hub id, directory or .gguf.")]

TemplateOpt = Annotated[
    str | None,
    typer.Option(help=f"{', '.join(BUILTIN_TEMPLATES)}, name@layer or custom."),
]

QueryTemplateOpt = Annotated[str | None, typer.Option(help="Template for queries.")]

LayerOpt = Annotated[int | None, typer.Option(help="Pooled layer (-1 last, -2 ...).")]

PoolingOpt = Annotated[str | None, typer.Option(help="last or mean.")]

DeviceOpt = Annotated[str | None, typer.Option(help="auto, cpu, mps, cuda[:N].")]

DTypeOpt = Annotated[str | None, typer.Option(help="auto, float32, bfloat16, float16, int8 (CPU).")]

MaxLenOpt = Annotated[int | None, typer.Option(help="Max tokens per prompt.")]

BatchOpt = Annotated[int | None, typer.Option(help="Max texts per forward pass.")]


def build_config(config: Path | None, **overrides: Any) -> Config:
    """Merge a config file (or defaults) with the CLI's explicit options."""
    base = load_config(config) if config is not None else Config()
    given = {k: v for k, v in overrides.items() if v is not None}
    # Unset fields are left out so that defaults that follow the model are re-derived.
    embedder = EmbedderConfig.model_validate(
        {**base.embedder.model_dump(exclude_unset=True), **given}
    )
    return base.model_copy(update={"embedder": embedder})


_verbose = False  # set by -v: errors then carry their traceback
_quiet = False  # set by -q: no progress bars or status lines


def quiet() -> bool:
    """Whether ``-q`` was given: commands then show no progress."""
    return _quiet


def progress(as_json: bool) -> bool:
    """Whether to draw progress bars: not with ``-q``, nor for ``--json`` read by a program.

    The bars go to stderr, so ``--json`` keeps them while a person watches (stderr is a
    terminal): an evaluation that reranks a whole collection runs for an hour on a CPU.
    """
    return not _quiet and (not as_json or sys.stderr.isatty())


def fail(error: BaseException) -> typer.Exit:
    """Print a one-line error (a config error per field) and return exit code 2.

    With ``-v`` the traceback is printed first.
    """
    if _verbose:
        err.print("".join(traceback.format_exception(error)), markup=False, highlight=False)
    if isinstance(error, ValidationError):
        message = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})"
            for e in error.errors(include_url=False)
        )
    else:
        message = str(error)
    hint = "" if _verbose else " [dim](-v for the traceback)[/]"
    err.print(f"[bold red]error:[/] {escape(message)}{hint}", markup=True, highlight=False)
    return typer.Exit(code=2)


_NOISY_LOGGERS = ("torchao", "torchao.kernel.intmm", "torch.utils._pytree", "bm25s")


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """A warning as one line; where it was raised only with -v.

    The place Python would name is the CLI's own machinery (typer), not the user's.
    """
    where = f" [dim]({filename}:{lineno})[/]" if _verbose else ""
    err.print(f"[yellow]warning:[/] {escape(str(message))}{where}", highlight=False)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"promptembed {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log details; errors show their traceback.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only results and errors: no progress.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    global _verbose, _quiet
    _verbose, _quiet = verbose, quiet and not verbose
    warnings.showwarning = _show_warning
    # -q: no status lines either (a first use's conversion notice and its steps).
    logging.getLogger("promptembed").setLevel(logging.ERROR if _quiet else logging.NOTSET)
    # force: each invocation logs to its own stderr (the CLI owns the root logger).
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, force=True)
    if not verbose:
        # transformers imports torchao whenever it is installed (the int8 extra), and
        # torchao then warns about CUDA-only kernels on every CPU run; bm25s logs its
        # index builds at DEBUG on a logger of its own level.
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
