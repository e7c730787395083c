// One LSTM time step, fused: all four gates, both activations, the state update and the Y write,
// one thread per (observation b, hidden unit j). docs/BEHAVIOUR.md §1, gates stacked i, f, g, o.
// The recurrent product h R' comes from a cuBLAS GEMM launched before it, every step.
//
// Compiled by CuPy (NVRTC) with -D real_t=float|double -D GATE_ACT=0|1 -D STATE_ACT=0|1|2 -I <here>.
// The same file compiles as C on the host (MLSTM_HOST_TEST) so the arithmetic is unit-tested
// without a GPU: tests/test_cupy_kernel_source.py.
#include "lstm_common.cuh"

// zx: this step's input projection x W', (B, 4H); zr: h_{t-1} R', (B, 4H); bias (4H).
// c: cell state (B, H), updated in place; h_out: this step's h (B, H), a slice of Y.
MLSTM_DEVICE void lstm_cell(const real_t* zx, const real_t* zr, const real_t* bias, real_t* c, real_t* h_out,
                            long long b, long long j, long long H) {
    const long long row = b * 4 * H;
    h_out[b * H + j] = cell_update((zr[row + j] + zx[row + j]) + bias[j],
                                   (zr[row + H + j] + zx[row + H + j]) + bias[H + j],
                                   (zr[row + 2 * H + j] + zx[row + 2 * H + j]) + bias[2 * H + j],
                                   (zr[row + 3 * H + j] + zx[row + 3 * H + j]) + bias[3 * H + j], &c[b * H + j]);
}

#ifndef MLSTM_HOST_TEST
extern "C" __global__ void __launch_bounds__(256) lstm_step(const real_t* zx, const real_t* zr, const real_t* bias,
                                                            real_t* c, real_t* h_out, long long B, long long H) {
    const long long n = B * H;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (long long)gridDim.x * blockDim.x) {
        lstm_cell(zx, zr, bias, c, h_out, k / H, k % H, H);
    }
}
#else
// Host harness: the same cell over every (b, j), for the unit test.
void lstm_step_host(const real_t* zx, const real_t* zr, const real_t* bias, real_t* c, real_t* h_out, long long B,
                    long long H) {
    for (long long k = 0; k < B * H; ++k) lstm_cell(zx, zr, bias, c, h_out, k / H, k % H, H);
}
#endif
