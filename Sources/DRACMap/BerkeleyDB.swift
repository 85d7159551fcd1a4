// An owned Berkeley DB handle (DB*): open, get/put/del, cursor scans, sync, close in deinit.
import CBerkeleyDB
import Glibc

/// Errors from the map layer, with the file they concern.
public struct MapError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Equatable { case notFound, permission, db(Int32), system(Int32), corrupt, busy }
    public var code: Code
    public var path: String
    public var message: String
    public var description: String { "\(path): \(message)" }

    static func fromDB(_ rc: Int32, path: String, doing: String) -> MapError {
        if rc > 0 { return system(rc, path: path, doing: doing) }
        return MapError(code: .db(rc), path: path, message: "\(doing): \(String(cString: drac_db_strerror(rc)))")
    }

    static func system(_ err: Int32, path: String, doing: String) -> MapError {
        let code: Code = err == ENOENT ? .notFound : (err == EACCES || err == EPERM) ? .permission : .system(err)
        return MapError(code: code, path: path, message: "\(doing): \(String(cString: strerror(err)))")
    }
}

/// One DB* handle. Not thread-safe: the owner serialises use (BDB without an environment).
final class BerkeleyDB {
    private var db: UnsafeMutablePointer<DB>?
    let path: String

    enum OpenMode { case readOnly, readWrite, create, truncate }

    init(path: String, kind: MapFormatKind, mode: OpenMode, fileMode: mode_t = 0o644) throws(MapError) {
        self.path = path
        var flags: UInt32
        switch mode {
        case .readOnly: flags = DRAC_DB_RDONLY
        case .readWrite: flags = 0
        case .create: flags = DRAC_DB_CREATE
        case .truncate: flags = DRAC_DB_CREATE | DRAC_DB_TRUNCATE
        }
        var handle: UnsafeMutablePointer<DB>? = nil
        let rc = drac_db_open(&handle, path, kind == .hash ? 1 : 0, flags, Int32(fileMode))
        guard rc == 0, let handle else {
            if rc == ENOENT { throw MapError(code: .notFound, path: path, message: "map file does not exist") }
            if rc == EINVAL { throw MapError(code: .corrupt, path: path, message: "not a Berkeley DB \(kind) map (wrong type or damaged)") }
            throw MapError.fromDB(rc, path: path, doing: "cannot open map")
        }
        db = handle
    }

    deinit { close(sync: false) }

    func close(sync: Bool) {
        if let d = db { _ = drac_db_close(d, sync ? 0 : 1); db = nil }
    }

    private var handle: UnsafeMutablePointer<DB> {
        guard let db else { preconditionFailure("use of a closed map handle") }
        return db
    }

    func fileDescriptor() -> Int32? {
        var fd: Int32 = -1
        return drac_db_fd(handle, &fd) == 0 ? fd : nil
    }

    func put(_ key: [UInt8], _ value: [UInt8]) throws(MapError) {
        let rc = key.withUnsafeBytes { k in value.withUnsafeBytes { v in
            drac_db_put(handle, k.baseAddress, UInt32(k.count), v.baseAddress, UInt32(v.count))
        } }
        if rc != 0 { throw MapError.fromDB(rc, path: path, doing: "put") }
    }

    /// Returns false when the key was not there.
    @discardableResult
    func delete(_ key: [UInt8]) throws(MapError) -> Bool {
        let rc = key.withUnsafeBytes { k in drac_db_del(handle, k.baseAddress, UInt32(k.count)) }
        if rc == DRAC_DB_NOTFOUND { return false }
        if rc != 0 { throw MapError.fromDB(rc, path: path, doing: "delete") }
        return true
    }

    func get(_ key: [UInt8]) throws(MapError) -> [UInt8]? {
        var out: [UInt8]? = nil
        let rc = key.withUnsafeBytes { k -> Int32 in
            var v: UnsafeRawPointer? = nil
            var n: UInt32 = 0
            let rc = drac_db_get(handle, k.baseAddress, UInt32(k.count), &v, &n)
            if rc == 0 { out = n == 0 ? [] : Array(UnsafeRawBufferPointer(start: v, count: Int(n))) }
            return rc
        }
        if rc == DRAC_DB_NOTFOUND { return nil }
        if rc != 0 { throw MapError.fromDB(rc, path: path, doing: "get") }
        return out
    }

    func sync() throws(MapError) {
        let rc = drac_db_sync(handle)
        if rc != 0 { throw MapError.fromDB(rc, path: path, doing: "sync") }
    }

    /// Visits entries in key order (btree) starting after `after` (or at the start), at most
    /// `limit` of them. Returns true when the end of the map was reached.
    /// A hash map has no key order: resuming finds `after` exactly and, if it is gone, restarts.
    func scan(after: [UInt8]?, limit: Int, kind: MapFormatKind,
              _ body: (_ key: [UInt8], _ value: [UInt8]) throws(MapError) -> Void) throws(MapError) -> Bool {
        var cursor: UnsafeMutablePointer<DBC>? = nil
        var rc = drac_db_cursor(handle, &cursor)
        guard rc == 0, let cursor else { throw MapError.fromDB(rc, path: path, doing: "cursor") }
        defer { _ = drac_dbc_close(cursor) }

        var k: UnsafeRawPointer? = nil, v: UnsafeRawPointer? = nil
        var kn: UInt32 = 0, vn: UInt32 = 0
        func copy(_ p: UnsafeRawPointer?, _ n: UInt32) -> [UInt8] {
            n == 0 ? [] : Array(UnsafeRawBufferPointer(start: p, count: Int(n)))
        }
        if let after {
            let op = kind == .btree ? DRAC_DB_SET_RANGE : DRAC_DB_SET
            rc = after.withUnsafeBytes { a in drac_dbc_get(cursor, op, a.baseAddress, UInt32(a.count), &k, &kn, &v, &vn) }
            if rc == DRAC_DB_NOTFOUND {
                if kind == .btree { return true }
                rc = drac_dbc_get(cursor, DRAC_DB_FIRST, nil, 0, &k, &kn, &v, &vn)   // hash: start over
            } else if rc == 0, copy(k, kn) == after {
                rc = drac_dbc_get(cursor, DRAC_DB_NEXT, nil, 0, &k, &kn, &v, &vn)
            }
        } else {
            rc = drac_dbc_get(cursor, DRAC_DB_FIRST, nil, 0, &k, &kn, &v, &vn)
        }
        var seen = 0
        while rc == 0 {
            try body(copy(k, kn), copy(v, vn))
            seen += 1
            if seen >= limit { return false }
            rc = drac_dbc_get(cursor, DRAC_DB_NEXT, nil, 0, &k, &kn, &v, &vn)
        }
        if rc != DRAC_DB_NOTFOUND { throw MapError.fromDB(rc, path: path, doing: "scan") }
        return true
    }
}

/// Mirrors MapFormat.Kind without making the C-facing type depend on the core's enum layout.
typealias MapFormatKind = DRACCore.MapFormat.Kind
import DRACCore
