"""``python -m rooney_pipeline.cli``: the ``rooney`` console script."""

from rooney_pipeline.cli import main

main()
