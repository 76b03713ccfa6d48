/* weights_tool.c: helper of the PyTorch interop test. Builds MLPResNet(784,100,3,10,BatchNorm),
 *   save PATH SEED: seeds the init, runs two training-mode forwards (so running stats and
 *                   num_batches_tracked move), saves the state_dict to PATH;
 *   load PATH:      loads the state_dict from PATH into a freshly built model;
 * then prints the eval-mode logits of a fixed input (x[k] = (k % 97) / 97, 4 rows), one row a line.
 * Leaves out: any training step (the optimizer is not involved). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor.h"
#include "launch/weights.h"
#include "nn/models.h"

#define ROWS 4
#define DIM 784

static int forward(ndl_module *model, ndl_ctx *ctx, const float *x, int rows, int print) {
  int64_t shape[2] = {rows, DIM};
  ndl_tensor *y = ndl_module_forward(model, ctx, ndl_tensor_from(ctx, 2, shape, x));
  if (!y) {
    fprintf(stderr, "weights_tool: forward failed: %s\n", ndl_last_error());
    return 1;
  }
  if (print) {
    float *out = (float *)malloc((size_t)ndl_tensor_numel(y) * sizeof(float));
    ndl_tensor_copy_out(y, out);
    for (int64_t r = 0; r < y->shape[0]; r++) {
      for (int64_t c = 0; c < y->shape[1]; c++)
        printf("%s%.9g", c ? " " : "", (double)out[r * y->shape[1] + c]);
      printf("\n");
    }
    free(out);
  }
  ndl_ctx_reset(ctx);
  return 0;
}

int main(int argc, char **argv) {
  int save = argc == 4 && !strcmp(argv[1], "save");
  int load = argc == 3 && !strcmp(argv[1], "load");
  if (!save && !load) {
    fprintf(stderr, "usage: weights_tool save PATH SEED | weights_tool load PATH\n");
    return 2;
  }
  ndl_rng rng;
  ndl_rng_seed(&rng, save ? (uint32_t)strtoul(argv[3], NULL, 10) : 0u);
  ndl_nn_env env;
  ndl_nn_env_init(&env, &rng);
  ndl_ctx *ctx = ndl_ctx_new();
  ndl_module *model = ndl_nn_mlp_resnet(&env, DIM, 100, 3, 10, NDL_NORM_BATCH, 0.1f);
  static float x[ROWS * DIM], xt[8 * DIM];
  for (int k = 0; k < ROWS * DIM; k++) x[k] = (float)((k % 97) / 97.0);
  for (int k = 0; k < 8 * DIM; k++) xt[k] = (float)((k % 89) / 50.0);
  int rc = !model || !ctx;
  ndl_ctx_set_grad(ctx, 0);
  if (!rc && save) {
    ndl_module_train(model, 1);
    rc = forward(model, ctx, xt, 8, 0) || forward(model, ctx, x, ROWS, 0);
    if (!rc && ndl_weights_save(argv[2], &env) != NDL_OK) {
      fprintf(stderr, "weights_tool: %s\n", ndl_last_error());
      rc = 1;
    }
  }
  if (!rc && load && ndl_weights_load(argv[2], &env) != NDL_OK) {
    fprintf(stderr, "weights_tool: %s\n", ndl_last_error());
    rc = 1;
  }
  if (!rc) {
    ndl_module_train(model, 0);
    rc = forward(model, ctx, x, ROWS, 1);
  }
  ndl_module_free(model);
  ndl_ctx_free(ctx);
  ndl_nn_env_free(&env);
  return rc;
}
