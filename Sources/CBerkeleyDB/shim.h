/* Berkeley DB 5.3: the map file. Handle methods are function-pointer members; these static
 * inline wrappers keep the Swift side short and typed. No environment: like DRAC 1.12, each
 * process has its own handle and cache, so readers reopen to see other processes' writes. */
#include <db.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <linux/stat.h>
#include <sys/inotify.h>
#include <pthread.h>

/* Device, inode and size of a file, without asking for its timestamps: on kernels with
 * multigrain timestamps (6.13+) reading mtime/ctime makes the next write take a fine-grained
 * timestamp, which dirties the inode on every write. Returns 0 or -1 with errno. */
static inline int drac_identity(int dirfd, const char *path, int flags,
                                unsigned long long *dev, unsigned long long *ino, long long *size) {
    struct statx stx;
    memset(&stx, 0, sizeof stx);
    if (syscall(SYS_statx, dirfd, path, flags, STATX_INO | STATX_SIZE, &stx) != 0) return -1;
    *dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
    *ino = stx.stx_ino;
    *size = (long long)stx.stx_size;
    return 0;
}

#define DRAC_GENERATION_XATTR "user.drac.generation"
static const int DRAC_AT_EMPTY_PATH = 0x1000;   /* AT_EMPTY_PATH, a GNU extension */

/* The map's write generation, bumped by our short-lived writers (dracctl) after each write.
 * Returns the value, 0 when never set, -1 when the file system has no user xattrs. */
static inline long long drac_get_generation(int fd) {
    char buf[32];
    ssize_t n = fgetxattr(fd, DRAC_GENERATION_XATTR, buf, sizeof buf - 1);
    if (n < 0) return (errno == ENODATA) ? 0 : -1;
    buf[n] = 0;
    return atoll(buf);
}

static inline int drac_set_generation(int fd, long long value) {
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld", value);
    return fsetxattr(fd, DRAC_GENERATION_XATTR, buf, (size_t)n, 0);
}

/* flock(2) is shadowed in Swift by `struct flock`; these keep the lock code readable. */
static inline int drac_flock(int fd, int op) { return flock(fd, op); }
static inline int drac_fcntl_lock(int fd, int exclusive, int wait) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = exclusive ? F_WRLCK : F_RDLCK;
    fl.l_whence = SEEK_SET;   /* l_start = l_len = 0: the whole file */
    return fcntl(fd, wait ? F_SETLKW : F_SETLK, &fl);
}
static inline int drac_fcntl_unlock(int fd) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_UNLCK;
    fl.l_whence = SEEK_SET;
    return fcntl(fd, F_SETLK, &fl);
}
/* Sets only the mtime of a file (atime untouched). */
static inline int drac_set_mtime(const char *path, long sec, long nsec) {
    struct timespec ts[2];
    ts[0].tv_sec = 0; ts[0].tv_nsec = UTIME_OMIT;
    ts[1].tv_sec = sec; ts[1].tv_nsec = nsec;
    return utimensat(AT_FDCWD, path, ts, 0);
}

static inline void drac_db_silent(const DB_ENV *env, const char *prefix, const char *msg) {
    (void)env; (void)prefix; (void)msg;
}

static inline int drac_db_open(DB **out, const char *path, int hash, u_int32_t flags, int mode) {
    DB *db = NULL;
    int rc = db_create(&db, NULL, 0);
    if (rc != 0) return rc;
    /* No messages on stderr: callers report errors themselves (db_strerror of the code). */
    db->set_errcall(db, drac_db_silent);
    if (flags & DB_CREATE) {
        rc = db->set_pagesize(db, 512);   /* DRAC 1.12 used 512-byte pages */
        if (rc != 0) { db->close(db, 0); return rc; }
    }
    if (flags & DB_RDONLY) {
        /* A lookup handle lives for one read: no memory mapping per open, because each
           munmap at close makes the kernel interrupt every CPU running one of the caller's
           threads (TLB shootdown). A 64 KB cache comes from the heap. */
        rc = db->set_cachesize(db, 0, 64 * 1024, 1);
        if (rc != 0) { db->close(db, 0); return rc; }
        /* Read-only files are mapped by default, and unmapped at close: the same shootdown. */
        flags |= DB_NOMMAP;
    }
    rc = db->open(db, NULL, path, NULL, hash ? DB_HASH : DB_BTREE, flags, mode);
    if (rc != 0) { db->close(db, DB_NOSYNC); return rc; }
    *out = db;
    return 0;
}

static inline int drac_db_close(DB *db, int nosync) { return db->close(db, nosync ? DB_NOSYNC : 0); }
static inline int drac_db_sync(DB *db) { return db->sync(db, 0); }
static inline int drac_db_fd(DB *db, int *fd) { return db->fd(db, fd); }

static inline int drac_db_put(DB *db, const void *k, u_int32_t klen, const void *v, u_int32_t vlen) {
    DBT key, val;
    memset(&key, 0, sizeof key); memset(&val, 0, sizeof val);
    key.data = (void *)k; key.size = klen;
    val.data = (void *)v; val.size = vlen;
    return db->put(db, NULL, &key, &val, 0);
}

static inline int drac_db_del(DB *db, const void *k, u_int32_t klen) {
    DBT key;
    memset(&key, 0, sizeof key);
    key.data = (void *)k; key.size = klen;
    return db->del(db, NULL, &key, 0);
}

/* Looks a key up; on success *val and *vlen point into the handle's memory until its next call. */
static inline int drac_db_get(DB *db, const void *k, u_int32_t klen, const void **val, u_int32_t *vlen) {
    DBT key, v;
    memset(&key, 0, sizeof key); memset(&v, 0, sizeof v);
    key.data = (void *)k; key.size = klen;
    int rc = db->get(db, NULL, &key, &v, 0);
    if (rc == 0) { *val = v.data; *vlen = v.size; }
    return rc;
}

static inline int drac_db_cursor(DB *db, DBC **out) { return db->cursor(db, NULL, out, 0); }
static inline int drac_dbc_close(DBC *c) { return c->close(c); }

/* Positions or advances a cursor. For DB_SET / DB_SET_RANGE, (k, klen) is the search key.
 * On success the key and value point into the cursor's memory until its next call. */
static inline int drac_dbc_get(DBC *c, u_int32_t op, const void *k, u_int32_t klen,
                               const void **kout, u_int32_t *koutlen, const void **vout, u_int32_t *voutlen) {
    DBT key, v;
    memset(&key, 0, sizeof key); memset(&v, 0, sizeof v);
    if (k != NULL) { key.data = (void *)k; key.size = klen; }
    int rc = c->get(c, &key, &v, op);
    if (rc == 0) { *kout = key.data; *koutlen = key.size; *vout = v.data; *voutlen = v.size; }
    return rc;
}

static inline const char *drac_db_strerror(int rc) { return db_strerror(rc); }

static const u_int32_t DRAC_DB_CREATE = DB_CREATE;
static const u_int32_t DRAC_DB_RDONLY = DB_RDONLY;
static const u_int32_t DRAC_DB_TRUNCATE = DB_TRUNCATE;
static const u_int32_t DRAC_DB_FIRST = DB_FIRST;
static const u_int32_t DRAC_DB_NEXT = DB_NEXT;
static const u_int32_t DRAC_DB_SET = DB_SET;
static const u_int32_t DRAC_DB_SET_RANGE = DB_SET_RANGE;
static const int DRAC_DB_NOTFOUND = DB_NOTFOUND;

/* Change notification for long-lived readers: every write to the file (in place or not), an
 * attribute change, a rename or removal queues an event, without anyone reading timestamps. */
static inline int drac_inotify_open(void) { return inotify_init1(IN_NONBLOCK | IN_CLOEXEC); }
static inline int drac_inotify_watch(int fd, const char *path) {
    return inotify_add_watch(fd, path, IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVE_SELF | IN_DELETE_SELF);
}
static inline int drac_inotify_unwatch(int fd, int wd) { return inotify_rm_watch(fd, wd); }
/* Reads every queued event: 1 if there was any (or the queue overflowed, or an error), 0 if
 * none. */
static inline int drac_inotify_drain(int fd) {
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int any = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) { any = 1; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return any;
        return 1;
    }
}

/* A plain mutex for readers shared between threads (try-lock for event loops). */
typedef struct { pthread_mutex_t m; } drac_mutex;
static inline drac_mutex *drac_mutex_new(void) {
    drac_mutex *x = malloc(sizeof *x);
    if (x) pthread_mutex_init(&x->m, NULL);
    return x;
}
static inline void drac_mutex_free(drac_mutex *x) { pthread_mutex_destroy(&x->m); free(x); }
static inline void drac_mutex_lock(drac_mutex *x) { pthread_mutex_lock(&x->m); }
static inline int drac_mutex_trylock(drac_mutex *x) { return pthread_mutex_trylock(&x->m); }
static inline void drac_mutex_unlock(drac_mutex *x) { pthread_mutex_unlock(&x->m); }
