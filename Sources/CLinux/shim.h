/* Linux interfaces that Glibc's Swift module does not export: per-thread filesystem identity,
 * preadv2(2) with RWF_NOWAIT, and recvmmsg(2). */
#ifndef DRAC_CLINUX_SHIM_H
#define DRAC_CLINUX_SHIM_H
#include <sys/fsuid.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/syscall.h>

/* glibc declares preadv2 only under _GNU_SOURCE, which the Glibc module is not built with. */
extern ssize_t preadv2(int fd, const struct iovec *iov, int iovcnt, off_t offset, int flags);
#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

/* One datagram of a batch: `data`/`capacity` are the caller's buffer; the rest is filled in. */
struct drac_datagram {
    void *data;
    unsigned int capacity;
    unsigned int length;
    int truncated;              /* the datagram was longer than `capacity` (MSG_TRUNC) */
    unsigned int fromlen;
    struct sockaddr_storage from;
};

/* struct mmsghdr, which glibc declares only under _GNU_SOURCE. */
struct drac_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};

#define DRAC_MAX_DATAGRAM_BATCH 64

/* Receives up to `count` (at most DRAC_MAX_DATAGRAM_BATCH) waiting datagrams in one system call
 * without blocking: how many were received, or -errno (-EAGAIN when none was waiting). */
static inline int drac_recv_datagrams(int fd, struct drac_datagram *batch, unsigned int count) {
    struct drac_mmsghdr headers[DRAC_MAX_DATAGRAM_BATCH];
    struct iovec iov[DRAC_MAX_DATAGRAM_BATCH];
    if (count > DRAC_MAX_DATAGRAM_BATCH) count = DRAC_MAX_DATAGRAM_BATCH;
    memset(headers, 0, sizeof(headers[0]) * count);
    for (unsigned int i = 0; i < count; i++) {
        iov[i].iov_base = batch[i].data;
        iov[i].iov_len = batch[i].capacity;
        headers[i].msg_hdr.msg_name = &batch[i].from;
        headers[i].msg_hdr.msg_namelen = sizeof(batch[i].from);
        headers[i].msg_hdr.msg_iov = &iov[i];
        headers[i].msg_hdr.msg_iovlen = 1;
    }
    long n = syscall(SYS_recvmmsg, fd, headers, count, MSG_DONTWAIT, (void *)0);
    if (n < 0) return -errno;
    for (long i = 0; i < n; i++) {
        batch[i].length = headers[i].msg_len;
        batch[i].truncated = (headers[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
        batch[i].fromlen = headers[i].msg_hdr.msg_namelen;
    }
    return (int)n;
}

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
