/* checkpoint_dir.c: the checkpoint directory: exact checkpoint names, listing, pruning to the two
 * newest, removing temporary files of writes a SIGKILL interrupted, and refusing a new run in a
 * directory that holds an earlier run's checkpoints. A temporary file counts as stale when its pid is
 * not alive, or is alive but runs another program (a reused pid). Leaves out: locking against two live
 * runs sharing a directory (the second one is refused at start because the first one's files exist). */
#include "launch/checkpoint_dir.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "core/alloc.h"
#include "launch/checkpoint.h"

/* ckpt-<10 digits>.safetensors at the start of name: the step, and *rest after it; else -1. */
static int64_t parse_prefix(const char *name, const char **rest) {
  if (strncmp(name, "ckpt-", 5) != 0) return -1;
  int64_t s = 0;
  for (int i = 5; i < 15; i++) {
    if (name[i] < '0' || name[i] > '9') return -1;
    s = s * 10 + (name[i] - '0');
  }
  if (strncmp(name + 15, ".safetensors", 12) != 0) return -1;
  *rest = name + 27;
  return s;
}

int64_t ndl_ckpt_name_step(const char *name) {
  const char *rest;
  int64_t s = parse_prefix(name, &rest);
  return s >= 0 && *rest == '\0' ? s : -1;
}

int64_t ndl_ckpt_tmp_pid(const char *name) {
  const char *rest;
  if (parse_prefix(name, &rest) < 0 || strncmp(rest, ".tmp.", 5) != 0) return -1;
  rest += 5;
  int64_t pid = 0;
  if (!*rest || *rest == '0') return -1;
  for (; *rest; rest++) {
    if (*rest < '0' || *rest > '9' || pid > INT_MAX / 10) return -1;
    pid = pid * 10 + (*rest - '0');
  }
  return pid;
}

static int cmp_desc(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x < y) - (x > y);
}

int ndl_ckpt_list(const char *dir, int64_t **steps) {
  *steps = NULL;
  DIR *d = opendir(dir);
  if (!d) return -1;
  size_t n = 0, cap = 0;
  int64_t *v = NULL;
  struct dirent *de;
  while ((de = readdir(d))) {
    int64_t s = ndl_ckpt_name_step(de->d_name);
    if (s < 0) continue;
    if (n == cap) {
      size_t nc = cap ? 2 * cap : 16;
      int64_t *q = (int64_t *)ndl_realloc(v, cap * sizeof *v, nc * sizeof *v);
      if (!q) break; /* out of memory: list what fits */
      v = q;
      cap = nc;
    }
    v[n++] = s;
  }
  closedir(d);
  if (n > (size_t)INT_MAX) n = (size_t)INT_MAX;
  if (n) qsort(v, n, sizeof *v, cmp_desc);
  *steps = v;
  return (int)n;
}

/* Whether pid's process is gone or runs another program than this one. */
static int pid_is_stale(int64_t pid) {
  if (pid == (int64_t)getpid()) return 0;
  if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return 1;
  char link[64], theirs[4096], ours[4096];
  snprintf(link, sizeof link, "/proc/%lld/exe", (long long)pid);
  ssize_t a = readlink(link, theirs, sizeof theirs - 1), b = readlink("/proc/self/exe", ours, sizeof ours - 1);
  if (a < 0 || b < 0) return 0; /* cannot tell: keep the file */
  theirs[a] = ours[b] = '\0';
  return strcmp(theirs, ours) != 0;
}

void ndl_ckpt_remove_stale_tmp(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    int64_t pid = ndl_ckpt_tmp_pid(de->d_name);
    if (pid < 0 || !pid_is_stale(pid)) continue;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) < (int)sizeof path) unlink(path);
  }
  closedir(d);
}

void ndl_ckpt_prune(const char *dir, int64_t newest) {
  int64_t *steps;
  int n = ndl_ckpt_list(dir, &steps);
  int64_t second = -1;
  for (int i = 0; i < n && second < 0; i++)
    if (steps[i] < newest) second = steps[i];
  for (int i = 0; i < n && second >= 0; i++) {
    if (steps[i] >= second) continue;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/ckpt-%010lld.safetensors", dir, (long long)steps[i]) < (int)sizeof path)
      unlink(path);
  }
  ndl_free(steps);
  ndl_ckpt_remove_stale_tmp(dir);
}

/* Whether paths a and b name the same directory. */
static int same_dir(const char *a, const char *b) {
  struct stat x, y;
  return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

ndl_status ndl_checkpoint_prepare_dir(const char *dir, const char *resume) {
  if (mkdir(dir, 0777) != 0 && errno != EEXIST)
    return ndl_errorf(NDL_ERR_IO, "%s: cannot create checkpoint directory: %s", dir, strerror(errno));
  struct stat sb;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return ndl_errorf(NDL_ERR_IO, "%s: not a directory", dir);
  if (access(dir, W_OK | X_OK) != 0)
    return ndl_errorf(NDL_ERR_IO, "%s: checkpoint directory is not writable: %s", dir, strerror(errno));
  ndl_ckpt_remove_stale_tmp(dir);
  if (resume && same_dir(dir, resume)) return NDL_OK;
  int64_t *steps;
  int n = ndl_ckpt_list(dir, &steps), err = errno;
  int64_t newest = n > 0 ? steps[0] : -1;
  ndl_free(steps);
  if (n < 0) return ndl_errorf(NDL_ERR_IO, "%s: cannot list checkpoint directory: %s", dir, strerror(err));
  if (n > 0)
    return ndl_errorf(NDL_ERR_MISMATCH,
                      "%s holds checkpoints of an earlier run (ckpt-%010lld.safetensors): --resume %s to "
                      "continue, or use an empty directory",
                      dir, (long long)newest, dir);
  return NDL_OK;
}
