"""promptembed's benchmarks, run as modules from the repository root.

``speed/`` times things, ``quality/`` scores them, ``probes/`` holds one-off questions;
each keeps its outputs in its own ``results/``. :mod:`benchmarks.common` holds what
several scripts share. ``benchmarks/README.md`` lists every script and its command.
"""
