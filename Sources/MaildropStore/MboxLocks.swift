// The delivery locks of an mbox: an NFS-safe dotlock and an fcntl lock, as Debian's MDAs take them.
import Glibc

/// Linux open file description locks (kernel 3.15+, same numbers on every architecture; glibc
/// only names them under _GNU_SOURCE, which Swift's Glibc module does not define).
private let F_OFD_SETLK: Int32 = 37

/// The locks every program that writes /var/mail/USER honours on Debian, held while we scan
/// (fcntl read lock) and while we compact (fcntl write lock):
/// - Postfix local(8): `mailbox_delivery_lock = fcntl, dotlock` (Debian's main.cf default, from
///   `postconf -l`), taking the dotlock first.
/// - procmail: dotlock (`PATH.lock`) and fcntl (Debian's build: "Locking strategies:
///   dotlocking, fcntl()").
/// - Dovecot: `mbox_read_locks = fcntl`, `mbox_write_locks = dotlock fcntl`; mutt: fcntl and
///   dotlock (mutt_dotlock).
/// None of them uses flock(2) on Linux, which is why the session lock is a flock: it keeps other
/// drac-pop3d sessions out without holding up deliveries during an idle POP3 session.
///
/// The fcntl lock is an open file description lock (F_OFD_SETLK): it conflicts with the classic
/// F_SETLK locks of the MDAs just the same, but it belongs to our descriptor rather than to the
/// process, so it is not dropped when some other descriptor of the file is closed in this
/// process, and two sessions of one process exclude each other. Kernels without OFD locks get
/// classic F_SETLK locks. F_SETLKW is not used: we poll F_SETLK so that the wait has a deadline.
final class DeliveryLocks {
    private var dotlock: Dotlock?
    private let fd: Int32
    private var useOFD: Bool
    private var held = false

    private init(dotlock: Dotlock?, fd: Int32, useOFD: Bool) {
        self.dotlock = dotlock
        self.fd = fd
        self.useOFD = useOFD
    }

    deinit { release() }

    /// Takes the dotlock (unless the directory does not allow one: then a warning, fcntl only),
    /// then the fcntl lock, both within `options.dotlockTimeout` seconds.
    static func acquire(mboxPath: String, fd: Int32, exclusive: Bool, options: MaildropOptions,
                        warnings: inout [String]) throws(MaildropError) -> DeliveryLocks {
        let deadline = monotonicSeconds() + max(0, options.dotlockTimeout)
        let dot = try Dotlock.acquire(mboxPath: mboxPath, deadline: deadline, timeout: options.dotlockTimeout,
                                      staleAge: options.staleDotlockAge, warnings: &warnings)
        let locks = DeliveryLocks(dotlock: dot, fd: fd, useOFD: true)
        try locks.lockFcntl(exclusive: exclusive, deadline: deadline, mboxPath: mboxPath, timeout: options.dotlockTimeout)
        return locks
    }

    private func setLock(type: Int32) -> Int32 {
        var fl = flock()
        fl.l_type = Int16(type)
        fl.l_whence = Int16(SEEK_SET)
        fl.l_start = 0
        fl.l_len = 0        // to the end of the file, however long it grows
        fl.l_pid = 0        // required for OFD locks
        while true {
            if fcntl(fd, useOFD ? F_OFD_SETLK : F_SETLK, &fl) == 0 { return 0 }
            let e = errno
            if e == EINTR { continue }
            if e == EINVAL && useOFD {
                useOFD = false
                continue
            }
            return e
        }
    }

    private func lockFcntl(exclusive: Bool, deadline: Double, mboxPath: String, timeout: Double) throws(MaildropError) {
        var pause = 0.01
        while true {
            let e = setLock(type: exclusive ? F_WRLCK : F_RDLCK)
            if e == 0 {
                held = true
                return
            }
            guard e == EAGAIN || e == EACCES else {
                release()
                throw ioError(mboxPath, "fcntl lock", e)
            }
            let now = monotonicSeconds()
            if now >= deadline {
                release()
                throw .io("\(mboxPath): locked by another program (fcntl lock held for more than \(timeout) s)")
            }
            sleepSeconds(min(pause, deadline - now))
            pause = min(pause * 2, 0.1)
        }
    }

    /// Keeps the dotlock fresh during a long compaction (others remove dotlocks older than a
    /// few minutes as stale: Postfix `stale_lock_time` is 500 s, ours `staleDotlockAge`).
    func touch() { dotlock?.touch() }

    /// fcntl first, then the dotlock: the reverse of taking them. Idempotent.
    func release() {
        if held {
            _ = setLock(type: F_UNLCK)
            held = false
        }
        dotlock?.release()
        dotlock = nil
    }
}

/// `PATH.lock`, made the NFS-safe way (link(2) NOTES; as Postfix dot_lockfile, procmail and
/// liblockfile do): write a unique file next to it, link() it to `PATH.lock`, and trust the
/// link count of our file rather than link()'s return value (over NFS the reply to a link()
/// that worked can be lost and the retry reports EEXIST).
struct Dotlock {
    let lockPath: String
    let dev: UInt64
    let ino: UInt64

    /// The lock, or nil when the directory does not let us create one (Debian's /var/mail is
    /// root:mail 2775: a server not running as root or group mail cannot); a warning says so.
    static func acquire(mboxPath: String, deadline: Double, timeout: Double, staleAge: Double,
                        warnings: inout [String]) throws(MaildropError) -> Dotlock? {
        let lockPath = mboxPath + ".lock"
        let slash = mboxPath.lastIndex(of: "/")
        let dir = slash.map { mboxPath[..<$0].isEmpty ? "/" : String(mboxPath[..<$0]) } ?? "."
        let baseName = slash.map { String(mboxPath[mboxPath.index(after: $0)...]) } ?? mboxPath
        let pid = getpid()
        let host = hostName()
        var pause = 0.01
        var quickRetries = 0

        func impossible(_ e: Int32) -> Dotlock? {
            warnings.append("dotlock not possible in \(dir): \(errnoText(e)); used fcntl only")
            return nil
        }

        while true {
            let n = UInt32.random(in: 0...UInt32.max)
            var tempName = "\(baseName).lock.\(host).\(pid).\(n)"
            if tempName.utf8.count > 255 { tempName = ".dlock.\(pid).\(n)" }
            let tempPath = dir == "/" ? "/" + tempName : dir + "/" + tempName
            let t = sysOpen(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644)
            if t < 0 {
                let e = -t
                if e == EEXIST { continue }
                if e == EACCES || e == EPERM || e == EROFS { return impossible(e) }
                throw ioError(tempPath, "cannot create dotlock file", e)
            }
            // The pid lets others tell a stale lock from a live one (Dovecot and liblockfile
            // write theirs the same way).
            let content = Array("\(pid)\n".utf8)
            let w = content.withUnsafeBytes { pwriteAll(t, $0, 0) }
            _ = Glibc.close(t)
            if w != 0 {
                unlink(tempPath)
                throw ioError(tempPath, "cannot write dotlock file", -w)
            }
            let linkErr = link(tempPath, lockPath) == 0 ? 0 : errno
            let st = sysStat(tempPath, followLinks: false)
            unlink(tempPath)
            if let st, st.st_nlink == 2 {
                return Dotlock(lockPath: lockPath, dev: UInt64(st.st_dev), ino: UInt64(st.st_ino))
            }
            if linkErr == ENAMETOOLONG || linkErr == EACCES || linkErr == EPERM || linkErr == EROFS {
                return impossible(linkErr)
            }
            if linkErr != EEXIST && linkErr != 0 { throw ioError(lockPath, "cannot create dotlock", linkErr) }

            // Someone holds it. A stale lock removed (or one that vanished meanwhile) is retried
            // at once, a bounded number of times.
            if removeIfStale(lockPath: lockPath, staleAge: staleAge, warnings: &warnings) && quickRetries < 10 {
                quickRetries += 1
                continue
            }
            let now = monotonicSeconds()
            if now >= deadline {
                throw .io("\(mboxPath): locked by another program (dotlock \(lockPath) held for more than \(timeout) s)")
            }
            sleepSeconds(min(pause, deadline - now))
            pause = min(pause * 2, 0.1)
        }
    }

    /// Removes a dotlock older than `staleAge` seconds whose content is not the pid of a live
    /// process (a crashed MDA's). True when it is gone (removed, or vanished meanwhile).
    static func removeIfStale(lockPath: String, staleAge: Double, warnings: inout [String]) -> Bool {
        guard let st = sysStat(lockPath, followLinks: false) else { return errno == ENOENT }
        let mtime = Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
        let age = wallSeconds() - mtime
        guard age > staleAge else { return false }
        if let pid = lockPid(lockPath), pid > 0, kill(pid, 0) == 0 || errno == EPERM { return false }
        // Still the same lock file? (Narrows the race with another process that removed the
        // stale lock and made its own meanwhile.)
        guard let again = sysStat(lockPath, followLinks: false), again.st_ino == st.st_ino, again.st_dev == st.st_dev,
              again.st_mtim.tv_sec == st.st_mtim.tv_sec, again.st_mtim.tv_nsec == st.st_mtim.tv_nsec else { return false }
        if unlink(lockPath) == 0 || errno == ENOENT {
            warnings.append("removed stale dotlock \(lockPath) (\(Int(age)) s old)")
            return true
        }
        return false
    }

    /// The pid written in a dotlock, if it holds one (Postfix leaves its dotlocks empty).
    private static func lockPid(_ path: String) -> pid_t? {
        let fd = sysOpen(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { _ = Glibc.close(fd) }
        var buf = [UInt8](repeating: 0, count: 32)
        let n = buf.withUnsafeMutableBytes { preadFull(fd, $0, 0) }
        guard n > 0 else { return nil }
        let text = buf[0..<n].prefix { $0 != 0x0A && $0 != 0x0D }
            .drop { $0 == 0x20 }
        guard !text.isEmpty, text.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), text.count <= 9 else { return nil }
        return pid_t(String(decoding: text, as: UTF8.self))
    }

    private static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "localhost" }
        let raw = buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        // Only what is safe in a file name.
        let safe = raw.unicodeScalars.map { s -> Character in
            s.isASCII && (s.properties.isAlphabetic || ("0"..."9").contains(s) || s == "-" || s == ".") ? Character(s) : "_"
        }
        let name = String(safe.prefix(64))
        return name.isEmpty ? "localhost" : name
    }

    func touch() {
        _ = utimensat(AT_FDCWD, lockPath, nil, AT_SYMLINK_NOFOLLOW)
    }

    /// Removes the lock if it is still ours (if another program removed it as stale and made
    /// its own, that one is left alone).
    func release() {
        guard let st = sysStat(lockPath, followLinks: false), UInt64(st.st_dev) == dev, UInt64(st.st_ino) == ino else { return }
        unlink(lockPath)
    }
}
