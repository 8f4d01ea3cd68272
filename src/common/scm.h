/* scm.h - passing one file descriptor along with a message (SCM_RIGHTS).
 *
 * The control protocol hands the daemon a backup's output descriptor, and
 * QMP's getfd hands QEMU the checkpoint's memory file; both attach it to
 * the first sendmsg of their message. */
#ifndef HS_SCM_H
#define HS_SCM_H

#include <string.h>
#include <sys/socket.h>

/* Room for one descriptor's control message, aligned as cmsghdr wants. */
union scm_one_fd {
	char space[CMSG_SPACE(sizeof(int))];
	struct cmsghdr align;
};

/* Attaches fd to mh, using room (which must outlive the sendmsg). */
static inline void scm_attach_fd(struct msghdr *mh, union scm_one_fd *room, int fd)
{
	memset(room, 0, sizeof(*room));
	mh->msg_control = room->space;
	mh->msg_controllen = sizeof(room->space);
	struct cmsghdr *c = CMSG_FIRSTHDR(mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
}

#endif
