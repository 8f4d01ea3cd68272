/* gnutls_load.c - see gnutls_load.h. */
#include "tls/gnutls_load.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct gnutls_table gtls;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char load_error[512];

static void load(void)
{
	void *h = dlopen("libgnutls.so.30", RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		snprintf(load_error, sizeof(load_error),
			 "cannot load GnuTLS (%s); install the libgnutls30 package", dlerror());
		return;
	}
#define HS_GNUTLS_RESOLVE(name)                                                            \
	if (!load_error[0] && !(gtls.name = (__typeof__(gtls.name))dlsym(h, "gnutls_" #name))) \
		snprintf(load_error, sizeof(load_error),                                        \
			 "libgnutls.so.30 lacks gnutls_" #name ": a newer libgnutls30 is needed");
	HS_GNUTLS_FUNCTIONS(HS_GNUTLS_RESOLVE)
#undef HS_GNUTLS_RESOLVE
	if (!load_error[0] && !(gtls.free = dlsym(h, "gnutls_free")))
		snprintf(load_error, sizeof(load_error), "libgnutls.so.30 lacks gnutls_free");
	/* the handle stays open for the process's life: the table points into it */
}

int gnutls_load(char *why, size_t len)
{
	pthread_once(&once, load);
	if (load_error[0]) {
		snprintf(why, len, "%s", load_error);
		return -1;
	}
	return 0;
}
