"""conv's compiled kernels built for AVX-512F (picked at import when the CPU and its
operating system support it): the same code as the other builds, on 64-byte vectors."""
include "_kernels.pxi"
