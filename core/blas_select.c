/* blas_select.c: OpenBLAS kernel choice and thread-safety check. OpenBLAS 0.3.21 falls back to its
 * Prescott (SSE3) kernel on CPUs it does not know (4x slower sgemm on an AVX-512 Xeon); it picks the
 * kernel when the library loads, before main, from OPENBLAS_CORETYPE if set. So main calls
 * ndl_blas_select first: on a weaker kernel than the CPU supports it sets the variable and
 * re-executes itself once (the variable it sets stops any second round). A value the user set is
 * never touched. Non-x86 CPUs and non-DYNAMIC_ARCH builds keep the loaded kernel. */
#include "core/blas_select.h"

#include <cblas.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

/* Set on re-exec to "<kernel OpenBLAS detected>:<kernel chosen>", for ndl_blas_describe. */
#define NDL_BLAS_MARKER "NDL_BLAS_AUTO"
/* Test hook: pretend OpenBLAS loaded this kernel (exercises the re-exec on any x86 CPU). */
#define NDL_BLAS_PRETEND "NDL_BLAS_PRETEND_LOADED"

/* The order OpenBLAS itself falls back through for Intel CPUs (dynamic.c); later = faster. */
static const char *const ladder[] = {"Prescott", "Core2",   "Penryn",   "Dunnington", "Nehalem",
                                     "Sandybridge", "Haswell", "SkylakeX", "Cooperlake"};
enum { LADDER_N = sizeof ladder / sizeof ladder[0], RANK_HASWELL = 6 };

int ndl_blas_core_rank(const char *name) {
  if (!name) return -1;
  if (!strcasecmp(name, "Zen")) return RANK_HASWELL; /* AVX2 + FMA kernels */
  for (int i = 0; i < LADDER_N; i++)
    if (!strcasecmp(name, ladder[i])) return i;
  return -1;
}

const char *ndl_blas_best_core(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init(); /* the checks below include the OS's XSAVE support (XCR0) */
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512cd")) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5))) return "Cooperlake"; /* AVX512_BF16 */
    return "SkylakeX";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  if (__builtin_cpu_supports("avx")) return "Sandybridge";
  if (__builtin_cpu_supports("sse4.2")) return "Nehalem";
  if (__builtin_cpu_supports("ssse3")) return "Core2";
  return "Prescott";
#else
  return NULL;
#endif
}

const char *ndl_blas_upgrade(const char *loaded, const char *best) {
  int have = ndl_blas_core_rank(loaded), want = ndl_blas_core_rank(best);
  return have >= 0 && want > have ? ladder[want] : NULL;
}

static int dynamic_arch(void) {
  const char *config = openblas_get_config();
  return config && strstr(config, "DYNAMIC_ARCH") != NULL;
}

static const char *loaded_core(void) {
  const char *pretend = getenv(NDL_BLAS_PRETEND);
  return pretend && pretend[0] ? pretend : openblas_get_corename();
}

void ndl_blas_select(char **argv) {
  if (getenv("OPENBLAS_CORETYPE") || !dynamic_arch()) return;
  const char *loaded = loaded_core(), *want = ndl_blas_upgrade(loaded, ndl_blas_best_core());
  if (!want) return;
  char marker[128];
  snprintf(marker, sizeof marker, "%s:%s", loaded, want);
  if (setenv(NDL_BLAS_MARKER, marker, 1) || setenv("OPENBLAS_CORETYPE", want, 1)) return;
  unsetenv(NDL_BLAS_PRETEND);
  fflush(NULL);
  execv("/proc/self/exe", argv);
  /* exec failed (no /proc?): carry on with the loaded kernel; describe says so */
  unsetenv("OPENBLAS_CORETYPE");
  snprintf(marker, sizeof marker, "%s:exec failed", loaded);
  setenv(NDL_BLAS_MARKER, marker, 1);
}

/* How the running kernel came about, for ndl_blas_describe. */
static void describe_choice(const char *running, char *buf, size_t len) {
  const char *user = getenv("OPENBLAS_CORETYPE"), *marker = getenv(NDL_BLAS_MARKER);
  const char *colon = marker ? strchr(marker, ':') : NULL;
  const char *best = ndl_blas_best_core();
  if (user && colon && !strcasecmp(colon + 1, user)) {
    snprintf(buf, len, "chosen by needle-c for this CPU; OpenBLAS detected %.*s", (int)(colon - marker),
             marker);
  } else if (user) {
    snprintf(buf, len, "OPENBLAS_CORETYPE=%s set by the user", user);
  } else if (colon && !strcmp(colon + 1, "exec failed")) {
    snprintf(buf, len, "OpenBLAS's detection; re-executing on %s failed", best ? best : "?");
  } else if (!dynamic_arch() && ndl_blas_upgrade(running, best)) {
    snprintf(buf, len, "not a DYNAMIC_ARCH build: the CPU supports %s", best);
  } else {
    snprintf(buf, len, "OpenBLAS's detection");
  }
}

char *ndl_blas_describe(char *buf, size_t len) {
  if (!buf || !len) return buf;
  const char *config = openblas_get_config(), *running = openblas_get_corename();
  int vlen = 0; /* "OpenBLAS 0.3.21" = the first two words of the config string */
  if (config) {
    const char *sp = strchr(config, ' ');
    vlen = sp ? (int)(strcspn(sp + 1, " ") + (size_t)(sp + 1 - config)) : (int)strlen(config);
  }
  char how[192];
  describe_choice(running, how, sizeof how);
  snprintf(buf, len, "%.*s, kernel %s (%s), concurrent sgemm %s", vlen, config ? config : "BLAS", running,
           how, ndl_blas_concurrent_ok() ? "yes" : "no (serialized)");
  return buf;
}

static atomic_int g_concurrent = -2; /* -2: not computed yet */
static atomic_int g_override = -1;

int ndl_blas_concurrent_ok(void) {
  int o = atomic_load(&g_override);
  if (o >= 0) return o;
  int v = atomic_load(&g_concurrent);
  if (v == -2) {
    const char *serial = getenv("NDL_BLAS_SERIAL");
    v = openblas_get_parallel() == 1 && !(serial && !strcmp(serial, "1"));
    atomic_store(&g_concurrent, v);
  }
  return v;
}

void ndl_blas_set_concurrent(int on) { atomic_store(&g_override, on < 0 ? -1 : on != 0); }
