/* Timing loops for benchmarks/bench_kernels.py: `steps` calls of one recurrent-product kernel,
 * z (B x 4H, row-major) += h (B x H) . R' with R (4H x H, row-major), timed in C so that no
 * Python runs between the calls. Each kernel comes in as a function pointer (from ctypes);
 * each loop returns the seconds its `steps` calls took (CLOCK_MONOTONIC).
 *
 * Built at run time by bench_kernels.py: cc -O3 -shared -fPIC kernel_driver.c -o <tmp>.so
 */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* ---- Fortran BLAS ?gemm/?gemv (OpenBLAS from scipy.linalg.cython_blas; MKL's sgemm_), called as
 * mlstm's compiled loop calls it: column-major z' (4H x B) += R (4H x H, stored as R' H x 4H) * h' */
typedef void (*sgemm_f)(const char *, const char *, const int *, const int *, const int *, const float *,
                        const float *, const int *, const float *, const int *, const float *, float *,
                        const int *);
typedef void (*dgemm_f)(const char *, const char *, const int *, const int *, const int *, const double *,
                        const double *, const int *, const double *, const int *, const double *, double *,
                        const int *);
typedef void (*sgemv_f)(const char *, const int *, const int *, const float *, const float *, const int *,
                        const float *, const int *, const float *, float *, const int *);
typedef void (*dgemv_f)(const char *, const int *, const int *, const double *, const double *, const int *,
                        const double *, const int *, const double *, double *, const int *);

#define FORTRAN_LOOPS(SUF, REAL, GEMM_T, GEMV_T)                                                       \
    double fortran_gemm_##SUF(void *fn, long B, long H, const REAL *r, const REAL *h, REAL *z, long steps) { \
        GEMM_T gemm = (GEMM_T)fn;                                                                      \
        const int m = (int)(4 * H), n = (int)B, k = (int)H, lda = (int)H, ldc = (int)(4 * H);         \
        const REAL one = 1;                                                                            \
        double t0 = now();                                                                             \
        for (long s = 0; s < steps; ++s) gemm("T", "N", &m, &n, &k, &one, r, &lda, h, &lda, &one, z, &ldc); \
        return now() - t0;                                                                             \
    }                                                                                                  \
    /* B = 1: mlstm's loop calls gemv, z += R h */                                                     \
    double fortran_gemv_##SUF(void *fn, long B, long H, const REAL *r, const REAL *h, REAL *z, long steps) { \
        GEMV_T gemv = (GEMV_T)fn;                                                                      \
        const int m = (int)(4 * H), k = (int)H, lda = (int)H, inc = 1;                                 \
        const REAL one = 1;                                                                            \
        (void)B;                                                                                       \
        double t0 = now();                                                                             \
        for (long s = 0; s < steps; ++s) gemv("T", &k, &m, &one, r, &lda, h, &inc, &one, z, &inc);    \
        return now() - t0;                                                                             \
    }
FORTRAN_LOOPS(f32, float, sgemm_f, sgemv_f)
FORTRAN_LOOPS(f64, double, dgemm_f, dgemv_f)

/* ---- MKL's packed GEMM: R packed once as the B matrix (cblas_?gemm_pack, from Python), then
 * per step cblas_?gemm_compute(RowMajor, NoTrans, Packed, B, 4H, H, h, H, packed, H, 1, z, 4H). */
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_PACKED = 151 };
typedef void (*scompute_f)(int, int, int, int, int, int, const float *, int, const float *, int, float, float *,
                           int);
typedef void (*dcompute_f)(int, int, int, int, int, int, const double *, int, const double *, int, double,
                           double *, int);

#define MKL_LOOP(SUF, REAL, COMPUTE_T)                                                                 \
    double mkl_compute_##SUF(void *fn, long B, long H, const REAL *packed, const REAL *h, REAL *z, long steps) { \
        COMPUTE_T compute = (COMPUTE_T)fn;                                                             \
        const int m = (int)B, n = (int)(4 * H), k = (int)H;                                            \
        double t0 = now();                                                                             \
        for (long s = 0; s < steps; ++s)                                                               \
            compute(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_PACKED, m, n, k, h, k, packed, k, 1, z, n); \
        return now() - t0;                                                                             \
    }
MKL_LOOP(f32, float, scompute_f)
MKL_LOOP(f64, double, dcompute_f)

/* ---- BLIS's typed API (bli_?gemm, exported by cython-blis's blis/cy*.so), general strides:
 * c (B x 4H; rs 4H, cs 1) += a = h (B x H; rs H, cs 1) * b = R' (H x 4H; rs 1, cs H). */
typedef void (*bli_sgemm_f)(int, int, int64_t, int64_t, int64_t, const float *, const float *, int64_t, int64_t,
                            const float *, int64_t, int64_t, const float *, float *, int64_t, int64_t);
typedef void (*bli_dgemm_f)(int, int, int64_t, int64_t, int64_t, const double *, const double *, int64_t,
                            int64_t, const double *, int64_t, int64_t, const double *, double *, int64_t, int64_t);

#define BLIS_LOOP(SUF, REAL, GEMM_T)                                                                   \
    double blis_gemm_##SUF(void *fn, long B, long H, const REAL *r, const REAL *h, REAL *z, long steps) { \
        GEMM_T gemm = (GEMM_T)fn;                                                                      \
        const REAL one = 1;                                                                            \
        double t0 = now();                                                                             \
        for (long s = 0; s < steps; ++s) gemm(0, 0, B, 4 * H, H, &one, h, H, 1, r, 1, H, &one, z, 4 * H, 1); \
        return now() - t0;                                                                             \
    }
BLIS_LOOP(f32, float, bli_sgemm_f)
BLIS_LOOP(f64, double, bli_dgemm_f)

/* ---- mlstm's own packed kernel (mlstm_packed_gemm_?, from _cpu_lstm*.so when it has one) */
typedef void (*mlstm_spacked_f)(const float *, long, long, const float *, long, float *, long);
typedef void (*mlstm_dpacked_f)(const double *, long, long, const double *, long, double *, long);

#define MLSTM_LOOP(SUF, REAL, GEMM_T)                                                                  \
    double mlstm_packed_##SUF(void *fn, long B, long H, const REAL *packed, const REAL *h, REAL *z, long steps) { \
        GEMM_T gemm = (GEMM_T)fn;                                                                      \
        double t0 = now();                                                                             \
        for (long s = 0; s < steps; ++s) gemm(packed, 4 * H, H, h, B, z, 4 * H);                       \
        return now() - t0;                                                                             \
    }
MLSTM_LOOP(f32, float, mlstm_spacked_f)
MLSTM_LOOP(f64, double, mlstm_dpacked_f)

/* ---- the inline loop mlstm's row-major loop (mlstm_run_?) uses where 4H * H * B <= 8192 (SMALL_PRODUCT) */
#define NAIVE_LOOP(SUF, REAL)                                                                          \
    double naive_##SUF(void *fn, long B, long H, const REAL *r, const REAL *h, REAL *z, long steps) {  \
        (void)fn;                                                                                      \
        double t0 = now();                                                                             \
        for (long s = 0; s < steps; ++s)                                                               \
            for (long b = 0; b < B; ++b)                                                               \
                for (long row = 0; row < 4 * H; ++row) {                                               \
                    REAL acc = 0;                                                                      \
                    for (long q = 0; q < H; ++q) acc += r[row * H + q] * h[b * H + q];                 \
                    z[b * 4 * H + row] += acc;                                                         \
                }                                                                                      \
        return now() - t0;                                                                             \
    }
NAIVE_LOOP(f32, float)
NAIVE_LOOP(f64, double)
