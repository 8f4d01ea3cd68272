/* nbd_errno.c - the one place an errno becomes an NBD error value.
 *
 * NBD error values look like Linux errnos but are a closed set; anything the
 * protocol has no word for is an I/O error to the client.  A consumed
 * snapshot range (-ENODATA) and a deleted snapshot (-ESTALE) read as I/O
 * errors: the data is not there and will not come back. */
#include <errno.h>

#include "nbd_internal.h"

uint32_t nbd_errno(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return NBD_SUCCESS;
	case EPERM:
	case EROFS:
	case EACCES:
		return NBD_EPERM;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
	case ERANGE:
		return NBD_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case ENOTSUP:
		return NBD_ENOTSUP;
	case ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default: /* EIO, ENODATA, ESTALE and whatever else */
		return NBD_EIO;
	}
}
