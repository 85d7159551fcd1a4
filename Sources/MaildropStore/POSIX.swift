// POSIX plumbing for the maildrop store: owned descriptors, EINTR-safe I/O, directory listing.
import Glibc

/// The text of a system error number, as strerror(3) gives it.
func errnoText(_ e: Int32) -> String { String(cString: strerror(e)) }

/// `.io("PATH: WHAT: strerror")`, the shape every I/O failure is logged in.
func ioError(_ path: String, _ what: String, _ e: Int32) -> MaildropError {
    .io("\(path): \(what): \(errnoText(e))")
}

/// One open file descriptor, closed exactly once: by `close()` or in `deinit`.
///
/// Sessions and message sources may share one (an mbox session and the sources reading it);
/// whoever closes it sets `raw` to -1, so a holder that reads later gets EBADF-like failure from
/// us instead of reading whatever file the kernel gave the recycled number to.
final class Descriptor {
    private(set) var raw: Int32

    init(_ raw: Int32) { self.raw = raw }

    var isOpen: Bool { raw >= 0 }

    func close() {
        guard raw >= 0 else { return }
        // Linux closes the descriptor even when close(2) reports EINTR: never retry.
        _ = Glibc.close(raw)
        raw = -1
    }

    deinit { close() }
}

/// A file name as stored on disk: bytes, not necessarily UTF-8.
typealias FileName = [UInt8]

extension Array where Element == UInt8 {
    /// The name for logs (invalid UTF-8 shown with replacement characters).
    var printable: String { String(decoding: self, as: UTF8.self) }
}

/// Calls `body` with a NUL-terminated copy of `name`.
func withCName<R>(_ name: FileName, _ body: (UnsafePointer<CChar>) -> R) -> R {
    var z = name
    z.append(0)
    return z.withUnsafeBufferPointer { buf in
        buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) { body($0) }
    }
}

/// open(2), retried on EINTR. Returns the descriptor or -errno.
func sysOpen(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Int32 {
    while true {
        let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
        if fd >= 0 { return fd }
        if errno != EINTR { return -errno }
    }
}

/// openat(2) relative to a directory descriptor, retried on EINTR. Returns the descriptor or -errno.
func sysOpenAt(_ dirfd: Int32, _ name: FileName, _ flags: Int32, _ mode: mode_t = 0) -> Int32 {
    withCName(name) { cname in
        while true {
            let fd = Glibc.openat(dirfd, cname, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { return -errno }
        }
    }
}

/// fstat(2); nil with errno set on failure.
func sysFstat(_ fd: Int32) -> stat? {
    var st = stat()
    return fstat(fd, &st) == 0 ? st : nil
}

/// stat(2) or lstat(2) of a path; nil with errno set on failure.
func sysStat(_ path: String, followLinks: Bool = true) -> stat? {
    var st = stat()
    let r = followLinks ? stat(path, &st) : lstat(path, &st)
    return r == 0 ? st : nil
}

/// fstatat(2) without following a symbolic link; nil with errno set on failure.
func sysStatAt(_ dirfd: Int32, _ name: FileName) -> stat? {
    var st = stat()
    let r = withCName(name) { fstatat(dirfd, $0, &st, AT_SYMLINK_NOFOLLOW) }
    return r == 0 ? st : nil
}

func isRegular(_ st: stat) -> Bool { (st.st_mode & S_IFMT) == S_IFREG }
func isDirectory(_ st: stat) -> Bool { (st.st_mode & S_IFMT) == S_IFDIR }

/// Reads up to `buffer.count` octets at `offset`, retrying short reads and EINTR; fewer only at
/// end of file. Returns the count or -errno.
func preadFull(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, _ offset: Int64) -> Int {
    var done = 0
    while done < buffer.count {
        let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
        if n > 0 { done += n; continue }
        if n == 0 { break }
        if errno == EINTR { continue }
        return -Int(errno)
    }
    return done
}

/// Writes all of `buffer` at `offset`. Returns 0 or -errno.
func pwriteAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ offset: Int64) -> Int32 {
    var done = 0
    while done < buffer.count {
        let n = pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
        if n > 0 { done += n; continue }
        if n < 0 && errno == EINTR { continue }
        return n < 0 ? -errno : -EIO
    }
    return 0
}

/// fsync(2), retried on EINTR. Returns 0 or -errno.
func fsyncRetrying(_ fd: Int32) -> Int32 {
    while fsync(fd) != 0 {
        if errno != EINTR { return -errno }
    }
    return 0
}

/// One directory entry: its name and `d_type` (DT_UNKNOWN on file systems that do not fill it).
struct DirEntry {
    var name: FileName
    var type: UInt8
}

/// Lists the directory open as `dirfd` (the descriptor itself stays open and unmoved: a private
/// descriptor of "." is handed to fdopendir, which owns and closes it). "." and ".." are left out.
func listDirectory(_ dirfd: Int32, path: String) throws(MaildropError) -> [DirEntry] {
    let own = sysOpenAt(dirfd, Array(".".utf8), O_RDONLY | O_DIRECTORY)
    if own < 0 { throw ioError(path, "cannot open directory", -own) }
    guard let dir = fdopendir(own) else {
        let e = errno
        _ = Glibc.close(own)
        throw ioError(path, "fdopendir", e)
    }
    defer { closedir(dir) }
    var result: [DirEntry] = []
    while true {
        errno = 0
        guard let ent = readdir(dir) else {
            if errno != 0 { throw ioError(path, "readdir", errno) }
            break
        }
        let type = ent.pointee.d_type
        let name: FileName = withUnsafeBytes(of: ent.pointee.d_name) { raw in
            Array(raw[0..<(raw.firstIndex(of: 0) ?? raw.count)])
        }
        if name == [0x2E] || name == [0x2E, 0x2E] { continue }
        result.append(DirEntry(name: name, type: type))
    }
    return result
}

/// Creates `path` and any missing parents with `mode` (like `mkdir -p`). Returns the list of
/// directories it created, outermost first, so the caller can hand them to their owner.
func makeDirectories(_ path: String, mode: mode_t) throws(MaildropError) -> [String] {
    var created: [String] = []
    var prefix = ""
    for component in path.split(separator: "/", omittingEmptySubsequences: true) {
        prefix += "/" + component
        if mkdir(prefix, mode) == 0 {
            created.append(prefix)
            continue
        }
        let e = errno
        if e == EEXIST {
            // Something is there: it must be a directory (a symbolic link to one is fine: an
            // administrator may have linked ~/Maildir elsewhere).
            guard let st = sysStat(prefix), isDirectory(st) else { throw ioError(prefix, "not a directory", ENOTDIR) }
            continue
        }
        throw ioError(prefix, "cannot create directory", e)
    }
    return created
}

/// Seconds on the monotonic clock (deadlines that wall-clock steps cannot move).
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Seconds on the wall clock (file times are wall-clock).
func wallSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func sleepSeconds(_ s: Double) {
    guard s > 0 else { return }
    var ts = timespec(tv_sec: Int(s), tv_nsec: Int((s - Double(Int(s))) * 1e9))
    var rem = timespec()
    while nanosleep(&ts, &rem) != 0 && errno == EINTR { ts = rem }
}

/// Lowercase hexadecimal of some octets (MD5 digests as unique-ids).
func hexString<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}
