/* oneDNN's LSTM forward primitive (f32, default activations) for benchmarks/bench_kernels.py.
 *
 * Built at run time by bench_kernels.py (cc -O2 dnnl_lstm.c -I<include> -L<lib> -ldnnl) and run
 * as a child process, so that oneDNN's runtime (SYCL, TBB) stays out of the benchmark's own
 * process and the thread count is the child's CPU affinity. It reads commands on stdin, one a
 * line, and answers one line each on stdout:
 *
 *   load T B C H in.bin out.bin   build a primitive for x (T,B,C), W (4H,C), R (4H,H), b (4H), all
 *                                 row-major float32 in in.bin in that order; h0 = c0 = 0. The
 *                                 weights are reordered once into the primitive's own layout
 *                                 (format_tag_any); one run writes y (T,B,H) to out.bin.
 *                                 -> "ok <index> <reorder seconds> <implementation>"
 *   run INDEX N                   N executions of that primitive -> "ok <seconds for all N>"
 *   quit
 *
 * Gate order is oneDNN's (i, f, c~, o), MATLAB's (i, f, g, o): W, R and b go in as they are, in
 * the "ldgoi" / "ldgo" layouts. Errors answer "error <what>".
 */
#define _POSIX_C_SOURCE 199309L
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PRIMS 64

typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_t x, w, r, b, y, scratch;
} lstm_t;

static dnnl_engine_t engine;
static dnnl_stream_t stream;
static lstm_t prims[MAX_PRIMS];
static int nprims;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#define CHECK(call)                                                              \
    do {                                                                         \
        dnnl_status_t st_ = (call);                                              \
        if (st_ != dnnl_success) {                                               \
            printf("error %s: status %d (line %d)\n", #call, (int)st_, __LINE__); \
            fflush(stdout);                                                      \
            return -1;                                                           \
        }                                                                        \
    } while (0)

static int write_memory(dnnl_memory_t mem, const float *src, size_t n) {
    void *p;
    CHECK(dnnl_memory_map_data(mem, &p));
    memcpy(p, src, n * sizeof(float));
    CHECK(dnnl_memory_unmap_data(mem, p));
    return 0;
}

/* user-layout memory with data, reordered into a memory of the primitive's layout `want` */
static int reordered(const_dnnl_memory_desc_t user_md, const float *src, size_t n, const_dnnl_memory_desc_t want,
                     dnnl_memory_t *out) {
    dnnl_memory_t user;
    CHECK(dnnl_memory_create(&user, user_md, engine, DNNL_MEMORY_ALLOCATE));
    if (write_memory(user, src, n)) return -1;
    CHECK(dnnl_memory_create(out, want, engine, DNNL_MEMORY_ALLOCATE));
    dnnl_primitive_desc_t rpd;
    CHECK(dnnl_reorder_primitive_desc_create(&rpd, user_md, engine, want, engine, NULL));
    dnnl_primitive_t reorder;
    CHECK(dnnl_primitive_create(&reorder, rpd));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, *out}};
    CHECK(dnnl_primitive_execute(reorder, stream, 2, args));
    CHECK(dnnl_stream_wait(stream));
    dnnl_primitive_destroy(reorder);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(user);
    return 0;
}

static int execute(lstm_t *l) {
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC_LAYER, l->x}, {DNNL_ARG_WEIGHTS_LAYER, l->w},
                              {DNNL_ARG_WEIGHTS_ITER, l->r}, {DNNL_ARG_BIAS, l->b},
                              {DNNL_ARG_DST_LAYER, l->y},    {DNNL_ARG_SCRATCHPAD, l->scratch}};
    CHECK(dnnl_primitive_execute(l->prim, stream, 6, args));
    CHECK(dnnl_stream_wait(stream));
    return 0;
}

static int load(long T, long B, long C, long H, const char *in, const char *out) {
    if (nprims == MAX_PRIMS) {
        printf("error too many primitives\n");
        return -1;
    }
    size_t nx = T * B * C, nw = 4 * H * C, nr = 4 * H * H, nb = 4 * H, ny = T * B * H;
    float *data = malloc((nx + nw + nr + nb) * sizeof(float));
    FILE *f = fopen(in, "rb");
    if (!data || !f || fread(data, sizeof(float), nx + nw + nr + nb, f) != nx + nw + nr + nb) {
        printf("error cannot read %s\n", in);
        if (f) fclose(f);
        free(data);
        return -1;
    }
    fclose(f);
    dnnl_dims_t dx = {T, B, C}, dy = {T, B, H}, dw = {1, 1, C, 4, H}, dr = {1, 1, H, 4, H}, db = {1, 1, 4, H};
    dnnl_memory_desc_t x_md, y_md, w_user, r_user, b_md, w_any, r_any;
    CHECK(dnnl_memory_desc_create_with_tag(&x_md, 3, dx, dnnl_f32, dnnl_tnc));
    CHECK(dnnl_memory_desc_create_with_tag(&y_md, 3, dy, dnnl_f32, dnnl_tnc));
    CHECK(dnnl_memory_desc_create_with_tag(&w_user, 5, dw, dnnl_f32, dnnl_ldgoi));
    CHECK(dnnl_memory_desc_create_with_tag(&r_user, 5, dr, dnnl_f32, dnnl_ldgoi));
    CHECK(dnnl_memory_desc_create_with_tag(&w_any, 5, dw, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_create_with_tag(&r_any, 5, dr, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_create_with_tag(&b_md, 4, db, dnnl_f32, dnnl_ldgo));
    dnnl_primitive_attr_t attr;
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_lstm_forward_primitive_desc_create(&pd, engine, dnnl_forward_inference,
                                                  dnnl_unidirectional_left2right, x_md, NULL, NULL, w_any, r_any,
                                                  NULL, NULL, b_md, y_md, NULL, NULL, 0, attr));
    lstm_t *l = &prims[nprims];
    const_dnnl_memory_desc_t w_want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const_dnnl_memory_desc_t r_want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
    const_dnnl_memory_desc_t s_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    double t0 = now();
    if (reordered(w_user, data + nx, nw, w_want, &l->w) || reordered(r_user, data + nx + nw, nr, r_want, &l->r))
        return -1;
    double reorder_s = now() - t0;
    CHECK(dnnl_memory_create(&l->x, x_md, engine, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&l->b, b_md, engine, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&l->y, y_md, engine, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&l->scratch, s_md, engine, DNNL_MEMORY_ALLOCATE));
    if (write_memory(l->x, data, nx) || write_memory(l->b, data + nx + nw + nr, nb)) return -1;
    free(data);
    CHECK(dnnl_primitive_create(&l->prim, pd));
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    if (execute(l)) return -1;
    void *p;
    CHECK(dnnl_memory_map_data(l->y, &p));
    f = fopen(out, "wb");
    if (!f || fwrite(p, sizeof(float), ny, f) != ny) {
        printf("error cannot write %s\n", out);
        return -1;
    }
    fclose(f);
    CHECK(dnnl_memory_unmap_data(l->y, p));
    printf("ok %d %.9f %s\n", nprims++, reorder_s, impl);
    return 0;
}

static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch ((int)isa) { /* dnnl_cpu_isa_t, oneDNN 3.x */
    case 0x1: return "sse41";
    case 0x3: return "avx";
    case 0x7: return "avx2";
    case 0xf: return "avx2_vnni";
    case 0x1f: return "avx2_vnni_2";
    case 0x27: return "avx512_core";
    case 0x67: return "avx512_core_vnni";
    case 0xe7: return "avx512_core_bf16";
    case 0x1ef: return "avx512_core_fp16";
    case 0xfef: return "avx512_core_amx";
    case 0x1fef: return "avx512_core_amx_fp16";
    default: return "other";
    }
}

int main(void) {
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) {
        printf("error dnnl_engine_create(cpu) failed\n");
        return 1;
    }
    if (dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) {
        printf("error dnnl_stream_create failed\n");
        return 1;
    }
    const dnnl_version_t *v = dnnl_version();
    printf("ready %d.%d.%d (commit %.8s), effective ISA %s\n", v->major, v->minor, v->patch, v->hash,
           isa_name(dnnl_get_effective_cpu_isa()));
    fflush(stdout);
    char line[4096], in[2048], out[2048];
    while (fgets(line, sizeof line, stdin)) {
        long T, B, C, H, n;
        int index;
        if (sscanf(line, "load %ld %ld %ld %ld %2047s %2047s", &T, &B, &C, &H, in, out) == 6) {
            load(T, B, C, H, in, out);
        } else if (sscanf(line, "run %d %ld", &index, &n) == 2 && index >= 0 && index < nprims) {
            double t0 = now();
            int bad = 0;
            for (long i = 0; i < n && !bad; ++i) bad = execute(&prims[index]);
            if (!bad) printf("ok %.9f\n", now() - t0);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            printf("error unknown command\n");
        }
        fflush(stdout);
    }
    return 0;
}
