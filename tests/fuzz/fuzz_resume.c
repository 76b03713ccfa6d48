/* fuzz_resume.c: libFuzzer target for loading a file into a model: the input is given to a tiny
 * ndl-train run (data: the IDX seed files in corpus/idx) once as --load weights (launch/weights.c)
 * and once as the only checkpoint of a --resume directory (launch/checkpoint.c); whatever loads is
 * trained one step and evaluated. Only statuses with clean one-line messages may come out: no
 * crash, assertion or sanitizer report. The run's options are OPTIONS below; make_corpus.sh makes
 * the seed checkpoints with the same ones (a checkpoint only resumes under its own setup). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/checkpoint.h"
#include "launch/config.h"
#include "launch/threads.h"
#include "launch/trainer.h"
#include "launch/weights.h"
#include "tests/fuzz/fuzz_util.h"

#ifndef NDL_FUZZ_DATA_DIR
#define NDL_FUZZ_DATA_DIR "tests/fuzz/corpus/idx"
#endif

/* Keep in step with make_corpus.sh. */
#define OPTIONS "--model", "mlpresnet", "--hidden-dim", "16", "--blocks", "1", "--batch-size", "4", \
                "--epochs", "2", "--augment", "--threads", "1", "--quiet"

static ndl_train_config g_cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *data = getenv("NDL_FUZZ_DATA");
  char *args[] = {"ndl-train", "--data", (char *)(data && data[0] ? data : NDL_FUZZ_DATA_DIR), OPTIONS};
  char err[512];
  ndl_config_defaults(&g_cfg);
  if (ndl_config_parse((int)(sizeof args / sizeof args[0]), args, &g_cfg, err, sizeof err) != 0)
    ndl_fuzz_fail("options: %s", err);
  ndl_threads_configure(g_cfg.threads, 1);
  return 0;
}

static void init(ndl_trainer *t) {
  ndl_status s = ndl_trainer_init(t, &g_cfg, NULL, 1);
  if (s != NDL_OK) ndl_fuzz_fail("building the run on %s: %s", g_cfg.data_dir, ndl_last_error());
}

/* One step past the restored step count (so a resumed run really steps: counters, optimizer t, RNG
 * and cursor advance from the restored values), then evaluate. */
static void step_and_eval(ndl_trainer *t) {
  ndl_epoch_end end;
  t->cfg.max_steps = t->step < INT64_MAX ? t->step + 1 : 0; /* 0: the rest of the epoch */
  ndl_status s = ndl_trainer_run_epoch(t, &end);
  ndl_fuzz_check_status(s, "ndl_trainer_run_epoch");
  double err, loss;
  s = ndl_trainer_evaluate(t, &t->test, &err, &loss);
  ndl_fuzz_check_status(s, "ndl_trainer_evaluate");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = ndl_fuzz_write("ckpt-0000000001.safetensors", data, size);
  ndl_trainer t;
  init(&t);
  ndl_status s = ndl_weights_load(path, &t.env);
  ndl_fuzz_check_status(s, "ndl_weights_load");
  if (s == NDL_OK) step_and_eval(&t);
  ndl_trainer_free(&t);

  init(&t);
  s = ndl_trainer_resume(&t, ndl_fuzz_dir());
  ndl_fuzz_check_status(s, "ndl_trainer_resume");
  if (s == NDL_OK) step_and_eval(&t);
  ndl_trainer_free(&t);
  return 0;
}
