// The DRAC map as our programs use it: a long-lived writer (rpc.dracd, dracctl) and fresh-view readers.
import CBerkeleyDB
import DRACCore
import Glibc

/// One change in a write batch.
public enum MapOperation: Sendable, Equatable {
    /// Add or refresh an address (overwrites, which pushes the expiry forward, as DRAC).
    case put(IPAddress, expiry: Int64)
    /// Remove an address whatever its expiry.
    case delete(IPAddress)
    /// Remove a raw key only if its stored expiry is at or before `now` (someone may have
    /// refreshed it since we decided it was due).
    case deleteIfExpired(key: [UInt8], now: Int64)
}

/// What one committed batch did.
public struct CommitResult: Sendable, Equatable {
    public var written = 0
    public var deleted = 0
    /// Per operation, whether a `delete` found its key.
    public var found: [Bool] = []
}

/// One entry as read from the map.
public struct MapEntry: Sendable, Equatable {
    public var key: [UInt8]
    /// nil when the key is not an address (an entry someone else put in a shared map).
    public var address: IPAddress?
    /// nil when the value is not a decimal expiry: such an entry is never live.
    public var expiry: Int64?
    public func isLive(now: Int64) -> Bool {
        guard address != nil, let expiry else { return false }
        return Expiry.isLive(expiry: expiry, now: now)
    }
}

/// One step of a chunked sweep.
public struct SweepChunk: Sendable {
    public var scanned = 0
    public var deleted = 0
    /// Where the next chunk starts; nil once the end of the map was reached.
    public var resumeAfter: [UInt8]?
    /// How long the locks were held for this chunk.
    public var lockHeldNanoseconds: UInt64 = 0
    /// The DRAC entries the chunk saw that are not yet expired, with their expiries.
    public var live: [(key: [UInt8], expiry: Int64)] = []
    public init() {}
}

func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// A writer of the map. Keeps its Berkeley DB handle open between batches and reopens it when
/// another process has changed the file (dracctl, postmap), which it sees from the file's
/// device, inode, size, mtime and ctime. Every batch runs under the exclusive lock set (see
/// `MapLock`) and is synced before `commit` returns, so a caller may acknowledge it.
///
/// Not thread-safe: one thread (rpc.dracd's commit thread) owns a writer.
public final class MapWriter {
    public let path: String
    public let format: MapFormat
    private let lock: MapLock
    private var db: BerkeleyDB?
    private var lastIdentity: FileIdentity?
    /// Set when two of our writes fell in the same wall-clock second: MTAs compare whole-second
    /// mtimes, so the file is touched once the clock has moved on (see `touchIfNeeded`).
    private var touchPending = false
    private var lastWriteSecond: Int = 0

    /// Whether each write must change the file's stamp even within one clock tick (see below).
    private let announceEveryWrite: Bool

    /// Opens (creating if missing) the map. With `truncate`, starts it empty (`rpc.dracd -i`).
    ///
    /// `announceEveryWrite`: a page overwritten in place leaves inode and size unchanged, which a
    /// long-lived writer's cache check cannot see, so short-lived writers (dracctl) bump the
    /// generation xattr after each write (without xattrs: move the mtime on by a nanosecond).
    /// The long-lived writer itself (rpc.dracd, one per map) passes false: nobody caches pages
    /// across its writes, and the extra inode change would cost a disk write on every sync.
    public init(path: String, format: MapFormat, truncate: Bool = false, create: Bool = true,
                announceEveryWrite: Bool = true) throws(MapError) {
        self.path = path
        self.format = format
        self.announceEveryWrite = announceEveryWrite
        if create, access(path, F_OK) != 0, errno == ENOENT {
            // Let Berkeley DB create a missing map: it complains about zero-length files.
            // Nobody can hold a lock on a file that does not exist yet.
            let fresh = try BerkeleyDB(path: path, kind: format.kind, mode: .create)
            try fresh.sync()
            fresh.close(sync: true)
        }
        lock = try MapLock(path: path, exclusive: true, create: false)
        try lock.acquireFlock()
        defer { lock.unlockAll() }
        var st = stat()
        let empty = stat(path, &st) == 0 && st.st_size == 0
        let handle = try BerkeleyDB(path: path, kind: format.kind, mode: truncate ? .truncate : (empty || create ? .create : .readWrite))
        try lock.acquireFcntl()
        if truncate || empty { try handle.sync() }
        _ = chmod(path, 0o644)   // readable by the MTAs whatever the umask
        db = handle
        lastIdentity = FileIdentity(lock)
    }

    /// Applies `operations` in one locked batch and syncs once.
    @discardableResult
    public func commit(_ operations: [MapOperation]) throws(MapError) -> CommitResult {
        var result = CommitResult()
        try withLockedHandle { (db: BerkeleyDB) throws(MapError) -> Bool in
            for op in operations {
                switch op {
                case .put(let address, let expiry):
                    try db.put(format.key(for: address), format.value(forExpiry: expiry))
                    result.written += 1
                    result.found.append(true)
                case .delete(let address):
                    let found = try db.delete(format.key(for: address))
                    if found { result.deleted += 1 }
                    result.found.append(found)
                case .deleteIfExpired(let key, let now):
                    if let value = try db.get(key), let expiry = MapFormat.expiry(fromValue: value), expiry <= now {
                        try db.delete(key)
                        result.deleted += 1
                        result.found.append(true)
                    } else {
                        result.found.append(false)
                    }
                }
            }
            return result.written + result.deleted > 0
        }
        return result
    }

    /// Scans up to `maxScan` entries after `after`, deleting those expired at `now` and
    /// reporting the expiries of the others, under one short lock hold. Entries whose value is not a decimal expiry belong to someone else and
    /// are left alone (they are never live either).
    public func sweepChunk(after: [UInt8]?, now: Int64, maxScan: Int = 2000) throws(MapError) -> SweepChunk {
        var chunk = SweepChunk()
        let started = monotonicNanos()
        try withLockedHandle { (db: BerkeleyDB) throws(MapError) -> Bool in
            var due: [[UInt8]] = []
            var last: [UInt8]? = nil
            let atEnd = try db.scan(after: after, limit: maxScan, kind: format.kind) { key, value in
                chunk.scanned += 1
                last = key
                guard format.address(fromKey: key) != nil, let e = MapFormat.expiry(fromValue: value) else { return }
                if e <= now { due.append(key) } else { chunk.live.append((key, e)) }
            }
            for key in due where try db.delete(key) { chunk.deleted += 1 }
            chunk.resumeAfter = atEnd ? nil : last
            return chunk.deleted > 0
        }
        chunk.lockHeldNanoseconds = monotonicNanos() - started
        return chunk
    }

    /// Reads every entry, chunk by chunk (each under a short lock hold).
    public func entries(chunkSize: Int = 2000) throws(MapError) -> [MapEntry] {
        var out: [MapEntry] = []
        var after: [UInt8]? = nil
        repeat {
            var last: [UInt8]? = nil
            var atEnd = true
            try withLockedHandle { (db: BerkeleyDB) throws(MapError) -> Bool in
                atEnd = try db.scan(after: after, limit: chunkSize, kind: format.kind) { key, value in
                    last = key
                    out.append(MapEntry(key: key, address: format.address(fromKey: key), expiry: MapFormat.expiry(fromValue: value)))
                }
                return false
            }
            after = atEnd ? nil : last
        } while after != nil
        return out
    }

    /// Makes the last write visible to readers that compare whole-second mtimes (sendmail
    /// reopens only when `st_mtime` grew, Postfix when it changed): once the clock has passed
    /// the second of our last write, set the mtime to now. Cheap no-op otherwise.
    public func touchIfNeeded(now: Int64) throws(MapError) {
        guard touchPending, now > Int64(lastWriteSecond) else { return }
        try lock.acquireFlock()
        defer { lock.unlockAll() }
        let unchanged = FileIdentity(lock) == lastIdentity
        _ = drac_set_mtime(path, Int(now), 0)
        if unchanged { lastIdentity = FileIdentity(lock) }
        touchPending = false
    }

    public func close() {
        db?.close(sync: true)
        db = nil
    }

    /// Takes the lock set, reopens the handle if another process changed the file, runs `body`
    /// and, when it wrote (returns true), syncs and records the new file stamp.
    private func withLockedHandle(_ body: (BerkeleyDB) throws(MapError) -> Bool) throws(MapError) {
        let seen = try lock.acquireFlock()
        defer { lock.unlockAll() }
        let before = FileIdentity(lock, identity: seen)
        if db == nil || before == nil || before != lastIdentity {
            db?.close(sync: false)   // closing drops our fcntl lock: it is taken below
            db = nil
            db = try BerkeleyDB(path: path, kind: format.kind, mode: .readWrite)
        }
        try lock.acquireFcntl()
        guard let db else { preconditionFailure("map handle missing after open") }
        let wrote = try body(db)
        guard wrote else { return }
        try db.sync()
        if announceEveryWrite {
            // Tell long-lived writers (rpc.dracd) that the pages changed: a generation bump,
            // or, without xattrs, an mtime that differs even within one clock tick.
            if !lock.bumpGeneration(), case .stamp(let b)? = before, FileIdentity(lock) == before {
                var sec = b.mtimeSec, nsec = b.mtimeNsec + 1
                if nsec >= 1_000_000_000 { sec += 1; nsec -= 1_000_000_000 }
                _ = drac_set_mtime(path, sec, nsec)
            }
        }
        let second = Int(time(nil))
        if second == lastWriteSecond { touchPending = true }
        lastWriteSecond = second
        lastIdentity = FileIdentity(lock)
    }
}

/// Reads the map with a fresh view for every call: opens it read-only under the shared lock set,
/// reads, closes. Safe while rpc.dracd writes; sees every committed write. A cached handle
/// would need a change signal, and rpc.dracd writes pages in place without one that is cheap
/// to read (see `FileIdentity`): a fresh open costs about 100 us (`drac-bench lookup`).
public struct MapReader: Sendable {
    public let path: String
    public let format: MapFormat

    public init(path: String, format: MapFormat) {
        self.path = path
        self.format = format
    }

    /// The stored expiry for `address`, or nil if it has no entry (or an unreadable value).
    public func expiry(of address: IPAddress) throws(MapError) -> Int64? {
        try withReadHandle { db throws(MapError) -> Int64? in
            guard let value = try db.get(format.key(for: address)) else { return nil }
            return MapFormat.expiry(fromValue: value)
        }
    }

    /// Every entry, read in chunks so that no lock is held for long.
    public func entries(chunkSize: Int = 2000) throws(MapError) -> [MapEntry] {
        var out: [MapEntry] = []
        var after: [UInt8]? = nil
        repeat {
            let (chunk, next) = try withReadHandle { db throws(MapError) -> ([MapEntry], [UInt8]?) in
                var entries: [MapEntry] = []
                var last: [UInt8]? = nil
                let atEnd = try db.scan(after: after, limit: chunkSize, kind: format.kind) { key, value in
                    last = key
                    entries.append(MapEntry(key: key, address: format.address(fromKey: key), expiry: MapFormat.expiry(fromValue: value)))
                }
                return (entries, atEnd ? nil : last)
            }
            out += chunk
            after = next
        } while after != nil
        return out
    }

    private func withReadHandle<T>(_ body: (BerkeleyDB) throws(MapError) -> T) throws(MapError) -> T {
        let lock = try MapLock(path: path, exclusive: false, create: false)
        // The size from the flock's own identity check (statx without timestamps): asking for
        // the mtime here would make the kernel give rpc.dracd's next write a fine-grained
        // timestamp, and its sync an extra inode write (multigrain timestamps, Linux 6.13+).
        let id = try lock.acquireFlock()
        defer { lock.unlockAll() }
        if let id, id.size == 0 {
            throw MapError(code: .corrupt, path: path, message: "map file is empty (not yet initialised by rpc.dracd)")
        }
        let db = try BerkeleyDB(path: path, kind: format.kind, mode: .readOnly)
        try lock.acquireFcntl()
        defer { db.close(sync: false) }
        return try body(db)
    }
}
