/* help.c: ndl-train's help text as tables (option groups with one line and a default each, the
 * environment variables the code reads, every exit code, notes on --max-steps and --eval-only), and
 * its renderings: plain text for --help, troff for --help-man (the build turns it into ndl-train.1),
 * and --version. Leaves out: parsing (config.c); the defaults here must match ndl_config_defaults. */
#include "launch/help.h"

#include <string.h>

#include "core/backend.h"
#include "core/blas_select.h"

#ifndef NDL_VERSION
#define NDL_VERSION "unknown" /* set by launch/CMakeLists.txt; other builds of this file say so */
#endif

typedef struct entry {
  const char *name; /* option(s) with their value, or the variable / code */
  const char *text; /* one plain line */
  const char *dflt; /* NULL: no default to show */
} entry;

typedef struct group {
  const char *title;
  const entry *entries;
} group;

#define END {NULL, NULL, NULL}

static const entry data_opts[] = {
    {"--data DIR", "IDX or CIFAR-10 files", "$NDL_DATA, else /usr/share/datasets/fashion-mnist"},
    {"--batch-size N", "the global batch: the ranks split every batch between them", "100"},
    {"--classes N", "labels must be below N (at most 256)", "10"},
    {"--no-shuffle", "keep the file order (default: a new permutation every epoch)", NULL},
    {"--augment", "RandomCrop(4) + RandomFlipHorizontal(0.5) of training images", "off"},
    {"--seed N", "the one RNG stream: init, shuffle, augmentation, dropout", "0"},
    {"--needle-compat", "seed 4 before the model and every epoch, as needle's train_mnist", "off"},
    END};

static const entry model_opts[] = {
    {"--model NAME", "mlpresnet (needle's) or mlp (CS231n's FullyConnectedNet)", "mlpresnet"},
    {"--hidden-dim N", "MLPResNet width", "100"},
    {"--blocks N", "MLPResNet residual blocks", "3"},
    {"--hidden-dims A,B,...", "mlp hidden layer widths", "100,100"},
    {"--weight-scale X", "mlp init: normal weights with this standard deviation", "1e-2"},
    {"--norm NAME", "batch, layer or none (both models)", "batch"},
    {"--drop-prob X", "dropout probability (both models)", "0.1"},
    {"--reg X", "L2 penalty on Linear weights, added to the loss (both models)", "0"},
    END};

static const entry optim_opts[] = {
    {"--optimizer NAME", "sgd, adam, adamw or rmsprop", "adam"},
    {"--lr X", "learning rate", "0.001"},
    {"--momentum X", "SGD momentum (needle's dampened form)", "0"},
    {"--nesterov", "Nesterov momentum for sgd", "off"},
    {"--weight-decay X", "added to the gradient as X*weight (adamw: decoupled)", "0.001"},
    {"--epochs N", "passes over the training set", "10"},
    {"--max-steps N", "stop after N optimizer steps, one per global batch (see notes)", "no limit"},
    END};

static const entry dist_opts[] = {
    {"--sync-bn", "BatchNorm over the global batch of all ranks", "on when ranks > 1"},
    {"--no-sync-bn", "BatchNorm over each rank's own slice of the batch", NULL},
    {"--collectives NAME", "nccl or mpi", "nccl if every rank has its own GPU, else mpi"},
    {"--timeout S", "seconds without progress in a collective or a step phase: exit 5", "60"},
    END};

static const entry device_opts[] = {
    {"--device NAME", "cpu or cuda", "cuda if built with CUDA and a GPU is visible, else cpu"},
    {"--cuda-graph", "capture the training step as a CUDA graph once, then replay it", "off"},
    {"--threads N", "threads per rank (optimizer step, big GEMMs; at most 64)", "cores / ranks"},
    END};

static const entry ckpt_opts[] = {
    {"--load FILE", "start from these weights (safetensors, PyTorch state_dict names)", NULL},
    {"--save FILE", "write the final weights there (safetensors; atomic)", NULL},
    {"--checkpoint-dir DIR", "full state at every epoch end (atomic; keeps the two newest)", NULL},
    {"--checkpoint-every N", "also every N steps (needs --checkpoint-dir)", NULL},
    {"--resume DIR", "continue bit-exactly from DIR's newest checkpoint, on any rank count", NULL},
    {"--eval-only", "evaluate on the test set only: --load's weights, else the seeded init", NULL},
    END};

static const entry output_opts[] = {
    {"--log FILE", "JSON Lines, one per epoch; --resume appends; plot: scripts/plot.py", NULL},
    {"--log-steps", "also one --log line per optimizer step: step, epoch, loss", "off"},
    {"--profile", "where each epoch's time went over ranks: table at the end, in --log", "off"},
    {"--quiet", "no progress bar (none either when stderr is not a terminal)", NULL},
    {"--verbose", "startup details on stderr: the BLAS kernel in use", NULL},
    {"--help, -h", "this text", NULL},
    {"--help-man", "this text as a man page (troff), as installed in ndl-train.1", NULL},
    {"--version", "version, BLAS library and kernel, MPI/CUDA/NCCL built in or not", NULL},
    END};

static const group groups[] = {
    {"data", data_opts},
    {"model", model_opts},
    {"optimizer", optim_opts},
    {"distributed", dist_opts},
    {"device", device_opts},
    {"checkpoints", ckpt_opts},
    {"output", output_opts},
};

/* Every variable the code reads that a user may set (dist.c, config.c, core/blas_select.c). */
static const entry env_vars[] = {
    {"NDL_DATA", "default of --data", NULL},
    {"NDL_FAULT", "tests: rank=R,step=S,action=exit|hang|slow[,seconds=X][,where=PHASE]", NULL},
    {"OPENBLAS_CORETYPE", "OpenBLAS kernel; unset: ndl-train picks the best for this CPU", NULL},
    {"OPENBLAS_NUM_THREADS", "no effect: sgemm runs on 1 OpenBLAS thread; --threads sets threads", NULL},
    {"NDL_BLAS_SERIAL", "1: never run two sgemm calls at once (a BLAS that is not thread-safe)", NULL},
    {"OMPI_ALLOW_RUN_AS_ROOT", "1, with OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1: lets mpirun run as root", NULL},
    END};

static const entry exit_codes[] = {
    {"0", "success", NULL},
    {"1", "internal failure: out of memory, a thread that could not start", NULL},
    {"2", "usage: unknown option, bad or missing value, options in conflict, unwritable --log", NULL},
    {"3", "data: a --data file missing or malformed, IDX or CIFAR-10 (the message names it)", NULL},
    {"4", "weights/checkpoint file bad or mismatched, --checkpoint-dir unusable, --save/checkpoint failed",
     NULL},
    {"5", "distributed: a rank died or stalled, ranks disagree, --timeout passed, bad NDL_FAULT", NULL},
    {"6", "the loss became NaN or Inf (the message names the step)", NULL},
    END};

static const char *const notes[] = {
    "--max-steps counts optimizer steps, one per global batch, over the whole run: across epochs,",
    "and counting the steps of the checkpoint --resume starts from (resumed at or past N: no step).",
    "The epoch it stops in is still evaluated and printed.",
    "", /* a new paragraph */
    "--eval-only without --load evaluates the untrained model as --seed initializes it",
    "(--needle-compat: seed 4), BatchNorm with its initial running statistics; it reads only the",
    "t10k test files and prints one line: eval test_err E test_loss L samples N.",
    NULL};

static const char synopsis[] =
    "usage: ndl-train [options]                  one process\n"
    "       mpirun -np N ndl-train [options]     N ranks, one per process (per GPU with CUDA)\n";

static const char description[] =
    "Trains needle's MLPResNet or CS231n's FullyConnectedNet on MNIST-style data: one line per\n"
    "epoch on stdout (rank 0). Values: --opt VALUE or --opt=VALUE.";

#define NAME_COL 25

static void print_entries(FILE *f, const entry *e, int col) {
  for (; e->name; e++) {
    int n = fprintf(f, "  %s", e->name);
    fprintf(f, "%*s%s", n < col ? col - n : 1, "", e->text);
    if (e->dflt) fprintf(f, " [%s]", e->dflt);
    fputc('\n', f);
  }
}

void ndl_help_print(FILE *f) {
  fputs(synopsis, f);
  fprintf(f, "%s Defaults in [brackets].\n", description);
  for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
    fprintf(f, "\n%s:\n", groups[g].title);
    print_entries(f, groups[g].entries, NAME_COL);
  }
  fputs("\nenvironment:\n", f);
  print_entries(f, env_vars, NAME_COL);
  fputs("\nexit codes (every failure prints one line \"ndl-train: ...\" on stderr):\n", f);
  print_entries(f, exit_codes, 6);
  fputs("\nnotes:\n", f);
  for (int i = 0; notes[i]; i++)
    if (notes[i][0]) fprintf(f, "  %s\n", notes[i]);
}

/* troff text: '-' as \-, '\' as \e, and \& before a leading '.' or '\''. */
static void man_text(FILE *f, const char *s, size_t len) {
  for (size_t i = 0; i < len && s[i]; i++) {
    if (s[i] == '-') fputs("\\-", f);
    else if (s[i] == '\\') fputs("\\e", f);
    else fputc(s[i], f);
  }
}

static void man_line(FILE *f, const char *s) {
  if (s[0] == '.' || s[0] == '\'') fputs("\\&", f);
  man_text(f, s, strlen(s));
  fputc('\n', f);
}

/* An entry's name: for options, "--opt" words bold and their VALUE words italic; else all bold. */
static void man_name(FILE *f, const char *name, int option) {
  const char *p = name;
  while (*p) {
    size_t word = strcspn(p, " ,");
    if (word) {
      fputs(!option || p[0] == '-' ? "\\fB" : "\\fI", f);
      man_text(f, p, word);
      fputs("\\fR", f);
    }
    p += word;
    size_t sep = strspn(p, " ,");
    man_text(f, p, sep);
    p += sep;
  }
  fputc('\n', f);
}

static void man_entries(FILE *f, const entry *e, int option) {
  for (; e->name; e++) {
    fputs(".TP\n", f);
    man_name(f, e->name, option);
    if (e->text[0] == '.' || e->text[0] == '\'') fputs("\\&", f);
    man_text(f, e->text, strlen(e->text));
    if (e->dflt) {
      fputs(" [", f);
      man_text(f, e->dflt, strlen(e->dflt));
      fputc(']', f);
    }
    fputc('\n', f);
  }
}

void ndl_help_man(FILE *f) {
  fputs(".\\\" ndl-train.1: generated by ndl-train --help-man from launch/help.c; do not edit.\n", f);
  fputs(".TH NDL\\-TRAIN 1 \"\" \"needle\\-c " NDL_VERSION "\" \"User Commands\"\n", f);
  fputs(".SH NAME\nndl\\-train \\- train needle's MLPResNet or CS231n's net, on one process or many (MPI)\n", f);
  fputs(".SH SYNOPSIS\n.B ndl\\-train\n[\\fIoptions\\fR]\n.br\n.B mpirun \\-np\n.I N\n.B ndl\\-train\n"
        "[\\fIoptions\\fR]\n",
        f);
  fputs(".SH DESCRIPTION\n", f);
  man_line(f, description);
  fputs("Defaults are in [brackets].\n.SH OPTIONS\n", f);
  for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
    fprintf(f, ".SS %s\n", groups[g].title);
    man_entries(f, groups[g].entries, 1);
  }
  fputs(".SH ENVIRONMENT\n", f);
  man_entries(f, env_vars, 0);
  fputs(".SH EXIT STATUS\nEvery failure prints one line \\(lqndl\\-train: ...\\(rq on stderr.\n", f);
  man_entries(f, exit_codes, 0);
  fputs(".SH NOTES\n", f);
  for (int i = 0; notes[i]; i++) notes[i][0] ? man_line(f, notes[i]) : (void)fputs(".PP\n", f);
  fputs(".SH SEE ALSO\n.BR mpirun (1);\n.I scripts/plot.py\ndraws a \\-\\-log file;\n.I README.md\nof needle\\-c.\n",
        f);
}

void ndl_help_version(FILE *f) {
  char blas[384];
  fprintf(f, "ndl-train (needle-c) %s\n", NDL_VERSION);
  fprintf(f, "BLAS: %s\n", ndl_blas_describe(blas, sizeof blas));
#ifdef NDL_HAVE_MPI
  fputs("MPI: built in (used when started by mpirun with more than 1 rank)\n", f);
#else
  fputs("MPI: not built in (one process only)\n", f);
#endif
  const char *why = NULL;
  if (!ndl_backend_cuda_built())
    fputs("CUDA: not built in (--device cpu only)\n", f);
  else if (ndl_backend_cuda(&why))
    fputs("CUDA: built in, GPU visible (--device cuda is the default)\n", f);
  else
    fprintf(f, "CUDA: built in, no GPU usable (%s)\n", why ? why : "unknown reason");
#ifdef NDL_HAVE_NCCL
  fputs("NCCL: built in\n", f);
#else
  fputs("NCCL: not built in\n", f);
#endif
}
