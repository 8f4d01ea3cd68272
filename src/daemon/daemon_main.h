/* daemon_main.h - the entry point of `hotsnap daemon`. */
#ifndef HS_DAEMON_MAIN_H
#define HS_DAEMON_MAIN_H

/* argv[0] is "daemon"; state_dir is the default from the global options.
 * Returns the process exit status. */
int daemon_main(const char *state_dir, int argc, char **argv);

#endif
