// LSTM arithmetic shared by every GPU kernel (lstm_step.cu, lstm_persistent.cu): the activations
// and the cell update of docs/BEHAVIOUR.md §1, gates in MATLAB's order i, f, g, o.
//
// Compiled by CuPy (NVRTC) or nvcc with -D real_t=float|double -D GATE_ACT=0|1 -D STATE_ACT=0|1|2
// and -I <this folder>. With MLSTM_HOST_TEST defined the same code compiles as C on the host, so
// its arithmetic is unit-tested without a GPU (tests/test_cupy_kernel_source.py).
#ifndef MLSTM_LSTM_COMMON_CUH
#define MLSTM_LSTM_COMMON_CUH

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
    // nvcc and NVRTC contract this to an FMA, which gives -7e-9 (float) at x = -2.5, not 0.
    const real_t y = (real_t)0.2 * x + (real_t)0.5;
    return y < (real_t)0 ? (real_t)0 : y;
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

// One cell from its four gate pre-activations: updates *c, returns h.
MLSTM_DEVICE real_t cell_update(real_t zi, real_t zf, real_t zg, real_t zo, real_t* c) {
    const real_t i = gate_act(zi);
    const real_t f = gate_act(zf);
    const real_t g = state_act(zg);
    const real_t o = gate_act(zo);
    const real_t cell = f * *c + i * g;
    *c = cell;
    return o * state_act(cell);
}

#endif
