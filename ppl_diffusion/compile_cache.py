"""JAX's persistent compilation cache: on CPU, compiling dominates short runs, and a second run
of the same programs loads them from disk instead."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache as jax_compilation_cache

DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / (
    "ppl_diffusion/jax"
)

_SETTINGS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def enable_compile_cache(cache_dir: Path = DEFAULT_CACHE_DIR) -> None:
    """Turn on JAX's persistent compilation cache in ``cache_dir`` for this process."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@contextlib.contextmanager
def compile_cache(cache_dir: Path):
    """Use ``cache_dir`` as the compilation cache inside the block, then put the previous
    settings back, so that no later compilation writes to a folder that may be gone."""
    previous = {name: getattr(jax.config, name) for name in _SETTINGS}
    enable_compile_cache(cache_dir)
    try:
        yield
    finally:
        for name, value in previous.items():
            jax.config.update(name, value)
        # JAX opens its cache once per process; resetting it makes the restored folder count.
        jax_compilation_cache.reset_cache()
