"""recforge: recommender systems from interaction logs to served models.

Importing recforge sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is already set: the OpenMP threads of torch's CPU
kernels then sleep while they wait instead of spinning, so a fit beside another busy process (a shared machine, a
second job, the test suite) slows down in proportion to the CPU it gets instead of burning its time slices
spinning (benchmarks/RESULTS.md, issue 20). It only takes effect when recforge is imported before torch (the
``recforge`` command always is); set ``OMP_WAIT_POLICY=ACTIVE`` for the spinning behaviour, which can be a few per
cent faster on a machine that is otherwise idle.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
