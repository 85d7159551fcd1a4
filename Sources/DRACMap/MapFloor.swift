// The benchmark floor: what one durable add costs when each add is its own put + sync.
import CBerkeleyDB
import DRACCore
import Glibc

/// DRAC 1.12 pays one Berkeley DB put plus one sync per add. Benchmarks measure this on the
/// same disk as the daemon's map, in the same run, as the figure to beat.
public enum MapFloor {
    /// Creates a fresh btree map at `path` (512-byte pages, as rpc.dracd) and times `count`
    /// put + DB->sync pairs. Returns each pair's latency in seconds.
    public static func measure(path: String, count: Int) throws(MapError) -> [Double] {
        _ = unlink(path)
        let db = try BerkeleyDB(path: path, kind: .btree, mode: .create)
        defer { db.close(sync: true); _ = unlink(path) }
        let format = MapFormat()
        var latencies: [Double] = []
        latencies.reserveCapacity(count)
        for i in 0..<count {
            let address = IPAddress.v4(0x0a00_0000 | UInt32(i & 0x00ff_ffff))
            let start = monotonicNanos()
            try db.put(format.key(for: address), format.value(forExpiry: 1_800_000_000 + Int64(i)))
            try db.sync()
            latencies.append(Double(monotonicNanos() - start) / 1e9)
        }
        return latencies
    }
}
