"""The application's config: ``configs/`` (or $ROONEY_CONFIG_DIR), validated, then checked
against the feature registry, before any work starts (R5).

Every entry point takes its config from ``load``: the Dagster partitions and resources, the
CLI, the demo and the dashboard. A process loads one directory once and every caller gets the
same object, so the instrument partitions and the resources cannot disagree; an edited file
(a changed size or mtime) is read again.
"""

from __future__ import annotations

import os
from pathlib import Path

from rooney_core.config import RooneyConfig, config_dir_from_env, load_config
from rooney_core.features import check_selection

_FILES = ("instruments.yml", "strategy.yml", "features.yml", "pipeline.yml", "validation.yml")
_LOADED: dict[Path, tuple[tuple, RooneyConfig]] = {}


def _stamp(cdir: Path) -> tuple:
    out = []
    for name in _FILES:
        try:
            st = (cdir / name).stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)  # load_config names the missing file
    return tuple(out)


def load(config_dir: str | os.PathLike[str] | None = None) -> RooneyConfig:
    """The validated, feature-checked config of ``config_dir`` (default $ROONEY_CONFIG_DIR, else
    configs/): a ConfigError naming file and key on any problem."""
    cdir = Path(config_dir).resolve() if config_dir else config_dir_from_env()
    stamp = _stamp(cdir)
    hit = _LOADED.get(cdir)
    if hit is None or hit[0] != stamp:
        _LOADED[cdir] = hit = (stamp, check_selection(load_config(cdir)))
    return hit[1]
