// One LSTM time step, fused: all four gates, both activations, the state update and the Y write,
// one thread per (observation b, hidden unit j). SPEC section 1, gates stacked i, f, g, o.
//
// Compiled by CuPy (NVRTC) with -D real_t=float|double -D GATE_ACT=0|1 -D STATE_ACT=0|1|2.
// The same file compiles as C on the host (MLSTM_HOST_TEST) so the arithmetic is unit-tested
// without a GPU: tests/test_cupy_kernel_source.py.

#ifndef real_t
#define real_t float
#endif
#ifndef GATE_ACT
#define GATE_ACT 0   // 0 sigmoid, 1 hard-sigmoid
#endif
#ifndef STATE_ACT
#define STATE_ACT 0  // 0 tanh, 1 softsign, 2 relu
#endif

#ifdef MLSTM_HOST_TEST
#include <math.h>
#define MLSTM_DEVICE static inline
#else
#define MLSTM_DEVICE __device__ __forceinline__
#endif

MLSTM_DEVICE real_t mlstm_exp(real_t x) { return sizeof(real_t) == 4 ? (real_t)expf((float)x) : (real_t)exp((double)x); }
MLSTM_DEVICE real_t mlstm_tanh(real_t x) { return sizeof(real_t) == 4 ? (real_t)tanhf((float)x) : (real_t)tanh((double)x); }
MLSTM_DEVICE real_t mlstm_abs(real_t x) { return x < 0 ? -x : x; }

// Gate activation. 1/(1+exp(-x)) is exact at both ends in IEEE arithmetic (exp overflowing to
// +Inf gives 0), and NaN propagates; hard-sigmoid's comparisons are false for NaN, so NaN
// reaches the linear branch and propagates too.
MLSTM_DEVICE real_t gate_act(real_t x) {
#if GATE_ACT == 0
    return (real_t)1 / ((real_t)1 + mlstm_exp(-x));
#else
    if (x < (real_t)-2.5) return (real_t)0;
    if (x > (real_t)2.5) return (real_t)1;
    return (real_t)0.2 * x + (real_t)0.5;
#endif
}

// State activation; relu keeps NaN (x != x) as IEEE max does, unlike fmax.
MLSTM_DEVICE real_t state_act(real_t x) {
#if STATE_ACT == 0
    return mlstm_tanh(x);
#elif STATE_ACT == 1
    return x / ((real_t)1 + mlstm_abs(x));
#else
    return (x > (real_t)0 || x != x) ? x : (real_t)0;
#endif
}

// zx: this step's input projection plus bias, (B, 4H); zr: h_{t-1} R', (B, 4H).
// c: cell state (B, H), updated in place; h_out: this step's h (B, H), a slice of Y.
MLSTM_DEVICE void lstm_cell(const real_t* zx, const real_t* zr, real_t* c, real_t* h_out, long long b, long long j,
                            long long H) {
    const long long row = b * 4 * H;
    const real_t i = gate_act(zx[row + j] + zr[row + j]);
    const real_t f = gate_act(zx[row + H + j] + zr[row + H + j]);
    const real_t g = state_act(zx[row + 2 * H + j] + zr[row + 2 * H + j]);
    const real_t o = gate_act(zx[row + 3 * H + j] + zr[row + 3 * H + j]);
    const real_t cell = f * c[b * H + j] + i * g;
    c[b * H + j] = cell;
    h_out[b * H + j] = o * state_act(cell);
}

#ifndef MLSTM_HOST_TEST
extern "C" __global__ void lstm_step(const real_t* zx, const real_t* zr, real_t* c, real_t* h_out, long long B,
                                     long long H) {
    const long long n = B * H;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (long long)gridDim.x * blockDim.x) {
        lstm_cell(zx, zr, c, h_out, k / H, k % H, H);
    }
}
#else
// Host harness: the same cell over every (b, j), for the unit test.
void lstm_step_host(const real_t* zx, const real_t* zr, real_t* c, real_t* h_out, long long B, long long H) {
    for (long long k = 0; k < B * H; ++k) lstm_cell(zx, zr, c, h_out, k / H, k % H, H);
}
#endif
