"""Chains split over several JAX devices.

NumPyro's ``chain_method="parallel"`` runs one chain per device (and falls back to sequential
chains when there are more chains than devices). :func:`sharded_chains` instead splits the
chains into one equal block per device and vectorizes each block on its device: a ``pmap``
over devices of a ``vmap`` over the block. Use it as
``MCMC(..., chain_method=sharded_chains())`` with any kernel of this package (or NumPyro's).
On CPU, create several host devices before JAX starts, e.g.
``numpyro.set_host_device_count(2)``. :func:`chain_mesh` is the one-axis device mesh that the
amortized sampler shards its training batches over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh


def chain_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``"chains"`` over ``devices`` (default: every device)."""
    return Mesh(np.array(list(devices) if devices is not None else jax.devices()), ("chains",))


def sharded_chains(devices: Sequence[jax.Device] | None = None) -> Callable:
    """A NumPyro ``chain_method``: chains split into equal blocks, one block per device, each
    block vectorized on its device (``pmap`` over devices of ``vmap`` over chains).

    One XLA program per device keeps each device busy on its own block with no per-iteration
    synchronisation, which matters on CPU host devices. The number of chains must be a
    multiple of the number of devices. NumPyro's progress bar cannot run inside the mapped
    function, so pass ``progress_bar=False``. As with NumPyro's ``"parallel"``, every
    ``MCMC.run`` traces and compiles the whole chain anew; JAX's persistent compilation cache
    (on by default in the ``ppl-diffusion`` command) turns the repeats into a cache load.
    """
    devices = list(devices) if devices is not None else jax.devices()

    def chain_method(single_chain_fn):
        per_device = jax.pmap(jax.vmap(single_chain_fn), devices=devices)

        def run(map_args):
            num_chains = jax.tree.leaves(map_args)[0].shape[0]
            if num_chains % len(devices):
                raise ValueError(
                    f"{num_chains} chains cannot be split evenly over {len(devices)} devices; "
                    "use a multiple of the device count."
                )
            blocks = jax.tree.map(lambda x: x.reshape((len(devices), -1) + x.shape[1:]), map_args)
            out = per_device(blocks)
            return jax.tree.map(lambda x: x.reshape((num_chains,) + x.shape[2:]), out)

        return run

    return chain_method
