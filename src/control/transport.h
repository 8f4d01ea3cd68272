/* transport.h - lines and descriptors over the control socket. */
#ifndef HS_CONTROL_TRANSPORT_H
#define HS_CONTROL_TRANSPORT_H

#include <json-c/json.h>
#include <stddef.h>

struct ctl_reader {
	int fd;
	char buf[8192];
	size_t start, end;
	int passed_fd; /* a descriptor received with the data, or -1 */
};

void ctl_reader_init(struct ctl_reader *rd, int fd);
/* Reads one line (without newline) into line (cap bytes, NUL-terminated).
 * Returns its length, 0 at a clean end of stream, -EMSGSIZE when the line
 * is longer than cap - 1, or -errno. */
long ctl_read_line(struct ctl_reader *rd, char *line, size_t cap);
/* Takes the descriptor that came with the data read so far (or -1). */
int ctl_reader_take_fd(struct ctl_reader *rd);
void ctl_reader_close_fd(struct ctl_reader *rd);

/* Sends obj as one line; passes fd along when fd >= 0.  0 or -errno. */
int ctl_send_json(int sock, json_object *obj, int fd);

#endif
