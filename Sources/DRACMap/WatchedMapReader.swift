// A map reader that keeps its handle open and reopens it only when inotify reports a change.
import CBerkeleyDB
import DRACCore
import Glibc

/// Reads the map for drac-smtpd's per-recipient lookups, cheaply and without missing a write.
///
/// `MapReader` opens the file for every lookup (about 50 us and 16 system calls). This reader
/// keeps one read-only handle and an inotify watch on the file. Every lookup takes the shared
/// lock set, as `MapReader` does; once it holds the flock, every write of the last writer has
/// returned, and the kernel queued an inotify event for each write before the write returned.
/// So an empty event queue at that moment proves the handle's cached pages are current; any
/// event (a write in place, an attribute or xattr change, a rename or removal, a queue
/// overflow) makes it reopen first. No timestamps are read (see `FileIdentity` on why that
/// matters to rpc.dracd), and a file replaced by rename is followed (`MapLock`).
///
/// Thread-safe. `wait: false` never blocks: a writer's lock, or another thread inside the
/// reader (which may be waiting for that lock), gives `.busy` at once.
public final class WatchedMapReader: @unchecked Sendable {
    public let path: String
    public let format: MapFormat
    private let mutex: UnsafeMutablePointer<drac_mutex>
    private var lock: MapLock?
    private var db: BerkeleyDB?
    private var inotify: Int32 = -1
    private var watch: Int32 = -1
    private var watched: (dev: UInt64, ino: UInt64)?
    /// Reopens so far (for tests and the benchmark).
    public private(set) var reopens = 0

    public init(path: String, format: MapFormat) {
        self.path = path
        self.format = format
        mutex = drac_mutex_new()
    }

    deinit {
        db?.close(sync: false)
        lock = nil
        if inotify >= 0 { close(inotify) }
        drac_mutex_free(mutex)
    }

    /// The stored expiry for `address`, or nil when it has no entry.
    public func expiry(of address: IPAddress, wait: Bool = true) throws(MapError) -> Int64? {
        if wait {
            drac_mutex_lock(mutex)
        } else if drac_mutex_trylock(mutex) != 0 {
            throw MapError(code: .busy, path: path, message: "reader busy")
        }
        defer { drac_mutex_unlock(mutex) }
        do {
            return try lookup(address, wait: wait)
        } catch {
            // Start afresh next time: the descriptor, the watch and the handle.
            if error.code != .busy { reset() }
            throw error
        }
    }

    private func lookup(_ address: IPAddress, wait: Bool) throws(MapError) -> Int64? {
        if lock == nil { lock = try MapLock(path: path, exclusive: false, create: false) }
        guard let lock else { preconditionFailure("lock descriptor missing") }
        let id = try lock.acquireFlock(wait: wait)
        defer { lock.unlockAll() }
        guard let id else { throw MapError(code: .notFound, path: path, message: "map file vanished") }
        if id.size == 0 {
            throw MapError(code: .corrupt, path: path, message: "map file is empty (not yet initialised by rpc.dracd)")
        }
        var stale = db == nil
        if watched == nil || watched! != (id.dev, id.ino) {
            try rewatch()
            watched = (id.dev, id.ino)
            stale = true
        }
        // Read the queue after taking the flock: every earlier write has queued its event.
        if drac_inotify_drain(inotify) != 0 { stale = true }
        if stale {
            db?.close(sync: false)   // drops our fcntl lock (POSIX): taken again below
            db = nil
            db = try BerkeleyDB(path: path, kind: format.kind, mode: .readOnly)
            reopens += 1
        }
        try lock.acquireFcntl(wait: wait)
        guard let db, let value = try db.get(format.key(for: address)) else { return nil }
        return MapFormat.expiry(fromValue: value)
    }

    /// A watch on the file now at `path`, set before the handle is (re)opened so that no
    /// write between the two goes unnoticed.
    private func rewatch() throws(MapError) {
        if inotify < 0 {
            inotify = drac_inotify_open()
            if inotify < 0 { throw MapError.system(errno, path: path, doing: "inotify_init1") }
        }
        if watch >= 0 { _ = drac_inotify_unwatch(inotify, watch) }
        watch = drac_inotify_watch(inotify, path)
        if watch < 0 { throw MapError.system(errno, path: path, doing: "inotify_add_watch") }
        _ = drac_inotify_drain(inotify)
    }

    private func reset() {
        db?.close(sync: false)
        db = nil
        lock = nil
        if inotify >= 0 { close(inotify) }
        inotify = -1
        watch = -1
        watched = nil
    }
}
