"""Ray for the Ray engine: imported only when asked for, a session (the cluster at RAY_ADDRESS, else a small local
one for the call), the cluster's size, and the contiguous spans work is cut into."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ray_module", "session", "cluster_size", "partitions", "even_spans"]


# A local cluster for one command: two CPUs (the CI machines have two cores), no dashboard, quiet logs.
_LOCAL_CPUS = 2


# Queries per pool / curation partition: enough work per task to outweigh its scheduling.
_QUERIES_PER_PART = 2048


def ray_module() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is the encoding stage)
    except ImportError:
        raise ImportError("--engine ray needs Ray: pip install 'ray==2.58.0'") from None
    return ray


@contextmanager
def session() -> Iterator[None]:
    """Ray, for the duration of the block: the cluster at RAY_ADDRESS when set, else a local one (shut down at the
    end). Nested sessions share the outer one."""
    ray = ray_module()
    if ray.is_initialized():
        yield
        return
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**quiet)  # ray.init reads RAY_ADDRESS itself; the cluster's own size stands
    else:
        # Workers import hnm_core as this process does (an editable install, or PYTHONPATH in a checkout).
        ray.init(num_cpus=_LOCAL_CPUS, runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(_import_paths())}},
                 **quiet)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its per-run INFO lines and progress notices
    try:
        yield
    finally:
        ray.shutdown()


def _import_paths() -> list[str]:
    here = str(Path(__file__).resolve().parents[2])  # the folder holding hnm_core/engines/ray_engine.py
    return [here, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != here)]


def cluster_size() -> tuple[int, int]:
    """(CPUs, GPUs) of the cluster."""
    resources = ray_module().cluster_resources()
    return max(1, int(resources.get("CPU", 1))), int(resources.get("GPU", 0))


def partitions(n_queries: int) -> int:
    """Query partitions: one per CPU at least, so every CPU works, and more for many queries."""
    return max(cluster_size()[0], math.ceil(n_queries / _QUERIES_PER_PART))


def even_spans(n: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """`parts` contiguous (start, stop) ranges covering range(n), none empty (fewer when n is small), each starting
    at a multiple of `align`."""
    blocks = -(-n // align)
    parts = max(1, min(parts, blocks))
    bounds = np.minimum(np.linspace(0, blocks, parts + 1).round().astype(int) * align, n)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
