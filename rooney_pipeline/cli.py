"""The ``rooney`` console script: rooney_core's commands plus the pipeline's."""

from __future__ import annotations

import sys

import click

from rooney_core.cli import _say, cli


@cli.command("demo")
@click.option("--symbols", default=None, help="Comma-separated subset of the pipeline's instruments.")
@click.option("--regenerate", is_flag=True, help="Regenerate the sample data even if present.")
def demo(symbols: str | None, regenerate: bool) -> None:
    """Run the demo pipeline on generated sample data (or $ROONEY_DATA_DIR) in Dagster."""
    from rooney_pipeline.demo import run_demo

    syms = [s.strip() for s in symbols.split(",")] if symbols else None
    ok = run_demo(syms, regenerate=regenerate, say=_say)
    sys.exit(0 if ok else 1)


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
