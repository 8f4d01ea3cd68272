/* progress.c - see progress.h. */
#include "cli/progress.h"

#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli/client.h"

void progress_draw(void *arg, json_object *ev)
{
	struct progress *pr = arg;
	struct winsize ws;
	double pos = (double)cli_get_int(ev, "position");
	double size = (double)cli_get_int(ev, "size");
	double secs = cli_get_double(ev, "seconds");
	const char *phase = cli_get_str(ev, "phase");
	double rate = secs > 0 ? pos / secs : 0;
	double frac = size > 0 ? pos / size : 0;
	int width = 80, bar;
	char eta[32] = "--:--";

	if (!pr->show)
		return;
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 40)
		width = ws.ws_col;
	if (rate > 0 && size > pos) {
		long s = (long)((size - pos) / rate);
		snprintf(eta, sizeof(eta), "%ld:%02ld", s / 60, s % 60);
	}
	bar = width - 46 - (phase ? 11 : 0);
	if (bar > 50)
		bar = 50;
	fprintf(stderr, "\r%-10s%s[", phase ? phase : "", phase ? " " : "");
	for (int i = 0; i < bar; i++)
		fputc(i < (int)(frac * bar) ? '#' : '.', stderr);
	fprintf(stderr, "] %3.0f%% %7.1f MB/s ETA %s  ", frac * 100, rate / 1e6, eta);
	fflush(stderr);
	pr->drawn = true;
}

void progress_end(struct progress *pr)
{
	if (pr->drawn)
		fputc('\n', stderr);
	pr->drawn = false;
}
