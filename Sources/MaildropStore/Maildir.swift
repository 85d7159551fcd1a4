// Maildir maildrops: the session lock, new/ -> cur/, sizes from ",W=", unique-ids from base names.
import Crypto
import Glibc
import POP3Core

/// File name rules of Maildir (https://cr.yp.to/proto/maildir.html) and of its Maildir++ /
/// Dovecot extensions: `BASE[,S=size][,W=vsize][:2,FLAGS]`.
enum MaildirName {
    static let comma: UInt8 = 0x2C
    static let colon: UInt8 = 0x3A

    /// The part before the info (":2,FLAGS"); fields of it are separated by ",".
    static func beforeInfo(_ name: FileName) -> ArraySlice<UInt8> {
        name[..<(name.firstIndex(of: colon) ?? name.endIndex)]
    }

    /// The base name: up to the first "," or ":". Mail readers change only what follows it (the
    /// flags after ":2,"; Dovecot adds ",S=" and ",W="), so it identifies the message for good.
    static func base(_ name: FileName) -> FileName {
        Array(name.prefix { $0 != comma && $0 != colon })
    }

    /// The `,W=<n>` field (Maildir++ / Dovecot "virtual size": the size with CRLF line ends,
    /// which is exactly the RFC 1939 size). The first well-formed one counts.
    static func virtualSize(_ name: FileName) -> Int? {
        let fields = beforeInfo(name).split(separator: comma, omittingEmptySubsequences: false).dropFirst()
        for f in fields where f.count > 2 && f.count <= 20 && f.first == 0x57 && f[f.startIndex + 1] == 0x3D {
            let digits = f.dropFirst(2)
            guard digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { continue }
            var v = 0
            var overflow = false
            for d in digits {
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int(d - 0x30))
                if o1 || o2 { overflow = true; break }
                v = a
            }
            if !overflow { return v }
        }
        return nil
    }

    /// `name` with ",W=<size>" inserted before the info (or at the end without one); ",S=" and
    /// the flags are kept.
    static func withVirtualSize(_ name: FileName, _ size: Int) -> FileName {
        let cut = name.firstIndex(of: colon) ?? name.endIndex
        return Array(name[..<cut]) + Array(",W=\(size)".utf8) + Array(name[cut...])
    }

    /// RFC 1939 §7 unique-id: the base name when it is a valid one (1-70 octets of 0x21-0x7E;
    /// qmail and Dovecot names such as "1700000000.M12P34.host" are), otherwise the lowercase hex
    /// MD5 of the base name (long host names, odd octets). Either way it depends on nothing but
    /// the base name, so it is the same in every session and survives flag renames.
    static func uid(base: FileName) -> String {
        let s = String(decoding: base, as: UTF8.self)
        if MessageInfo.isValidUID(s) && s.utf8.elementsEqual(base) { return s }
        return md5Hex(base)
    }

    /// Delivery order: by the leading decimal number (the delivery time in seconds, for every
    /// writer that follows the Maildir naming convention), then by the whole name.
    static func orderedBefore(_ a: FileName, _ b: FileName) -> Bool {
        func number(_ n: FileName) -> ArraySlice<UInt8> {
            n.prefix { $0 >= 0x30 && $0 <= 0x39 }.drop { $0 == 0x30 }
        }
        let na = number(a), nb = number(b)
        if na.count != nb.count { return na.count < nb.count }
        if !na.elementsEqual(nb) { return na.lexicographicallyPrecedes(nb) }
        return a.lexicographicallyPrecedes(b)
    }

    static func isHidden(_ name: FileName) -> Bool { name.first == 0x2E }
}

/// Lowercase hex MD5 of some octets.
func md5Hex<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    var h = Insecure.MD5()
    let done: Void? = bytes.withContiguousStorageIfAvailable { h.update(bufferPointer: UnsafeRawBufferPointer($0)) }
    if done == nil { Array(bytes).withUnsafeBytes { h.update(bufferPointer: $0) } }
    return hexString(h.finalize())
}

/// A locked Maildir (see `MaildropStore.open`).
///
/// - Session lock: `flock(LOCK_EX|LOCK_NB)` on `drac-pop3d.lock` in the Maildir root, held for
///   the session. flock, not fcntl: flock locks belong to the open file description, so two
///   sessions of one drac-pop3d process exclude each other too (fcntl locks would not).
///   Deliveries never wait for it: Maildir delivery needs no lock at all.
/// - At open, `new/NAME` is moved to `cur/NAME,W=<size>:2,` (the ":2," info marks a message a
///   reader has seen, as the Maildir spec asks of readers) and files in `cur/` without ",W=" are
///   renamed to carry it, so later sessions need not read them to know their size.
final class MaildirSession: MaildropSession {
    let path: String
    private(set) var messages: [MessageInfo] = []
    private(set) var warnings: [String] = []

    private struct File {
        var name: FileName
        var base: FileName
    }
    private var files: [File] = []
    private var deleted = Set<Int>()
    private let lockFD: Descriptor
    private let curFD: Descriptor
    private var closed = false

    private init(path: String, lockFD: Descriptor, curFD: Descriptor) {
        self.path = path
        self.lockFD = lockFD
        self.curFD = curFD
    }

    deinit { close() }

    static func open(path: String, options: MaildropOptions) throws(MaildropError) -> any MaildropSession {
        // The root: a missing one is created, or an empty maildrop.
        var rootRaw = sysOpen(path, O_RDONLY | O_DIRECTORY)
        if rootRaw == -ENOENT {
            guard options.createMaildir else { return EmptySession(path: path) }
            let created = try makeDirectories(path, mode: 0o700)
            for dir in created { chownCreated(dir, options) }
            rootRaw = sysOpen(path, O_RDONLY | O_DIRECTORY)
        }
        if rootRaw < 0 { throw ioError(path, "cannot open Maildir", -rootRaw) }
        let root = Descriptor(rootRaw)
        defer { root.close() }

        if options.createMaildir {
            for sub in ["cur", "new", "tmp"] {
                if mkdirat(root.raw, sub, 0o700) == 0 {
                    if let uid = options.ownerUID {
                        _ = fchownat(root.raw, sub, uid, options.ownerGID ?? UInt32.max, AT_SYMLINK_NOFOLLOW)
                    }
                } else if errno != EEXIST {
                    throw ioError("\(path)/\(sub)", "cannot create directory", errno)
                }
            }
        }

        let lockFD = try takeSessionLock(root: root.raw, path: path, options: options)

        let curRaw = sysOpenAt(root.raw, Array("cur".utf8), O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        if curRaw < 0 { throw ioError("\(path)/cur", "cannot open", -curRaw) }
        let session = MaildirSession(path: path, lockFD: lockFD, curFD: Descriptor(curRaw))

        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { buffer.deallocate() }

        let newRaw = sysOpenAt(root.raw, Array("new".utf8), O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        if newRaw >= 0 {
            let newFD = Descriptor(newRaw)
            defer { newFD.close() }
            try session.moveNewToCur(newFD.raw, buffer: buffer)
        } else if newRaw != -ENOENT {
            throw ioError("\(path)/new", "cannot open", -newRaw)
        }
        try session.scanCur(buffer: buffer)
        return session
    }

    private static func chownCreated(_ dir: String, _ options: MaildropOptions) {
        guard let uid = options.ownerUID else { return }
        _ = lchown(dir, uid, options.ownerGID ?? UInt32.max)
    }

    /// Opens (creating 0600) and flocks `drac-pop3d.lock`. O_NOFOLLOW: the Maildir belongs to the
    /// user, and a server running as root must not be led through a symbolic link.
    private static func takeSessionLock(root: Int32, path: String, options: MaildropOptions) throws(MaildropError) -> Descriptor {
        let name = Array("drac-pop3d.lock".utf8)
        let lockPath = "\(path)/drac-pop3d.lock"
        var raw = sysOpenAt(root, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK, 0o600)
        var created = raw >= 0
        if raw == -EEXIST {
            raw = sysOpenAt(root, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK)
            // flock needs no write access: a lock file made by another user (root) will do.
            if raw == -EACCES { raw = sysOpenAt(root, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK) }
            created = false
        }
        if raw < 0 { throw ioError(lockPath, "cannot open the session lock file", -raw) }
        let fd = Descriptor(raw)
        guard let st = sysFstat(raw), isRegular(st) else { throw .io("\(lockPath): not a regular file") }
        if created, let uid = options.ownerUID { _ = fchown(raw, uid, options.ownerGID ?? UInt32.max) }
        while flock(raw, LOCK_EX | LOCK_NB) != 0 {
            if errno == EWOULDBLOCK { throw .inUse }
            if errno != EINTR { throw ioError(lockPath, "flock", errno) }
        }
        return fd
    }

    // MARK: - Open: new/ -> cur/, then cur/

    /// Moves every message of new/ into cur/, adding ",W=<size>" and the ":2," info in the same
    /// rename.
    private func moveNewToCur(_ newFD: Int32, buffer: UnsafeMutableRawBufferPointer) throws(MaildropError) {
        for entry in try listDirectory(newFD, path: "\(path)/new") where !MaildirName.isHidden(entry.name) {
            var size = MaildirName.virtualSize(entry.name)
            if size == nil {
                switch countFile(dirFD: newFD, name: entry.name, dir: "new", buffer: buffer) {
                case .size(let n): size = n
                case .vanished: continue          // another reader moved it: the cur/ scan sees it
                case .skip(let why): warnings.append(why); continue
                case .failed(let e): throw e
                }
            } else if let why = notRegular(dirFD: newFD, entry: entry, dir: "new") {
                if !why.isEmpty { warnings.append(why) }
                continue
            }
            var dest = entry.name
            if MaildirName.virtualSize(dest) == nil { dest = MaildirName.withVirtualSize(dest, size!) }
            if !dest.contains(MaildirName.colon) { dest += Array(":2,".utf8) }
            if dest.count > 255 { dest = entry.name + (entry.name.contains(MaildirName.colon) ? [] : Array(":2,".utf8)) }
            let e = withCName(entry.name) { src in withCName(dest) { dst in renameat(newFD, src, curFD.raw, dst) == 0 ? 0 : errno } }
            if e != 0 {
                if e == ENOENT && sysStatAt(newFD, entry.name) == nil { continue }  // moved by another reader
                throw ioError("\(path)/new/\(entry.name.printable)", "cannot move to cur/", e)
            }
        }
    }

    private enum CountResult {
        case size(Int)
        case vanished
        case skip(String)
        case failed(MaildropError)
    }

    /// Why an entry is not a message file ("" to skip silently), or nil for a regular file.
    private func notRegular(dirFD: Int32, entry: DirEntry, dir: String) -> String? {
        let t = entry.type
        if t == UInt8(DT_REG) { return nil }
        if t == UInt8(DT_UNKNOWN), let st = sysStatAt(dirFD, entry.name) {
            if isRegular(st) { return nil }
        } else if t == UInt8(DT_UNKNOWN) {
            return ""  // vanished meanwhile
        }
        return "\(path)/\(dir)/\(entry.name.printable): not a regular file, ignored"
    }

    /// The RFC 1939 size of a message file: every line end counted as CRLF (POP3Octets.Counter,
    /// no mboxrd unquoting: a Maildir stores messages unquoted).
    private func countFile(dirFD: Int32, name: FileName, dir: String, buffer: UnsafeMutableRawBufferPointer) -> CountResult {
        let display = "\(path)/\(dir)/\(name.printable)"
        // O_NOFOLLOW: never read through a link the user planted; O_NONBLOCK: a FIFO must not
        // hang the session (ignored for regular files).
        let raw = sysOpenAt(dirFD, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
        if raw == -ENOENT { return .vanished }
        if raw == -ELOOP { return .skip("\(display): symbolic link, ignored") }
        // A file its owner may not read (an MDA that ran as root and got the mode wrong) must
        // not lock the user out of the rest: left where it is, named in the log, not served.
        if raw == -EACCES || raw == -EPERM { return .skip("\(display): cannot open: \(errnoText(-raw)); left in place, not served") }
        if raw < 0 { return .failed(ioError(display, "cannot open", -raw)) }
        let fd = Descriptor(raw)
        defer { fd.close() }
        guard let st = sysFstat(raw), isRegular(st) else { return .skip("\(display): not a regular file, ignored") }
        var counter = POP3Octets.Counter()
        var offset: Int64 = 0
        while true {
            let n = preadFull(raw, buffer, offset)
            if n < 0 { return .failed(ioError(display, "read", Int32(-n))) }
            if n == 0 { break }
            counter.add(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            offset += Int64(n)
        }
        counter.finish()
        return .size(counter.octets)
    }

    /// Lists cur/ and builds the message list. A file that vanishes between the listing and its
    /// reading (another reader renamed it to change its flags, or deleted it) starts the scan
    /// again, a few times at most.
    private func scanCur(buffer: UnsafeMutableRawBufferPointer) throws(MaildropError) {
        let dir = "\(path)/cur"
        var attempt = 0
        while true {
            attempt += 1
            let lastAttempt = attempt >= 5
            var scanWarnings: [String] = []
            var candidates: [DirEntry] = []
            for entry in try listDirectory(curFD.raw, path: dir) where !MaildirName.isHidden(entry.name) {
                if entry.type == UInt8(DT_REG) || entry.type == UInt8(DT_UNKNOWN) {
                    candidates.append(entry)
                } else {
                    scanWarnings.append("\(dir)/\(entry.name.printable): not a regular file, ignored")
                }
            }
            candidates.sort { MaildirName.orderedBefore($0.name, $1.name) }

            var newFiles: [File] = []
            var newMessages: [MessageInfo] = []
            var seenBases = Set<FileName>()
            var seenUIDs = Set<String>()
            var restart = false
            for entry in candidates {
                let base = MaildirName.base(entry.name)
                // Two files with one base name: a corrupt Maildir (a copy made by hand, a
                // half-done restore). Keep the first, so unique-ids stay unique (RFC 1939 §7).
                if !seenBases.insert(base).inserted {
                    scanWarnings.append("\(dir)/\(entry.name.printable): another file has the same base name, ignored")
                    continue
                }
                var name = entry.name
                var size: Int
                if let w = MaildirName.virtualSize(name) {
                    if entry.type == UInt8(DT_UNKNOWN) {
                        guard let st = sysStatAt(curFD.raw, name) else { restart = true; break }
                        if !isRegular(st) {
                            scanWarnings.append("\(dir)/\(name.printable): not a regular file, ignored")
                            continue
                        }
                    }
                    size = w
                } else {
                    switch countFile(dirFD: curFD.raw, name: name, dir: "cur", buffer: buffer) {
                    case .size(let n): size = n
                    case .vanished: restart = true; size = 0
                    case .skip(let why): scanWarnings.append(why); continue
                    case .failed(let e): throw e
                    }
                    if restart { break }
                    // Remember the size in the name (as Dovecot does) for the next sessions. A
                    // failed rename costs nothing but a recount next time.
                    let renamed = MaildirName.withVirtualSize(name, size)
                    if renamed.count <= 255 {
                        let r = withCName(name) { a in withCName(renamed) { b in renameat(curFD.raw, a, curFD.raw, b) } }
                        if r == 0 { name = renamed }
                    }
                }
                let uid = MaildirName.uid(base: base)
                if !seenUIDs.insert(uid).inserted {
                    // Only when one base name is the MD5 of another: keep the first.
                    scanWarnings.append("\(dir)/\(name.printable): unique-id \(uid) already used, ignored")
                    continue
                }
                newFiles.append(File(name: name, base: base))
                newMessages.append(MessageInfo(size: size, uid: uid))
            }
            if restart && !lastAttempt { continue }
            if restart { scanWarnings.append("\(dir): files kept changing while being listed; some may be missing this session") }
            files = newFiles
            messages = newMessages
            warnings += scanWarnings
            return
        }
    }

    /// The current name of a message whose file was renamed (flags changed by another reader).
    private func findByBase(_ base: FileName) throws(MaildropError) -> FileName? {
        for entry in try listDirectory(curFD.raw, path: "\(path)/cur") where MaildirName.base(entry.name) == base {
            return entry.name
        }
        return nil
    }

    // MARK: - Session

    func openMessage(_ number: Int) throws(MaildropError) -> MessageSource {
        if closed { throw .io("\(path): maildrop session closed") }
        guard number >= 1 && number <= files.count, !deleted.contains(number) else {
            throw .io("\(path): no message \(number)")
        }
        var name = files[number - 1].name
        var raw = sysOpenAt(curFD.raw, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
        if raw == -ENOENT {
            // Another reader (an IMAP server, a local MUA) renamed it to change its flags.
            guard let current = try findByBase(files[number - 1].base) else {
                throw .io("\(path)/cur/\(name.printable): message \(number) was removed by another program")
            }
            files[number - 1].name = current
            name = current
            raw = sysOpenAt(curFD.raw, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
        }
        let display = "\(path)/cur/\(name.printable)"
        if raw < 0 { throw ioError(display, "cannot open message \(number)", -raw) }
        let fd = Descriptor(raw)
        guard let st = sysFstat(raw), isRegular(st) else { throw .io("\(display): not a regular file") }
        return MessageSource(descriptor: fd, ownsDescriptor: true, start: 0, length: Int64(st.st_size), path: display)
    }

    func openMessageQuickly(_ number: Int) -> MessageSource? {
        guard !closed, number >= 1 && number <= files.count, !deleted.contains(number) else { return nil }
        let name = files[number - 1].name
        let raw = sysOpenAt(curFD.raw, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
        guard raw >= 0 else { return nil }
        let fd = Descriptor(raw)
        guard let st = sysFstat(raw), isRegular(st) else { return nil }
        return MessageSource(descriptor: fd, ownsDescriptor: true, start: 0, length: Int64(st.st_size),
                             path: "\(path)/cur/\(name.printable)")
    }

    /// RFC 1939 §6 UPDATE: unlink the files, then fsync cur/ so the removals are on disk before
    /// the server answers +OK to QUIT.
    func commit(deleting numbers: [Int]) throws(MaildropError) {
        if closed { throw .io("\(path): maildrop session closed") }
        let wanted = try checkedNumbers(numbers, count: files.count, path: path).filter { !deleted.contains($0) }
        guard !wanted.isEmpty else { return }
        let dir = "\(path)/cur"
        var failures: [String] = []
        var renamedAway: [Int] = []
        for n in wanted {
            let e = withCName(files[n - 1].name) { unlinkat(curFD.raw, $0, 0) == 0 ? 0 : errno }
            if e == 0 || e == ENOENT {
                if e == ENOENT { renamedAway.append(n) }
                deleted.insert(n)
            } else {
                failures.append("\(files[n - 1].name.printable): \(errnoText(e))")
            }
        }
        if !renamedAway.isEmpty {
            // Gone under its old name: either deleted by someone else (fine) or renamed by a
            // reader changing flags; then it is there under the same base name.
            var byBase: [FileName: [FileName]] = [:]
            for entry in try listDirectory(curFD.raw, path: dir) {
                byBase[MaildirName.base(entry.name), default: []].append(entry.name)
            }
            for n in renamedAway {
                for name in byBase[files[n - 1].base] ?? [] {
                    let e = withCName(name) { unlinkat(curFD.raw, $0, 0) == 0 ? 0 : errno }
                    if e != 0 && e != ENOENT { failures.append("\(name.printable): \(errnoText(e))") }
                }
            }
        }
        let s = fsyncRetrying(curFD.raw)
        if s != 0 { failures.append("fsync: \(errnoText(-s))") }
        if !failures.isEmpty {
            throw .io("\(dir): could not delete: " + failures.joined(separator: "; "))
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        curFD.close()
        lockFD.close()   // releases the flock
    }
}
