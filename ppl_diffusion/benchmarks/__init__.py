"""The application side: the demo and the benchmark suites behind ``ppl-diffusion demo`` and
``ppl-diffusion bench``. Nothing in the library imports this package."""
