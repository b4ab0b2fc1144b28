"""What the compiled extensions were built with (the truth of the binary, not of setup.py),
and what this CPU can run.

Its presence also tells conv/__init__.py that this tree has been built. Built for the
baseline ISA (never with -mavx2), so it loads on any CPU of the platform."""

cdef extern from *:
    """
    #ifdef CONV_SERIAL
    static int conv_serial_build(void) { return 1; }
    #else
    static int conv_serial_build(void) { return 0; }
    #endif

    /* Run-time CPU features, by the compiler's own detection, which also checks that the
       operating system saves the wide registers (XGETBV): AVX2 and FMA for conv's AVX2
       kernel build; AVX-512F only to explain benchmark figures. */
    enum { CONV_CPU_AVX2 = 1, CONV_CPU_FMA = 2, CONV_CPU_AVX512F = 4 };
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    static int conv_cpu_features(void) {
        __builtin_cpu_init();
        return (__builtin_cpu_supports("avx2") ? CONV_CPU_AVX2 : 0)
             | (__builtin_cpu_supports("fma") ? CONV_CPU_FMA : 0)
             | (__builtin_cpu_supports("avx512f") ? CONV_CPU_AVX512F : 0);
    }
    #elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
    #include <intrin.h>
    #include <immintrin.h>
    static int conv_cpu_features(void) {
        int r[4], f = 0;
        unsigned long long xcr0;
        __cpuid(r, 1);
        if (!(r[2] & (1 << 27)))  /* OSXSAVE: XGETBV usable */
            return 0;
        xcr0 = _xgetbv(0);
        if ((xcr0 & 6) != 6)  /* the OS saves XMM and YMM state */
            return 0;
        if (r[2] & (1 << 12)) f |= CONV_CPU_FMA;
        __cpuid(r, 0);
        if (r[0] < 7)
            return f;
        __cpuidex(r, 7, 0);
        if (r[1] & (1 << 5)) f |= CONV_CPU_AVX2;
        if ((r[1] & (1 << 16)) && (xcr0 & 0xe6) == 0xe6) f |= CONV_CPU_AVX512F;
        return f;
    }
    #else
    static int conv_cpu_features(void) { return 0; }
    #endif
    """
    int conv_serial_build()
    int conv_cpu_features()
    int CONV_CPU_AVX2, CONV_CPU_FMA, CONV_CPU_AVX512F


def serial():
    """True for the serial build (CONV_SERIAL=1 at build time): every method on one thread."""
    return bool(conv_serial_build())


_FEATURES = {"AVX2": CONV_CPU_AVX2, "FMA3": CONV_CPU_FMA, "AVX512F": CONV_CPU_AVX512F}


def cpu_has(*features):
    """True when this CPU (and its operating system) supports every named feature:
    "AVX2", "FMA3", "AVX512F". Always False off x86."""
    found = conv_cpu_features()
    for name in features:
        bit = _FEATURES.get(name)
        if bit is None:
            raise ValueError(f"unknown CPU feature {name!r}; known: {', '.join(_FEATURES)}")
        if not found & bit:
            return False
    return True
