// The lock set every map writer and reader takes: flock(2) and a whole-file fcntl(2) lock.
import CBerkeleyDB
import Glibc

/// Locks a map file the way the programs that share it do:
/// - `flock()` on the file: Postfix locks maps with flock on Linux (its INTERNAL_LOCK), and our
///   own programs (rpc.dracd, dracctl, drac-smtpd) use it as their mutual exclusion.
/// - a whole-file `fcntl()` lock: DRAC 1.12 takes `F_SETLKW` write locks, and sendmail's map
///   locking falls back to fcntl where flock is not used.
/// A writer holds both exclusively; a reader holds both shared.
///
/// POSIX record locks belong to the process and vanish when *any* descriptor of the file is
/// closed, including the one Berkeley DB holds; callers therefore take the fcntl lock after
/// (re)opening the database and never close a handle mid-operation.
final class MapLock {
    let path: String
    let exclusive: Bool
    private var fd: Int32 = -1
    /// Identity of the file `fd` is open on (never changes for one descriptor).
    private var fdIdentity: (dev: UInt64, ino: UInt64)? = nil
    private var flocked = false
    private var fcntlLocked = false

    /// Opens the lock descriptor. With `create`, the file is created (mode 0644) when missing.
    init(path: String, exclusive: Bool, create: Bool) throws(MapError) {
        self.path = path
        self.exclusive = exclusive
        try openDescriptor(create: create)
    }

    deinit {
        unlockAll()
        if fd >= 0 { Glibc.close(fd) }
    }

    private func openDescriptor(create: Bool) throws(MapError) {
        var flags = (exclusive ? O_RDWR : O_RDONLY) | O_CLOEXEC
        if create { flags |= O_CREAT }
        let f = Glibc.open(path, flags, 0o644)
        if f < 0 {
            let e = errno
            throw e == ENOENT ? MapError(code: .notFound, path: path, message: "map file does not exist")
                              : MapError.system(e, path: path, doing: "cannot open map")
        }
        fd = f
        var dev: UInt64 = 0, ino: UInt64 = 0
        var size: Int64 = 0
        if drac_identity(f, "", DRAC_AT_EMPTY_PATH, &dev, &ino, &size) == 0 { fdIdentity = (dev, ino) }
    }

    /// Takes the flock, making sure it is on the file now at `path` (a replaced file, for
    /// instance one rebuilt by postmap, is followed). Returns the identity it checked, which the
    /// caller may reuse instead of asking again.
    @discardableResult
    func acquireFlock(wait: Bool = true) throws(MapError) -> (dev: UInt64, ino: UInt64, size: Int64)? {
        for _ in 0..<8 {
            while drac_flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB)) != 0 {
                if errno == EWOULDBLOCK && !wait { throw MapError(code: .busy, path: path, message: "locked by a writer") }
                if errno != EINTR { throw MapError.system(errno, path: path, doing: "flock") }
            }
            flocked = true
            let now = identity()
            if let mine = fdIdentity, let now, now.dev == mine.dev, now.ino == mine.ino { return now }
            // The name now points at another file: lock that one instead.
            _ = drac_flock(fd, LOCK_UN)
            flocked = false
            Glibc.close(fd)
            fd = -1
            try openDescriptor(create: false)
        }
        throw MapError(code: .busy, path: path, message: "map file keeps being replaced")
    }

    /// Takes (or re-takes, after a descriptor close dropped it) the whole-file fcntl lock.
    func acquireFcntl(wait: Bool = true) throws(MapError) {
        while drac_fcntl_lock(fd, exclusive ? 1 : 0, wait ? 1 : 0) != 0 {
            if (errno == EAGAIN || errno == EACCES) && !wait { throw MapError(code: .busy, path: path, message: "locked by a writer") }
            if errno != EINTR { throw MapError.system(errno, path: path, doing: "fcntl lock") }
        }
        fcntlLocked = true
    }

    func unlockAll() {
        if fcntlLocked {
            _ = drac_fcntl_unlock(fd)
            fcntlLocked = false
        }
        if flocked {
            _ = drac_flock(fd, LOCK_UN)
            flocked = false
        }
    }

    /// Device, inode, size, mtime and ctime of the file at `path`. Reads the timestamps, so it is
    /// only the fallback where the file system has no user xattrs (see `FileIdentity`).
    func fileStamp() -> FileStamp? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileStamp(st)
    }

    /// Device, inode and size of the file at `path`, without touching its timestamps.
    func identity() -> (dev: UInt64, ino: UInt64, size: Int64)? {
        var dev: UInt64 = 0, ino: UInt64 = 0
        var size: Int64 = 0
        guard drac_identity(AT_FDCWD, path, 0, &dev, &ino, &size) == 0 else { return nil }
        return (dev, ino, size)
    }

    /// The write generation our short-lived writers keep in an xattr; nil without xattr support.
    func generation() -> Int64? {
        let g = drac_get_generation(fd)
        return g < 0 ? nil : g
    }

    /// Moves the generation on; false if the file system has no user xattrs.
    func bumpGeneration() -> Bool {
        let g = drac_get_generation(fd)
        guard g >= 0 else { return false }
        return drac_set_generation(fd, g + 1) == 0
    }

}

/// What identifies the map's contents for a long-lived writer's cache check: device, inode and
/// size (no timestamps) plus the generation our other writers bump. Where the file system has
/// no user xattrs, the full stamp with timestamps is used instead.
enum FileIdentity: Equatable {
    case generation(dev: UInt64, ino: UInt64, size: Int64, generation: Int64)
    case stamp(FileStamp)

    /// `identity`: device, inode and size just read by `acquireFlock`, if any.
    init?(_ lock: MapLock, identity known: (dev: UInt64, ino: UInt64, size: Int64)? = nil) {
        if let g = lock.generation(), let id = known ?? lock.identity() {
            self = .generation(dev: id.dev, ino: id.ino, size: id.size, generation: g)
        } else if let s = lock.fileStamp() {
            self = .stamp(s)
        } else {
            return nil
        }
    }
}

/// What changes when another process writes the map. Compared before each write batch.
struct FileStamp: Equatable {
    var dev: UInt64, ino: UInt64, size: Int64
    var mtimeSec: Int, mtimeNsec: Int, ctimeSec: Int, ctimeNsec: Int
    init(_ st: stat) {
        dev = UInt64(st.st_dev); ino = UInt64(st.st_ino); size = Int64(st.st_size)
        mtimeSec = st.st_mtim.tv_sec; mtimeNsec = st.st_mtim.tv_nsec
        ctimeSec = st.st_ctim.tv_sec; ctimeNsec = st.st_ctim.tv_nsec
    }
}
