/* transport.c - see transport.h. */
#include "transport.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/scm.h"

void ctl_reader_init(struct ctl_reader *rd, int fd)
{
	rd->fd = fd;
	rd->start = rd->end = 0;
	rd->passed_fd = -1;
}

/* recvmsg that also collects a passed descriptor (keeping at most one). */
static ssize_t recv_some(struct ctl_reader *rd, void *buf, size_t len)
{
	union {
		char space[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} ctrl;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctrl.space,
		.msg_controllen = sizeof(ctrl.space),
	};
	ssize_t n;

	do
		n = recvmsg(rd->fd, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int fds[4];
		memcpy(fds, CMSG_DATA(c), sizeof(int) * (nfds > 4 ? 4 : nfds));
		for (size_t i = 0; i < nfds && i < 4; i++) {
			if (rd->passed_fd < 0)
				rd->passed_fd = fds[i];
			else
				close(fds[i]); /* one is all a request may bring */
		}
	}
	return n;
}

long ctl_read_line(struct ctl_reader *rd, char *line, size_t cap)
{
	size_t used = 0;

	for (;;) {
		while (rd->start < rd->end) {
			char c = rd->buf[rd->start++];
			if (c == '\n') {
				line[used] = '\0';
				return (long)used;
			}
			if (used + 1 >= cap) {
				/* drop the rest of this over-long line */
				while (rd->start < rd->end && rd->buf[rd->start] != '\n')
					rd->start++;
				return -EMSGSIZE;
			}
			line[used++] = c;
		}
		ssize_t n = recv_some(rd, rd->buf, sizeof(rd->buf));
		if (n < 0)
			return n;
		if (n == 0)
			return used ? -ECONNRESET : 0;
		rd->start = 0;
		rd->end = (size_t)n;
	}
}

int ctl_reader_take_fd(struct ctl_reader *rd)
{
	int fd = rd->passed_fd;
	rd->passed_fd = -1;
	return fd;
}

void ctl_reader_close_fd(struct ctl_reader *rd)
{
	if (rd->passed_fd >= 0)
		close(rd->passed_fd);
	rd->passed_fd = -1;
}

int ctl_send_json(int sock, json_object *obj, int fd)
{
	const char *s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
	size_t len = strlen(s), off = 0;
	union scm_one_fd ctrl;

	while (off <= len) {
		/* the newline goes with the last piece */
		struct iovec iov[2] = {
			{ .iov_base = (char *)s + off, .iov_len = len - off },
			{ .iov_base = "\n", .iov_len = 1 },
		};
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
		if (fd >= 0 && off == 0)
			scm_attach_fd(&msg, &ctrl, fd);
		ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (size_t)n;
		fd = -1;
	}
	return 0;
}
