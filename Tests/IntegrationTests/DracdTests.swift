// rpc.dracd with the real rpcbind, rpcinfo, db5.3_dump, postmap and our client, in a private namespace.
import XCTest
import Foundation
import Glibc
@testable import DRACCore
@testable import DRACRPC

final class DracdTests: XCTestCase {
    nonisolated(unsafe) static var rpcbind: Rpcbind?
    nonisolated(unsafe) static var rpcbindDir = ""
    var dir: String!

    override class func tearDown() {
        rpcbind?.stop()
        rpcbind = nil
    }

    override func setUpWithError() throws {
        try Env.requireSandbox()
        if DracdTests.rpcbind == nil {
            DracdTests.rpcbindDir = makeTempDir("rpcbind")
            DracdTests.rpcbind = try Rpcbind(dir: DracdTests.rpcbindDir)
        }
        dir = makeTempDir(name.split(separator: " ").last.map { String($0.filter { $0.isLetter }) } ?? "t")
    }

    func start(_ args: [String] = [], map: String? = nil) throws -> DracdInstance {
        try DracdInstance(dir: dir, args: ["-a", dir + "/dracd.allow", "-o", "idle_timeout=2s"] + args, map: map)
    }

    func writeAllow(_ text: String) {
        FileManager.default.createFile(atPath: dir + "/dracd.allow", contents: Data(text.utf8))
    }

    // MARK: registration

    func testRegistersWithRpcbindAndUnregistersOnSIGTERM() throws {
        let d = try start()
        let p = runCommand("rpcinfo", ["-p", "127.0.0.1"])
        let lines = p.stdout.split(separator: "\n").filter { $0.contains("900101") }
        for v in ["1", "2"] {
            for proto in ["udp", "tcp"] {
                XCTAssertTrue(lines.contains { $0.split(separator: " ").elementsEqual(["900101", Substring(v), Substring(proto), Substring(String(d.port))]) },
                              "missing 900101 v\(v) \(proto) port \(d.port) in:\n\(p.stdout)")
            }
        }
        // NULL procedure through rpcbind, each transport and version, IPv4 and IPv6.
        for args in [["-u", "127.0.0.1", "900101", "1"], ["-t", "127.0.0.1", "900101", "2"],
                     ["-T", "udp6", "::1", "900101", "2"], ["-T", "tcp6", "::1", "900101", "1"]] {
            let r = runCommand("rpcinfo", args)
            XCTAssertEqual(r.status, 0, "rpcinfo \(args): \(r.output)")
            XCTAssertTrue(r.stdout.contains("ready and waiting"), r.output)
        }
        XCTAssertEqual(d.stop(), 0)
        XCTAssertTrue(d.log.contains("stopped"), d.log)
        let after = runCommand("rpcinfo", ["-p", "127.0.0.1"]).stdout
        XCTAssertFalse(after.contains("900101"), "still registered after SIGTERM:\n\(after)")
    }

    // MARK: adds through rpcbind, read back by every reader

    func testAddsOverUDPAndTCPAreReadByDumpPostmapAndDracctl() throws {
        let d = try start()
        let v4 = IPAddress("192.0.2.10")!, v6 = IPAddress("2001:db8::b8")!
        XCTAssertEqual(addStatus(DRACClient.addBlocking(v4, servers: ["localhost"], transport: .udp, timeout: 5)), ["ADD_SUCCESS"])
        XCTAssertEqual(addStatus(DRACClient.addBlocking(v6, servers: ["127.0.0.1"], transport: .tcp, timeout: 5)), ["ADD_SUCCESS"])
        XCTAssertEqual(addStatus(DRACClient.addBlocking(IPAddress("198.51.100.7")!, servers: ["::1"], transport: .udp, timeout: 5)), ["ADD_SUCCESS"])
        // An IPv4-mapped address is stored as IPv4 text (what the MTAs look up).
        XCTAssertEqual(addStatus(DRACClient.addBlocking(IPAddress("::ffff:203.0.113.9")!, servers: ["::1"], transport: .tcp, timeout: 5)), ["ADD_SUCCESS"])

        // ADD_SUCCESS means durable: the entries are in the file now, in DRAC's format.
        let dump = runCommand("db5.3_dump", ["-p", d.map]).stdout
        XCTAssertTrue(dump.contains("type=btree"), dump)
        XCTAssertTrue(dump.contains("db_pagesize=512"), dump)
        let map = dumpMap(d.map)
        XCTAssertEqual(Set(map.keys), ["192.0.2.10", "2001:db8::b8", "198.51.100.7", "203.0.113.9"])
        let now = Int64(Date().timeIntervalSince1970)
        for (_, v) in map {
            let e = Int64(v)!
            XCTAssertTrue(abs(e - (now + 1800)) <= 5, "expiry \(v) is not now + 30 minutes")
        }
        var st = stat()
        stat(d.map, &st)
        XCTAssertEqual(st.st_mode & 0o777, 0o644)

        let pm = postmapQuery("192.0.2.10", map: d.map, dir: dir)
        XCTAssertEqual(pm.status, 0, pm.output)
        XCTAssertEqual(pm.stdout.trimmingCharacters(in: .whitespacesAndNewlines), map["192.0.2.10"])
        XCTAssertEqual(postmapQuery("2001:db8::b8", map: d.map, dir: dir).status, 0)
        XCTAssertNotEqual(postmapQuery("192.0.2.11", map: d.map, dir: dir).status, 0)

        XCTAssertEqual(dracctl(["check", "192.0.2.10", "--db", d.map]).status, 0)
        XCTAssertEqual(dracctl(["check", "2001:db8:0::b8", "--db", d.map]).status, 0)
        XCTAssertEqual(dracctl(["check", "192.0.2.11", "--db", d.map]).status, 1)

        // Log lines a mail admin can grep.
        XCTAssertTrue(d.log.contains("add 192.0.2.10 from 127.0.0.1 udp v1 expires "), d.log)
        XCTAssertTrue(d.log.contains("add 2001:db8::b8 from 127.0.0.1 tcp v2 expires "), d.log)
        XCTAssertTrue(d.log.contains("add 198.51.100.7 from ::1 udp v1"), d.log)
        XCTAssertEqual(d.stop(), 0)
    }

    func testOneCallToSeveralServersReportsEachServer() throws {
        let d = try start()
        let outcomes = DRACClient.addBlocking(IPAddress("192.0.2.20")!, servers: ["127.0.0.1", "127.0.0.1:1", "nonexistent.invalid", "127.0.0.1:\(d.port)"],
                                              transport: .udp, timeout: 3)
        let s = addStatus(outcomes)
        XCTAssertEqual(s[0], "ADD_SUCCESS")
        XCTAssertTrue(s[1].hasPrefix("error"), s[1])
        XCTAssertTrue(s[2].contains("cannot resolve"), s[2])
        XCTAssertEqual(s[3], "ADD_SUCCESS")
        _ = d.stop()
    }

    func testClientNeverBlocksPastItsTimeout() throws {
        // A UDP socket that never answers stands in for a hung server.
        let silent = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(silent) }
        _ = RawSocketAddress(IPAddress("127.0.0.1")!, port: 0).bind(silent)
        var sin = sockaddr_in(); var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(silent, $0, &len) } }
        let port = Int(UInt16(bigEndian: sin.sin_port))
        let start = Date()
        let o = DRACClient.addBlocking(IPAddress("192.0.2.30")!, servers: ["127.0.0.1:\(port)"], transport: .udp, timeout: 1.0)
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertEqual(addStatus(o), ["error: timed out"])
        XCTAssertLessThan(elapsed, 1.5)
    }

    // MARK: allow list

    func testAllowListIPv4CIDRAndIPv6Callers() throws {
        writeAllow("""
        # DRAC format, CIDR and IPv6
        255.255.255.255 127.0.0.1
        127.0.0.64/26
        2001:db8::5
        """)
        let d = try start()
        func add(_ a: String, from src: String?, _ server: String = "127.0.0.1", _ t: DRACClient.Transport = .udp) -> String {
            addStatus(DRACClient.addBlocking(IPAddress(a)!, servers: [server], transport: t, timeout: 5,
                                             sourceAddress: src.flatMap { IPAddress($0) }))[0]
        }
        XCTAssertEqual(add("192.0.2.1", from: "127.0.0.1"), "ADD_SUCCESS")
        XCTAssertEqual(add("192.0.2.2", from: "127.0.0.70"), "ADD_SUCCESS")
        XCTAssertEqual(add("192.0.2.3", from: "127.0.0.5"), "ADD_PERM")
        XCTAssertEqual(add("192.0.2.4", from: "127.0.0.128", "127.0.0.1", .tcp), "ADD_PERM")
        XCTAssertEqual(add("2001:db8::100", from: "2001:db8::5", "::1"), "ADD_SUCCESS")
        XCTAssertEqual(add("2001:db8::101", from: "2001:db8::6", "::1", .tcp), "ADD_PERM")
        XCTAssertEqual(add("2001:db8::102", from: "::1", "::1"), "ADD_PERM")
        XCTAssertEqual(Set(dumpMap(d.map).keys), ["192.0.2.1", "192.0.2.2", "2001:db8::100"])
        XCTAssertTrue(d.log.contains("refused add 192.0.2.3 from 127.0.0.5 udp v1: caller not in allow list"), d.log)
        XCTAssertTrue(d.log.contains("refused add 2001:db8::101 from 2001:db8::6 tcp v2: caller not in allow list"), d.log)
        _ = d.stop()
    }

    func testMissingAllowFileMeansLoopbackAndBadAllowFileStopsStart() throws {
        let d = try start()   // no allow file written
        XCTAssertEqual(addStatus(DRACClient.addBlocking(IPAddress("192.0.2.1")!, servers: ["127.0.0.1"], timeout: 5,
                                                        sourceAddress: IPAddress("127.0.0.9"))), ["ADD_SUCCESS"])
        // The namespace's own addresses count as "this host".
        XCTAssertEqual(addStatus(DRACClient.addBlocking(IPAddress("192.0.2.2")!, servers: ["::1"], timeout: 5,
                                                        sourceAddress: IPAddress("2001:db8::6"))), ["ADD_SUCCESS"])
        _ = d.stop()
        writeAllow("255.255.255.0 127.0.0.1\n")
        XCTAssertThrowsError(try start()) { e in
            XCTAssertTrue("\(e)".contains("line 1: netaddr 127.0.0.1 has bits outside netmask"), "\(e)")
        }
    }

    func testUnusableAddressesAreRefused() throws {
        let d = try start()
        for a in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "::", "ff02::1"] {
            XCTAssertEqual(addStatus(DRACClient.addBlocking(IPAddress(a)!, servers: ["127.0.0.1"], timeout: 5)), ["ADD_PERM"], a)
        }
        XCTAssertTrue(dumpMap(d.map).isEmpty)
        _ = d.stop()
    }

    // MARK: malformed input

    func testMalformedCallsGetRPCErrorsAndStoreNothing() throws {
        let d = try start()
        let port = d.port
        let v1 = [UInt8]([192, 0, 2, 99])
        // accept_stat replies
        XCTAssertEqual(acceptStat(rawUDP(dracCall(args: [192, 0]), port: port)), 4, "short args: GARBAGE_ARGS")
        XCTAssertEqual(acceptStat(rawUDP(dracCall(args: v1 + [0, 0, 0, 0]), port: port)), 4, "long args: GARBAGE_ARGS")
        XCTAssertEqual(acceptStat(rawUDP(dracCall(vers: 2, args: v1), port: port)), 4, "v2 with v1 args: GARBAGE_ARGS")
        XCTAssertEqual(acceptStat(rawUDP(dracCall(vers: 7, args: v1), port: port)), 2, "PROG_MISMATCH")
        XCTAssertEqual(acceptStat(rawUDP(dracCall(proc: 9, args: v1), port: port)), 3, "PROC_UNAVAIL")
        XCTAssertEqual(acceptStat(rawUDP(dracCall(prog: 100003, args: v1), port: port)), 1, "PROG_UNAVAIL")
        // denied replies
        let rpcMismatch = rawUDP(dracCall(rpcvers: 5, args: v1), port: port)
        XCTAssertEqual(rpcMismatch.map { Array($0[8..<12]) }, [0, 0, 0, 1], "MSG_DENIED")
        XCTAssertEqual(rpcMismatch.map { Array($0[12..<16]) }, [0, 0, 0, 0], "RPC_MISMATCH")
        let badCred = rawUDP(dracCall(credBody: [UInt8](repeating: 7, count: 500), args: v1), port: port)
        XCTAssertEqual(badCred.map { Array($0[12..<16]) }, [0, 0, 0, 1], "AUTH_ERROR")
        // undecodable: dropped, no reply
        var pastEnd = XDRWriter()
        pastEnd.uint32(43); pastEnd.uint32(0); pastEnd.uint32(2); pastEnd.uint32(900101); pastEnd.uint32(1); pastEnd.uint32(1)
        pastEnd.uint32(0); pastEnd.uint32(300)   // credential length past the datagram
        XCTAssertNil(rawUDP(pastEnd.bytes, port: port, timeout: 0.5))
        XCTAssertNil(rawUDP([1, 2, 3], port: port, timeout: 0.5))
        // rpc_max_record (8192 by default) bounds a datagram: one of exactly that size is
        // decoded (its arguments are too long: GARBAGE_ARGS), one octet more is dropped.
        let header = dracCall(args: []).count
        let atLimit = dracCall(args: v1 + [UInt8](repeating: 0, count: 8192 - header - v1.count))
        XCTAssertEqual(atLimit.count, 8192)
        XCTAssertEqual(acceptStat(rawUDP(atLimit, port: port)), 4, "8192-byte datagram: GARBAGE_ARGS")
        XCTAssertNil(rawUDP(atLimit + [0], port: port, timeout: 0.5), "8193-byte datagram answered")
        // the same over TCP: an error reply on the connection
        let tcp = try XCTUnwrap(RawTCP(port: port))
        tcp.send(RPCRecordDecoder.frame(dracCall(xid: 77, args: [1])))
        let r = tcp.receive(timeout: 2)
        XCTAssertEqual(r.map { Array($0.dropFirst(4)) }.flatMap { acceptStat($0) }, 4)
        // after all of that, nothing was stored and the daemon still serves
        XCTAssertTrue(dumpMap(d.map).isEmpty, "junk stored: \(dumpMap(d.map))")
        XCTAssertEqual(addStatus(DRACClient.addBlocking(IPAddress("192.0.2.50")!, servers: ["127.0.0.1"], timeout: 5)), ["ADD_SUCCESS"])
        XCTAssertTrue(d.log.contains("bad call from 127.0.0.1 udp: v1 ADD arguments too short (2 bytes, need 4)"), d.log)
        XCTAssertTrue(d.log.contains("dropped message from 127.0.0.1 udp: credential runs past the end"), d.log)
        XCTAssertTrue(d.log.contains("bad call from 127.0.0.1 udp: credential of 500 bytes (limit 400)"), d.log)
        XCTAssertTrue(d.log.contains("dropped datagram from 127.0.0.1 udp: over 8192 bytes (rpc_max_record)"), d.log)
        _ = d.stop()
    }

    func testHugeRecordsIdleConnectionsAndConnectionLimit() throws {
        let d = try start(["-o", "max_connections=3"])
        // A 2 GiB announcement is refused at once and does not stall anyone else.
        let huge = try XCTUnwrap(RawTCP(port: d.port))
        huge.send([0xff, 0xff, 0xff, 0xff, 1, 2, 3])
        XCTAssertTrue(huge.closedByPeer(within: 2))
        // An endless stream of non-final fragments is cut off at the record limit.
        let endless = try XCTUnwrap(RawTCP(port: d.port))
        for _ in 0..<4 { endless.send([0, 0, 0x10, 0] + [UInt8](repeating: 0, count: 4096)) }
        XCTAssertTrue(endless.closedByPeer(within: 2))
        // An idle connection is closed after idle_timeout (2 s here).
        let idle = try XCTUnwrap(RawTCP(port: d.port))
        let start = Date()
        XCTAssertTrue(idle.closedByPeer(within: 6))
        XCTAssertGreaterThan(Date().timeIntervalSince(start), 1.5)
        // Only max_connections at once: the fourth is closed straight away.
        let held = (0..<3).compactMap { _ in RawTCP(port: d.port) }
        XCTAssertEqual(held.count, 3)
        usleep(200_000)
        let extra = try XCTUnwrap(RawTCP(port: d.port))
        XCTAssertTrue(extra.closedByPeer(within: 2))
        // Meanwhile UDP clients are served.
        XCTAssertEqual(addStatus(DRACClient.addBlocking(IPAddress("192.0.2.60")!, servers: ["127.0.0.1"], timeout: 5)), ["ADD_SUCCESS"])
        XCTAssertTrue(d.log.contains("closing tcp connection from 127.0.0.1: record of 2147483647 bytes announced (limit 8192)"), d.log)
        XCTAssertTrue(d.log.contains("refused tcp connection from 127.0.0.1: 3 connections open"), d.log)
        XCTAssertEqual(Set(dumpMap(d.map).keys), ["192.0.2.60"])
        _ = d.stop()
    }

    /// A TCP client that streams calls and never reads the replies is not read any further
    /// once its replies back up (they would otherwise pile up in rpc.dracd's memory for as long
    /// as it keeps sending); the daemon keeps serving others.
    func testTCPClientThatDoesNotReadIsNotRead() throws {
        let d = try start(["-o", "idle_timeout=60s"])
        let tcp = try XCTUnwrap(RawTCP(port: d.port, receiveBuffer: 4096))
        let one = RPCRecordDecoder.frame(dracCall(xid: 1, proc: 0, args: []))
        // 300,000 replies (8.4 MB) outgrow the kernel's socket buffers, whatever the speed.
        let count = 300_000
        var calls: [UInt8] = []
        calls.reserveCapacity(one.count * count)
        for _ in 0..<count { calls += one }
        let sender = Thread { tcp.send(calls) }
        sender.start()
        let before = residentKB(d.process.pid)
        var during = before
        // Until the daemon stops reading the client (at most 60 s), then 2 s more.
        let deadline = Date().addingTimeInterval(60)
        while !d.log.contains("tcp connection from 127.0.0.1 does not read its replies") && Date() < deadline {
            usleep(200_000)
            during = max(during, residentKB(d.process.pid))
        }
        for _ in 0..<10 { usleep(200_000); during = max(during, residentKB(d.process.pid)) }
        XCTAssertTrue(d.log.contains("tcp connection from 127.0.0.1 does not read its replies"), d.log)
        XCTAssertGreaterThan(before, 0)
        XCTAssertLessThan(during - before, 4 * 1024, "rpc.dracd grew by \(during - before) KB for replies nobody read")
        XCTAssertEqual(addStatus(DRACClient.addBlocking(IPAddress("192.0.2.61")!, servers: ["127.0.0.1"], transport: .tcp, timeout: 5)), ["ADD_SUCCESS"])
        shutdown(tcp.fd, Int32(SHUT_RDWR))
        _ = d.stop()
    }

    // MARK: concurrency

    func testConcurrentAddsAreAllDurable() throws {
        let d = try start()
        let group = DispatchGroup()
        let lock = NSLock()
        var results: [String] = []
        for c in 0..<32 {
            group.enter()
            Thread {
                for i in 0..<10 {
                    let a = IPAddress.v4(0x0a00_0000 | UInt32(c << 8 | i))
                    let s = addStatus(DRACClient.addBlocking(a, servers: ["127.0.0.1:\(d.port)"], transport: c % 2 == 0 ? .udp : .tcp, timeout: 10))
                    lock.lock(); results += s; lock.unlock()
                }
                group.leave()
            }.start()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(results.count, 320)
        XCTAssertEqual(results.filter { $0 == "ADD_SUCCESS" }.count, 320, "\(Set(results))")
        XCTAssertEqual(dumpMap(d.map).count, 320)
        _ = d.stop()
    }

    // MARK: expiry

    func testExpiredEntriesAreNeverLiveAndAreDeletedWithinSeconds() throws {
        // Without a daemon: an entry past its time stays in the file but is not live.
        let map = dir + "/dracd.db"
        let first = try start(map: map)
        _ = first.stop()
        // Expiries are whole seconds: a 2 s entry lives at least 1 s, so the first check is safe.
        XCTAssertEqual(dracctl(["add", "192.0.2.70", "--ttl", "2s", "--db", map]).status, 0)
        XCTAssertEqual(dracctl(["add", "192.0.2.71", "--ttl", "1h", "--db", map]).status, 0)
        XCTAssertEqual(dracctl(["check", "192.0.2.70", "--db", map]).status, 0)
        sleep(3)
        let check = dracctl(["check", "192.0.2.70", "--db", map])
        XCTAssertEqual(check.status, 1)
        XCTAssertTrue(check.stdout.contains("expired"), check.output)
        XCTAssertNotNil(dumpMap(map)["192.0.2.70"], "deleted although no sweep ran")
        let list = dracctl(["list", "--db", map]).stdout
        XCTAssertTrue(list.split(separator: "\n").contains { $0.hasPrefix("192.0.2.70") && $0.hasSuffix("expired") }, list)
        let json = dracctl(["list", "--json", "--db", map]).stdout
        let rows = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [[String: Any]]
        XCTAssertEqual(rows.first { $0["address"] as? String == "192.0.2.70" }?["live"] as? Bool, false)
        XCTAssertEqual(rows.first { $0["address"] as? String == "192.0.2.71" }?["live"] as? Bool, true)

        // The daemon deletes it within seconds of starting; entries it adds go within seconds of expiry.
        let d = try start(["-o", "expire=3s"], map: map)
        XCTAssertTrue(eventually(5) { dumpMap(map)["192.0.2.70"] == nil }, "old expired entry not swept")
        XCTAssertEqual(addStatus(DRACClient.addBlocking(IPAddress("192.0.2.72")!, servers: ["127.0.0.1"], timeout: 5)), ["ADD_SUCCESS"])
        XCTAssertEqual(dracctl(["check", "192.0.2.72", "--db", map]).status, 0)
        let added = Date()
        XCTAssertTrue(eventually(10) { dumpMap(map)["192.0.2.72"] == nil }, "new entry not deleted after expiry")
        let gone = Date().timeIntervalSince(added)
        XCTAssertGreaterThan(gone, 2.0, "deleted before it expired")
        XCTAssertLessThan(gone, 6.5, "deleted long after expiry")
        XCTAssertNotNil(dumpMap(map)["192.0.2.71"], "a live entry was deleted")
        XCTAssertTrue(d.log.contains("sweep: deleted 1 expired entries"), d.log)
        _ = d.stop()
    }

    // MARK: signals and restarts

    func testSIGHUPReloadsAllowListWithoutDroppingRequests() throws {
        writeAllow("127.0.0.1\n")
        let d = try start()
        XCTAssertEqual(addStatus(DRACClient.addBlocking(IPAddress("192.0.2.80")!, servers: ["127.0.0.1"], timeout: 5,
                                                        sourceAddress: IPAddress("127.0.0.7"))), ["ADD_PERM"])
        // Reload repeatedly while a client adds: every add is answered.
        let done = NSLock()
        var statuses: [String] = []
        let t = Thread {
            for i in 0..<100 {
                let s = addStatus(DRACClient.addBlocking(.v4(0x0a01_0000 | UInt32(i)), servers: ["127.0.0.1"], timeout: 5))
                done.lock(); statuses += s; done.unlock()
            }
        }
        t.start()
        writeAllow("127.0.0.1\n127.0.0.7\n")
        for _ in 0..<10 { kill(d.process.pid, SIGHUP); usleep(50_000) }
        XCTAssertTrue(eventually(30) { done.lock(); defer { done.unlock() }; return statuses.count == 100 })
        XCTAssertEqual(Set(statuses), ["ADD_SUCCESS"])
        XCTAssertEqual(addStatus(DRACClient.addBlocking(IPAddress("192.0.2.81")!, servers: ["127.0.0.1"], timeout: 5,
                                                        sourceAddress: IPAddress("127.0.0.7"))), ["ADD_SUCCESS"])
        XCTAssertTrue(d.log.contains("reloaded: expire 30m, allow list: \(dir!)/dracd.allow, 2 rules"), d.log)
        // A broken allow file on reload keeps the old list.
        writeAllow("not an address\n")
        kill(d.process.pid, SIGHUP)
        XCTAssertTrue(d.process.waitForLog("reload failed, keeping the previous settings"))
        XCTAssertEqual(addStatus(DRACClient.addBlocking(IPAddress("192.0.2.82")!, servers: ["127.0.0.1"], timeout: 5,
                                                        sourceAddress: IPAddress("127.0.0.7"))), ["ADD_SUCCESS"])
        XCTAssertEqual(d.stop(), 0)
    }

    func testRestartKeepsEntriesAndDashIEmptiesTheMap() throws {
        let d = try start()
        XCTAssertEqual(addStatus(DRACClient.addBlocking(IPAddress("192.0.2.90")!, servers: ["127.0.0.1"], timeout: 5)), ["ADD_SUCCESS"])
        XCTAssertEqual(d.stop(SIGINT), 0)
        let again = try start()
        XCTAssertNotNil(dumpMap(again.map)["192.0.2.90"])
        XCTAssertEqual(again.stop(), 0)
        let fresh = try start(["-i"])
        XCTAssertTrue(dumpMap(fresh.map).isEmpty)
        XCTAssertEqual(addStatus(DRACClient.addBlocking(IPAddress("192.0.2.91")!, servers: ["127.0.0.1"], timeout: 5)), ["ADD_SUCCESS"])
        XCTAssertEqual(Set(dumpMap(fresh.map).keys), ["192.0.2.91"])
        XCTAssertEqual(fresh.stop(), 0)
    }

    func testDaemonizesAndReportsStartErrors() throws {
        let pidFile = dir + "/dracd.pid"
        let ok = runCommand(Env.bin + "/rpc.dracd", ["-o", "pid_file=" + pidFile, "-a", dir + "/none.allow", dir + "/dracd.db"])
        XCTAssertEqual(ok.status, 0, ok.output)
        let pidText = try String(contentsOfFile: pidFile, encoding: .utf8)
        let pid = try XCTUnwrap(pid_t(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        XCTAssertEqual(kill(pid, 0), 0, "daemon not running")
        XCTAssertTrue(runCommand("rpcinfo", ["-u", "127.0.0.1", "900101", "1"]).stdout.contains("ready and waiting"))
        kill(pid, SIGTERM)
        XCTAssertTrue(eventually(10) { kill(pid, 0) != 0 })
        XCTAssertFalse(FileManager.default.fileExists(atPath: pidFile))

        let bad = runCommand(Env.bin + "/rpc.dracd", ["-o", "expire=soon", dir + "/dracd.db"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("-o expire=soon: expire"), bad.output)
        let cannot = runCommand(Env.bin + "/rpc.dracd", ["-o", "pid_file=", "-a", dir + "/none.allow", "/nonexistent-dir/dracd.db"])
        XCTAssertEqual(cannot.status, 1)
        XCTAssertTrue(cannot.stderr.contains("cannot open map"), cannot.output)
    }
}
