/* config.h: the ndl-train options of SPEC §4 as one struct, their defaults, the parser and the
 * --help dispatch (the text: help.h). Parsing never exits: it reports a usage error with a one-line message. */
#ifndef NDL_CONFIG_H
#define NDL_CONFIG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { NDL_OPT_SGD, NDL_OPT_ADAM, NDL_OPT_ADAMW, NDL_OPT_RMSPROP } ndl_optimizer_kind;
typedef enum { NDL_MODEL_MLPRESNET, NDL_MODEL_MLP } ndl_model_kind;
typedef enum { NDL_DEVICE_AUTO, NDL_DEVICE_CPU, NDL_DEVICE_CUDA } ndl_device_kind;
/* --collectives: how device buffers are all-reduced across ranks (launch/device_select.c resolves AUTO). */
typedef enum { NDL_COLL_AUTO, NDL_COLL_MPI, NDL_COLL_NCCL } ndl_collectives_kind;

#define NDL_MAX_HIDDEN_LAYERS 16

typedef struct ndl_train_config {
  const char *data_dir;
  int64_t epochs, batch_size;
  ndl_optimizer_kind optimizer;
  double lr, momentum, weight_decay;
  int nesterov;
  ndl_model_kind model;
  int64_t hidden_dim;
  int blocks;
  double drop_prob;
  int norm; /* ndl_norm_kind */
  int n_hidden_dims;
  int64_t hidden_dims[NDL_MAX_HIDDEN_LAYERS];
  double weight_scale, reg;
  int sync_bn; /* -1: on when world > 1 */
  int needle_compat;
  int64_t seed;
  int shuffle, augment;
  ndl_device_kind device;           /* AUTO until ndl_device_resolve picks cpu or cuda */
  ndl_collectives_kind collectives; /* AUTO until ndl_device_resolve */
  int collectives_auto;             /* NCCL was chosen, not asked for: MPI takes over if it fails */
  int cuda_graph;                   /* --cuda-graph: capture the static-shape step once, replay it */
  int threads; /* 0: cores / local ranks */
  const char *load, *save, *checkpoint_dir, *resume, *log;
  int64_t checkpoint_every; /* 0: only at epoch ends (when a checkpoint dir is set) */
  int64_t max_steps;        /* 0: no limit */
  int eval_only, log_steps, quiet;
  int verbose; /* --verbose: startup details (the BLAS kernel) on stderr */
  int profile; /* --profile: where each epoch's time went (stdout table, --log "profile") */
  double timeout;
  int classes;
} ndl_train_config;

/* Fill the SPEC defaults (data dir from $NDL_DATA, else /usr/share/datasets/fashion-mnist). */
void ndl_config_defaults(ndl_train_config *c);

/* Parse argv into c. Returns 0 on success, 1 when --help, --help-man or --version was given (its
 * text printed to stdout), 2 on a usage error (one-line message in err). Strings point into argv. */
int ndl_config_parse(int argc, char **argv, ndl_train_config *c, char *err, int errlen);

#ifdef __cplusplus
}
#endif
#endif
