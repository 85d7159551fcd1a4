// mbox maildrops (/var/mail/USER): session flock, locked scan, checked reads, in-place compaction.
import CLinux
import Glibc
import POP3Core

/// A locked mbox (see `MaildropStore.open`).
///
/// - Session lock: `flock(LOCK_EX|LOCK_NB)` on the mbox itself for the whole session. MDAs on
///   Linux lock with fcntl and a dotlock, not flock, so an idle session does not hold up
///   delivery (on NFS, Linux emulates flock with fcntl locks: there it would).
/// - Scan (at open) under the delivery locks (dotlock + fcntl read lock), released right after:
///   mail delivered during the session is appended after the scanned end and left alone.
/// - Reads are not locked: MDAs only append, and each read first checks that the message's
///   From line is still where the scan saw it.
/// - Commit (RFC 1939 §6 UPDATE) under dotlock + fcntl write lock: check that no other program
///   rewrote the file, then move the kept messages down over the deleted ones, then the mail
///   appended since the scan, truncate and fsync.
final class MboxSession: MaildropSession {
    let path: String
    let fromUnquote: Bool
    let messages: [MessageInfo]
    private(set) var warnings: [String]

    private let fd: Descriptor
    private let options: MaildropOptions
    private let dev: UInt64
    private let ino: UInt64
    /// Every record, the pseudo message included (commit keeps it and checks it).
    private let records: [MboxRecord]
    /// For message number n, `records[recordIndex[n - 1]]`.
    private let recordIndex: [Int]
    /// The file size the scan covered; what lies after it arrived during the session.
    private let scannedEnd: Int64
    /// Opened without write access: messages can be read, not deleted.
    private let readOnly: Bool
    private var committed = false
    private var closed = false

    private init(path: String, fd: Descriptor, options: MaildropOptions, dev: UInt64, ino: UInt64,
                 records: [MboxRecord], scannedEnd: Int64, readOnly: Bool, warnings: [String]) {
        self.readOnly = readOnly
        self.path = path
        self.fromUnquote = options.mboxFromUnquote
        self.fd = fd
        self.options = options
        self.dev = dev
        self.ino = ino
        self.records = records
        self.scannedEnd = scannedEnd
        self.warnings = warnings
        recordIndex = records.indices.filter { !records[$0].isPseudo }
        messages = Self.assignUIDs(recordIndex.map { records[$0] })
    }

    deinit { close() }

    static func open(path: String, options: MaildropOptions) throws(MaildropError) -> any MaildropSession {
        // A file replaced between our open() and our locks (a mail reader that rewrites the
        // mbox as a new file and renames it into place) is opened again.
        for _ in 0..<3 {
            // O_NOFOLLOW: a server running as root must not follow a link planted in a home
            // directory; O_NONBLOCK: a FIFO must not hang us (no effect on regular files).
            var raw = sysOpen(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK)
            var warnings: [String] = []
            var readOnly = false
            if raw == -EACCES || raw == -EROFS {
                // Mail can still be read; UPDATE will fail (RFC 1939 §6 allows -ERR there).
                warnings.append("\(path): \(errnoText(-raw)) for writing; opened read-only, deleting will fail")
                readOnly = true
                raw = sysOpen(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
            }
            if raw == -ENOENT { return EmptySession(path: path) }     // no mail yet: nothing to lock
            if raw == -ELOOP { throw .io("\(path): is a symbolic link; refused") }
            if raw < 0 { throw ioError(path, "cannot open mbox", -raw) }
            let fd = Descriptor(raw)
            guard let st = sysFstat(raw) else { throw ioError(path, "fstat", errno) }
            guard isRegular(st) else { throw .io("\(path): not a regular file") }
            while flock(raw, LOCK_EX | LOCK_NB) != 0 {
                if errno == EWOULDBLOCK { throw .inUse }
                if errno != EINTR { throw ioError(path, "flock", errno) }
            }

            let locks = try DeliveryLocks.acquire(mboxPath: path, fd: raw, exclusive: false, options: options, warnings: &warnings)
            defer { locks.release() }
            guard let now = sysStat(path, followLinks: false), now.st_dev == st.st_dev, now.st_ino == st.st_ino else {
                continue
            }
            let (records, end) = try scan(fd: raw, path: path, unquote: options.mboxFromUnquote)
            return MboxSession(path: path, fd: fd, options: options, dev: UInt64(st.st_dev), ino: UInt64(st.st_ino),
                               records: records, scannedEnd: end, readOnly: readOnly, warnings: warnings)
        }
        throw .io("\(path): the mbox kept being replaced by another program while opening")
    }

    /// Reads the file from the start to its current end in 256 KiB pieces.
    private static func scan(fd: Int32, path: String, unquote: Bool) throws(MaildropError) -> ([MboxRecord], Int64) {
        guard let st = sysFstat(fd) else { throw ioError(path, "fstat", errno) }
        let size = Int64(st.st_size)
        var scanner = MboxScanner(mboxFromUnquote: unquote)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        while scanner.offset < size {
            let want = Int(min(Int64(buffer.count), size - scanner.offset))
            let n = preadFull(fd, UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), scanner.offset)
            if n < 0 { throw ioError(path, "read", Int32(-n)) }
            if n == 0 { break }     // shortened meanwhile despite the locks: scan what is there
            scanner.consume(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        scanner.finish()
        if scanner.preambleHasText {
            throw .io("\(path): not an mbox file (it does not begin with a \"From \" line)")
        }
        return (scanner.records, scanner.offset)
    }

    /// RFC 1939 §7 unique-ids in file order: a valid `X-UIDL:` not used before in this mbox,
    /// else the header digest; a digest seen before gets ".2", ".3"... (identical header
    /// sections: the same message delivered twice).
    static func assignUIDs(_ records: [MboxRecord]) -> [MessageInfo] {
        var used = Set<String>()
        var digestCount: [String: Int] = [:]
        var result: [MessageInfo] = []
        result.reserveCapacity(records.count)
        for r in records {
            var uid: String
            if let u = r.uidl, !used.contains(u) {
                uid = u
            } else {
                var k = digestCount[r.headerDigest] ?? 0
                repeat {
                    k += 1
                    uid = k == 1 ? r.headerDigest : "\(r.headerDigest).\(k)"
                } while used.contains(uid)
                digestCount[r.headerDigest] = k
            }
            used.insert(uid)
            result.append(MessageInfo(size: r.size, uid: uid))
        }
        return result
    }

    /// Whether the From line of `record` is still at its offset, unchanged.
    private func fromLineIntact(_ record: MboxRecord) throws(MaildropError) -> Bool {
        var buf = [UInt8](repeating: 0, count: record.fromCheckLength)
        let n = buf.withUnsafeMutableBytes { preadFull(fd.raw, $0, record.start) }
        if n < 0 { throw ioError(path, "read", Int32(-n)) }
        return n == buf.count && buf.starts(with: Array("From ".utf8)) && FNV1a.hash(buf) == record.fromHash
    }

    /// `fromLineIntact` from the page cache only: nil when the octets are not in memory (or
    /// cannot be read), so that the blocking check decides.
    private func fromLineIntactIfCached(_ record: MboxRecord) -> Bool? {
        var buf = [UInt8](repeating: 0, count: record.fromCheckLength)
        let n = buf.withUnsafeMutableBytes { drac_pread_nowait(fd.raw, $0.baseAddress!, UInt($0.count), record.start) }
        guard n == buf.count else { return nil }
        return buf.starts(with: Array("From ".utf8)) && FNV1a.hash(buf) == record.fromHash
    }

    // MARK: - Session

    func openMessage(_ number: Int) throws(MaildropError) -> MessageSource {
        if closed { throw .io("\(path): maildrop session closed") }
        if committed { throw .io("\(path): maildrop already updated") }
        guard number >= 1 && number <= recordIndex.count else { throw .io("\(path): no message \(number)") }
        let r = records[recordIndex[number - 1]]
        guard try fromLineIntact(r) else {
            throw .io("\(path): message \(number) is no longer at offset \(r.start): the mbox was rewritten by another program")
        }
        return MessageSource(descriptor: fd, ownsDescriptor: false, start: r.bodyStart,
                             length: r.bodyEnd - r.bodyStart, path: path)
    }

    func openMessageQuickly(_ number: Int) -> MessageSource? {
        guard !closed, !committed, fd.isOpen, number >= 1 && number <= recordIndex.count else { return nil }
        let r = records[recordIndex[number - 1]]
        guard fromLineIntactIfCached(r) == true else { return nil }
        return MessageSource(descriptor: fd, ownsDescriptor: false, start: r.bodyStart,
                             length: r.bodyEnd - r.bodyStart, path: path)
    }

    func commit(deleting numbers: [Int]) throws(MaildropError) {
        if closed { throw .io("\(path): maildrop session closed") }
        guard !numbers.isEmpty else { return }
        let wanted = try checkedNumbers(numbers, count: recordIndex.count, path: path)
        if committed { throw .io("\(path): maildrop already updated") }
        if readOnly { throw .io("\(path): opened read-only (no write permission); nothing deleted") }

        var lockWarnings: [String] = []
        let locks: DeliveryLocks
        do {
            locks = try DeliveryLocks.acquire(mboxPath: path, fd: fd.raw, exclusive: true, options: options, warnings: &lockWarnings)
        } catch {
            warnings += lockWarnings
            throw error
        }
        warnings += lockWarnings
        defer { locks.release() }

        // Refuse to touch a file another program rewrote: our offsets would be wrong and we
        // would cut someone's mail. Nothing is deleted then; the client's marks are lost, but
        // no message is.
        let nothing = "nothing deleted"
        guard let now = sysStat(path, followLinks: false) else {
            throw .io("\(path): removed by another program during the session; \(nothing)")
        }
        guard UInt64(now.st_dev) == dev, UInt64(now.st_ino) == ino else {
            throw .io("\(path): replaced by another program during the session; \(nothing)")
        }
        guard let st = sysFstat(fd.raw) else { throw ioError(path, "fstat", errno) }
        let size = Int64(st.st_size)
        guard size >= scannedEnd else {
            throw .io("\(path): shorter than when the session began (\(size) < \(scannedEnd) octets): rewritten by another program; \(nothing)")
        }
        for r in records {
            guard try fromLineIntact(r) else {
                throw .io("\(path): no From line at offset \(r.start) any more: rewritten by another program; \(nothing)")
            }
        }

        try compact(deleting: Set(wanted.map { recordIndex[$0 - 1] }), fileSize: size, locks: locks)
        committed = true
    }

    /// Moves the kept records down over the deleted ones, then the tail [scannedEnd, fileSize)
    /// (mail delivered during the session: never lost), truncates and fsyncs.
    ///
    /// Crash safety: data only ever moves towards the start of the file and each piece is read
    /// before the space it lands on is needed, so an interrupted compaction leaves every kept
    /// message at least once in the file (some maybe twice), never none: the same guarantee
    /// Dovecot gives for its mbox expunge.
    private func compact(deleting doomed: Set<Int>, fileSize: Int64, locks: DeliveryLocks) throws(MaildropError) {
        guard let first = doomed.min() else { return }
        var write = records[first].start
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        var lastTouch = monotonicSeconds()

        func move(from source: Int64, length: Int64) throws(MaildropError) {
            if source == write {
                write += length
                return
            }
            var done: Int64 = 0
            while done < length {
                let n = Int(min(Int64(buffer.count), length - done))
                let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
                let r = preadFull(fd.raw, piece, source + done)
                if r != n {
                    throw .io("\(path): compaction: short read at \(source + done) (\(r < 0 ? errnoText(Int32(-r)) : "end of file")); the mbox may now hold a message twice")
                }
                let w = pwriteAll(fd.raw, UnsafeRawBufferPointer(piece), write + done)
                if w != 0 {
                    throw .io("\(path): compaction: write at \(write + done): \(errnoText(-w)); the mbox may now hold a message twice")
                }
                done += Int64(n)
                if monotonicSeconds() - lastTouch > 30 {
                    locks.touch()
                    lastTouch = monotonicSeconds()
                }
            }
            write += length
        }

        for i in first..<records.count where !doomed.contains(i) {
            try move(from: records[i].start, length: records[i].end - records[i].start)
        }
        try move(from: scannedEnd, length: fileSize - scannedEnd)
        while ftruncate(fd.raw, off_t(write)) != 0 {
            if errno != EINTR { throw ioError(path, "compaction: ftruncate", errno) }
        }
        let s = fsyncRetrying(fd.raw)
        if s != 0 { throw ioError(path, "fsync", -s) }
    }

    func close() {
        guard !closed else { return }
        closed = true
        fd.close()    // releases the flock
    }
}
