/* Optional compiled time loop for the NumPy engine (mlstm.engines.numpy_engine).
 *
 * Per step: one BLAS gemm z_t += h_{t-1} R' (the BLAS scipy ships, passed in as a function
 * pointer from scipy.linalg.cython_blas), then one fused pass over the cells: four gates, both
 * activations, the state update, h written straight into Y. Gates in MATLAB's order i, f, g, o.
 *
 * The elementwise pass is written to vectorise: exp and tanh are computed branch-free from
 * their Taylor series after exact range reduction (errors of a few ulp, tested against NumPy),
 * IEEE special values are blended in explicitly, and GCC's target_clones picks AVX-512, AVX2 or
 * plain SSE2 code at run time. No -ffast-math: NaN and Inf propagate as docs/BEHAVIOUR.md §1 asks;
 * setup.py does allow contraction (-ffp-contract=fast), so a*b + c is one FMA on CPUs that have it.
 *
 * Built by setup.py as an optional extension; when it is missing the engine runs its NumPy loop.
 *
 * The boundary with Python (mlstm/engines/cpu_loop.py): every exported loop is declared with
 * MLSTM_EXPORT, which also exports its prototype as text (<name>_signature); the Python side
 * builds its ctypes signature from that text and checks every array against it (dtype from the
 * C type, shape, C order, writability), so the two cannot drift apart. BLAS takes 32-bit ints:
 * each loop returns MLSTM_BAD_ARGUMENT, before touching memory, when a dimension it would pass
 * does not fit (the Python side checks first and says which one).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* first: it defines _GNU_SOURCE, which syscall() needs */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#if defined(__linux__) && defined(__GLIBC__) && defined(CPU_SET)
#define MLSTM_PLACEMENT 1 /* thread placement (see start_worker) */
#else
#define MLSTM_PLACEMENT 0
#endif
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* An exported loop and its prototype as text, read by the Python side to type its calls. */
#define MLSTM_EXPORT(RET, NAME, PARAMS)                      \
    const char *const NAME##_signature = #RET " " #NAME #PARAMS; \
    RET NAME PARAMS

#define MLSTM_BAD_ARGUMENT (-2) /* a dimension past the BLAS's int, or a block of no steps */

/* The BLAS interface takes int: rows (4H), In and cols (steps * B per call, steps <= block) must fit. */
static int blas_dims_fit(long B, long In, long H, long block) {
    if (B < 0 || In < 0 || H < 0 || block < 1) return 0;
    if (H > INT_MAX / 4 || In > INT_MAX || B > INT_MAX) return 0;
    return B == 0 || block <= INT_MAX / B;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MLSTM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MLSTM_CLONES
#endif

/* The math helpers and cell loops must be inlined into each specialised loop, or it does not
 * vectorise (GCC's inlining budget dropped one of them once this file grew). */
#if defined(__GNUC__)
#define MLSTM_INLINE static inline __attribute__((always_inline))
#else
#define MLSTM_INLINE static inline
#endif

typedef void (*sgemm_fn)(const char *, const char *, const int *, const int *, const int *, const float *,
                         const float *, const int *, const float *, const int *, const float *, float *, const int *);
typedef void (*sgemv_fn)(const char *, const int *, const int *, const float *, const float *, const int *,
                         const float *, const int *, const float *, float *, const int *);
typedef void (*dgemv_fn)(const char *, const int *, const int *, const double *, const double *, const int *,
                         const double *, const int *, const double *, double *, const int *);
typedef void (*dgemm_fn)(const char *, const char *, const int *, const int *, const int *, const double *,
                         const double *, const int *, const double *, const int *, const double *, double *,
                         const int *);

/* ---------------------------------------------------------------- double */

/* exp(x) = 2^k e^r with k = round(x / ln 2), |r| <= ln2 / 2. k is read from the bits of the
 * magic-number rounding (no float-to-int conversion, which would stop GCC vectorising the
 * selects) and applied as two factors 2^k1 2^(k-k1), so e^x overflows to +Inf and underflows
 * to 0 exactly where the true value does; NaN propagates through r. */
MLSTM_INLINE double pow2i_d(int64_t k) { /* 2^k, k in [-1022, 1023] */
    int64_t bits = (k + 1023) << 52;
    double s;
    memcpy(&s, &bits, sizeof s);
    return s;
}

MLSTM_INLINE double exp_d(double x) {
    double xc = x > 710.0 ? 710.0 : x;
    xc = xc < -746.0 ? -746.0 : xc;
    const double kd = xc * 1.4426950408889634 + 6755399441055744.0; /* 1.5 * 2^52 */
    const double n = kd - 6755399441055744.0;
    int64_t ki;
    memcpy(&ki, &kd, sizeof ki);
    const int64_t k = ki - 0x4338000000000000LL, k1 = k >> 1;
    double r = xc - n * 0.693145751953125;  /* ln 2, high part: n * it is exact */
    r = r - n * 1.42860682030941723212e-6; /* ln 2, low part */
    double p = 1.0 / 6227020800.0;         /* Taylor to r^13 */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    return p * pow2i_d(k1) * pow2i_d(k - k1);
}

MLSTM_INLINE double tanh_d(double x) {
    const double a = fabs(x);
    /* |x| < 0.3: odd Taylor series to x^23; beyond, (1 - e^-2a) / (1 + e^-2a) is well conditioned. */
    const double z = a * a;
    double s = -3.927832388331683e-05;
    s = s * z + 9.691537956929451e-05;
    s = s * z - 0.00023912911424355248;
    s = s * z + 0.000590027440945586;
    s = s * z - 0.0014558343870513183;
    s = s * z + 0.003592128036572481;
    s = s * z - 0.008863235529902197;
    s = s * z + 0.021869488536155203;
    s = s * z - 0.05396825396825397;
    s = s * z + 0.13333333333333333;
    s = s * z - 0.3333333333333333;
    s = a + a * z * s;
    const double t = exp_d(-2.0 * a);
    const double big = (1.0 - t) / (1.0 + t);
    const double r = a < 0.3 ? s : big; /* NaN takes the second branch and stays NaN */
    return copysign(r, x);                /* odd, and tanh(-0) = -0 */
}

/* ---------------------------------------------------------------- single */

/* exp_f's and tanh_f's constants, shared with the AVX-512 and AVX2 passes (which compute the
 * same arithmetic op for op): one definition, so the three cannot drift apart. */
#define EXPF_LOG2E 1.44269504088896341f
#define EXPF_SHIFT 12582912.0f /* 1.5 * 2^23 */
#define EXPF_LN2_HI 0.693359375f
#define EXPF_LN2_LO (-2.12194440e-4f)
#define TANHF_S5 0.003592128036572481f /* |x| < 0.3: odd Taylor series to x^15, highest term first */
#define TANHF_S4 0.008863235529902197f
#define TANHF_S3 0.021869488536155203f
#define TANHF_S2 0.05396825396825397f
#define TANHF_S1 0.13333333333333333f
#define TANHF_S0 0.3333333333333333f

MLSTM_INLINE float pow2i_f(int32_t k) { /* 2^k, k in [-126, 127] */
    int32_t bits = (k + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return s;
}

MLSTM_INLINE float exp_f(float x) {
    float xc = x > 89.0f ? 89.0f : x;
    xc = xc < -104.0f ? -104.0f : xc;
    const float kd = xc * EXPF_LOG2E + EXPF_SHIFT; /* 1.5 * 2^23 */
    const float n = kd - EXPF_SHIFT;
    int32_t ki;
    memcpy(&ki, &kd, sizeof ki);
    const int32_t k = ki - 0x4B400000, k1 = k >> 1;
    float r = xc - n * EXPF_LN2_HI;
    r = r - n * EXPF_LN2_LO;
    float p = 1.0f / 5040.0f; /* Taylor to r^7 */
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p * pow2i_f(k1) * pow2i_f(k - k1);
}

MLSTM_INLINE float tanh_f(float x) {
    const float a = fabsf(x);
    const float z = a * a;
    float s = TANHF_S5; /* |x| < 0.3: odd Taylor series to x^15 */
    s = s * z - TANHF_S4;
    s = s * z + TANHF_S3;
    s = s * z - TANHF_S2;
    s = s * z + TANHF_S1;
    s = s * z - TANHF_S0;
    s = a + a * z * s;
    const float t = exp_f(-2.0f * a);
    const float big = (1.0f - t) / (1.0f + t);
    const float r = a < 0.3f ? s : big;
    return copysignf(r, x);
}

/* ---------------------------------------------------------------- the fused cell pass */

/* GATE: 0 sigmoid, 1 hard-sigmoid. STATE: 0 tanh, 1 softsign, 2 relu.
 * z: (B, 4H) row-major, this step's pre-activations; c: (B, H) updated; h: (B, H) written. */
#define DEFINE_CELLS(NAME, REAL, EXP, TANH)                                                                 \
    MLSTM_INLINE REAL NAME##_gate(REAL x, int gate) {                                                      \
        if (gate == 0) return (REAL)1 / ((REAL)1 + EXP(-x));                                                \
        REAL y = (REAL)0.2 * x + (REAL)0.5;  /* contracted to an FMA: -2.5 gives -7e-9, not 0 */            \
        y = (x < (REAL)-2.5 || y < (REAL)0) ? (REAL)0 : y;                                                  \
        return x > (REAL)2.5 ? (REAL)1 : y;                                                                 \
    }                                                                                                       \
    MLSTM_INLINE REAL NAME##_state(REAL x, int state) {                                                    \
        if (state == 0) return TANH(x);                                                                     \
        if (state == 1) return x / ((REAL)1 + (x < 0 ? -x : x));                                            \
        return (x > (REAL)0 || x != x) ? x : (REAL)0;                                                       \
    }                                                                                                       \
    /* Called with constant gate/state, so each of the six loops is specialised and branch-free. */           \
    MLSTM_INLINE void NAME##_cells_impl(REAL *restrict z, REAL *restrict c, REAL *restrict h, long B, long H, \
                                         const int gate, const int state) {                                 \
        for (long b = 0; b < B; ++b) {                                                                      \
            const REAL *restrict zi = z + b * 4 * H, *restrict zf = zi + H, *restrict zg = zi + 2 * H,      \
                                 *restrict zo = zi + 3 * H;                                                 \
            REAL *restrict cb = c + b * H, *restrict hb = h + b * H;                                        \
            for (long j = 0; j < H; ++j) {                                                                  \
                const REAL i = NAME##_gate(zi[j], gate), f = NAME##_gate(zf[j], gate);                      \
                const REAL o = NAME##_gate(zo[j], gate), g = NAME##_state(zg[j], state);                    \
                const REAL cell = f * cb[j] + i * g;                                                        \
                cb[j] = cell;                                                                               \
                hb[j] = o * NAME##_state(cell, state);                                                      \
            }                                                                                               \
        }                                                                                                   \
    }                                                                                                       \
    MLSTM_CLONES static void NAME##_cells_generic(REAL *z, REAL *c, REAL *h, long B, long H, int gate, int state) { \
        switch (gate * 3 + state) {                                                                         \
            case 0: NAME##_cells_impl(z, c, h, B, H, 0, 0); break;                                          \
            case 1: NAME##_cells_impl(z, c, h, B, H, 0, 1); break;                                          \
            case 2: NAME##_cells_impl(z, c, h, B, H, 0, 2); break;                                          \
            case 3: NAME##_cells_impl(z, c, h, B, H, 1, 0); break;                                          \
            case 4: NAME##_cells_impl(z, c, h, B, H, 1, 1); break;                                          \
            default: NAME##_cells_impl(z, c, h, B, H, 1, 2); break;                                         \
        }                                                                                                   \
    }

DEFINE_CELLS(f32, float, exp_f, tanh_f)
DEFINE_CELLS(f64, double, exp_d, tanh_d)

/* ---------------------------------------------------------------- the packed recurrent product */

/* Per step the recurrent product z (B x 4H) += h (B x H) R' reads the same R every step. A BLAS
 * gemm packs R into its micro-kernel's panel layout on every call; here R is packed once per
 * engine (by the Python side, mlstm_pack_rows_*) and a register-blocked FMA kernel reads the
 * panels directly (B = 32, H = 128, float32, one thread on the AMD EPYC of benchmarks/RESULTS.md:
 * 43 µs per step against OpenBLAS's sgemm 76). Panels of NR columns of R' (NR rows of R), stored k-major: panel p holds
 * R[p*NR + c][q] at (p*k + q)*NR + c, zero past the last row, so every panel is full width.
 * A tile is MR rows of h by one panel: MR*NV vector accumulators, NV vector loads and MR
 * broadcasts per q. Variants: AVX-512 (NR = 64 floats / 32 doubles), AVX2+FMA (16 / 8), and
 * plain C (8 / 4) elsewhere; chosen once at run time from the CPU's features. Each element of z
 * is one chain of multiply-adds over q in order (fused on AVX), so the result does not depend on B, the tile or the thread
 * that computes it: where every loop runs this kernel, the unit and batch splits give the serial
 * loop's bits (not for products small enough that the serial loops multiply them inline). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define MLSTM_X86_KERNELS 1
#include <immintrin.h>
#endif

#define PACKED_MR 6

typedef struct {
    long nr; /* panel width in elements */
    void (*gemm)(const void *packed, long n, long k, const void *h, long b, void *z, long ldz);
} packed_kernel;

#define DEFINE_PACK(NAME, REAL)                                                                            \
    static void NAME##_pack_nr(const REAL *r, long n, long k, REAL *packed, long nr) {                     \
        for (long p = 0; p < (n + nr - 1) / nr; ++p)                                                        \
            for (long q = 0; q < k; ++q)                                                                    \
                for (long c = 0; c < nr; ++c) {                                                             \
                    const long row = p * nr + c;                                                            \
                    packed[(p * k + q) * nr + c] = row < n ? r[row * k + q] : (REAL)0;                      \
                }                                                                                           \
    }
DEFINE_PACK(f32, float)
DEFINE_PACK(f64, double)

/* One tile: mr (<= PACKED_MR, a constant after inlining) rows of h against one panel; ncols of
 * its NR columns are real. */
#define DEFINE_PACKED_KERNEL(NAME, REAL, TARGET, VEC, W, NV, LOADU, STOREU, SET1, FMADD, ADD, ZERO)          \
    TARGET static inline __attribute__((always_inline)) void NAME##_tile(                                   \
        const REAL *restrict panel, long k, const REAL *restrict h, long ldh, REAL *restrict z, long ldz,   \
        long ncols, const int mr) {                                                                         \
        VEC acc[PACKED_MR][NV];                                                                             \
        for (int i = 0; i < PACKED_MR; ++i)                                                                 \
            for (int v = 0; v < NV; ++v) acc[i][v] = ZERO();                                                \
        for (long q = 0; q < k; ++q) {                                                                      \
            VEC b[NV];                                                                                      \
            for (int v = 0; v < NV; ++v) b[v] = LOADU(panel + q * (W * NV) + v * W);                        \
            for (int i = 0; i < mr; ++i) {                                                                  \
                const VEC a = SET1(h[i * ldh + q]);                                                         \
                for (int v = 0; v < NV; ++v) acc[i][v] = FMADD(a, b[v], acc[i][v]);                         \
            }                                                                                               \
        }                                                                                                   \
        if (ncols == W * NV) {                                                                              \
            for (int i = 0; i < mr; ++i)                                                                    \
                for (int v = 0; v < NV; ++v)                                                                \
                    STOREU(z + i * ldz + v * W, ADD(LOADU(z + i * ldz + v * W), acc[i][v]));                 \
        } else {                                                                                            \
            REAL tail[W * NV];                                                                              \
            for (int i = 0; i < mr; ++i) {                                                                  \
                for (int v = 0; v < NV; ++v) STOREU(tail + v * W, acc[i][v]);                               \
                for (long c = 0; c < ncols; ++c) z[i * ldz + c] += tail[c];                                 \
            }                                                                                               \
        }                                                                                                   \
    }                                                                                                       \
    TARGET static void NAME##_gemm(const void *packed_, long n, long k, const void *h_, long b, void *z_,   \
                                   long ldz) {                                                              \
        const REAL *packed = (const REAL *)packed_, *h = (const REAL *)h_;                                  \
        REAL *z = (REAL *)z_;                                                                               \
        const long nr = W * NV;                                                                             \
        for (long p = 0; p * nr < n; ++p) {                                                                 \
            const REAL *panel = packed + p * k * nr;                                                        \
            const long ncols = n - p * nr < nr ? n - p * nr : nr;                                           \
            REAL *zp = z + p * nr;                                                                          \
            long i = 0;                                                                                     \
            for (; i + PACKED_MR <= b; i += PACKED_MR)                                                      \
                NAME##_tile(panel, k, h + i * k, k, zp + i * ldz, ldz, ncols, PACKED_MR);                   \
            switch (b - i) {                                                                                \
                case 5: NAME##_tile(panel, k, h + i * k, k, zp + i * ldz, ldz, ncols, 5); break;            \
                case 4: NAME##_tile(panel, k, h + i * k, k, zp + i * ldz, ldz, ncols, 4); break;            \
                case 3: NAME##_tile(panel, k, h + i * k, k, zp + i * ldz, ldz, ncols, 3); break;            \
                case 2: NAME##_tile(panel, k, h + i * k, k, zp + i * ldz, ldz, ncols, 2); break;            \
                case 1: NAME##_tile(panel, k, h + i * k, k, zp + i * ldz, ldz, ncols, 1); break;            \
                default: break;                                                                             \
            }                                                                                               \
        }                                                                                                   \
    }

/* Plain C: "vectors" of one element, NV of them per row (GCC vectorises what it can). */
#define PLAIN_LOADU(p) (*(p))
#define PLAIN_STOREU(p, v) (*(p) = (v))
#define PLAIN_SET1(x) (x)
#define PLAIN_FMADD(a, b, c) ((a) * (b) + (c))
#define PLAIN_ADD(a, b) ((a) + (b))
#define PLAIN_ZERO() 0
#define NO_TARGET
DEFINE_PACKED_KERNEL(plain_f32, float, NO_TARGET, float, 1, 8, PLAIN_LOADU, PLAIN_STOREU, PLAIN_SET1, PLAIN_FMADD,
                     PLAIN_ADD, PLAIN_ZERO)
DEFINE_PACKED_KERNEL(plain_f64, double, NO_TARGET, double, 1, 4, PLAIN_LOADU, PLAIN_STOREU, PLAIN_SET1, PLAIN_FMADD,
                     PLAIN_ADD, PLAIN_ZERO)

#ifdef MLSTM_X86_KERNELS
#define T512 __attribute__((target("avx512f")))
#define T256 __attribute__((target("avx2,fma")))
DEFINE_PACKED_KERNEL(avx512_f32, float, T512, __m512, 16, 4, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps,
                     _mm512_fmadd_ps, _mm512_add_ps, _mm512_setzero_ps)
DEFINE_PACKED_KERNEL(avx512_f64, double, T512, __m512d, 8, 4, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_set1_pd,
                     _mm512_fmadd_pd, _mm512_add_pd, _mm512_setzero_pd)
DEFINE_PACKED_KERNEL(avx2_f32, float, T256, __m256, 8, 2, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps,
                     _mm256_fmadd_ps, _mm256_add_ps, _mm256_setzero_ps)
DEFINE_PACKED_KERNEL(avx2_f64, double, T256, __m256d, 4, 2, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_set1_pd,
                     _mm256_fmadd_pd, _mm256_add_pd, _mm256_setzero_pd)
#endif

/* The kernel for this CPU (MLSTM_PACKED_ISA=avx512|avx2|plain, read once per process, narrows it:
 * for tests). Fixed for the process, so a packed copy made earlier always fits the kernel. */
static packed_kernel choose_packed_kernel(int f64) {
    const char *want = getenv("MLSTM_PACKED_ISA");
#ifdef MLSTM_X86_KERNELS
    __builtin_cpu_init();
    const int any = want == NULL || want[0] == '\0';
    if ((any || strcasecmp(want, "avx512") == 0) && __builtin_cpu_supports("avx512f"))
        return f64 ? (packed_kernel){32, avx512_f64_gemm} : (packed_kernel){64, avx512_f32_gemm};
    if ((any || strcasecmp(want, "avx512") == 0 || strcasecmp(want, "avx2") == 0) && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
        return f64 ? (packed_kernel){8, avx2_f64_gemm} : (packed_kernel){16, avx2_f32_gemm};
#else
    (void)want;
#endif
    return f64 ? (packed_kernel){4, plain_f64_gemm} : (packed_kernel){8, plain_f32_gemm};
}

static packed_kernel chosen_kernels[2];
static pthread_once_t kernels_chosen = PTHREAD_ONCE_INIT;
static void choose_packed_kernels(void) {
    chosen_kernels[0] = choose_packed_kernel(0);
    chosen_kernels[1] = choose_packed_kernel(1);
}

static packed_kernel packed_kernel_for(int f64) {
    pthread_once(&kernels_chosen, choose_packed_kernels);
    return chosen_kernels[f64 ? 1 : 0];
}

/* R (4H x H) packed for the loops: rows split into nslices slices as the unit split splits them
 * (slice s: rows 4*(H*s/nslices) .. 4*(H*(s+1)/nslices), each slice packed on its own); nslices
 * = 1 for the other loops. */
static long packed_slice_offset(long H, int nslices, int s, long nr) {
    long offset = 0;
    for (int i = 0; i < s; ++i) {
        const long rows = 4 * (H * (i + 1) / nslices - H * i / nslices);
        offset += (rows + nr - 1) / nr * nr * H;
    }
    return offset;
}

/* Exported for the tests and benchmarks/bench_kernels.py; the loops below call the kernel directly. */
#define DEFINE_PACKED_EXPORTS(NAME, REAL, F64)                                                              \
    long mlstm_packed_size_##NAME(long n, long k) {                                                         \
        const long nr = packed_kernel_for(F64).nr;                                                          \
        return (n + nr - 1) / nr * nr * k;                                                                  \
    }                                                                                                       \
    void mlstm_pack_##NAME(const REAL *r, long n, long k, REAL *packed) {                                   \
        NAME##_pack_nr(r, n, k, packed, packed_kernel_for(F64).nr);                                         \
    }                                                                                                       \
    void mlstm_packed_gemm_##NAME(const REAL *packed, long n, long k, const REAL *h, long b, REAL *z, long ldz) { \
        packed_kernel_for(F64).gemm(packed, n, k, h, b, z, ldz);                                            \
    }                                                                                                       \
    const char *mlstm_packed_isa_##NAME(void) {                                                             \
        const long nr = packed_kernel_for(F64).nr;                                                          \
        return nr == (F64 ? 32 : 64) ? "avx512" : nr == (F64 ? 8 : 16) ? "avx2" : "plain";                  \
    }
DEFINE_PACKED_EXPORTS(f32, float, 0)
DEFINE_PACKED_EXPORTS(f64, double, 1)

/* The packed R the loops take (rp, rp_len elements): its size, and packing it. */
#define DEFINE_PACK_ROWS(NAME, REAL, F64)                                                                   \
    long mlstm_packed_rows_size_##NAME(long H, int nslices) {                                               \
        return nslices < 1 ? -1 : packed_slice_offset(H, nslices, nslices, packed_kernel_for(F64).nr);      \
    }                                                                                                       \
    void mlstm_pack_rows_##NAME(const REAL *r, long H, int nslices, REAL *packed) {                         \
        const long nr = packed_kernel_for(F64).nr;                                                          \
        for (int s = 0; s < nslices; ++s) {                                                                 \
            const long first = 4 * (H * s / nslices), rows = 4 * (H * (s + 1) / nslices) - first;           \
            NAME##_pack_nr(r + first * H, rows, H, packed + packed_slice_offset(H, nslices, s, nr), nr);    \
        }                                                                                                   \
    }                                                                                                       \
    static int NAME##_packed_fits(const REAL *rp, long rp_len, long H, int nslices) {                      \
        return rp == NULL ? rp_len == 0 : nslices >= 1 && rp_len == mlstm_packed_rows_size_##NAME(H, nslices); \
    }
DEFINE_PACK_ROWS(f32, float, 0)
DEFINE_PACK_ROWS(f64, double, 1)

/* ---------------------------------------------------------------- the cell pass, AVX-512 (float) */

/* The float cell pass for CPUs whose packed kernel is the AVX-512 one, written with intrinsics in
 * two passes per observation: first every gate activation over z in place (i, f, o by the gate
 * function, g by the state function: independent vectors, which keep the FMA pipes busy), then
 * the state update and h. exp is exp_f's arithmetic with the final scaling by 2^n done by
 * vscalefps (one rounding, as exp_f's two exact multiplies and one rounding), the rest is the
 * generic pass's arithmetic op for op, so the bits are those of the generic pass's vector body (a
 * C harness compared 13 million cells over |x| up to 120, with NaN and Inf: only the sign of a NaN
 * differed; the generic pass's scalar tail, the last H mod 16 units, is compiled differently and
 * differs from both by 1-2 ulp). Here a tail is one masked vector, so a unit's result does not
 * depend on where in a row it falls.
 * Measured on the AMD EPYC of benchmarks/RESULTS.md, sigmoid/tanh, per step: 45.7 -> 32.5 µs at
 * B = 256, H = 64; 10.6 -> 8.4 at B = 32, H = 128; 86.6 -> 61.8 at B = 64, H = 512. z is scratch
 * (the loops' gate buffer): overwritten with the activations. */
#ifdef MLSTM_X86_KERNELS
#define S512(x) _mm512_set1_ps(x)
T512 static inline __attribute__((always_inline)) __m512 exp512(__m512 x) {
    __m512 xc = _mm512_min_ps(S512(89.0f), x); /* min/max(constant, x) return x when x is NaN */
    xc = _mm512_max_ps(S512(-104.0f), xc);
    const __m512 kd = _mm512_fmadd_ps(xc, S512(EXPF_LOG2E), S512(EXPF_SHIFT));
    const __m512 n = _mm512_sub_ps(kd, S512(EXPF_SHIFT));
    __m512 r = _mm512_fnmadd_ps(n, S512(EXPF_LN2_HI), xc);
    r = _mm512_fnmadd_ps(n, S512(EXPF_LN2_LO), r);
    __m512 p = S512(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, S512(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, S512(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, S512(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, S512(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, S512(0.5f));
    p = _mm512_fmadd_ps(p, r, S512(1.0f));
    p = _mm512_fmadd_ps(p, r, S512(1.0f));
    return _mm512_scalef_ps(p, n);
}
T512 static inline __attribute__((always_inline)) __m512 sign_of512(__m512 x) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u)));
}
T512 static inline __attribute__((always_inline)) __m512 abs512(__m512 x) {
    return _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_set1_epi32((int)0x80000000u), _mm512_castps_si512(x)));
}
T512 static inline __attribute__((always_inline)) __m512 or512(__m512 a, __m512 b) {
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}
T512 static inline __attribute__((always_inline)) __m512 tanh512(__m512 x) { /* tanh_f */
    const __m512 a = abs512(x), z = _mm512_mul_ps(a, a);
    __m512 s = S512(TANHF_S5);
    s = _mm512_fmsub_ps(s, z, S512(TANHF_S4));
    s = _mm512_fmadd_ps(s, z, S512(TANHF_S3));
    s = _mm512_fmsub_ps(s, z, S512(TANHF_S2));
    s = _mm512_fmadd_ps(s, z, S512(TANHF_S1));
    s = _mm512_fmsub_ps(s, z, S512(TANHF_S0));
    s = _mm512_fmadd_ps(_mm512_mul_ps(a, z), s, a);
    const __m512 t = exp512(_mm512_mul_ps(S512(-2.0f), a));
    const __m512 big = _mm512_div_ps(_mm512_sub_ps(S512(1.0f), t), _mm512_add_ps(S512(1.0f), t));
    const __m512 r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, S512(0.3f), _CMP_LT_OQ), big, s);
    return or512(abs512(r), sign_of512(x));
}
T512 static inline __attribute__((always_inline)) __m512 gate512(__m512 x, const int gate) { /* f32_gate */
    if (gate == 0) {
        const __m512 minus_x = _mm512_castsi512_ps(
            _mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u)));
        return _mm512_div_ps(S512(1.0f), _mm512_add_ps(S512(1.0f), exp512(minus_x)));
    }
    /* max(0, y) as f32_gate's y < 0 test: the FMA gives -7e-9 at x = -2.5; NaN stays NaN */
    __m512 y = _mm512_max_ps(_mm512_setzero_ps(), _mm512_fmadd_ps(S512(0.2f), x, S512(0.5f)));
    y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, S512(-2.5f), _CMP_LT_OQ), y, _mm512_setzero_ps());
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, S512(2.5f), _CMP_GT_OQ), y, S512(1.0f));
}
T512 static inline __attribute__((always_inline)) __m512 state512(__m512 x, const int state) { /* f32_state */
    if (state == 0) return tanh512(x);
    if (state == 1) return _mm512_div_ps(x, _mm512_add_ps(S512(1.0f), abs512(x)));
    /* relu: x where x > 0 or x is NaN, else 0 */
    const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NLE_UQ);
    return _mm512_maskz_mov_ps(keep, x);
}
T512 static inline __attribute__((always_inline)) __mmask16 tail_mask512(long left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}
T512 static inline __attribute__((always_inline)) void avx512_f32_cells_impl(
    float *restrict z, float *restrict c, float *restrict h, long B, long H, const int gate, const int state) {
    for (long b = 0; b < B; ++b) {
        float *restrict zi = z + b * 4 * H, *restrict zf = zi + H, *restrict zg = zi + 2 * H,
                        *restrict zo = zi + 3 * H;
        float *restrict cb = c + b * H, *restrict hb = h + b * H;
        for (long j = 0; j < H; j += 16) {
            const __mmask16 m = tail_mask512(H - j);
            _mm512_mask_storeu_ps(zi + j, m, gate512(_mm512_maskz_loadu_ps(m, zi + j), gate));
            _mm512_mask_storeu_ps(zf + j, m, gate512(_mm512_maskz_loadu_ps(m, zf + j), gate));
            _mm512_mask_storeu_ps(zo + j, m, gate512(_mm512_maskz_loadu_ps(m, zo + j), gate));
            _mm512_mask_storeu_ps(zg + j, m, state512(_mm512_maskz_loadu_ps(m, zg + j), state));
        }
        for (long j = 0; j < H; j += 16) {
            const __mmask16 m = tail_mask512(H - j);
            const __m512 ig = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, zi + j), _mm512_maskz_loadu_ps(m, zg + j));
            const __m512 cell = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, zf + j), _mm512_maskz_loadu_ps(m, cb + j), ig);
            _mm512_mask_storeu_ps(cb + j, m, cell);
            _mm512_mask_storeu_ps(hb + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, zo + j), state512(cell, state)));
        }
    }
}
T512 static void avx512_f32_cells(float *z, float *c, float *h, long B, long H, int gate, int state) {
    switch (gate * 3 + state) {
        case 0: avx512_f32_cells_impl(z, c, h, B, H, 0, 0); break;
        case 1: avx512_f32_cells_impl(z, c, h, B, H, 0, 1); break;
        case 2: avx512_f32_cells_impl(z, c, h, B, H, 0, 2); break;
        case 3: avx512_f32_cells_impl(z, c, h, B, H, 1, 0); break;
        case 4: avx512_f32_cells_impl(z, c, h, B, H, 1, 1); break;
        default: avx512_f32_cells_impl(z, c, h, B, H, 1, 2); break;
    }
}
#endif

/* ---------------------------------------------------------------- the cell pass, AVX2 (float) */

/* The AVX-512 pass's design for CPUs whose packed kernel is the AVX2 one (AMD Zen 2/3, Intel
 * without AVX-512): eight lanes, the tail one masked vector (vmaskmovps). exp is exp_f op for op,
 * 2^k applied as its two exact factors (AVX2 has no vscalefps). The generic pass, which GCC
 * vectorises here too, took 8.7-9.0 ns per cell (sigmoid/tanh) on the AMD EPYC Zen 3 of
 * benchmarks/RESULTS.md, at B,H = 16,128 / 128,64 / 32,512 (C harness, fastest of 3000 calls). */
#ifdef MLSTM_X86_KERNELS
#define S256(x) _mm256_set1_ps(x)
T256 static inline __attribute__((always_inline)) __m256 pow2i256(__m256i k) { /* 2^k, k in [-126, 127] */
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}
T256 static inline __attribute__((always_inline)) __m256 exp256(__m256 x) { /* exp_f */
    __m256 xc = _mm256_min_ps(S256(89.0f), x); /* min/max(constant, x) return x when x is NaN */
    xc = _mm256_max_ps(S256(-104.0f), xc);
    const __m256 kd = _mm256_fmadd_ps(xc, S256(EXPF_LOG2E), S256(EXPF_SHIFT));
    const __m256 n = _mm256_sub_ps(kd, S256(EXPF_SHIFT));
    const __m256i k = _mm256_sub_epi32(_mm256_castps_si256(kd), _mm256_set1_epi32(0x4B400000));
    const __m256i k1 = _mm256_srai_epi32(k, 1);
    __m256 r = _mm256_fnmadd_ps(n, S256(EXPF_LN2_HI), xc);
    r = _mm256_fnmadd_ps(n, S256(EXPF_LN2_LO), r);
    __m256 p = S256(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, S256(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, S256(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, S256(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, S256(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, S256(0.5f));
    p = _mm256_fmadd_ps(p, r, S256(1.0f));
    p = _mm256_fmadd_ps(p, r, S256(1.0f));
    return _mm256_mul_ps(_mm256_mul_ps(p, pow2i256(k1)), pow2i256(_mm256_sub_epi32(k, k1)));
}
T256 static inline __attribute__((always_inline)) __m256 abs256(__m256 x) {
    return _mm256_andnot_ps(S256(-0.0f), x);
}
T256 static inline __attribute__((always_inline)) __m256 tanh256(__m256 x) { /* tanh_f */
    const __m256 a = abs256(x), z = _mm256_mul_ps(a, a);
    __m256 s = S256(TANHF_S5);
    s = _mm256_fmsub_ps(s, z, S256(TANHF_S4));
    s = _mm256_fmadd_ps(s, z, S256(TANHF_S3));
    s = _mm256_fmsub_ps(s, z, S256(TANHF_S2));
    s = _mm256_fmadd_ps(s, z, S256(TANHF_S1));
    s = _mm256_fmsub_ps(s, z, S256(TANHF_S0));
    s = _mm256_fmadd_ps(_mm256_mul_ps(a, z), s, a);
    const __m256 t = exp256(_mm256_mul_ps(S256(-2.0f), a));
    const __m256 big = _mm256_div_ps(_mm256_sub_ps(S256(1.0f), t), _mm256_add_ps(S256(1.0f), t));
    const __m256 r = _mm256_blendv_ps(big, s, _mm256_cmp_ps(a, S256(0.3f), _CMP_LT_OQ));
    return _mm256_or_ps(abs256(r), _mm256_and_ps(S256(-0.0f), x));
}
T256 static inline __attribute__((always_inline)) __m256 gate256(__m256 x, const int gate) { /* f32_gate */
    if (gate == 0) return _mm256_div_ps(S256(1.0f), _mm256_add_ps(S256(1.0f), exp256(_mm256_xor_ps(x, S256(-0.0f)))));
    __m256 y = _mm256_max_ps(_mm256_setzero_ps(), _mm256_fmadd_ps(S256(0.2f), x, S256(0.5f)));
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, S256(-2.5f), _CMP_LT_OQ));
    return _mm256_blendv_ps(y, S256(1.0f), _mm256_cmp_ps(x, S256(2.5f), _CMP_GT_OQ));
}
T256 static inline __attribute__((always_inline)) __m256 state256(__m256 x, const int state) { /* f32_state */
    if (state == 0) return tanh256(x);
    if (state == 1) return _mm256_div_ps(x, _mm256_add_ps(S256(1.0f), abs256(x)));
    return _mm256_and_ps(x, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NLE_UQ)); /* relu; NaN stays */
}
T256 static inline __attribute__((always_inline)) __m256i tail_mask256(long left) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left < 8 ? left : 8)), lanes);
}
/* Full vectors by plain loads and stores, the tail (H mod 8 units) by vmaskmovps, which is slow on
 * AMD (a masked store is microcoded on Zen 2 and 3): FULL is a constant in each specialisation. */
T256 static inline __attribute__((always_inline)) __m256 load256(const float *p, __m256i m, const int full) {
    return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}
T256 static inline __attribute__((always_inline)) void store256(float *p, __m256i m, __m256 v, const int full) {
    if (full)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, m, v);
}
T256 static inline __attribute__((always_inline)) void avx2_f32_cells_span(
    float *restrict zi, float *restrict zf, float *restrict zg, float *restrict zo, float *restrict cb,
    float *restrict hb, long j, __m256i m, const int gate, const int state, const int full) {
    const __m256 i = gate256(load256(zi + j, m, full), gate), f = gate256(load256(zf + j, m, full), gate);
    const __m256 o = gate256(load256(zo + j, m, full), gate), g = state256(load256(zg + j, m, full), state);
    const __m256 cell = _mm256_fmadd_ps(f, load256(cb + j, m, full), _mm256_mul_ps(i, g));
    store256(cb + j, m, cell, full);
    store256(hb + j, m, _mm256_mul_ps(o, state256(cell, state)), full);
}
T256 static inline __attribute__((always_inline)) void avx2_f32_cells_impl(
    float *restrict z, float *restrict c, float *restrict h, long B, long H, const int gate, const int state) {
    const long full = H - H % 8;
    const __m256i tail = tail_mask256(H - full);
    for (long b = 0; b < B; ++b) {
        float *restrict zi = z + b * 4 * H, *restrict zf = zi + H, *restrict zg = zi + 2 * H,
                        *restrict zo = zi + 3 * H;
        float *restrict cb = c + b * H, *restrict hb = h + b * H;
        for (long j = 0; j < full; j += 8) avx2_f32_cells_span(zi, zf, zg, zo, cb, hb, j, tail, gate, state, 1);
        if (full < H) avx2_f32_cells_span(zi, zf, zg, zo, cb, hb, full, tail, gate, state, 0);
    }
}
T256 static void avx2_f32_cells(float *z, float *c, float *h, long B, long H, int gate, int state) {
    switch (gate * 3 + state) {
        case 0: avx2_f32_cells_impl(z, c, h, B, H, 0, 0); break;
        case 1: avx2_f32_cells_impl(z, c, h, B, H, 0, 1); break;
        case 2: avx2_f32_cells_impl(z, c, h, B, H, 0, 2); break;
        case 3: avx2_f32_cells_impl(z, c, h, B, H, 1, 0); break;
        case 4: avx2_f32_cells_impl(z, c, h, B, H, 1, 1); break;
        default: avx2_f32_cells_impl(z, c, h, B, H, 1, 2); break;
    }
}
#endif

/* The cell pass the loops call: the AVX-512 or AVX2 one where the packed kernel is (the same
 * run-time choice, MLSTM_PACKED_ISA included), else the generic one (target_clones). */
static void f32_cells(float *z, float *c, float *h, long B, long H, int gate, int state) {
#ifdef MLSTM_X86_KERNELS
    const long nr = packed_kernel_for(0).nr;
    if (nr == 64) {
        avx512_f32_cells(z, c, h, B, H, gate, state);
        return;
    }
    if (nr == 16) {
        avx2_f32_cells(z, c, h, B, H, gate, state);
        return;
    }
#endif
    f32_cells_generic(z, c, h, B, H, gate, state);
}
static void f64_cells(double *z, double *c, double *h, long B, long H, int gate, int state) {
    f64_cells_generic(z, c, h, B, H, gate, state);
}

/* ---------------------------------------------------------------- the time loop (exported) */

/* A stop request (the caller's interrupt flag, set from another thread): the loops check it once per
 * step and return 1, leaving their outputs unfinished. NULL: never stop. */
#define STOP_REQUESTED(stop) ((stop) != NULL && __atomic_load_n((stop), __ATOMIC_RELAXED) != 0)

#define SMALL_PRODUCT 8192 /* 4H * H * B multiply-adds: below this the recurrent product is done inline */
const long mlstm_small_product = SMALL_PRODUCT; /* read by numpy_engine.py (one limit for both sides) */

/* The whole recurrence in one call, time in blocks of `block` steps sharing the gate buffer zbuf
 * (block, B, 4H). Per block, one gemm: z = x W' + b. Per step, one gemm z_t += h_{t-1} R', then
 * the fused cell pass. Both gemms go to the same BLAS (one thread pool, no ping-pong between
 * two BLAS copies). Row-major arrays: x (T, B, In), w (4H, In), bias (4H), r (4H, H),
 * h0 (B, H), c (B, H) in/out, y (T, B, H). gemm: BLAS sgemm/dgemm (Fortran interface). */
#define DEFINE_RUN(NAME, REAL, GEMM_T, GEMV_T, F64)                                                         \
    MLSTM_EXPORT(int, mlstm_run_##NAME,                                                                      \
                 (long T, long B, long In, long H, const REAL *x, const REAL *w, const REAL *bias, const REAL *r, \
                  const REAL *rp, long rp_len, const REAL *h0, REAL *c, REAL *y, REAL *zbuf, long block, int gate, \
                  int state, void *gemm_ptr, void *gemv_ptr, const int *stop)) {                                 \
        if (!blas_dims_fit(B, In, H, block) || !NAME##_packed_fits(rp, rp_len, H, 1)) return MLSTM_BAD_ARGUMENT; \
        const packed_kernel pk = packed_kernel_for(F64);                                                    \
        GEMM_T gemm = (GEMM_T)gemm_ptr;                                                                     \
        GEMV_T gemv = (GEMV_T)gemv_ptr;                                                                     \
        const int inc = 1;                                                                                  \
        const int m = (int)(4 * H), nb = (int)B, k = (int)H, kin = (int)In, lda = (int)H, ldx = (int)In,     \
                  ldc = (int)(4 * H);                                                                       \
        const REAL one = 1;                                                                                 \
        const REAL *h = h0;                                                                                 \
        for (long start = 0; start < T; start += block) {                                                   \
            const long steps = T - start < block ? T - start : block;                                       \
            const int cols = (int)(steps * B);                                                              \
            for (long col = 0; col < steps * B; ++col) memcpy(zbuf + col * 4 * H, bias, 4 * H * sizeof(REAL)); \
            /* column-major: z' (4H x steps*B) += W (4H x In, stored as W' In x 4H) * x' (In x steps*B) */ \
            if (In > 0 && H > 0)                                                                            \
                gemm("T", "N", &m, &cols, &kin, &one, w, &ldx, x + start * B * In, &ldx, &one, zbuf, &ldc); \
            for (long t = 0; t < steps; ++t) {                                                              \
                if (STOP_REQUESTED(stop)) return 1;                                                         \
                REAL *z = zbuf + t * B * 4 * H;                                                             \
                /* column-major: z' (4H x B) += R (4H x H, stored as R' H x 4H) * h' (H x B). Tiny      \
                 * products go inline: a BLAS call costs microseconds before it does any work. */        \
                if (4 * H * H * B <= SMALL_PRODUCT) {                                                      \
                    for (long b = 0; b < B; ++b)                                                            \
                        for (long row = 0; row < 4 * H; ++row) {                                            \
                            REAL acc = 0;                                                                   \
                            for (long q = 0; q < H; ++q) acc += r[row * H + q] * h[b * H + q];              \
                            z[b * 4 * H + row] += acc;                                                      \
                        }                                                                                   \
                } else if (rp != NULL) { /* R packed once (see above) */                                    \
                    pk.gemm(rp, 4 * H, H, h, B, z, 4 * H);                                                  \
                } else if (B == 1 && gemv) { /* one observation: a matrix-vector product, z += R h */      \
                    gemv("T", &k, &m, &one, r, &lda, h, &inc, &one, z, &inc);                               \
                } else if (H > 0) {                                                                         \
                    gemm("T", "N", &m, &nb, &k, &one, r, &lda, h, &lda, &one, z, &ldc);                     \
                }                                                                                           \
                REAL *ht = y + (start + t) * B * H;                                                         \
                NAME##_cells(z, c, ht, B, H, gate, state);                                                  \
                h = ht;                                                                                     \
            }                                                                                               \
        }                                                                                                   \
        return 0;                                                                                           \
    }

DEFINE_RUN(f32, float, sgemm_fn, sgemv_fn, 0)
DEFINE_RUN(f64, double, dgemm_fn, dgemv_fn, 1)

/* ---------------------------------------------------------------- gate-major loop for small H (exported) */

/* For a few hidden units and a larger batch, the loops over H are too short to vectorise, so the
 * gates are laid out gate-major: z (4H, block*B) with ld = block*B, and the states kept as
 * cT, hT (H, B): every inner loop runs over the batch. Same arithmetic as the loop above.
 * zbuf: block*B*4H; state: 2*H*B scratch. */
#define DEFINE_RUN_GATE_MAJOR(NAME, REAL, GEMM_T)                                                           \
    MLSTM_INLINE void NAME##_cells_gm_impl(REAL *restrict z, long ldz, REAL *restrict cT, REAL *restrict hT, \
                                            long B, long H, const int gate, const int state) {              \
        for (long j = 0; j < H; ++j) {                                                                      \
            const REAL *restrict zi = z + j * ldz, *restrict zf = z + (H + j) * ldz;                        \
            const REAL *restrict zg = z + (2 * H + j) * ldz, *restrict zo = z + (3 * H + j) * ldz;          \
            REAL *restrict cj = cT + j * B, *restrict hj = hT + j * B;                                      \
            for (long b = 0; b < B; ++b) {                                                                  \
                const REAL i = NAME##_gate(zi[b], gate), f = NAME##_gate(zf[b], gate);                      \
                const REAL o = NAME##_gate(zo[b], gate), g = NAME##_state(zg[b], state);                    \
                const REAL cell = f * cj[b] + i * g;                                                        \
                cj[b] = cell;                                                                               \
                hj[b] = o * NAME##_state(cell, state);                                                      \
            }                                                                                               \
        }                                                                                                   \
    }                                                                                                       \
    MLSTM_CLONES static void NAME##_cells_gm(REAL *z, long ldz, REAL *cT, REAL *hT, long B, long H, int gate, \
                                             int state) {                                                   \
        switch (gate * 3 + state) {                                                                         \
            case 0: NAME##_cells_gm_impl(z, ldz, cT, hT, B, H, 0, 0); break;                                \
            case 1: NAME##_cells_gm_impl(z, ldz, cT, hT, B, H, 0, 1); break;                                \
            case 2: NAME##_cells_gm_impl(z, ldz, cT, hT, B, H, 0, 2); break;                                \
            case 3: NAME##_cells_gm_impl(z, ldz, cT, hT, B, H, 1, 0); break;                                \
            case 4: NAME##_cells_gm_impl(z, ldz, cT, hT, B, H, 1, 1); break;                                \
            default: NAME##_cells_gm_impl(z, ldz, cT, hT, B, H, 1, 2); break;                               \
        }                                                                                                   \
    }                                                                                                       \
    MLSTM_EXPORT(int, mlstm_run_gm_##NAME,                                                                   \
                 (long T, long B, long In, long H, const REAL *x, const REAL *w, const REAL *bias, const REAL *r, \
                  const REAL *h0, REAL *c, REAL *y, REAL *zbuf, long block, REAL *state_buf, int gate, int state, \
                  void *gemm_ptr, const int *stop)) {                                                              \
        if (!blas_dims_fit(B, In, H, block)) return MLSTM_BAD_ARGUMENT;                                     \
        GEMM_T gemm = (GEMM_T)gemm_ptr;                                                                     \
        const int m4 = (int)(4 * H), nb = (int)B, k = (int)H, kin = (int)In;                                \
        const REAL one = 1;                                                                                 \
        REAL *cT = state_buf, *hT = state_buf + H * B;                                                      \
        for (long b = 0; b < B; ++b)                                                                        \
            for (long j = 0; j < H; ++j) {                                                                  \
                cT[j * B + b] = c[b * H + j];                                                               \
                hT[j * B + b] = h0[b * H + j];                                                              \
            }                                                                                               \
        for (long start = 0; start < T; start += block) {                                                   \
            const long steps = T - start < block ? T - start : block;                                       \
            const long ldz = steps * B;                                                                     \
            const int cols = (int)ldz, ldz_i = (int)ldz;                                                    \
            for (long row = 0; row < 4 * H; ++row)                                                          \
                for (long col = 0; col < ldz; ++col) zbuf[row * ldz + col] = bias[row];                     \
            /* column-major z (steps*B x 4H, ld steps*B) += x (steps*B x In) * W' (In x 4H) */              \
            if (In > 0 && H > 0)                                                                            \
                gemm("T", "N", &cols, &m4, &kin, &one, x + start * B * In, &kin, w, &kin, &one, zbuf, &ldz_i); \
            for (long t = 0; t < steps; ++t) {                                                              \
                if (STOP_REQUESTED(stop)) return 1;                                                         \
                REAL *z = zbuf + t * B;                                                                     \
                /* column-major z_t (B x 4H, ld steps*B) += h (B x H, stored as hT: ld B) * R' (H x 4H) */  \
                if (4 * H * H * B <= SMALL_PRODUCT) {                                                       \
                    for (long row = 0; row < 4 * H; ++row)                                                  \
                        for (long q = 0; q < H; ++q) {                                                      \
                            const REAL rq = r[row * H + q];                                                 \
                            REAL *restrict zr = z + row * ldz;                                              \
                            const REAL *restrict hq = hT + q * B;                                           \
                            for (long b = 0; b < B; ++b) zr[b] += rq * hq[b];                               \
                        }                                                                                   \
                } else if (H > 0) {                                                                         \
                    gemm("N", "N", &nb, &m4, &k, &one, hT, &nb, r, &k, &one, z, &ldz_i);                    \
                }                                                                                           \
                NAME##_cells_gm(z, ldz, cT, hT, B, H, gate, state);                                         \
                REAL *yt = y + (start + t) * B * H;                                                         \
                for (long b = 0; b < B; ++b)                                                                \
                    for (long j = 0; j < H; ++j) yt[b * H + j] = hT[j * B + b];                             \
            }                                                                                               \
        }                                                                                                   \
        for (long b = 0; b < B; ++b)                                                                        \
            for (long j = 0; j < H; ++j) c[b * H + j] = cT[j * B + b];                                      \
        return 0;                                                                                           \
    }

DEFINE_RUN_GATE_MAJOR(f32, float, sgemm_fn)
DEFINE_RUN_GATE_MAJOR(f64, double, dgemm_fn)

/* The unit split's thread limit, read by numpy_engine.py (one limit for both sides). */
#define MLSTM_MAX_UNIT_THREADS 64
const int mlstm_max_unit_threads = MLSTM_MAX_UNIT_THREADS;

/* ---------------------------------------------------------------- batch-parallel time loop (exported) */

/* Observations are independent, so each thread runs the whole recurrence for its own contiguous
 * slice of the batch, without synchronising: per step z = b, z += W x_t, z += R h_{t-1}, cells.
 * With wp (W packed once, as R is), both products go to the packed kernel: a gemm of one step's
 * slice re-packs W on every call, which cost 6-27% of the run's time at three benchmark shapes of
 * RESULTS.md (AMD EPYC, float32; the two ways gave the same bits there). Each worker asks the BLAS
 * for one thread (openblas_set_num_threads_local, when given), so the workers do not
 * oversubscribe the cores with BLAS threads of their own. */
typedef int (*set_threads_fn)(int);

/* ---------------------------------------------------------------- where a new worker thread starts */

/* A thread the loops create starts on a CPU of the caller's affinity mask other than the caller's
 * own, and (place = PLACE_START) is given the whole mask back as soon as it runs, so the scheduler
 * may still move it later: on the 2-vCPU AMD EPYC of benchmarks/RESULTS.md (Linux 6.x in a VM),
 * a thread created without this started 2-3 ms late and then shared the caller's CPU for most of a
 * short run (two threads of 7 ms of work each took 14.4 ms in most tries; placed: 7.2-7.6 ms in
 * every try, the worker running 0.1 ms after pthread_create). Whole runs, median over 11-15
 * interleaved runs each: the batch split 0.67-0.94x the time at three benchmark shapes (its p90
 * 20.3 -> 15.0 ms at float64 (64,128,32,256)), the unit split 0.88-1.01x at four. Keeping each worker
 * on its CPU for the whole run gave no more there, and would hold a thread on a core another
 * process has taken. PLACE_OFF leaves placement to the OS. Linux with glibc only. */
enum { PLACE_OFF = 0, PLACE_START = 1 };

typedef struct {
    int mode;  /* PLACE_*; PLACE_OFF when the mask could not be read */
    int count; /* CPUs in cpu[] */
    int me;    /* the caller's CPU when the places were planned (-1: unknown) */
    int cpu[MLSTM_MAX_UNIT_THREADS]; /* the mask's CPUs after the caller's, in order, wrapping */
#if MLSTM_PLACEMENT
    cpu_set_t mask; /* the caller's mask, each worker's once it runs */
#endif
} thread_places;

static void plan_places(thread_places *p, int mode) {
    p->mode = PLACE_OFF;
    p->count = 0;
    p->me = -1;
#if MLSTM_PLACEMENT
    if (mode == PLACE_OFF || sched_getaffinity(0, sizeof p->mask, &p->mask) != 0) return;
    const int me = p->me = sched_getcpu();
    if (me < 0 || me >= CPU_SETSIZE) return;
    for (int i = 1; i < CPU_SETSIZE && p->count < MLSTM_MAX_UNIT_THREADS; ++i) {
        const int cpu = (me + i) % CPU_SETSIZE;
        if (CPU_ISSET(cpu, &p->mask)) p->cpu[p->count++] = cpu; /* i < CPU_SETSIZE: never me */
    }
    if (p->count > 0) p->mode = mode;
#else
    (void)mode;
#endif
}

/* Start worker k (1, 2, ...) on its CPU; unplaced when placing fails (0; nonzero: not started). */
static int start_worker(pthread_t *thread, void *(*fn)(void *), void *arg, const thread_places *p, int k) {
#if MLSTM_PLACEMENT
    if (p->mode != PLACE_OFF) {
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) == 0) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(p->cpu[(k - 1) % p->count], &one);
            const int placed = pthread_attr_setaffinity_np(&attr, sizeof one, &one) == 0 &&
                               pthread_create(thread, &attr, fn, arg) == 0;
            pthread_attr_destroy(&attr);
            if (placed) return 0;
        }
    }
#else
    (void)p;
    (void)k;
#endif
    return pthread_create(thread, NULL, fn, arg);
}

/* A placed worker, now running: the caller's whole mask again. */
static void release_place(const thread_places *p) {
#if MLSTM_PLACEMENT
    if (p != NULL && p->mode != PLACE_OFF) pthread_setaffinity_np(pthread_self(), sizeof p->mask, &p->mask);
#else
    (void)p;
#endif
}

#define DEFINE_PARALLEL(NAME, REAL, GEMM_T, F64)                                                            \
    typedef struct {                                                                                        \
        long T, B, In, H, b0, b1;                                                                           \
        const REAL *x, *w, *bias, *r, *rp, *wp, *h0;                                                        \
        REAL *c, *y, *z;                                                                                    \
        int gate, state;                                                                                    \
        GEMM_T gemm;                                                                                        \
        packed_kernel pk;                                                                                   \
        set_threads_fn set_threads;                                                                         \
        const thread_places *places; /* NULL for the caller's own slices */                               \
        const int *stop;                                                                                    \
    } NAME##_job;                                                                                           \
    static void *NAME##_worker(void *arg) {                                                                 \
        NAME##_job *j = (NAME##_job *)arg;                                                                  \
        release_place(j->places);                                                                           \
        if (j->set_threads) j->set_threads(1); /* a spawned thread: the setting dies with it */            \
        const long B = j->B, H = j->H, In = j->In, Bs = j->b1 - j->b0;                                     \
        const int m = (int)(4 * H), n = (int)Bs, k = (int)H, kin = (int)In, ldh = (int)H, ldx = (int)In,     \
                  ldc = (int)(4 * H);                                                                       \
        const REAL one = 1;                                                                                 \
        const REAL *h = j->h0 + j->b0 * H;                                                                  \
        REAL *c = j->c + j->b0 * H;                                                                         \
        for (long t = 0; t < j->T; ++t) {                                                                   \
            if (STOP_REQUESTED(j->stop)) return NULL;                                                       \
            for (long col = 0; col < Bs; ++col) memcpy(j->z + col * 4 * H, j->bias, 4 * H * sizeof(REAL));  \
            const REAL *xt = j->x + (t * B + j->b0) * In;                                                   \
            if (In > 0 && H > 0 && j->wp != NULL) /* W packed: no re-packing of W per step */                \
                j->pk.gemm(j->wp, 4 * H, In, xt, Bs, j->z, 4 * H);                                          \
            else if (In > 0 && H > 0)                                                                       \
                j->gemm("T", "N", &m, &n, &kin, &one, j->w, &ldx, xt, &ldx, &one, j->z, &ldc);              \
            if (j->rp != NULL)                                                                              \
                j->pk.gemm(j->rp, 4 * H, H, h, Bs, j->z, 4 * H);                                            \
            else if (H > 0)                                                                                 \
                j->gemm("T", "N", &m, &n, &k, &one, j->r, &ldh, h, &ldh, &one, j->z, &ldc);                 \
            REAL *ht = j->y + (t * B + j->b0) * H;                                                          \
            NAME##_cells(j->z, c, ht, Bs, H, j->gate, j->state);                                            \
            h = ht;                                                                                         \
        }                                                                                                   \
        return NULL;                                                                                        \
    }                                                                                                       \
    /* zbuf: (B, 4H), one row block per worker. Returns 0; 1 when stopped; -1 when out of memory (the \
     * caller then runs the serial loop: nothing has been written that it does not overwrite). */          \
    MLSTM_EXPORT(int, mlstm_run_parallel_##NAME,                                                             \
                 (long T, long B, long In, long H, const REAL *x, const REAL *w, const REAL *bias, const REAL *r, \
                  const REAL *rp, long rp_len, const REAL *wp, long wp_len, const REAL *h0, REAL *c, REAL *y,      \
                  REAL *zbuf, int nthreads, int gate, int state, void *gemm_ptr, void *set_threads_ptr,          \
                  int place, const int *stop)) {                                                                            \
        if (!blas_dims_fit(B, In, H, 1) || !NAME##_packed_fits(rp, rp_len, H, 1)) return MLSTM_BAD_ARGUMENT; \
        if (wp == NULL ? wp_len != 0 : wp_len != mlstm_packed_size_##NAME(4 * H, In)) return MLSTM_BAD_ARGUMENT; \
        if (nthreads > B) nthreads = (int)B;                                                                \
        if (nthreads < 1) nthreads = 1;                                                                     \
        NAME##_job *jobs = (NAME##_job *)calloc((size_t)nthreads, sizeof(NAME##_job));                     \
        pthread_t *threads = (pthread_t *)calloc((size_t)nthreads, sizeof(pthread_t));                     \
        if (!jobs || !threads) {                                                                            \
            free(jobs);                                                                                     \
            free(threads);                                                                                  \
            return -1;                                                                                      \
        }                                                                                                   \
        for (int i = 0; i < nthreads; ++i) {                                                                \
            NAME##_job *j = &jobs[i];                                                                       \
            j->T = T; j->B = B; j->In = In; j->H = H;                                                       \
            j->b0 = B * i / nthreads; j->b1 = B * (i + 1) / nthreads;                                       \
            j->x = x; j->w = w; j->bias = bias; j->r = r; j->rp = rp; j->wp = wp; j->h0 = h0; j->c = c; j->y = y;       \
            j->pk = packed_kernel_for(F64);                                                                 \
            j->z = zbuf + j->b0 * 4 * H;                                                                    \
            j->gate = gate; j->state = state; j->gemm = (GEMM_T)gemm_ptr;                                   \
            j->set_threads = (set_threads_fn)set_threads_ptr; j->stop = stop;                               \
        }                                                                                                   \
        /* The caller runs slice 0 (each new thread starts on another CPU: start_worker), and the slice of \
         * any thread that could not be created: slices are independent. The BLAS's thread count that \
         * the workers set is the caller's to restore (OpenBLAS's "local" setting is global here). */ \
        thread_places places;                                                                               \
        plan_places(&places, place);                                                                        \
        int started = 1;                                                                                    \
        for (; started < nthreads; ++started) {                                                             \
            jobs[started].places = &places;                                                                 \
            if (start_worker(&threads[started], NAME##_worker, &jobs[started], &places, started) != 0) {     \
                jobs[started].places = NULL; /* the caller runs it */                                      \
                break;                                                                                      \
            }                                                                                               \
        }                                                                                                   \
        NAME##_worker(&jobs[0]);                                                                            \
        for (int i = started; i < nthreads; ++i) NAME##_worker(&jobs[i]);                                   \
        for (int i = 1; i < started; ++i) pthread_join(threads[i], NULL);                                   \
        free(jobs);                                                                                         \
        free(threads);                                                                                      \
        return STOP_REQUESTED(stop) ? 1 : 0;                                                                \
    }

DEFINE_PARALLEL(f32, float, sgemm_fn, 0)
DEFINE_PARALLEL(f64, double, dgemm_fn, 1)

/* ---------------------------------------------------------------- unit-split time loop (exported) */

/* For few observations and many hidden units, the hidden units are split into slices instead:
 * slice k holds units [j0, j1) and the rows of W, R and b that feed them (the caller permutes
 * those rows so that each slice's i, f, g, o blocks are contiguous: rows 4*j0 .. 4*j1 of w, r,
 * bias, in the order i, f, g, o of its own units). Each step, a slice's gates come from the whole
 * h_{t-1}, and its part of h_t goes into Y; h_t is whole when every slice is done.
 *
 * One slice per thread, and each thread computes its own slice first (keeping its part of R hot
 * in its own cache); but slices are claimed, not owned: a thread done with its slice takes any
 * slice of the same step nobody has started. So a thread the OS has descheduled (another
 * process on its core) does not stall the others: they do its work, at the speed of one thread,
 * and it joins again when it runs. A slice is the same BLAS call and the same cell pass whoever
 * computes it, so the result does not depend on who did what.
 *
 * A thread with nothing left to claim waits for the step to end: it spins for about
 * SPIN_BEFORE_SLEEP_NS (a partner that is running finishes within microseconds), then sleeps
 * in the kernel (a futex on Linux, else sched_yield) until the thread that finishes the step
 * wakes it: a descheduled partner costs a wake-up, never a time slice of spinning (the idea of
 * OpenMP's KMP_BLOCKTIME). One stall remains: a thread descheduled in the middle of its slice
 * holds up the step until it runs again (a time slice of the other process). So a thread that
 * finds one of its slices took far longer than its fastest (it was descheduled) stands aside for
 * a while, BACKOFF_MIN_NS at first, doubling while it keeps happening, up to BACKOFF_MAX_NS,
 * while the others carry on; at least one thread always works. Workers run single-threaded
 * BLAS (set_threads), on spawned threads. */
#ifndef SPIN_BEFORE_SLEEP_NS
#define SPIN_BEFORE_SLEEP_NS 50000L
#endif
#define BACKOFF_MIN_NS 2000000L   /* 2 ms */
#define BACKOFF_MAX_NS 128000000L /* 128 ms */
/* A slice of this thread's own over twice its fastest and this much more: the thread was
 * descheduled (a time slice of another process on its core is milliseconds). Two bounds it replaced
 * stood threads aside far too often on an AMD EPYC Zen 3 (AVX2, 2 vCPUs; benchmarks/RESULTS.md):
 * 4 min(fastest, 200 us) + 200 us took every slice over 1 ms for a deschedule (at (C,H,B,T) =
 * (256,512,64,128) float32 slices take 1.3 ms: a stand-aside at every step, 398-450 ms a run
 * against 222-256 now); 2 fastest + 200 us still fired on the virtual machine's sub-millisecond
 * hiccups, and each stand-aside costs 2 ms or more of one thread doing both slices ((40,64,256,1000):
 * 227-292 ms against 215-229). Beside a busy process the split kept within 1.06-1.09x of one
 * thread (1.01-1.06x with the old bound). A slice of another thread's (its part of R cold in
 * this core's cache) and the first slice after standing aside (maybe on another core) are not
 * judged. */
#define DESCHEDULED_NS 1000000L

/* Whether a slice that took ``took`` ns, where this thread's fastest slice so far took
 * ``fastest`` (LONG_MAX: none yet), says the thread was descheduled (exported for the tests). */
int mlstm_slice_was_descheduled(long took, long fastest) {
    return fastest != LONG_MAX && took > 2 * fastest + DESCHEDULED_NS;
}

/* Standing aside is remembered across runs (a busy neighbour usually stays a while). */
static long backoff_ns = 0, last_backoff_at = 0;

typedef struct {
    long T, block; /* steps, and steps per input-projection block */
    int n;         /* slices (= threads) */
    long step;     /* the step being computed; the thread finishing its last slice advances it */
    int seq;       /* (int)step, the word sleepers wait on */
    int done;      /* slices of this step finished */
    int sleepers;  /* threads asleep (or about to be) on seq */
    int active;    /* threads not standing aside */
    int ended;     /* 1 once the last step is done: wakes threads standing aside */
    const int *stop; /* the caller's stop request, read by the thread finishing a step ... */
    int stop_now;    /* ... and published with the next step, so every thread stops after the same one */
    long claimed[MLSTM_MAX_UNIT_THREADS]; /* per slice: the last step it was claimed for */
} mlstm_steps;

static long monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void futex_sleep(int *word, int value) { /* returns at once when *word != value */
#if defined(__linux__) && defined(SYS_futex)
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
#else
    (void)word;
    (void)value;
    sched_yield();
#endif
}

static void futex_wake_all(int *word) {
#if defined(__linux__) && defined(SYS_futex)
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)word;
#endif
}

/* Claim slice k for step t (it was last claimed for t - 1: nobody has started it this step). */
static int claim_slice(mlstm_steps *s, int k, long t) {
    long expected = t - 1;
    return __atomic_compare_exchange_n(&s->claimed[k], &expected, t, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

/* A slice of step t is done; the thread finishing the last one starts step t + 1. */
static void slice_done(mlstm_steps *s, long t) {
    if (__atomic_add_fetch(&s->done, 1, __ATOMIC_ACQ_REL) != s->n) return;
    __atomic_store_n(&s->done, 0, __ATOMIC_RELAXED);
    long next = t + 1;
    if (STOP_REQUESTED(s->stop) && next < s->T) {
        __atomic_store_n(&s->stop_now, 1, __ATOMIC_RELAXED);
        next = s->T;
    }
    /* Sequentially consistent with the sleepers' count: either a sleeper sees the new step
     * before it sleeps, or this thread sees it counted and wakes it. */
    __atomic_store_n(&s->step, next, __ATOMIC_SEQ_CST);
    __atomic_store_n(&s->seq, (int)next, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&s->sleepers, __ATOMIC_SEQ_CST) > 0) futex_wake_all(&s->seq);
    if (next >= s->T) {
        __atomic_store_n(&s->ended, 1, __ATOMIC_SEQ_CST);
        futex_wake_all(&s->ended);
    }
}

/* This thread was descheduled in the middle of a slice: stand aside for a while (see above),
 * unless it is the only one working. */
static void stand_aside(mlstm_steps *s) {
    int active = __atomic_load_n(&s->active, __ATOMIC_RELAXED);
    do {
        if (active <= 1) return;
    } while (!__atomic_compare_exchange_n(&s->active, &active, active - 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
    const long now = monotonic_ns();
    long wait = __atomic_load_n(&backoff_ns, __ATOMIC_RELAXED);
    const long last = __atomic_load_n(&last_backoff_at, __ATOMIC_RELAXED);
    wait = wait > 0 && now - last < 8 * wait ? 2 * wait : BACKOFF_MIN_NS; /* again soon after: longer */
    if (wait > BACKOFF_MAX_NS) wait = BACKOFF_MAX_NS;
    __atomic_store_n(&backoff_ns, wait, __ATOMIC_RELAXED);
    __atomic_store_n(&last_backoff_at, now + wait, __ATOMIC_RELAXED);
    const long until = now + wait;
    for (long left = wait; left > 0 && !__atomic_load_n(&s->ended, __ATOMIC_ACQUIRE); left = until - monotonic_ns()) {
#if defined(__linux__) && defined(SYS_futex)
        struct timespec ts = {left / 1000000000L, left % 1000000000L};
        syscall(SYS_futex, &s->ended, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
#else
        struct timespec ts = {0, left < 1000000L ? left : 1000000L};
        nanosleep(&ts, NULL);
#endif
    }
    __atomic_add_fetch(&s->active, 1, __ATOMIC_ACQ_REL);
}

/* Wait until step t is over: spin briefly, then sleep. */
static void wait_for_step(mlstm_steps *s, long t) {
    long deadline = 0;
    for (unsigned spins = 0; __atomic_load_n(&s->step, __ATOMIC_ACQUIRE) == t; ++spins) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        if ((spins & 63) != 63) continue; /* the clock, every 64 pauses */
        const long now = monotonic_ns();
        if (deadline == 0) {
            deadline = now + SPIN_BEFORE_SLEEP_NS;
        } else if (now > deadline) {
            __atomic_add_fetch(&s->sleepers, 1, __ATOMIC_SEQ_CST);
            while (__atomic_load_n(&s->step, __ATOMIC_SEQ_CST) == t) futex_sleep(&s->seq, (int)t);
            __atomic_sub_fetch(&s->sleepers, 1, __ATOMIC_SEQ_CST);
            return;
        }
    }
}

#define DEFINE_UNIT_SPLIT(NAME, REAL, GEMM_T, GEMV_T, F64)                                                  \
    typedef struct {                                                                                        \
        long T, B, In, H;                                                                                   \
        long j0[MLSTM_MAX_UNIT_THREADS + 1]; /* slice k: units j0[k] .. j0[k+1] */                        \
        long rp0[MLSTM_MAX_UNIT_THREADS];    /* slice k's packed R: rp + rp0[k] */                         \
        packed_kernel pk;                                                                                   \
        const REAL *x, *w, *bias, *r, *rp, *h0;                                                             \
        REAL *c, *y, *zbuf;                                                                                 \
        int gate, state;                                                                                    \
        GEMM_T gemm;                                                                                        \
        GEMV_T gemv; /* for one observation: z += R_k h as a matrix-vector product (gemm would pack R_k) */ \
        set_threads_fn set_threads;                                                                         \
        const thread_places *places;                                                                        \
        mlstm_steps *steps;                                                                                 \
    } NAME##_unit_run;                                                                                      \
    typedef struct {                                                                                        \
        NAME##_unit_run *run;                                                                               \
        int own; /* the slice this thread tries first */                                                    \
    } NAME##_unit_job;                                                                                      \
    /* Slice k of step t: at the first step of a block, its input projection for the block; then   \
     * z += R_k h_{t-1}, and the cells of its units. */                                               \
    static long NAME##_unit_slice(NAME##_unit_run *u, int k, long t) { /* ns of its recurrent part */     \
        const long B = u->B, H = u->H, In = u->In, block = u->steps->block;                                \
        const long j0 = u->j0[k], Hk = u->j0[k + 1] - j0;                                                   \
        if (Hk == 0) return 0;                                                                              \
        const int m = (int)(4 * Hk), nb = (int)B, kh = (int)H, kin = (int)In, ldz = (int)(4 * Hk);         \
        const REAL one = 1;                                                                                 \
        const REAL *w = u->w + 4 * j0 * In, *r = u->r + 4 * j0 * H, *bias = u->bias + 4 * j0;              \
        const long start = t - t % block, steps = u->T - start < block ? u->T - start : block;             \
        REAL *z = u->zbuf + block * B * 4 * j0; /* this slice's part of the gate buffer */                \
        if (t == start) {                                                                                   \
            const int cols = (int)(steps * B);                                                              \
            for (long col = 0; col < steps * B; ++col) memcpy(z + col * 4 * Hk, bias, 4 * Hk * sizeof(REAL)); \
            if (In > 0) u->gemm("T", "N", &m, &cols, &kin, &one, w, &kin, u->x + start * B * In, &kin, &one, z, &ldz); \
        }                                                                                                   \
        z += (t - start) * B * 4 * Hk;                                                                      \
        const long began = monotonic_ns();                                                                  \
        const REAL *h = t == 0 ? u->h0 : u->y + (t - 1) * B * H;                                            \
        if (u->rp != NULL) {                                                                                \
            u->pk.gemm(u->rp + u->rp0[k], 4 * Hk, H, h, B, z, 4 * Hk);                                      \
        } else if (B == 1 && u->gemv) {                                                                     \
            const int inc = 1;                                                                              \
            u->gemv("T", &kh, &m, &one, r, &kh, h, &inc, &one, z, &inc);                                    \
        } else {                                                                                            \
            u->gemm("T", "N", &m, &nb, &kh, &one, r, &kh, h, &kh, &one, z, &ldz);                           \
        }                                                                                                   \
        REAL *ht = u->y + t * B * H;                                                                        \
        for (long b = 0; b < B; ++b)                                                                        \
            NAME##_cells(z + b * 4 * Hk, u->c + b * H + j0, ht + b * H + j0, 1, Hk, u->gate, u->state);     \
        return monotonic_ns() - began;                                                                      \
    }                                                                                                       \
    static void *NAME##_unit_worker(void *arg) {                                                            \
        NAME##_unit_job *job = (NAME##_unit_job *)arg;                                                      \
        NAME##_unit_run *u = job->run;                                                                      \
        mlstm_steps *s = u->steps;                                                                          \
        if (job->own > 0) release_place(u->places); /* a started thread (the caller works slice 0) */     \
        if (u->set_threads) u->set_threads(1); /* the BLAS at one thread: these threads are the parallelism */ \
        long fastest = LONG_MAX;                                                                            \
        int judge = 1; /* whether this thread's next own slice may say it was descheduled */               \
        for (;;) {                                                                                          \
            const long t = __atomic_load_n(&s->step, __ATOMIC_ACQUIRE);                                     \
            if (t >= s->T) return NULL;                                                                     \
            int descheduled = 0;                                                                            \
            for (int i = 0; i < s->n; ++i) { /* own slice first, then any left */                          \
                const int k = (job->own + i) % s->n;                                                        \
                if (!claim_slice(s, k, t)) continue;                                                        \
                const long took = NAME##_unit_slice(u, k, t);                                               \
                slice_done(s, t);                                                                           \
                if (k != job->own) continue; /* another's slice, its part of R cold here: not a measure */ \
                if (judge && mlstm_slice_was_descheduled(took, fastest)) descheduled = 1;                   \
                judge = 1;                                                                                  \
                if (took < fastest) fastest = took;                                                         \
            }                                                                                               \
            if (descheduled) {                                                                              \
                stand_aside(s);                                                                             \
                judge = 0; /* back from standing aside (maybe on another core): its first slice is cold */ \
            }                                                                                               \
            wait_for_step(s, t);                                                                            \
        }                                                                                                   \
    }                                                                                                       \
    /* zbuf: block * B * 4H (slice k: its block * B * 4Hk part). Returns 0; 1 when stopped; -1 when   \
     * nthreads does not match (then nothing has run). */                                             \
    MLSTM_EXPORT(int, mlstm_run_units_##NAME,                                                                \
                 (long T, long B, long In, long H, const REAL *x, const REAL *w, const REAL *bias, const REAL *r, \
                  const REAL *rp, long rp_len, const REAL *h0, REAL *c, REAL *y, REAL *zbuf, long block, int nthreads, \
                  int gate, int state, void *gemm_ptr, void *gemv_ptr, void *set_threads_ptr, int place,      \
                  const int *stop)) {                                                                     \
        if (!blas_dims_fit(B, In, H, block)) return MLSTM_BAD_ARGUMENT;                                     \
        if (nthreads >= 1 && !NAME##_packed_fits(rp, rp_len, H, nthreads)) return MLSTM_BAD_ARGUMENT;      \
        /* The caller permuted R's rows for exactly nthreads slices: refuse (serial fallback), never  \
         * change the count here. */                                                                      \
        if (nthreads > H || nthreads < 2 || nthreads > MLSTM_MAX_UNIT_THREADS) return -1;                  \
        mlstm_steps *s = (mlstm_steps *)calloc(1, sizeof(mlstm_steps));                                    \
        NAME##_unit_run *u = (NAME##_unit_run *)calloc(1, sizeof(NAME##_unit_run));                        \
        if (!s || !u) {                                                                                     \
            free(s);                                                                                        \
            free(u);                                                                                        \
            return -1;                                                                                      \
        }                                                                                                   \
        s->T = T; s->block = block; s->n = nthreads; s->active = nthreads; s->stop = stop;                  \
        for (int k = 0; k < nthreads; ++k) s->claimed[k] = -1;                                              \
        u->T = T; u->B = B; u->In = In; u->H = H;                                                           \
        for (int k = 0; k <= nthreads; ++k) u->j0[k] = H * k / nthreads;                                    \
        u->x = x; u->w = w; u->bias = bias; u->r = r; u->h0 = h0; u->c = c; u->y = y; u->zbuf = zbuf;      \
        u->rp = rp; u->pk = packed_kernel_for(F64);                                                         \
        for (int k = 0; k < nthreads; ++k) u->rp0[k] = packed_slice_offset(H, nthreads, k, u->pk.nr);      \
        u->gate = gate; u->state = state; u->gemm = (GEMM_T)gemm_ptr;                                       \
        u->gemv = (GEMV_T)gemv_ptr;                                                                         \
        u->set_threads = (set_threads_fn)set_threads_ptr; u->steps = s;                                     \
        NAME##_unit_job jobs[MLSTM_MAX_UNIT_THREADS];                                                       \
        pthread_t threads[MLSTM_MAX_UNIT_THREADS];                                                          \
        /* The caller works too (its own slice 0), and each thread it starts begins on another CPU \
         * (start_worker): two new threads and a waiting caller were seen to share one core for the \
         * first milliseconds. A thread that cannot be created only means fewer hands: slices are  \
         * claimed. */                                                                              \
        for (int k = 0; k < nthreads; ++k) {                                                                \
            jobs[k].run = u;                                                                                \
            jobs[k].own = k;                                                                                \
        }                                                                                                   \
        thread_places places;                                                                               \
        plan_places(&places, place);                                                                        \
        u->places = &places;                                                                                \
        int started = 1;                                                                                    \
        for (; started < nthreads; ++started)                                                               \
            if (start_worker(&threads[started], NAME##_unit_worker, &jobs[started], &places, started) != 0) break; \
        if (started < nthreads) __atomic_sub_fetch(&s->active, nthreads - started, __ATOMIC_ACQ_REL);      \
        NAME##_unit_worker(&jobs[0]);                                                                       \
        for (int i = 1; i < started; ++i) pthread_join(threads[i], NULL);                                   \
        const int status = s->stop_now ? 1 : 0;                                                             \
        free(s);                                                                                            \
        free(u);                                                                                            \
        return status;                                                                                      \
    }

DEFINE_UNIT_SPLIT(f32, float, sgemm_fn, sgemv_fn, 0)
DEFINE_UNIT_SPLIT(f64, double, dgemm_fn, dgemv_fn, 1)

/* Elementwise entry points for the unit tests of the math above. */
void mlstm_exp_f64(const double *x, double *y, long n) { for (long i = 0; i < n; ++i) y[i] = exp_d(x[i]); }
void mlstm_tanh_f64(const double *x, double *y, long n) { for (long i = 0; i < n; ++i) y[i] = tanh_d(x[i]); }
void mlstm_exp_f32(const float *x, float *y, long n) { for (long i = 0; i < n; ++i) y[i] = exp_f(x[i]); }
void mlstm_tanh_f32(const float *x, float *y, long n) { for (long i = 0; i < n; ++i) y[i] = tanh_f(x[i]); }

/* For the tests of start_worker: one worker started under `place`; out[0] = the caller's CPU when
 * placed (-1: not placed), out[1] = the worker's CPU as it began, out[2] = CPUs in the worker's
 * mask once released, out[3] = CPUs in the caller's mask. Returns 0, or -1 if no thread started. */
typedef struct {
    const thread_places *places;
    int cpu, allowed;
} placement_probe;

static void *placement_probe_worker(void *arg) {
    placement_probe *probe = (placement_probe *)arg;
#if MLSTM_PLACEMENT
    probe->cpu = sched_getcpu();
    release_place(probe->places);
    cpu_set_t mask;
    probe->allowed = pthread_getaffinity_np(pthread_self(), sizeof mask, &mask) == 0 ? CPU_COUNT(&mask) : -1;
#else
    probe->cpu = probe->allowed = -1;
#endif
    return NULL;
}

int mlstm_placement_probe(int place, int *out) {
    thread_places places;
    plan_places(&places, place);
    placement_probe probe = {&places, -1, -1};
    pthread_t thread;
    if (start_worker(&thread, placement_probe_worker, &probe, &places, 1) != 0) return -1;
    pthread_join(thread, NULL);
    out[0] = places.mode == PLACE_OFF ? -1 : places.me;
    out[1] = probe.cpu;
    out[2] = probe.allowed;
#if MLSTM_PLACEMENT
    cpu_set_t mask;
    out[3] = sched_getaffinity(0, sizeof mask, &mask) == 0 ? CPU_COUNT(&mask) : -1;
#else
    out[3] = -1;
#endif
    return 0;
}

/* An importable (empty) module, so importlib finds the library; the functions go through ctypes. */
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cpu_lstm", "mlstm's compiled CPU time loop.", -1, NULL,
                                    NULL, NULL, NULL, NULL};
PyMODINIT_FUNC PyInit__cpu_lstm(void) { return PyModule_Create(&module); }
