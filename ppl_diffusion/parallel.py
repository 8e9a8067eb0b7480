"""Chains spread over every local JAX device with JAX's own sharding.

NumPyro's ``chain_method="parallel"`` runs one chain per device, so 8 chains on 2 devices fall
back to running one after the other. :func:`sharded_chains` instead splits the chains into one
block per device and vectorizes each block on its device. Use it as ``MCMC(..., chain_method=sharded_chains())`` with any kernel of this
package (or NumPyro's). On CPU, create several host devices before JAX starts, e.g.
``numpyro.set_host_device_count(2)`` or ``jax.config.update("jax_num_cpu_devices", 2)``. Across
hosts, call ``jax.distributed.initialize()`` first and pass ``jax.devices()`` (all processes'
devices): the mesh then spans the hosts.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def chain_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``"chains"`` over ``devices`` (default: every device)."""
    return Mesh(np.array(list(devices) if devices is not None else jax.devices()), ("chains",))


def shard_leading_axis(tree, mesh: Mesh):
    """Place every array of ``tree`` with its leading axis split over the mesh."""
    sharding = NamedSharding(mesh, PartitionSpec("chains"))
    return jax.tree.map(lambda x: jax.device_put(x, sharding), tree)


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
            blocks = jax.tree.map(
                lambda x: x.reshape((len(devices), -1) + x.shape[1:]), map_args
            )
            out = per_device(blocks)
            return jax.tree.map(lambda x: x.reshape((num_chains,) + x.shape[2:]), out)

        return run

    return chain_method
