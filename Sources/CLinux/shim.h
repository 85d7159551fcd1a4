/* Linux interfaces that Glibc's Swift module does not export: per-thread filesystem identity
 * and preadv2(2) with RWF_NOWAIT. */
#ifndef DRAC_CLINUX_SHIM_H
#define DRAC_CLINUX_SHIM_H
#include <sys/fsuid.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <errno.h>

/* glibc declares preadv2 only under _GNU_SOURCE, which the Glibc module is not built with. */
extern ssize_t preadv2(int fd, const struct iovec *iov, int iovcnt, off_t offset, int flags);
#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

/* Reads what the page cache already holds of [offset, offset+length) without waiting for the
 * disk (Linux >= 4.14 for buffered reads): the number of octets read, or -errno; -EAGAIN when
 * the data is not in memory, -EOPNOTSUPP (or -EINVAL on old kernels) where the filesystem
 * cannot tell. */
static inline long drac_pread_nowait(int fd, void *buffer, unsigned long length, long long offset) {
    struct iovec iov;
    iov.iov_base = buffer;
    iov.iov_len = length;
    ssize_t n = preadv2(fd, &iov, 1, (off_t)offset, RWF_NOWAIT);
    return n < 0 ? -(long)errno : (long)n;
}
#endif
