/* The machine's arithmetic ceiling for this build: a loop of independent fused
 * multiply-adds on the same vectors the micro-kernels use (_simd.h), so
 * "% peak" in the main job compares the kernels with what this build's instructions can
 * do on this CPU, not with another library's matmul.
 *
 * CONV_PEAK_ACC independent accumulators cover the FMA latency (4-5 cycles) times the
 * FMA ports (2) of current x86 and Arm cores. Each iteration does CONV_PEAK_ACC vector
 * FMAs: 2 flops per lane. The result is returned so the loop cannot be removed.
 */
#ifndef CONV_PEAK_H
#define CONV_PEAK_H
#include <string.h>
#include "_simd.h"

#define CONV_PEAK_ACC 12

#define CONV_PEAK_LANES_F CONV_LANES_F32
#define CONV_PEAK_LANES_D CONV_LANES_F64

#define CONV_PEAK_LOOP(T, E, n, seed, out)                                        \
    do {                                                                          \
        T acc[CONV_PEAK_ACC], a, b;                                               \
        memset(&a, 0, sizeof a); memset(&b, 0, sizeof b);                         \
        a += (E)((seed) * 0.999999); b += (E)((seed) * 1e-7);                     \
        for (int k = 0; k < CONV_PEAK_ACC; ++k) {                                 \
            acc[k] = b; acc[k] += (E)(k + 1);                                     \
        }                                                                         \
        for (long long i = 0; i < (n); ++i) {                                          \
            for (int k = 0; k < CONV_PEAK_ACC; ++k) acc[k] = acc[k] * a + b;      \
        }                                                                         \
        for (int k = 1; k < CONV_PEAK_ACC; ++k) acc[0] += acc[k];                 \
        memcpy(&(out), &acc[0], sizeof(T) < sizeof(out) ? sizeof(T) : sizeof(out)); \
    } while (0)

/* every lane of the result, so that no lane's work can be dropped as unused */
#define CONV_PEAK_SUM(r, lanes, E)                                                \
    do { for (int l_ = 1; l_ < (lanes); ++l_) (r)[0] += (r)[l_]; } while (0)

/* n iterations of CONV_PEAK_ACC vector FMAs; returns one lane of the sum. */
static double conv_peak_f(long long n, double seed) {
    float r[CONV_PEAK_LANES_F];
    CONV_PEAK_LOOP(conv_vf32, float, n, seed, r);
    CONV_PEAK_SUM(r, CONV_PEAK_LANES_F, float);
    return (double)r[0];
}

static double conv_peak_d(long long n, double seed) {
    double r[CONV_PEAK_LANES_D];
    CONV_PEAK_LOOP(conv_vf64, double, n, seed, r);
    CONV_PEAK_SUM(r, CONV_PEAK_LANES_D, double);
    return r[0];
}

/* flops one iteration of conv_peak_f / conv_peak_d performs */
#define CONV_PEAK_FLOPS_F (2 * CONV_PEAK_ACC * CONV_PEAK_LANES_F)
#define CONV_PEAK_FLOPS_D (2 * CONV_PEAK_ACC * CONV_PEAK_LANES_D)
#endif
