/* bench_core.c: times forward+backward of the MLPResNet layer shapes (batch 100: 784->100,
 * 3 x (100->50->100), 100->10; fused linear + relu, softmax cross-entropy, no norm/dropout) through
 * the core op set and autograd, and the same GEMMs as bare cblas_sgemm calls, printing GFLOP/s of both.
 * Usage: bench_core [steps=600] [repeats=3] [threads=1]: the graph splits its GEMMs over that many
 * threads (core/threadpool). The bare sgemm baseline is one single-threaded call per GEMM, and for
 * threads > 1 also every GEMM split into `threads` row blocks on the pool and every GEMM on that many
 * OpenBLAS threads; the fastest of those is "the sgemm floor at N threads" (bench/compare_torch.sh).
 * Runs on the OpenBLAS kernel ndl-train would use (core/blas_select) and prints its name. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/autograd.h"
#include "core/blas_select.h"
#include "core/nn_ops.h"
#include "core/ops.h"
#include "core/params.h"
#include "core/rng.h"
#include "core/threadpool.h"

#define BATCH 100
#define NLAYERS 8
static const int dims_in[NLAYERS] = {784, 100, 50, 100, 50, 100, 50, 100};
static const int dims_out[NLAYERS] = {100, 50, 100, 50, 100, 50, 100, 10};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* FLOPs of one step: forward GEMM, weight-gradient GEMM, and input-gradient GEMM (not layer 0). */
static double step_flops(void) {
  double f = 0;
  for (int l = 0; l < NLAYERS; l++) {
    double one = 2.0 * BATCH * dims_in[l] * dims_out[l];
    f += one * (l == 0 ? 2 : 3);
  }
  return f;
}

static int32_t labels[BATCH];

static double run_graph(int steps, ndl_params *ps, ndl_tensor **w, ndl_tensor **b, ndl_tensor *x) {
  ndl_ctx *ctx = ndl_ctx_new();
  double t0 = now();
  for (int s = 0; s < steps; s++) {
    ndl_tensor *h = x;
    for (int l = 0; l < NLAYERS; l++) {
      h = ndl_linear(ctx, h, w[l], b[l]);
      if (l + 1 < NLAYERS) h = ndl_relu(ctx, h);
    }
    ndl_tensor *loss = ndl_softmax_cross_entropy(ctx, h, labels, BATCH);
    if (ndl_graph_backward(ctx, loss, NULL) != NDL_OK) {
      fprintf(stderr, "bench_core: %s\n", ndl_last_error());
      exit(1);
    }
    ndl_params_zero_grad(ps);
    ndl_ctx_reset(ctx);
  }
  double dt = now() - t0;
  ndl_ctx_free(ctx);
  return dt;
}

/* One row-major sgemm C[m,n] = op(A) op(B) + beta C, its rows split into `parts` blocks on the pool
 * (parts 1: one call on this thread). */
typedef struct {
  enum CBLAS_TRANSPOSE ta, tb;
  int m, n, k, lda, ldb, parts;
  const float *a, *b;
  float beta, *c;
} gemm_call;

static void gemm_block(void *arg, int64_t p) {
  const gemm_call *g = arg;
  int r0 = (int)((int64_t)g->m * p / g->parts), r1 = (int)((int64_t)g->m * (p + 1) / g->parts);
  if (r1 <= r0) return;
  const float *a = g->ta == CblasNoTrans ? g->a + (int64_t)r0 * g->lda : g->a + r0;
  cblas_sgemm(CblasRowMajor, g->ta, g->tb, r1 - r0, g->n, g->k, 1.0f, a, g->lda, g->b, g->ldb, g->beta,
              g->c + (int64_t)r0 * g->n, g->n);
}

static int split_parts = 1; /* row blocks per GEMM in run_sgemm (1: plain calls) */

static void sgemm(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c) {
  gemm_call g = {ta, tb, m, n, k, lda, ldb, split_parts, a, b, beta, c};
  if (split_parts > 1 && ndl_blas_concurrent_ok()) ndl_parallel_for(split_parts, gemm_block, &g);
  else
    for (int p = 0; p < split_parts; p++) gemm_block(&g, p);
}

static double run_sgemm(int steps, ndl_params *ps, const float *x) {
  static float act[NLAYERS + 1][BATCH * 784], grad[NLAYERS + 1][BATCH * 784];
  float *wgrad = ps->grad;
  double t0 = now();
  for (int s = 0; s < steps; s++) {
    const float *in = x;
    for (int l = 0; l < NLAYERS; l++) {
      const float *W = ndl_tensor_ptr(ps->tensors[2 * l]);
      sgemm(CblasNoTrans, CblasNoTrans, BATCH, dims_out[l], dims_in[l], in, dims_in[l], W, dims_out[l], 0.0f,
            act[l + 1]);
      in = act[l + 1];
    }
    for (int l = NLAYERS - 1; l >= 0; l--) {
      const float *W = ndl_tensor_ptr(ps->tensors[2 * l]);
      const float *a = l == 0 ? x : act[l];
      sgemm(CblasTrans, CblasNoTrans, dims_in[l], dims_out[l], BATCH, a, dims_in[l], grad[l + 1], dims_out[l],
            1.0f, wgrad);
      if (l > 0)
        sgemm(CblasNoTrans, CblasTrans, BATCH, dims_in[l], dims_out[l], grad[l + 1], dims_out[l], W, dims_out[l],
              0.0f, grad[l]);
    }
  }
  return now() - t0;
}

int main(int argc, char **argv) {
  ndl_blas_select(argv); /* first: may re-execute on a faster OpenBLAS kernel */
  int steps = argc > 1 ? atoi(argv[1]) : 600, repeats = argc > 2 ? atoi(argv[2]) : 3;
  int threads = argc > 3 ? atoi(argv[3]) : 1;
  openblas_set_num_threads(1);
  ndl_threadpool_set_threads(threads);
  ndl_rng rng;
  ndl_rng_seed(&rng, 0);
  ndl_params ps;
  ndl_params_init(&ps, 1);
  ndl_tensor *w[NLAYERS], *b[NLAYERS];
  for (int l = 0; l < NLAYERS; l++) {
    int64_t ws[2] = {dims_in[l], dims_out[l]}, bs[2] = {1, dims_out[l]};
    w[l] = ndl_params_add(&ps, "w", 2, ws);
    b[l] = ndl_params_add(&ps, "b", 2, bs);
  }
  ndl_rng_fill_randn(&rng, ps.data, ps.numel);
  for (int64_t i = 0; i < ps.numel; i++) ps.data[i] *= 0.05f;
  float *xd = malloc(sizeof(float) * BATCH * 784);
  ndl_rng_fill_rand(&rng, xd, BATCH * 784);
  for (int i = 0; i < BATCH; i++) labels[i] = i % 10;
  ndl_tensor x;
  int64_t xs[2] = {BATCH, 784};
  ndl_tensor_init_view(&x, xd, 2, xs);

  double gflop = step_flops() * steps / 1e9, best_graph = 1e30, best_sgemm = 1e30, best_split = 1e30,
         best_obl = 1e30;
  run_graph(20, &ps, w, b, &x); /* warm-up */
  for (int r = 0; r < repeats; r++) { /* interleaved, so a burst of load hits every variant alike */
    double g = run_graph(steps, &ps, w, b, &x), s = run_sgemm(steps, &ps, xd);
    if (g < best_graph) best_graph = g;
    if (s < best_sgemm) best_sgemm = s;
    if (threads > 1) {
      split_parts = threads;
      double sp = run_sgemm(steps, &ps, xd);
      split_parts = 1;
      openblas_set_num_threads(threads);
      double ob = run_sgemm(steps, &ps, xd);
      openblas_set_num_threads(1);
      if (sp < best_split) best_split = sp;
      if (ob < best_obl) best_obl = ob;
    }
  }
  double floor_t = best_sgemm < best_split ? best_sgemm : best_split;
  if (best_obl < floor_t) floor_t = best_obl;
  printf("bench_core: %d thread(s), %d steps of batch %d, %.2f GFLOP (forward + backward GEMMs)\n", threads, steps, BATCH, gflop);
  char blas[384];
  printf("  blas: %s\n", ndl_blas_describe(blas, sizeof blas));
  printf("  needle-c graph (ops + autograd): %.3f s  %.1f GFLOP/s\n", best_graph, gflop / best_graph);
  printf("  bare cblas_sgemm, same GEMMs:    %.3f s  %.1f GFLOP/s\n", best_sgemm, gflop / best_sgemm);
  printf("  graph / sgemm time ratio: %.2f\n", best_graph / best_sgemm);
  if (threads > 1) {
    printf("  bare sgemm, %d row blocks on the pool: %.3f s  %.1f GFLOP/s\n", threads, best_split, gflop / best_split);
    printf("  bare sgemm, %d OpenBLAS threads:      %.3f s  %.1f GFLOP/s\n", threads, best_obl, gflop / best_obl);
  }
  printf("  sgemm floor at %d thread(s) (fastest bare variant): %.3f s\n", threads, floor_t);
  free(xd);
  ndl_params_free(&ps);
  return 0;
}
