/* dynlib.c: dlopen over a list of names (or the one path a test hook gives), then dlsym of a table.
 * Leaves out: unloading (the libraries live until exit) and the once-only guard (the callers' own
 * pthread_once). */
#include "core/dynlib.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *open_first(const char *what, const char *hook_env, const char *const *names, size_t n,
                        char *why, size_t why_len) {
  const char *hook = hook_env ? getenv(hook_env) : NULL;
  if (hook && *hook) {
    void *h = dlopen(hook, RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(why, why_len, "cannot load %s (%s=%s): %s", what, hook_env, hook, dlerror());
    return h;
  }
  char first[256] = "";
  for (size_t i = 0; i < n; i++) {
    void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (h) return h;
    if (!first[0]) snprintf(first, sizeof first, "%s", dlerror()); /* the soname's reason is the telling one */
  }
  snprintf(why, why_len, "cannot load %s (%s): %s", what, n ? names[0] : "no name", first);
  return NULL;
}

void *ndl_dynlib_load(const char *what, const char *hook_env, const char *const *names, size_t n,
                      const ndl_dynlib_sym *syms, size_t nsyms, char *why, size_t why_len) {
  void *h = open_first(what, hook_env, names, n, why, why_len);
  if (!h) return NULL;
  for (size_t i = 0; i < nsyms; i++) {
    void *p = dlsym(h, syms[i].name);
    if (!p) {
      snprintf(why, why_len, "%s: the loaded library has no %s", what, syms[i].name);
      for (size_t j = 0; j < nsyms; j++) memset(syms[j].slot, 0, sizeof p);
      dlclose(h);
      return NULL;
    }
    memcpy(syms[i].slot, &p, sizeof p); /* every slot is a function pointer, the size of void * */
  }
  return h;
}
