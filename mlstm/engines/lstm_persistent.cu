// The whole time loop of a block of steps in ONE launch (docs/BEHAVIOUR.md §1, gates i, f, g, o).
//
// lstm_persistent: a cooperative grid of unit groups x observation groups. Thread block q owns
//   hidden units [j0, j0 + nu) with all four of their gate rows (so the cell update needs no
//   exchange between blocks) for the observations of its group. Its 4*nu rows of the recurrent
//   weights R are loaded into shared memory once and stay there for every step of the launch.
//   Per step, per tile of its observations: h_{t-1} (read from Y[t-1], or H0 at t = 0, through
//   L2) goes to shared memory, the block computes its rows of R h_{t-1}, adds this step's input
//   projection zx (one cuBLAS GEMM before the launch) and the bias, updates the cells and
//   publishes h_t into Y[t]. Then the grid synchronises once
//   (grid_barrier: an arrival counter with fences; the cooperative launch guarantees that every
//   block is resident, and a barrier that waits for more than about a second gives up and
//   reports through *status instead of hanging).
// lstm_single_block: one thread block holds everything (R, h, the gates) for very small H*B;
//   no grid synchronisation, h never leaves shared memory between steps.
//
// Dot products: a (row, observation) pair per group of S consecutive lanes (S a power of two
// <= 32 chosen so the block's threads are busy), lanes striding over k, then a butterfly of
// shuffles. Shared-memory rows are padded to H + 1 elements so lanes reading different rows at
// the same k hit different banks.
//
// Compiled by CuPy (NVRTC) with -D real_t=float|double -D GATE_ACT=0|1 -D STATE_ACT=0|1|2 -I <here>.
// With MLSTM_HOST_TEST the per-thread arithmetic and the indexing compile as C and run in
// lstm_persistent_host, which executes the blocks and threads one after another in the same
// order of operations (tests/test_cupy_engine_host.py).
#include "lstm_common.cuh"

#ifndef MLSTM_THREADS
#define MLSTM_THREADS 512
#endif

// Lanes per dot product: the largest power of two S <= 32 with S * ndots <= nthreads.
MLSTM_DEVICE int lanes_per_dot(int ndots, int nthreads) {
    int s = 1;
    while (s < 32 && 2 * s * ndots <= nthreads) s *= 2;
    return s;
}

// Part p of dot product d = r * nb + b: sum over k = p, p + S, ... of R_slice[r][k] * h[b][k],
// in four independent accumulators (k, k + S, k + 2S, k + 3S) so loads and multiply-adds overlap.
MLSTM_DEVICE real_t dot_part(const real_t* sR, const real_t* sH, int d, int nb, int p, int S, int H, int ld) {
    const real_t* a = sR + (long long)(d / nb) * ld;
    const real_t* v = sH + (long long)(d % nb) * ld;
    real_t a0 = (real_t)0, a1 = (real_t)0, a2 = (real_t)0, a3 = (real_t)0;
    int k = p;
    for (; k + 3 * S < H; k += 4 * S) {
        a0 += a[k] * v[k];
        a1 += a[k + S] * v[k + S];
        a2 += a[k + 2 * S] * v[k + 2 * S];
        a3 += a[k + 3 * S] * v[k + 3 * S];
    }
    for (; k < H; k += S) a0 += a[k] * v[k];
    return (a0 + a1) + (a2 + a3);
}

// Cell (observation b0 + idx / nu, unit j0 + idx % nu) of a tile: gates from the shared
// recurrent products sG (row g*nu + u, column b) plus this step's zx and the bias; updates c,
// returns h.
MLSTM_DEVICE real_t tile_cell(const real_t* sG, const real_t* zt, const real_t* bias, real_t* c, int idx, int nu,
                              int nb, int b0, int j0, int H, long long* out_index) {
    const int b = idx / nu, u = idx % nu, j = j0 + u;
    const long long row = (long long)(b0 + b) * 4 * H + j;
    const real_t zi = (sG[(0 * nu + u) * nb + b] + zt[row]) + bias[j];
    const real_t zf = (sG[(1 * nu + u) * nb + b] + zt[row + H]) + bias[H + j];
    const real_t zg = (sG[(2 * nu + u) * nb + b] + zt[row + 2 * H]) + bias[2 * H + j];
    const real_t zo = (sG[(3 * nu + u) * nb + b] + zt[row + 3 * H]) + bias[3 * H + j];
    *out_index = (long long)(b0 + b) * H + j0 + u;
    return cell_update(zi, zf, zg, zo, &c[*out_index]);
}

// Element idx of the block's R slice: local row r = g * nu + u is global row g * H + j0 + u.
MLSTM_DEVICE void load_r(real_t* sR, const real_t* R, int idx, int nu, int j0, int H, int ld) {
    const int r = idx / H, k = idx % H;
    const int g = r / nu, u = r % nu;
    sR[r * ld + k] = R[((long long)g * H + j0 + u) * H + k];
}

// Shared memory the kernels need, in elements (the engine computes the same in Python).
MLSTM_DEVICE long long smem_elements(int nu, int btile, int H) {
    return 4LL * nu * (H + 1) + (long long)btile * (H + 1) + 4LL * nu * btile;
}

#ifndef MLSTM_HOST_TEST

__device__ __forceinline__ real_t load_l2(const real_t* p) { return __ldcg(p); }

// All blocks arrive, then all leave; target = (steps done) * gridDim.x. False if it timed out
// (or another block did): the caller returns and the host raises.
__device__ __forceinline__ bool grid_barrier(unsigned int* counter, unsigned int target, int* status) {
    __shared__ int ok;
    __syncthreads();
    if (threadIdx.x == 0) {
        int good = 1;
        __threadfence();
        atomicAdd(counter, 1u);
        const long long start = clock64();
        while (*(volatile unsigned int*)counter < target) {
            if (*(volatile int*)status != 0) { good = 0; break; }
            if (clock64() - start > (1LL << 31)) { atomicExch(status, 1); good = 0; break; }
        }
        __threadfence();
        ok = good;
    }
    __syncthreads();
    return ok != 0;
}

__device__ __forceinline__ void block_dots(const real_t* sR, const real_t* sH, real_t* sG, int ndots, int nb, int H,
                                           int ld) {
    const int S = lanes_per_dot(ndots, MLSTM_THREADS);
    const int per_round = MLSTM_THREADS / S;
    const int p = threadIdx.x % S;
    for (int base = 0; base < ndots; base += per_round) {
        const int d = base + threadIdx.x / S;
        real_t acc = d < ndots ? dot_part(sR, sH, d, nb, p, S, H, ld) : (real_t)0;
        for (int off = S / 2; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
        if (d < ndots && p == 0) sG[d] = acc;
    }
}

__device__ __forceinline__ void lstm_body(const bool single, const real_t* __restrict__ zx,
                                          const real_t* __restrict__ R, const real_t* __restrict__ bias,
                                          const real_t* h0, real_t* c, real_t* y, int steps, int B, int H, int units,
                                          int bgroup, int btile, unsigned int* counter, int* status) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    real_t* sR = (real_t*)smem_raw;
    const int ld = H + 1;
    const int groups = (H + units - 1) / units;  // unit groups; blockIdx.x = unit group + groups * observation group
    const int j0 = (blockIdx.x % groups) * units;
    const int nu = min(units, H - j0);
    const int bstart = (blockIdx.x / groups) * bgroup, bend = min(B, bstart + bgroup);
    real_t* sH = sR + 4 * units * ld;
    real_t* sG = sH + btile * ld;
    const int tid = threadIdx.x;
    for (int idx = tid; idx < 4 * nu * H; idx += MLSTM_THREADS) load_r(sR, R, idx, nu, j0, H, ld);
    if (single) {  // one tile, all of B, h kept in shared memory
        for (int idx = tid; idx < B * H; idx += MLSTM_THREADS) sH[(idx / H) * ld + idx % H] = h0[idx];
    }
    __syncthreads();
    const long long BH = (long long)B * H;
    for (int t = 0; t < steps; ++t) {
        const real_t* prev = t == 0 ? h0 : y + (t - 1) * BH;
        real_t* yt = y + t * BH;
        const real_t* zt = zx + t * 4 * BH;
        for (int b0 = bstart; b0 < bend; b0 += btile) {
            const int nb = min(btile, bend - b0);
            if (!single) {
#pragma unroll 4
                for (int idx = tid; idx < nb * H; idx += MLSTM_THREADS)
                    sH[(idx / H) * ld + idx % H] = load_l2(prev + (long long)b0 * H + idx);
                __syncthreads();
            }
            if (nu > 0) block_dots(sR, sH, sG, 4 * nu * nb, nb, H, ld);
            __syncthreads();
            for (int idx = tid; idx < nu * nb; idx += MLSTM_THREADS) {
                long long out;
                const real_t h = tile_cell(sG, zt, bias, c, idx, nu, nb, b0, j0, H, &out);
                yt[out] = h;
                if (single) sH[(b0 + idx / nu) * ld + j0 + idx % nu] = h;
            }
            __syncthreads();
        }
        if (!single && gridDim.x > 1 && !grid_barrier(counter, (unsigned int)(t + 1) * gridDim.x, status)) return;
    }
}

// zx (steps, B, 4H) input projection x W'; R (4H, H) row-major; bias (4H); h0 (B, H); c (B, H)
// updated in place; y (steps, B, H). Launch: gridDim.x = ceil(H / units) * ceil(B / bgroup),
// MLSTM_THREADS threads, dynamic shared memory smem_elements(units, btile, H) * sizeof(real_t);
// *counter zeroed before the launch.
extern "C" __global__ void __launch_bounds__(MLSTM_THREADS, 1)
    lstm_persistent(const real_t* __restrict__ zx, const real_t* __restrict__ R, const real_t* __restrict__ bias,
                    const real_t* h0, real_t* c, real_t* y, int steps, int B, int H, int units, int bgroup, int btile,
                    unsigned int* counter, int* status) {
    lstm_body(false, zx, R, bias, h0, c, y, steps, B, H, units, bgroup, btile, counter, status);
}

// One block: units = H, bgroup = btile = B.
extern "C" __global__ void __launch_bounds__(MLSTM_THREADS, 1)
    lstm_single_block(const real_t* __restrict__ zx, const real_t* __restrict__ R, const real_t* __restrict__ bias,
                      const real_t* h0, real_t* c, real_t* y, int steps, int B, int H) {
    lstm_body(true, zx, R, bias, h0, c, y, steps, B, H, H, B, B, 0, 0);
}

#else  // MLSTM_HOST_TEST: the kernels' per-thread work, blocks and threads run one after another.
#include <stdlib.h>

// The shuffle butterfly over S lanes as the device does it: each round, every lane adds the
// value of lane ^ off (all lanes read before any writes).
static void butterfly(real_t* lane, int S) {
    real_t tmp[32];
    for (int off = S / 2; off > 0; off >>= 1) {
        for (int l = 0; l < S; ++l) tmp[l] = lane[l] + lane[l ^ off];
        for (int l = 0; l < S; ++l) lane[l] = tmp[l];
    }
}

// nthreads plays MLSTM_THREADS; single != 0 runs lstm_single_block (units = H, bgroup = btile = B).
void lstm_persistent_host(const real_t* zx, const real_t* R, const real_t* bias, const real_t* h0, real_t* c,
                          real_t* y, int steps, int B, int H, int units, int bgroup, int btile, int nthreads,
                          int single) {
    if (single) { units = H; bgroup = B; btile = B; }
    const int ld = H + 1, groups = (H + units - 1) / units, grid = groups * ((B + bgroup - 1) / bgroup);
    const long long BH = (long long)B * H, per_block = smem_elements(units, btile, H);
    real_t* smem = (real_t*)malloc(sizeof(real_t) * per_block * grid);
    for (int q = 0; q < grid; ++q) {
        real_t* sR = smem + q * per_block;
        const int j0 = (q % groups) * units, nu = units < H - j0 ? units : H - j0;
        for (int idx = 0; idx < 4 * nu * H; ++idx) load_r(sR, R, idx, nu, j0, H, ld);
        if (single)
            for (int idx = 0; idx < B * H; ++idx) sR[4 * units * ld + (idx / H) * ld + idx % H] = h0[idx];
    }
    for (int t = 0; t < steps; ++t) {
        const real_t* prev = t == 0 ? h0 : y + (t - 1) * BH;
        for (int q = 0; q < grid; ++q) {  // the grid barrier: every block finishes step t first
            real_t* sR = smem + q * per_block;
            real_t* sH = sR + 4 * units * ld;
            real_t* sG = sH + btile * ld;
            const int j0 = (q % groups) * units, nu = units < H - j0 ? units : H - j0;
            const int bstart = (q / groups) * bgroup, bend = bstart + bgroup < B ? bstart + bgroup : B;
            for (int b0 = bstart; b0 < bend; b0 += btile) {
                const int nb = btile < bend - b0 ? btile : bend - b0;
                if (!single)
                    for (int idx = 0; idx < nb * H; ++idx) sH[(idx / H) * ld + idx % H] = prev[(long long)b0 * H + idx];
                const int ndots = 4 * nu * nb, S = lanes_per_dot(ndots, nthreads), per_round = nthreads / S;
                for (int base = 0; base < ndots; base += per_round) {
                    for (int g0 = 0; g0 < per_round; ++g0) {  // lane groups of S threads
                        const int d = base + g0;
                        if (d >= ndots) continue;
                        real_t lane[32];
                        for (int p = 0; p < S; ++p) lane[p] = dot_part(sR, sH, d, nb, p, S, H, ld);
                        butterfly(lane, S);
                        sG[d] = lane[0];
                    }
                }
                for (int idx = 0; idx < nu * nb; ++idx) {
                    long long out;
                    const real_t h = tile_cell(sG, zx + t * 4 * BH, bias, c, idx, nu, nb, b0, j0, H, &out);
                    y[t * BH + out] = h;
                    if (single) sH[(b0 + idx / nu) * ld + j0 + idx % nu] = h;
                }
            }
        }
    }
    free(smem);
}
#endif
