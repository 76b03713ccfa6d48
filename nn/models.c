/* models.c: the two model builders. Names follow the module index of the equivalent PyTorch
 * nn.Sequential so weights load with load_state_dict; norm "none" uses Identity in the same slot. */
#include "nn/models.h"

#include <stdio.h>

static ndl_module *norm_layer(ndl_nn_env *env, const char *name, int64_t dim, ndl_norm_kind norm) {
  switch (norm) {
    case NDL_NORM_BATCH: return ndl_nn_batchnorm1d(env, name, dim, 1e-5f, 0.1f);
    case NDL_NORM_LAYER: return ndl_nn_layernorm1d(env, name, dim, 1e-5f);
    case NDL_NORM_NONE: return ndl_nn_identity(env);
  }
  NDL_ABORT("bad norm kind %d", (int)norm);
}

static const char *sub(char *buf, size_t len, const char *prefix, const char *suffix) {
  snprintf(buf, len, "%s%s%s", prefix, prefix[0] ? "." : "", suffix);
  return buf;
}

ndl_module *ndl_nn_residual_block(ndl_nn_env *env, const char *name, int64_t dim, int64_t hidden,
                                  ndl_norm_kind norm, float drop) {
  char n0[200], n1[200], n4[200], n5[200];
  ndl_module *fn[6];
  fn[0] = ndl_nn_linear(env, sub(n0, sizeof n0, name, "0.fn.0"), dim, hidden, 1);
  fn[1] = norm_layer(env, sub(n1, sizeof n1, name, "0.fn.1"), hidden, norm);
  fn[2] = ndl_nn_relu(env);
  fn[3] = ndl_nn_dropout(env, drop);
  fn[4] = ndl_nn_linear(env, sub(n4, sizeof n4, name, "0.fn.4"), hidden, dim, 1);
  fn[5] = norm_layer(env, sub(n5, sizeof n5, name, "0.fn.5"), dim, norm);
  ndl_module *outer[2];
  outer[0] = ndl_nn_residual(env, ndl_nn_sequential(env, 6, fn));
  outer[1] = ndl_nn_relu(env);
  return ndl_nn_sequential(env, 2, outer);
}

ndl_module *ndl_nn_mlp_resnet(ndl_nn_env *env, int64_t dim, int64_t hidden, int blocks,
                              int64_t classes, ndl_norm_kind norm, float drop) {
  ndl_module *layers[64];
  if (blocks < 0 || blocks > 60) {
    ndl_errorf(NDL_ERR_ARG, "MLPResNet: %d blocks, expected 0..60", blocks);
    return NULL;
  }
  char name[32];
  int n = 0;
  layers[n++] = ndl_nn_linear(env, "0", dim, hidden, 1);
  layers[n++] = ndl_nn_relu(env);
  for (int k = 0; k < blocks; k++) {
    snprintf(name, sizeof name, "%d", n);
    layers[n++] = ndl_nn_residual_block(env, name, hidden, hidden / 2, norm, drop);
  }
  snprintf(name, sizeof name, "%d", n);
  layers[n++] = ndl_nn_linear(env, name, hidden, classes, 1);
  return ndl_nn_sequential(env, n, layers);
}

ndl_module *ndl_nn_fc_net(ndl_nn_env *env, int64_t input_dim, int nhidden, const int64_t *hidden_dims,
                          int64_t classes, ndl_norm_kind norm, float drop, double weight_scale) {
  ndl_module *layers[256];
  if (nhidden < 0 || nhidden > 60) {
    ndl_errorf(NDL_ERR_ARG, "FullyConnectedNet: %d hidden layers, expected 0..60", nhidden);
    return NULL;
  }
  char name[32];
  int n = 0;
  int64_t in = input_dim;
  for (int i = 0; i < nhidden; i++) {
    snprintf(name, sizeof name, "%d", n);
    layers[n++] = ndl_nn_linear_init(env, name, in, hidden_dims[i], 1, 0, weight_scale);
    if (norm != NDL_NORM_NONE) {
      snprintf(name, sizeof name, "%d", n);
      layers[n++] = norm_layer(env, name, hidden_dims[i], norm);
    }
    layers[n++] = ndl_nn_relu(env);
    if (drop > 0) layers[n++] = ndl_nn_dropout(env, drop);
    in = hidden_dims[i];
  }
  snprintf(name, sizeof name, "%d", n);
  layers[n++] = ndl_nn_linear_init(env, name, in, classes, 1, 0, weight_scale);
  return ndl_nn_sequential(env, n, layers);
}
