/* What this build's kernels target, decided once from the compiler's predefined macros,
 * and the checks the kernels use. Included by _ukernel.h and _peak.h.
 *
 *   CONV_ISA     the suffix of every micro-kernel's name (_ukernel.h): avx512 (AVX-512F,
 *                64-byte vectors), avx2 (AVX2+FMA),
 *                avx, sse2, neon, vec (GCC/Clang vector code on another target) or scalar
 *   CONV_SIMD    the same, as build_info() shows it: "avx2+fma", "avx", ...
 *   CONV_VECTOR_EXT  1 when the kernels use GCC/Clang vector extensions
 *   conv_vf32, conv_vf64  CONV_VBYTES-byte vectors of float/double (one element in the
 *                scalar build), with CONV_LANES_F32 / CONV_LANES_F64 lanes, loaded and
 *                stored unaligned by conv_load_f32 / conv_store_f32 (and _f64)
 *
 * The vector code is written once for CONV_VBYTES-byte vectors (64 with AVX-512, else 32);
 * the compiler lowers it to what the target allows: zmm registers in the _avx512
 * extension (-mavx512f), AVX2+FMA registers in the _avx2 one (-mavx2 -mfma), pairs of
 * SSE2 registers in the portable x86-64 one. CONV_NO_VECTOR_EXT=1 forces the scalar
 * code (to test it with GCC); other compilers always get it.
 */
#ifndef CONV_SIMD_H
#define CONV_SIMD_H
#include <string.h>

#if (defined(__GNUC__) || defined(__clang__)) && !defined(CONV_NO_VECTOR_EXT)
#define CONV_VECTOR_EXT 1
#if defined(__AVX512F__) && defined(__FMA__)
#define CONV_ISA avx512
#define CONV_SIMD "avx512f"
#elif defined(__AVX2__) && defined(__FMA__)
#define CONV_ISA avx2
#define CONV_SIMD "avx2+fma"
#elif defined(__AVX__)
#define CONV_ISA avx
#define CONV_SIMD "avx"
#elif defined(__SSE2__)
#define CONV_ISA sse2
#define CONV_SIMD "sse2"
#elif defined(__ARM_NEON) || defined(__aarch64__)
#define CONV_ISA neon
#define CONV_SIMD "neon"
#else
#define CONV_ISA vec
#define CONV_SIMD "vector"
#endif
#else
#define CONV_VECTOR_EXT 0
#define CONV_ISA scalar
#define CONV_SIMD "scalar"
#endif

/* The vector width: 64 bytes (zmm) in the AVX-512 build, 32 everywhere else; and the
 * vector registers the tile may fill. */
#if defined(__AVX512F__) && CONV_VECTOR_EXT
#define CONV_VBYTES 64
#define CONV_VREGS 32
#else
#define CONV_VBYTES 32
#define CONV_VREGS 16
#endif

#if CONV_VECTOR_EXT
typedef float conv_vf32 __attribute__((vector_size(CONV_VBYTES)));
typedef double conv_vf64 __attribute__((vector_size(CONV_VBYTES)));
/* unaligned loads and stores */
static inline conv_vf32 conv_load_f32(const float *p) {
    conv_vf32 v; memcpy(&v, p, sizeof v); return v;
}
static inline void conv_store_f32(float *p, conv_vf32 v) { memcpy(p, &v, sizeof v); }
static inline conv_vf64 conv_load_f64(const double *p) {
    conv_vf64 v; memcpy(&v, p, sizeof v); return v;
}
static inline void conv_store_f64(double *p, conv_vf64 v) { memcpy(p, &v, sizeof v); }
#else /* one element a "vector": the same code, scalar */
typedef float conv_vf32;
typedef double conv_vf64;
static inline conv_vf32 conv_load_f32(const float *p) { return *p; }
static inline void conv_store_f32(float *p, conv_vf32 v) { *p = v; }
static inline conv_vf64 conv_load_f64(const double *p) { return *p; }
static inline void conv_store_f64(double *p, conv_vf64 v) { *p = v; }
#endif
#define CONV_LANES_F32 ((int)(sizeof(conv_vf32) / sizeof(float)))
#define CONV_LANES_F64 ((int)(sizeof(conv_vf64) / sizeof(double)))

/* CONV_STATIC_ASSERT(cond, msg): _Static_assert (C11; GCC and Clang in any mode), or a
 * negative array size for older compilers. At file scope only. */
#if (defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L) || defined(__GNUC__) || defined(__clang__)
#define CONV_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#else
#define CONV_STATIC_ASSERT(cond, msg) CONV_STATIC_ASSERT_(cond, __LINE__)
#define CONV_STATIC_ASSERT_(cond, line) CONV_STATIC_ASSERT__(cond, line)
#define CONV_STATIC_ASSERT__(cond, line) typedef char conv_static_assert_##line[(cond) ? 1 : -1]
#endif

/* CONV_ASSERT(cond): checked only in CONV_DEBUG builds (setup.py defines CONV_DEBUG=1),
 * where a false condition prints it and aborts; independent of NDEBUG, which Python's
 * build flags usually define. */
#if defined(CONV_DEBUG) && CONV_DEBUG
#include <stdio.h>
#include <stdlib.h>
#define CONV_ASSERT(cond)                                                                  \
    ((cond) ? (void)0                                                                      \
            : (fprintf(stderr, "%s:%d: conv: assertion failed: %s\n", __FILE__, __LINE__,  \
                       #cond), abort()))
#else
#define CONV_ASSERT(cond) ((void)0)
#endif

#endif /* CONV_SIMD_H */
