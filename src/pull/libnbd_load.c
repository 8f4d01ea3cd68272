/* libnbd_load.c - see libnbd_load.h. */
#include "pull/libnbd_load.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct libnbd_table libnbd;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char load_error[512];

static void load(void)
{
	void *h = dlopen("libnbd.so.0", RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		snprintf(load_error, sizeof(load_error),
			 "cannot load libnbd (%s); install the libnbd0 package", dlerror());
		return;
	}
#define HS_LIBNBD_RESOLVE(name)                                                          \
	if (!load_error[0] && !(libnbd.name = (__typeof__(libnbd.name))dlsym(h, "nbd_" #name))) \
		snprintf(load_error, sizeof(load_error),                                         \
			 "libnbd.so.0 lacks nbd_" #name ": a newer libnbd0 is needed");
	HS_LIBNBD_FUNCTIONS(HS_LIBNBD_RESOLVE)
#undef HS_LIBNBD_RESOLVE
	/* the handle stays open for the process's life: the table points into it */
}

int libnbd_load(char *why, size_t len)
{
	pthread_once(&once, load);
	if (load_error[0]) {
		snprintf(why, len, "%s", load_error);
		return -1;
	}
	return 0;
}
