"""What the compiled extensions were built with (the truth of the binary, not of setup.py)."""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int conv_openmp_version(void) { return _OPENMP; }
    static int conv_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int conv_openmp_version(void) { return 0; }
    static int conv_omp_max_threads(void) { return 1; }
    #endif
    #if defined(__AVX2__) && defined(__FMA__)
    static int conv_built_avx2_fma(void) { return 1; }
    #else
    static int conv_built_avx2_fma(void) { return 0; }
    #endif
    """
    int conv_openmp_version()
    int conv_omp_max_threads()
    int conv_built_avx2_fma()


def openmp_version():
    """The _OPENMP date (e.g. 201511) the extensions were compiled with; 0 for a serial build."""
    return conv_openmp_version()


def omp_max_threads():
    """omp_get_max_threads() in this process; 1 for a serial build."""
    return conv_omp_max_threads()


def baseline_avx2_fma():
    """True when the whole build assumes AVX2+FMA (CONV_NATIVE=1 on such a CPU)."""
    return bool(conv_built_avx2_fma())
