/* train_blobs.c: needle-c used as a library. Generates 4 Gaussian blobs in 2-D, builds
 * Linear(2,32) - ReLU - Linear(32,4) from nn modules, trains it with Adam on mini-batches and prints
 * the mean loss of each epoch (the test in tests/install_test.sh checks that it goes down).
 * Build: see examples/CMakeLists.txt (find_package(needle_c)) or README "Use as a library". */
#include <math.h>
#include <stdio.h>

#include "core/autograd.h"
#include "core/tensor.h"
#include "nn/module.h"
#include "optim/optim.h"

#define N 512     /* samples */
#define BATCH 64  /* samples per step */
#define CLASSES 4

int main(void) {
  static float x[N * 2];
  static int32_t y[N];
  ndl_rng rng;
  ndl_rng_seed(&rng, 0);
  for (int i = 0; i < N; i++) { /* class c: a blob around (±2, ±2), standard deviation 0.7 */
    y[i] = i % CLASSES;
    x[2 * i] = (y[i] & 1 ? 2.0f : -2.0f) + 0.7f * (float)ndl_rng_randn(&rng);
    x[2 * i + 1] = (y[i] & 2 ? 2.0f : -2.0f) + 0.7f * (float)ndl_rng_randn(&rng);
  }

  ndl_nn_env env; /* owns the parameters; modules borrow views into them */
  ndl_nn_env_init(&env, &rng);
  ndl_module *layers[3] = {ndl_nn_linear(&env, "0", 2, 32, 1), ndl_nn_relu(&env),
                           ndl_nn_linear(&env, "2", 32, CLASSES, 1)};
  ndl_module *model = ndl_nn_sequential(&env, 3, layers);
  ndl_optim *opt = ndl_optim_adam_new(&env.params, 0.01, 0.9, 0.999, 1e-8, 0.0);
  ndl_ctx *ctx = ndl_ctx_new();
  if (!model || !opt || !ctx) {
    fprintf(stderr, "train_blobs: %s\n", ndl_last_error());
    return 1;
  }
  printf("model: %lld parameters\n", (long long)ndl_module_num_params(model));

  for (int epoch = 1; epoch <= 10; epoch++) {
    double sum = 0;
    for (int b = 0; b < N; b += BATCH) {
      ndl_optim_zero_grad(opt);
      ndl_tensor *xb = ndl_tensor_from(ctx, 2, (int64_t[]){BATCH, 2}, x + 2 * b);
      ndl_tensor *logits = ndl_module_forward(model, ctx, xb);
      ndl_tensor *loss = ndl_nn_softmax_loss(ctx, logits, y + b, 0); /* mean over the batch */
      if (!loss || ndl_graph_backward(ctx, loss, NULL) != NDL_OK) {
        fprintf(stderr, "train_blobs: %s\n", ndl_last_error());
        return 1;
      }
      ndl_optim_step(opt);
      sum += ndl_tensor_ptr(loss)[0];
      ndl_ctx_reset(ctx); /* frees the step's graph */
    }
    printf("epoch %d loss %.4f\n", epoch, sum / (N / BATCH));
  }

  ndl_ctx_free(ctx);
  ndl_optim_free(opt);
  ndl_module_free(model);
  ndl_nn_env_free(&env);
  return 0;
}
