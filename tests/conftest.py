import numpyro

# Two host devices so chain_method="parallel" really runs chains on separate devices.
# This must happen before JAX initialises its backend.
numpyro.set_host_device_count(2)
