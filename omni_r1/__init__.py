"""omni-r1: the Omni-R1 method (arXiv 2601.09536) as a versioned, orchestrated pipeline."""

import os

# torch's CPU BLAS is MKL, whose default code paths may round the same product differently
# from one run to the next (memory alignment, dispatch); STRICT conditional numerical
# reproducibility keeps results bitwise equal for a fixed thread count, so DVC-tracked
# outputs hash the same on every run (about 4% slower decoding on the default). MKL reads
# the variable when it first runs, so it is set before anything imports torch.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
