/* models.h: needle's MLPResNet / ResidualBlock and CS231n's FullyConnectedNet, built in execution
 * order (so RNG draws happen in needle's order) with PyTorch state_dict names (SPEC §4). */
#ifndef NDL_MODELS_H
#define NDL_MODELS_H

#include "nn/module.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ndl_norm_kind { NDL_NORM_NONE = 0, NDL_NORM_BATCH = 1, NDL_NORM_LAYER = 2 } ndl_norm_kind;

/* Sequential(Residual(Sequential(Linear(dim,hidden), norm(hidden), ReLU, Dropout(drop),
 * Linear(hidden,dim), norm(dim))), ReLU); tensors named "<name>.0.fn.<i>.*". */
ndl_module *ndl_nn_residual_block(ndl_nn_env *env, const char *name, int64_t dim, int64_t hidden,
                                  ndl_norm_kind norm, float drop);
/* Sequential(Linear(dim,hidden), ReLU, blocks x ResidualBlock(hidden, hidden/2), Linear(hidden,classes)). */
ndl_module *ndl_nn_mlp_resnet(ndl_nn_env *env, int64_t dim, int64_t hidden, int blocks,
                              int64_t classes, ndl_norm_kind norm, float drop);
/* CS231n FullyConnectedNet: {Linear - [norm] - ReLU - [Dropout]} x nhidden - Linear, weights
 * N(0, weight_scale^2), zero biases; dropout only when drop > 0. */
ndl_module *ndl_nn_fc_net(ndl_nn_env *env, int64_t input_dim, int nhidden, const int64_t *hidden_dims,
                          int64_t classes, ndl_norm_kind norm, float drop, double weight_scale);

#ifdef __cplusplus
}
#endif
#endif
