// The Berkeley DB map: round trips, variants, two writers, chunked sweeps, locks, errors.
import XCTest
import Foundation
import Glibc
@testable import DRACCore
@testable import DRACMap

final class MapTests: XCTestCase {
    var dir: String!

    override func setUp() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("dracmap-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func a(_ s: String) -> IPAddress { IPAddress(s)! }

    func testRoundTripAndFileShape() throws {
        let path = dir + "/dracd.db"
        let w = try MapWriter(path: path, format: MapFormat())
        try w.commit([.put(a("192.168.0.100"), expiry: 1795393401), .put(a("2001:db8::1"), expiry: 1795393402)])
        let r = MapReader(path: path, format: MapFormat())
        XCTAssertEqual(try r.expiry(of: a("192.168.0.100")), 1795393401)
        XCTAssertEqual(try r.expiry(of: a("2001:db8::1")), 1795393402)
        XCTAssertNil(try r.expiry(of: a("192.168.0.101")))
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o644)
        // The raw bytes are DRAC's: key text and decimal value, no NUL.
        let entries = try r.entries()
        XCTAssertEqual(entries.map(\.key), [Array("192.168.0.100".utf8), Array("2001:db8::1".utf8)])
        w.close()
    }

    func testVariants() throws {
        for format in [MapFormat(kind: .hash), MapFormat(nulTerminated: true), MapFormat(cidrKeys: true),
                       MapFormat(kind: .hash, nulTerminated: true, cidrKeys: true)] {
            let path = dir + "/v-\(format.kind)-\(format.nulTerminated)-\(format.cidrKeys).db"
            let w = try MapWriter(path: path, format: format)
            try w.commit([.put(a("10.1.2.3"), expiry: 2_000_000_000)])
            let r = MapReader(path: path, format: format)
            XCTAssertEqual(try r.expiry(of: a("10.1.2.3")), 2_000_000_000, "\(format)")
            XCTAssertEqual(try r.entries().first?.key, format.key(for: a("10.1.2.3")))
            w.close()
        }
    }

    func testWrongTypeIsAClearError() throws {
        let path = dir + "/h.db"
        let w = try MapWriter(path: path, format: MapFormat(kind: .hash))
        w.close()
        XCTAssertThrowsError(try MapReader(path: path, format: MapFormat()).entries()) { e in
            XCTAssertTrue("\(e)".contains("not a Berkeley DB btree map"), "\(e)")
        }
    }

    func testMissingAndUnreadableMaps() throws {
        XCTAssertThrowsError(try MapReader(path: dir + "/none.db", format: MapFormat()).entries()) { e in
            XCTAssertEqual((e as? MapError)?.code, .notFound)
        }
        XCTAssertThrowsError(try MapWriter(path: dir + "/none.db", format: MapFormat(), create: false)) { e in
            XCTAssertEqual((e as? MapError)?.code, .notFound)
        }
        let junk = dir + "/junk.db"
        FileManager.default.createFile(atPath: junk, contents: Data("not a database at all, just text\n".utf8))
        XCTAssertThrowsError(try MapReader(path: junk, format: MapFormat()).entries())
    }

    /// Two long-lived writers (rpc.dracd and dracctl) interleave: neither may lose the other's
    /// entries through a stale cache.
    func testInterleavedWritersLoseNothing() throws {
        let path = dir + "/two.db"
        let first = try MapWriter(path: path, format: MapFormat())
        let second = try MapWriter(path: path, format: MapFormat())
        var expected: [IPAddress] = []
        for i in 0..<200 {
            let x = IPAddress.v4(0x0a00_0000 | UInt32(i))
            try (i % 2 == 0 ? first : second).commit([.put(x, expiry: 2_000_000_000 + Int64(i))])
            expected.append(x)
        }
        let got = try MapReader(path: path, format: MapFormat()).entries().compactMap(\.address)
        XCTAssertEqual(Set(got), Set(expected))
        XCTAssertEqual(got.count, 200)
        first.close(); second.close()
    }

    /// rpc.dracd's writer (which keeps its cache and never bumps anything) and dracctl-style
    /// writers overwrite existing keys in place, same size, many times within one clock tick:
    /// the long-lived writer must notice every foreign write and lose none of them.
    func testLongLivedWriterSeesSameSizeWritesOfShortLivedWriters() throws {
        let path = dir + "/gen.db"
        let daemon = try MapWriter(path: path, format: MapFormat(), announceEveryWrite: false)
        let keys = (0..<20).map { IPAddress.v4(0x0a05_0000 | UInt32($0)) }
        try daemon.commit(keys.map { .put($0, expiry: 1_000_000_000) })
        for round in 0..<10 {
            let i = round * 2
            let ctl = try MapWriter(path: path, format: MapFormat(), create: false)
            try ctl.commit([.put(keys[i], expiry: 1_000_000_100 + Int64(round))])   // same length value
            ctl.close()
            try daemon.commit([.put(keys[i + 1], expiry: 1_000_000_200 + Int64(round))])
        }
        let got = Dictionary(uniqueKeysWithValues: try MapReader(path: path, format: MapFormat()).entries().map { ($0.address!, $0.expiry!) })
        for round in 0..<10 {
            XCTAssertEqual(got[keys[round * 2]], 1_000_000_100 + Int64(round), "dracctl's write \(round) lost")
            XCTAssertEqual(got[keys[round * 2 + 1]], 1_000_000_200 + Int64(round), "daemon's write \(round) lost")
        }
        daemon.close()
    }

    func testDeleteAndDeleteIfExpired() throws {
        let path = dir + "/d.db"
        let w = try MapWriter(path: path, format: MapFormat())
        try w.commit([.put(a("10.0.0.1"), expiry: 100), .put(a("10.0.0.2"), expiry: 300)])
        let r = try w.commit([.delete(a("10.0.0.1")), .delete(a("10.0.0.9")),
                              .deleteIfExpired(key: Array("10.0.0.2".utf8), now: 200)])
        XCTAssertEqual(r.found, [true, false, false])
        XCTAssertEqual(r.deleted, 1)
        XCTAssertEqual(try w.commit([.deleteIfExpired(key: Array("10.0.0.2".utf8), now: 300)]).deleted, 1)
        XCTAssertTrue(try w.entries().isEmpty)
        w.close()
    }

    func testChunkedSweepDeletesOnlyExpiredAndLeavesForeignEntries() throws {
        let path = dir + "/s.db"
        let w = try MapWriter(path: path, format: MapFormat())
        var ops: [MapOperation] = []
        for i in 0..<5000 {
            ops.append(.put(.v4(0x0a00_0000 | UInt32(i)), expiry: i % 3 == 0 ? 999 : 5000))
        }
        try w.commit(ops)
        let raw = try BerkeleyDB(path: path, kind: .btree, mode: .readWrite)
        try raw.put(Array("postfix-entry".utf8), Array("OK".utf8))   // someone else's line in a shared map
        try raw.sync()
        raw.close(sync: true)

        var after: [UInt8]? = nil
        var chunks = 0, deleted = 0, scanned = 0
        repeat {
            let c = try w.sweepChunk(after: after, now: 1000, maxScan: 700)
            XCTAssertLessThanOrEqual(c.scanned, 700)
            chunks += 1; deleted += c.deleted; scanned += c.scanned
            after = c.resumeAfter
        } while after != nil
        XCTAssertGreaterThanOrEqual(chunks, 8)
        XCTAssertEqual(deleted, 1667)
        let left = try MapReader(path: path, format: MapFormat()).entries()
        XCTAssertEqual(left.count, 5001 - 1667)
        XCTAssertTrue(left.contains { $0.key == Array("postfix-entry".utf8) && !$0.isLive(now: 0) })
        XCTAssertTrue(left.allSatisfy { $0.address == nil || $0.expiry == 5000 })
        w.close()
    }

    func testWriteInSameSecondIsMadeVisibleToWholeSecondReaders() throws {
        let path = dir + "/t.db"
        let w = try MapWriter(path: path, format: MapFormat())
        // Two writes within one wall-clock second (retry until they land in one).
        var second = 0
        repeat {
            second = Int(time(nil))
            try w.commit([.put(a("10.0.0.1"), expiry: 5)])
            try w.commit([.put(a("10.0.0.2"), expiry: 5)])
        } while Int(time(nil)) != second
        // Not yet past that second: nothing to do.
        var st = stat()
        stat(path, &st)
        let mtime = st.st_mtim.tv_sec
        try w.touchIfNeeded(now: Int64(second))
        stat(path, &st)
        XCTAssertEqual(st.st_mtim.tv_sec, mtime)
        // Once the clock has moved on, the mtime moves to it: a sendmail that looked between the
        // writes (and compares whole seconds) now reopens the map.
        try w.touchIfNeeded(now: Int64(second) + 5)
        stat(path, &st)
        XCTAssertEqual(st.st_mtim.tv_sec, second + 5)
        w.close()
    }

    func testShortLivedWritesAreAnnounced() throws {
        let path = dir + "/tick.db"
        let w = try MapWriter(path: path, format: MapFormat())
        try w.commit([.put(a("10.0.0.1"), expiry: 1_000_000_000)])
        let lock = try MapLock(path: path, exclusive: false, create: false)
        let before = FileIdentity(lock)
        try w.commit([.put(a("10.0.0.1"), expiry: 1_000_000_001)])   // same size, same page
        // Generation bumped, or (without xattrs) the mtime moved: either way the identity differs.
        XCTAssertNotNil(before)
        XCTAssertNotEqual(FileIdentity(lock), before, "another writer could not notice this write")
        w.close()
    }

    func testTruncate() throws {
        let path = dir + "/tr.db"
        let w = try MapWriter(path: path, format: MapFormat())
        try w.commit([.put(a("10.0.0.1"), expiry: 5)])
        w.close()
        let w2 = try MapWriter(path: path, format: MapFormat(), truncate: true)
        XCTAssertTrue(try w2.entries().isEmpty)
        w2.close()
    }

    /// A reader in another process holding Postfix's lock (flock LOCK_SH) blocks our commit
    /// until it lets go.
    func testCommitWaitsForPostfixStyleReaderLock() throws {
        let path = dir + "/l.db"
        let w = try MapWriter(path: path, format: MapFormat())
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        holder.arguments = ["-s", path, "-c", "sleep 1"]
        try holder.run()
        usleep(300_000)
        let start = Date()
        try w.commit([.put(a("10.0.0.1"), expiry: 5)])
        XCTAssertGreaterThan(Date().timeIntervalSince(start), 0.4, "commit did not wait for the shared lock")
        holder.waitUntilExit()
        w.close()
    }

    func testWatchedReaderSeesEverySameSizeWriteWithoutReopeningOtherwise() throws {
        let path = dir + "/w.db"
        // The long-lived writer, as rpc.dracd runs it: in place, no generation bumps.
        let w = try MapWriter(path: path, format: MapFormat(), announceEveryWrite: false)
        try w.commit([.put(a("10.1.0.1"), expiry: 1_000_000_000)])
        let r = WatchedMapReader(path: path, format: MapFormat())
        XCTAssertEqual(try r.expiry(of: a("10.1.0.1")), 1_000_000_000)
        let opened = r.reopens
        for _ in 0..<20 { XCTAssertEqual(try r.expiry(of: a("10.1.0.1")), 1_000_000_000) }
        XCTAssertEqual(r.reopens, opened, "reopened without a change")
        // Same-size values, back to back (same clock tick): every one is seen at once.
        for i in 1...200 {
            let v = Int64(1_000_000_000 + i)
            try w.commit([.put(a("10.1.0.1"), expiry: v)])
            XCTAssertEqual(try r.expiry(of: a("10.1.0.1")), v, "write \(i) not seen")
        }
        try w.commit([.delete(a("10.1.0.1"))])
        XCTAssertNil(try r.expiry(of: a("10.1.0.1")))
        w.close()
        // A short-lived writer (dracctl) and a file replaced by rename (a rebuilt map).
        let d = try MapWriter(path: path, format: MapFormat(), create: false)
        try d.commit([.put(a("10.1.0.2"), expiry: 42)])
        d.close()
        XCTAssertEqual(try r.expiry(of: a("10.1.0.2")), 42)
        let other = dir + "/w2.db"
        let o = try MapWriter(path: other, format: MapFormat())
        try o.commit([.put(a("10.1.0.3"), expiry: 43)])
        o.close()
        XCTAssertEqual(rename(other, path), 0)
        XCTAssertEqual(try r.expiry(of: a("10.1.0.3")), 43)
        XCTAssertNil(try r.expiry(of: a("10.1.0.2")))
    }

    func testWatchedReaderNonWaitingLookupSaysBusy() throws {
        let path = dir + "/wb.db"
        let w = try MapWriter(path: path, format: MapFormat())
        try w.commit([.put(a("10.2.0.1"), expiry: 7)])
        w.close()
        let r = WatchedMapReader(path: path, format: MapFormat())
        XCTAssertEqual(try r.expiry(of: a("10.2.0.1"), wait: false), 7)
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        XCTAssertEqual(flock(fd, LOCK_EX), 0)
        XCTAssertThrowsError(try r.expiry(of: a("10.2.0.1"), wait: false)) { e in
            XCTAssertEqual((e as? MapError)?.code, .busy)
        }
        // A waiting lookup on another thread holds the reader: a non-waiting one must not block.
        let done = DispatchSemaphore(value: 0)
        let target = a("10.2.0.1")
        Thread.detachNewThread {
            _ = try? r.expiry(of: target, wait: true)
            done.signal()
        }
        usleep(200_000)
        let start = Date()
        XCTAssertThrowsError(try r.expiry(of: a("10.2.0.1"), wait: false))
        XCTAssertLessThan(Date().timeIntervalSince(start), 0.5)
        XCTAssertEqual(flock(fd, LOCK_UN), 0)
        XCTAssertEqual(done.wait(timeout: .now() + 5), .success)
        XCTAssertEqual(try r.expiry(of: a("10.2.0.1"), wait: false), 7)
    }

    func testFloorMeasures() throws {
        let l = try MapFloor.measure(path: dir + "/floor.db", count: 5)
        XCTAssertEqual(l.count, 5)
        XCTAssertTrue(l.allSatisfy { $0 > 0 })
    }
}
