"""conv's compiled kernels built for AVX2 + FMA (picked at import when the CPU has both)."""
include "_kernels.pxi"
