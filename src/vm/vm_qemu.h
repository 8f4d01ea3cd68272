/* vm_qemu.h - what a checkpoint learns of a QEMU process, and starting one
 * again from its saved arguments. */
#ifndef HS_VM_QEMU_H
#define HS_VM_QEMU_H

#include <stddef.h>
#include <sys/types.h>

#include "vm/qmp.h"
#include "vm/vm.h"

/* pid's binary, working directory and arguments, into c; the arguments a
 * restore added (-incoming, our monitor) are left out, so a restored guest
 * checkpoints like the original.  0 or -errno with err. */
int vm_qemu_read_process(pid_t pid, struct vm_checkpoint *c, char *err, size_t errlen);

/* Finds each of c's volumes (c->vols[i].name set) among the guest's disks
 * (query-block: NBD disks whose export is the volume) and sets its device.
 * Refused when a volume is not a disk of the guest, or when the guest has a
 * writable disk that is not among the volumes (its contents would not
 * match the saved memory). */
int vm_qemu_match_disks(struct qmp *q, struct vm_checkpoint *c, char *err, size_t errlen);

/* Starts c's QEMU in the background (new session, in c->qemu_cwd, output to
 * log_path) with -incoming defer and a QMP monitor of ours on qmp_path.
 * 0 with *pid, or -errno with err. */
int vm_qemu_start(const struct vm_checkpoint *c, const char *qmp_path, const char *log_path,
		  pid_t *pid, char *err, size_t errlen);

#endif
