"""conv's compiled kernels, portable build (this platform's baseline instruction set)."""
include "_kernels.pxi"
