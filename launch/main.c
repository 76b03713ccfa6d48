/* main.c: the ndl-train program: parse options, load data, build or load the model, resume, train
 * with one stdout line per epoch (rank 0), save, and map every failure to SPEC §4's exit codes with
 * one message line naming the file, option or step: 2 usage, 3 data, 4 checkpoint/weights, 5
 * distributed, 6 NaN/Inf loss (1 for an internal failure such as running out of memory). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/blas_select.h"
#include "dist/dist.h"
#include "launch/checkpoint.h"
#include "launch/config.h"
#include "launch/device_select.h"
#include "launch/jsonlog.h"
#include "launch/profile_report.h"
#include "launch/threads.h"
#include "launch/trainer.h"
#include "launch/weights.h"

enum { EXIT_USAGE = 2, EXIT_DATA = 3, EXIT_STATE = 4, EXIT_DIST = 5, EXIT_NUMERIC = 6 };

static ndl_dist *g_dist; /* for messages only: every rank prefixes its lines when world > 1 */

static int report(int code, const char *what) {
  if (g_dist && ndl_dist_world(g_dist) > 1)
    ndl_dist_log_all(g_dist, "%s%s%s", what ? what : "", what ? ": " : "", ndl_last_error());
  else
    fprintf(stderr, "ndl-train: %s%s%s\n", what ? what : "", what ? ": " : "", ndl_last_error());
  return code;
}

/* Startup failures may hit some ranks only: every rank learns the worst exit code, and the ranks
 * that failed have already printed why. World 1: code itself. */
static int agree_exit(ndl_dist *d, int code) {
  int world = ndl_dist_world(d);
  if (world == 1) return code;
  int32_t mine = code, *all = ndl_malloc((size_t)world * sizeof *all); /* any world size */
  if (!all) ndl_errorf(NDL_ERR_NOMEM, "out of memory for the startup status of %d ranks", world);
  if (!all || ndl_dist_allgather(d, &mine, all, sizeof mine, "startup status allgather") != NDL_OK) {
    ndl_dist_log_all(d, "%s", ndl_last_error());
    ndl_dist_abort(d, EXIT_DIST);
  }
  int worst = 0, first = -1;
  for (int r = 0; r < world; r++) {
    if (all[r] > worst) worst = all[r];
    if (all[r] && first < 0) first = r;
  }
  ndl_free(all);
  if (worst && !code) ndl_dist_log0(d, "stopping: rank %d failed at startup (exit %d)", first, worst);
  return worst;
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

/* profile: the epoch's --profile JSON object for the --log line, or NULL. */
static void print_epoch(ndl_trainer *t, double test_err, double test_loss, const char *profile) {
  const ndl_epoch_metrics *m = &t->cur;
  double tr_err = m->seen ? (double)m->errors / (double)m->seen : 0.0;
  double tr_loss = m->seen ? m->loss_sum / (double)m->seen : 0.0;
  double sps = m->seconds > 0 ? (double)m->seen / m->seconds : 0.0;
  if (t->rank != 0) return;
  printf("epoch %lld/%lld train_err %.4f train_loss %.4f test_err %.4f test_loss %.4f time %.2fs %.0f samples/s\n",
         (long long)t->epoch + 1, (long long)t->cfg.epochs, tr_err, tr_loss, test_err, test_loss, m->seconds, sps);
  fflush(stdout);
  if (t->log) {
    ndl_jsonlog_line(t->log,
            "{\"epoch\":%lld,\"epochs\":%lld,\"step\":%lld,\"train_err\":%.6f,\"train_loss\":%.6f,"
            "\"test_err\":%.6f,\"test_loss\":%.6f,\"time_s\":%.4f,\"samples_per_s\":%.1f,"
            "\"ranks\":%d,\"allreduce_s\":%.4f,\"allreduce_bytes_per_step\":%lld%s%s}",
            (long long)t->epoch + 1, (long long)t->cfg.epochs, (long long)t->step, tr_err, tr_loss, test_err,
            test_loss, m->seconds, sps, t->world, m->allreduce_seconds,
            t->world > 1 ? (long long)t->env.params.numel * 4 : 0LL, profile ? ",\"profile\":" : "",
            profile ? profile : "");
  }
}

/* A failure while training: collective failures end the whole job from here (exit 5); the others
 * are the same on every rank (the loss and the checkpoint outcome are shared), so rank 0 reports. */
static int fail_training(ndl_trainer *t, ndl_status s) {
  if (s == NDL_ERR_DIST && t->world > 1) {
    ndl_dist_log_all(t->dist, "%s", ndl_last_error());
    ndl_dist_abort(t->dist, EXIT_DIST);
  }
  int code = train_exit_code(s);
  if (t->world > 1 && code == 1) { /* rank-local (out of memory): end the job */
    ndl_dist_log_all(t->dist, "%s", ndl_last_error());
    ndl_dist_abort(t->dist, code);
  }
  if (t->rank == 0) report(code, NULL);
  return code;
}

/* rep: --profile's report (NULL without): a window per epoch line and one at the end. */
static int run(ndl_trainer *t, const ndl_train_config *cfg, ndl_profile_report *rep) {
  ndl_status s;
  int code = 0;
  if (cfg->eval_only) {
    double err, loss;
    if ((s = ndl_trainer_evaluate(t, &t->test, &err, &loss)) != NDL_OK) return fail_training(t, s);
    if (t->rank == 0)
      printf("eval test_err %.4f test_loss %.4f samples %lld\n", err, loss, (long long)t->test.n);
    return 0;
  }
  for (; t->epoch < cfg->epochs; t->epoch++) {
    ndl_epoch_end end;
    int64_t before = t->step;
    if ((s = ndl_trainer_run_epoch(t, &end)) != NDL_OK) return fail_training(t, s);
    if (end == NDL_EPOCH_STOPPED && t->step == before) break; /* resumed at --max-steps: no step, no line */
    double err, loss;
    if ((s = ndl_trainer_evaluate(t, &t->test, &err, &loss)) != NDL_OK) return fail_training(t, s);
    ndl_watchdog_phase(t->wd, NDL_PHASE_OUTPUT, t->step, t->epoch + 1);
    char prof[2048];
    if (rep && (s = ndl_profile_report_window(rep, t->dist, t->epoch + 1)) != NDL_OK) return fail_training(t, s);
    if (rep) ndl_profile_report_json(rep, prof, sizeof prof);
    print_epoch(t, err, loss, rep ? prof : NULL);
    if (end == NDL_EPOCH_STOPPED) break;
    if (cfg->checkpoint_dir) {
      t->epoch++; /* the checkpoint resumes at the next epoch */
      s = ndl_trainer_checkpoint(t);
      t->epoch--;
      if (s != NDL_OK) return fail_training(t, s);
    }
  }
  ndl_watchdog_phase(t->wd, NDL_PHASE_OUTPUT, t->step, t->epoch);
  if (cfg->save && t->rank == 0 && ndl_weights_save(cfg->save, &t->env) != NDL_OK) code = report(EXIT_STATE, NULL);
  if (rep && (s = ndl_profile_report_window(rep, t->dist, 0)) != NDL_OK) return fail_training(t, s);
  if (rep && t->rank == 0) ndl_profile_report_print(rep, stdout);
  return agree_exit(t->dist, code); /* every rank ends with rank 0's --save outcome */
}

int main(int argc, char **argv) {
  ndl_blas_select(argv); /* first: may re-execute this program on a faster OpenBLAS kernel */
  ndl_train_config cfg;
  char err[512];
  ndl_config_defaults(&cfg);
  int pr = ndl_config_parse(argc, argv, &cfg, err, sizeof err);
  if (pr == 1) return 0;
  if (pr == 2) {
    fprintf(stderr, "ndl-train: %s\n", err);
    return EXIT_USAGE;
  }
  if (cfg.resume && cfg.eval_only) {
    fprintf(stderr, "ndl-train: --eval-only with --resume: evaluate a checkpoint with --load DIR/ckpt-<step>.safetensors\n");
    return EXIT_USAGE;
  }
  if (cfg.resume && cfg.load) {
    fprintf(stderr, "ndl-train: --resume and --load: give one of them (a checkpoint holds the weights)\n");
    return EXIT_USAGE;
  }
  ndl_dist *dist = NULL;
  if (ndl_dist_init(&dist, cfg.timeout) != NDL_OK) return report(EXIT_DIST, NULL);
  g_dist = dist;
  ndl_threads_configure(cfg.threads, ndl_dist_local_size(dist));
  ndl_watchdog *wd = NULL; /* a stall anywhere from here on ends the run with exit 5 */
  if (ndl_watchdog_start(&wd, dist, cfg.timeout) != NDL_OK) return report(1, NULL);
  char blas[384];
  if (cfg.verbose)
    ndl_dist_log_all(ndl_dist_world(dist) > 1 ? dist : NULL, "blas: %s", ndl_blas_describe(blas, sizeof blas));
  int code = 0;
  const ndl_backend *backend = NULL; /* --device: the trainer's context is created on it */
  if (ndl_device_resolve(&cfg, dist, &backend) != NDL_OK) code = report(EXIT_USAGE, NULL);
  if (!code && cfg.verbose)
    ndl_dist_log_all(ndl_dist_world(dist) > 1 ? dist : NULL, "device: %s (%s), collectives: %s%s", backend->name,
                     cfg.device == NDL_DEVICE_CUDA ? "--device cuda" : "--device cpu",
                     cfg.collectives == NDL_COLL_NCCL ? "nccl" : "mpi", cfg.cuda_graph ? ", --cuda-graph" : "");
  ndl_trainer t;
  if (!code && cfg.checkpoint_dir && ndl_dist_rank(dist) == 0 &&
      ndl_checkpoint_prepare_dir(cfg.checkpoint_dir, cfg.resume) != NDL_OK)
    code = report(EXIT_STATE, "--checkpoint-dir");
  ndl_status s = code ? NDL_OK : ndl_trainer_init(&t, &cfg, dist, 1);
  if (code) memset(&t, 0, sizeof t);
  t.wd = wd;
  if (!code && s != NDL_OK)
    code = report(s == NDL_ERR_IO || s == NDL_ERR_FORMAT ? EXIT_DATA : s == NDL_ERR_DIST ? EXIT_DIST : 1, NULL);
  if (!code && cfg.load && ndl_weights_load(cfg.load, &t.env) != NDL_OK) code = report(EXIT_STATE, "--load");
  /* rank 0 reads the checkpoint (it is the one that writes them); ndl_trainer_sync_start shares it */
  if (!code && cfg.resume && ndl_dist_rank(dist) == 0 && ndl_trainer_resume(&t, cfg.resume) != NDL_OK)
    code = report(EXIT_STATE, "--resume");
  if (!code && cfg.log && ndl_dist_rank(dist) == 0 && ndl_jsonlog_open(cfg.log, cfg.resume != NULL, &t.log) != NDL_OK)
    code = report(EXIT_USAGE, "--log"); /* a resumed run appends */
  ndl_profile_report rep = {0};
  if (!code && cfg.profile && ndl_profile_report_init(&rep, ndl_dist_world(dist)) != NDL_OK) code = report(1, NULL);
  code = agree_exit(dist, code);
  if (!code && (s = ndl_trainer_sync_start(&t)) != NDL_OK) {
    if (ndl_dist_rank(dist) == 0) report(EXIT_DIST, NULL);
    code = EXIT_DIST;
  }
  if (!code && rep.prof) { /* from here the watchdog's phases and dist's collectives are timed */
    t.prof = rep.prof;
    ndl_watchdog_set_profile(wd, rep.prof);
    ndl_dist_set_profile(dist, rep.prof);
    ndl_profile_report_begin(&rep);
  }
  if (!code) code = run(&t, &cfg, rep.prof ? &rep : NULL);
  ndl_watchdog_set_profile(wd, NULL);
  ndl_dist_set_profile(dist, NULL);
  ndl_profile_report_free(&rep);
  if (t.log) fclose(t.log);
  ndl_watchdog_stop(wd);
  ndl_trainer_free(&t);
  ndl_dist_free(dist);
  return code;
}
