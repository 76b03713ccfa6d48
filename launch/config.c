/* config.c: parsing ndl-train's command line ("--opt value" or "--opt=value") into
 * ndl_train_config with strict number parsing: a non-numeric, out-of-range or negative value, an
 * unknown option or a missing value (a next argument starting with "--" is not taken as a value) is a
 * usage error naming the option and what was expected, and so is an option the run would ignore. */
#include "launch/config.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/help.h"
#include "nn/models.h"

#define MAX_THREADS 64   /* core/threadpool.c runs at most this many threads */
#define MAX_CLASSES 256  /* labels are uint8 (data/idx.h) */

void ndl_config_defaults(ndl_train_config *c) {
  memset(c, 0, sizeof *c);
  const char *env = getenv("NDL_DATA");
  c->data_dir = env && env[0] ? env : "/usr/share/datasets/fashion-mnist";
  c->epochs = 10;
  c->batch_size = 100;
  c->optimizer = NDL_OPT_ADAM;
  c->lr = 0.001;
  c->weight_decay = 0.001;
  c->model = NDL_MODEL_MLPRESNET;
  c->hidden_dim = 100;
  c->blocks = 3;
  c->drop_prob = 0.1;
  c->norm = NDL_NORM_BATCH;
  c->n_hidden_dims = 2;
  c->hidden_dims[0] = c->hidden_dims[1] = 100;
  c->weight_scale = 1e-2;
  c->sync_bn = -1;
  c->shuffle = 1;
  c->timeout = 60;
  c->classes = 10;
}

typedef struct parse_state {
  char *err;
  int errlen;
} parse_state;

static int fail(parse_state *ps, const char *fmt, const char *opt, const char *val) {
  snprintf(ps->err, (size_t)ps->errlen, fmt, opt, val);
  return 2;
}

static int parse_int(parse_state *ps, const char *opt, const char *val, int64_t lo, int64_t hi,
                     int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(val, &end, 10);
  if (errno || end == val || *end || v < lo || v > hi) {
    char fmt[160];
    snprintf(fmt, sizeof fmt, "%%s: expected an integer in [%lld, %lld], got '%%s'", (long long)lo,
             (long long)hi);
    return fail(ps, fmt, opt, val);
  }
  *out = v;
  return 0;
}

static int parse_real(parse_state *ps, const char *opt, const char *val, double lo, double hi,
                      double *out) {
  char *end;
  errno = 0;
  double v = strtod(val, &end);
  if (errno || end == val || *end || !isfinite(v) || v < lo || v > hi) {
    char fmt[160];
    snprintf(fmt, sizeof fmt, "%%s: expected a number in [%g, %g], got '%%s'", lo, hi);
    return fail(ps, fmt, opt, val);
  }
  *out = v;
  return 0;
}

static int parse_choice(parse_state *ps, const char *opt, const char *val, const char *const *names,
                        int n, int *out) {
  for (int i = 0; i < n; i++)
    if (strcmp(val, names[i]) == 0) {
      *out = i;
      return 0;
    }
  char fmt[200] = "%s: expected one of ";
  for (int i = 0; i < n; i++) {
    strncat(fmt, names[i], sizeof fmt - strlen(fmt) - 1);
    strncat(fmt, i + 1 < n ? "|" : "", sizeof fmt - strlen(fmt) - 1);
  }
  strncat(fmt, ", got '%s'", sizeof fmt - strlen(fmt) - 1);
  return fail(ps, fmt, opt, val);
}

/* The whole list, however long: every element an integer in [1, 2^20], no empty element. */
static int parse_dims(parse_state *ps, const char *opt, const char *val, ndl_train_config *c) {
  int n = 0;
  for (const char *p = val;;) {
    char *end;
    errno = 0;
    long long d = strtoll(p, &end, 10);
    if (end == p || errno || (*end && *end != ','))
      return fail(ps, "%s: expected a list of integers like 100,100, got '%s'", opt, val);
    if (d < 1 || d > (1 << 20)) return fail(ps, "%s: every width must be in [1, 1048576], got '%s'", opt, val);
    if (n == NDL_MAX_HIDDEN_LAYERS) return fail(ps, "%s: at most 16 hidden layers, got '%s'", opt, val);
    c->hidden_dims[n++] = d;
    if (!*end) break;
    p = end + 1;
  }
  c->n_hidden_dims = n;
  return 0;
}

/* --optimizer's values, in ndl_optimizer_kind's order. */
static const char *const optimizers[] = {"sgd", "adam", "adamw", "rmsprop"};

/* Options that take a value; returns 2 on error, 0 ok, -1 if opt is not a value option. */
static int set_value(parse_state *ps, ndl_train_config *c, const char *opt, const char *v) {
  static const char *const models[] = {"mlpresnet", "mlp"};
  static const char *const norms[] = {"none", "batch", "layer"};
  static const char *const devices[] = {"cpu", "cuda"};
  static const char *const collectives[] = {"mpi", "nccl"};
  int64_t i;
  int ch, r;
  if (!strcmp(opt, "--data")) return c->data_dir = v, 0;
  if (!strcmp(opt, "--load")) return c->load = v, 0;
  if (!strcmp(opt, "--save")) return c->save = v, 0;
  if (!strcmp(opt, "--checkpoint-dir")) return c->checkpoint_dir = v, 0;
  if (!strcmp(opt, "--resume")) return c->resume = v, 0;
  if (!strcmp(opt, "--log")) return c->log = v, 0;
  if (!strcmp(opt, "--epochs")) return parse_int(ps, opt, v, 1, 1000000, &c->epochs);
  if (!strcmp(opt, "--batch-size")) return parse_int(ps, opt, v, 1, 1 << 24, &c->batch_size);
  if (!strcmp(opt, "--hidden-dim")) return parse_int(ps, opt, v, 2, 1 << 20, &c->hidden_dim);
  if (!strcmp(opt, "--checkpoint-every")) return parse_int(ps, opt, v, 1, INT64_MAX, &c->checkpoint_every);
  if (!strcmp(opt, "--max-steps")) return parse_int(ps, opt, v, 1, INT64_MAX, &c->max_steps);
  if (!strcmp(opt, "--seed")) return parse_int(ps, opt, v, 0, 4294967295LL, &c->seed);
  if (!strcmp(opt, "--blocks")) return (r = parse_int(ps, opt, v, 0, 60, &i)) ? r : (c->blocks = (int)i, 0);
  if (!strcmp(opt, "--threads")) return (r = parse_int(ps, opt, v, 1, MAX_THREADS, &i)) ? r : (c->threads = (int)i, 0);
  if (!strcmp(opt, "--classes")) return (r = parse_int(ps, opt, v, 2, MAX_CLASSES, &i)) ? r : (c->classes = (int)i, 0);
  if (!strcmp(opt, "--lr")) return parse_real(ps, opt, v, 0, DBL_MAX, &c->lr);
  if (!strcmp(opt, "--momentum")) return parse_real(ps, opt, v, 0, 0.999999, &c->momentum);
  if (!strcmp(opt, "--weight-decay")) return parse_real(ps, opt, v, 0, 1e6, &c->weight_decay);
  if (!strcmp(opt, "--drop-prob")) return parse_real(ps, opt, v, 0, 0.999, &c->drop_prob);
  if (!strcmp(opt, "--weight-scale")) return parse_real(ps, opt, v, 0, 1e6, &c->weight_scale);
  if (!strcmp(opt, "--reg")) return parse_real(ps, opt, v, 0, 1e6, &c->reg);
  if (!strcmp(opt, "--timeout")) return parse_real(ps, opt, v, 0.1, 1e7, &c->timeout);
  if (!strcmp(opt, "--hidden-dims")) return parse_dims(ps, opt, v, c);
  if (!strcmp(opt, "--optimizer"))
    return (r = parse_choice(ps, opt, v, optimizers, 4, &ch)) ? r : (c->optimizer = (ndl_optimizer_kind)ch, 0);
  if (!strcmp(opt, "--model"))
    return (r = parse_choice(ps, opt, v, models, 2, &ch)) ? r : (c->model = (ndl_model_kind)ch, 0);
  if (!strcmp(opt, "--norm")) return (r = parse_choice(ps, opt, v, norms, 3, &ch)) ? r : (c->norm = ch, 0);
  if (!strcmp(opt, "--device"))
    return (r = parse_choice(ps, opt, v, devices, 2, &ch)) ? r : (c->device = (ndl_device_kind)(ch + 1), 0);
  if (!strcmp(opt, "--collectives"))
    return (r = parse_choice(ps, opt, v, collectives, 2, &ch)) ? r : (c->collectives = (ndl_collectives_kind)(ch + 1), 0);
  return -1;
}

/* Flag options: set when c is non-NULL; returns whether opt is a flag. */
static int set_flag(ndl_train_config *c, const char *opt) {
  static const char *const flags[] = {"--nesterov", "--sync-bn", "--no-sync-bn", "--needle-compat",
                                      "--no-shuffle", "--augment", "--eval-only", "--log-steps",
                                      "--quiet", "--verbose", "--profile", "--cuda-graph"};
  int k = -1;
  for (int i = 0; i < (int)(sizeof flags / sizeof flags[0]); i++)
    if (!strcmp(opt, flags[i])) k = i;
  if (k < 0 || !c) return k >= 0;
  switch (k) {
    case 0: c->nesterov = 1; break;
    case 1: c->sync_bn = 1; break;
    case 2: c->sync_bn = 0; break;
    case 3: c->needle_compat = 1; break;
    case 4: c->shuffle = 0; break;
    case 5: c->augment = 1; break;
    case 6: c->eval_only = 1; break;
    case 7: c->log_steps = 1; break;
    case 9: c->verbose = 1; break;
    case 10: c->profile = 1; break;
    case 11: c->cuda_graph = 1; break;
    default: c->quiet = 1; break;
  }
  return 1;
}

/* An option given on the command line (either spelling). */
static int given(int argc, char **argv, const char *opt) {
  size_t len = strlen(opt);
  for (int i = 1; i < argc; i++)
    if (!strncmp(argv[i], opt, len) && (argv[i][len] == 0 || argv[i][len] == '=')) return 1;
  return 0;
}

/* Options the run would silently ignore are usage errors. */
static int check_combination(parse_state *ps, int argc, char **argv, const ndl_train_config *c) {
  static const char *const mlp_only[] = {"--hidden-dims", "--weight-scale"};
  static const char *const resnet_only[] = {"--hidden-dim", "--blocks"};
  if (c->checkpoint_every && !c->checkpoint_dir)
    return fail(ps, "%s: needs --checkpoint-dir DIR (checkpoints are written only there)%s", "--checkpoint-every", "");
  if (c->profile && c->eval_only)
    return fail(ps, "%s with --eval-only: it profiles training epochs, and nothing is trained%s", "--profile", "");
  if (c->cuda_graph && c->eval_only)
    return fail(ps, "%s with --eval-only: it captures training steps, and nothing is trained%s", "--cuda-graph", "");
  if (c->save && c->eval_only)
    return fail(ps, "%s with --eval-only: nothing is trained, so there is nothing to save%s", "--save", "");
  if (c->device == NDL_DEVICE_CPU && c->collectives == NDL_COLL_NCCL)
    return fail(ps, "%s with --device cpu: NCCL all-reduces GPU buffers; the CPU path uses MPI%s", "--collectives nccl", "");
  if (c->device == NDL_DEVICE_CPU && c->cuda_graph)
    return fail(ps, "%s with --device cpu: it replays a CUDA step%s", "--cuda-graph", "");
  static const char *const sgd_only[] = {"--momentum", "--nesterov"};
  for (int k = 0; k < 2; k++)
    if (c->optimizer != NDL_OPT_SGD && given(argc, argv, sgd_only[k]))
      return fail(ps, "%s: applies to --optimizer sgd only (the %s update has no momentum term to set)", sgd_only[k],
                  optimizers[c->optimizer]);
  for (int k = 0; k < 2; k++) {
    const char *opt = c->model == NDL_MODEL_MLP ? resnet_only[k] : mlp_only[k];
    if (given(argc, argv, opt))
      return fail(ps, "%s: applies to --model %s only", opt, c->model == NDL_MODEL_MLP ? "mlpresnet" : "mlp");
  }
  return 0;
}

int ndl_config_parse(int argc, char **argv, ndl_train_config *c, char *err, int errlen) {
  parse_state ps = {err, errlen};
  err[0] = 0;
  for (int i = 1; i < argc; i++) {
    char opt[64];
    const char *arg = argv[i], *val = NULL, *eq = strchr(arg, '=');
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) return ndl_help_print(stdout), 1; /* launch/help.c */
    if (!strcmp(arg, "--help-man")) return ndl_help_man(stdout), 1;
    if (!strcmp(arg, "--version")) return ndl_help_version(stdout), 1;
    if (strncmp(arg, "--", 2) != 0) return fail(&ps, "%s%s: unexpected argument (options start with --)", arg, "");
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    if (len >= sizeof opt) return fail(&ps, "%s%s: unknown option", arg, "");
    memcpy(opt, arg, len);
    opt[len] = 0;
    if (set_flag(NULL, opt)) {
      if (eq) return fail(&ps, "%s: takes no value, got '%s'", opt, eq + 1);
      set_flag(c, opt);
      continue;
    }
    if (eq) val = eq + 1;
    else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) val = argv[i + 1]; /* not the next option */
    int r = set_value(&ps, c, opt, val ? val : "");
    if (r == -1) return fail(&ps, "%s: unknown option%s (see --help)", opt, "");
    if (!val) return fail(&ps, "%s: missing value%s", opt, "");
    if (r) return r;
    if (!eq) i++;
  }
  return check_combination(&ps, argc, argv, c);
}
