/* main.c: the ndl-train program: parse options, load data, build or load the model, resume, train
 * with one stdout line per epoch (rank 0), save, and map every failure to SPEC §4's exit codes with
 * one message line naming the file, option or step: 2 usage, 3 data, 4 checkpoint/weights, 5
 * distributed, 6 NaN/Inf loss (1 for an internal failure such as running out of memory). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/checkpoint.h"
#include "launch/config.h"
#include "launch/threads.h"
#include "launch/trainer.h"
#include "launch/weights.h"

enum { EXIT_USAGE = 2, EXIT_DATA = 3, EXIT_STATE = 4, EXIT_DIST = 5, EXIT_NUMERIC = 6 };

static int report(int code, const char *what) {
  fprintf(stderr, "ndl-train: %s%s%s\n", what ? what : "", what ? ": " : "", ndl_last_error());
  return code;
}

/* Exit code for a failure while training: the status decides. */
static int train_exit_code(ndl_status s) {
  switch (s) {
    case NDL_ERR_NUMERIC: return EXIT_NUMERIC;
    case NDL_ERR_DIST: return EXIT_DIST;
    case NDL_ERR_IO: case NDL_ERR_FORMAT: case NDL_ERR_MISMATCH: return EXIT_STATE; /* checkpoint writes */
    default: return 1;
  }
}

static void print_epoch(ndl_trainer *t, double test_err, double test_loss) {
  const ndl_epoch_metrics *m = &t->cur;
  double tr_err = m->seen ? (double)m->errors / (double)m->seen : 0.0;
  double tr_loss = m->seen ? m->loss_sum / (double)m->seen : 0.0;
  double sps = m->seconds > 0 ? (double)m->seen / m->seconds : 0.0;
  if (t->rank != 0) return;
  printf("epoch %lld/%lld train_err %.4f train_loss %.4f test_err %.4f test_loss %.4f time %.2fs %.0f samples/s\n",
         (long long)t->epoch + 1, (long long)t->cfg.epochs, tr_err, tr_loss, test_err, test_loss, m->seconds, sps);
  fflush(stdout);
  if (t->log) {
    fprintf(t->log,
            "{\"epoch\":%lld,\"epochs\":%lld,\"step\":%lld,\"train_err\":%.6f,\"train_loss\":%.6f,"
            "\"test_err\":%.6f,\"test_loss\":%.6f,\"time_s\":%.4f,\"samples_per_s\":%.1f}\n",
            (long long)t->epoch + 1, (long long)t->cfg.epochs, (long long)t->step, tr_err, tr_loss, test_err,
            test_loss, m->seconds, sps);
    fflush(t->log);
  }
}

static int run(ndl_trainer *t, const ndl_train_config *cfg) {
  ndl_status s;
  if (cfg->eval_only) {
    double err, loss;
    if ((s = ndl_trainer_evaluate(t, &t->test, &err, &loss)) != NDL_OK) return report(1, "evaluation");
    printf("eval test_err %.4f test_loss %.4f samples %lld\n", err, loss, (long long)t->test.n);
    return 0;
  }
  for (; t->epoch < cfg->epochs; t->epoch++) {
    ndl_epoch_end end;
    if ((s = ndl_trainer_run_epoch(t, &end)) != NDL_OK) return report(train_exit_code(s), NULL);
    double err, loss;
    if ((s = ndl_trainer_evaluate(t, &t->test, &err, &loss)) != NDL_OK) return report(1, "evaluation");
    print_epoch(t, err, loss);
    if (end == NDL_EPOCH_STOPPED) break;
    if (cfg->checkpoint_dir) {
      t->epoch++; /* the checkpoint resumes at the next epoch */
      s = ndl_trainer_checkpoint(t);
      t->epoch--;
      if (s != NDL_OK) return report(EXIT_STATE, NULL);
    }
  }
  if (cfg->save && t->rank == 0 && ndl_weights_save(cfg->save, &t->env) != NDL_OK) return report(EXIT_STATE, NULL);
  return 0;
}

int main(int argc, char **argv) {
  ndl_train_config cfg;
  char err[512];
  ndl_config_defaults(&cfg);
  int pr = ndl_config_parse(argc, argv, &cfg, err, sizeof err);
  if (pr == 1) return 0;
  if (pr == 2) {
    fprintf(stderr, "ndl-train: %s\n", err);
    return EXIT_USAGE;
  }
  if (cfg.device == NDL_DEVICE_CUDA) {
    fprintf(stderr, "ndl-train: --device cuda: this build has no CUDA backend; use --device cpu\n");
    return EXIT_USAGE;
  }
  if (cfg.resume && cfg.load) {
    fprintf(stderr, "ndl-train: --resume and --load: give one of them (a checkpoint holds the weights)\n");
    return EXIT_USAGE;
  }
  ndl_threads_configure(cfg.threads, 1);
  if (cfg.checkpoint_dir && ndl_checkpoint_prepare_dir(cfg.checkpoint_dir) != NDL_OK)
    return report(EXIT_STATE, "--checkpoint-dir");
  ndl_trainer t;
  ndl_status s = ndl_trainer_init(&t, &cfg, 1);
  int code = 0;
  if (s != NDL_OK) code = report(s == NDL_ERR_IO || s == NDL_ERR_FORMAT ? EXIT_DATA : 1, NULL);
  if (!code && cfg.load && ndl_weights_load(cfg.load, &t.env) != NDL_OK) code = report(EXIT_STATE, "--load");
  if (!code && cfg.resume && ndl_trainer_resume(&t, cfg.resume) != NDL_OK) code = report(EXIT_STATE, "--resume");
  if (!code && cfg.log && !(t.log = fopen(cfg.log, "w"))) {
    fprintf(stderr, "ndl-train: --log %s: cannot open for writing\n", cfg.log);
    code = EXIT_USAGE;
  }
  if (!code) code = run(&t, &cfg);
  if (t.log) fclose(t.log);
  ndl_trainer_free(&t);
  return code;
}
