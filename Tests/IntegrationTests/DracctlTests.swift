// dracctl against real map files: success paths, error paths, and safety while rpc.dracd runs.
import XCTest
import Foundation
import Glibc
@testable import DRACCore
@testable import DRACRPC

final class DracctlTests: XCTestCase {
    var dir: String!
    var map: String { dir + "/dracd.db" }

    override func setUpWithError() throws {
        try Env.requireSandbox()
        dir = makeTempDir("ctl")
    }

    func makeMap() throws { try createMap(in: dir) }

    func testAddListCheckDelRoundTrip() throws {
        try makeMap()
        let add = dracctl(["add", "192.0.2.5", "--ttl", "10m", "--db", map])
        XCTAssertEqual(add.status, 0, add.output)
        XCTAssertEqual(dracctl(["add", "2001:DB8:0:0::7", "--db", map]).status, 0)
        let list = dracctl(["list", "--db", map])
        XCTAssertEqual(list.status, 0)
        XCTAssertTrue(list.stdout.contains("192.0.2.5"), list.stdout)
        XCTAssertTrue(list.stdout.contains("2001:db8::7"), "canonical form: \(list.stdout)")
        XCTAssertTrue(list.stdout.contains("10m0s") || list.stdout.contains("9m5"), list.stdout)
        let check = dracctl(["check", "192.0.2.5", "--db", map])
        XCTAssertEqual(check.status, 0)
        XCTAssertTrue(check.stdout.contains("may relay until"), check.stdout)
        XCTAssertEqual(dracctl(["del", "192.0.2.5", "--db", map]).status, 0)
        XCTAssertEqual(dracctl(["check", "192.0.2.5", "--db", map]).status, 1)
        let again = dracctl(["del", "192.0.2.5", "--db", map])
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.stderr.contains("has no entry"))
        // expire reports what it did
        XCTAssertEqual(dracctl(["add", "192.0.2.6", "--ttl", "1s", "--db", map]).status, 0)
        sleep(2)
        let expire = dracctl(["expire", "--db", map])
        XCTAssertEqual(expire.status, 0)
        XCTAssertTrue(expire.stdout.hasPrefix("deleted 1 expired entries (2 scanned"), expire.stdout)
        XCTAssertEqual(Set(dumpMap(map).keys), ["2001:db8::7"])
    }

    func testErrorsAreOneLineAndNonZero() throws {
        try makeMap()
        let cases: [([String], Int32, String)] = [
            (["check", "192.0.2.300", "--db", map], 2, "is not an IPv4 or IPv6 address"),
            (["add", "not-an-ip", "--db", map], 2, "is not an IPv4 or IPv6 address"),
            (["add", "0.0.0.0", "--db", map], 2, "cannot be a client address"),
            (["add", "192.0.2.1", "--ttl", "soon", "--db", map], 2, "bad --ttl"),
            (["list", "--db", dir + "/missing.db"], 2, "map file does not exist"),
            (["check", "192.0.2.1", "--db", dir + "/missing.db"], 2, "map file does not exist"),
            (["list", "--db", dir], 2, dir),
            (["list", "-c", dir + "/missing.conf"], 2, "cannot read configuration file"),
            (["list", "-o", "bogus=1", "--db", map], 2, "unknown key 'bogus'"),
            (["frobnicate"], 2, "frobnicate"),
        ]
        for (args, status, text) in cases {
            let r = dracctl(args)
            XCTAssertEqual(r.status, status, "\(args): \(r.output)")
            XCTAssertTrue(r.stderr.hasPrefix("dracctl: "), "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(text), "\(args): \(r.stderr)")
        }
        // /dev/null is an empty configuration (read(2), not a file-size query).
        let empty = dracctl(["list", "-c", "/dev/null", "--db", map])
        XCTAssertEqual(empty.status, 0, empty.output)
        let notDB = dir + "/text.db"
        FileManager.default.createFile(atPath: notDB, contents: Data("hello\n".utf8))
        let r = dracctl(["list", "--db", notDB])
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
    }

    func testConfigFileSuppliesTheMapAndFormat() throws {
        let conf = dir + "/drac.conf"
        FileManager.default.createFile(atPath: conf, contents: Data("map_file = \(dir!)/hash.db\nmap_type = hash\n".utf8))
        let d = try DracdInstance(dir: dir, args: ["-c", conf, "-o", "rpcbind=no", "-o", "listen=127.0.0.1", "-a", dir + "/none.allow"],
                                  map: dir + "/hash.db")
        XCTAssertEqual(addStatus(DRACClient.addBlocking(IPAddress("192.0.2.44")!, servers: ["127.0.0.1:\(d.port)"], timeout: 5)), ["ADD_SUCCESS"])
        XCTAssertEqual(dracctl(["check", "192.0.2.44", "-c", conf]).status, 0)
        XCTAssertTrue(runCommand("db5.3_dump", ["-p", dir + "/hash.db"]).stdout.contains("type=hash"))
        _ = d.stop()
    }

    func testAddThroughRPCReportsEachServer() throws {
        let d = try DracdInstance(dir: dir, args: ["-o", "rpcbind=no", "-o", "listen=127.0.0.1", "-a", dir + "/none.allow"])
        let ok = dracctl(["add", "192.0.2.33", "--server", "127.0.0.1:\(d.port)", "--tcp"])
        XCTAssertEqual(ok.status, 0, ok.output)
        XCTAssertEqual(ok.stdout, "127.0.0.1:\(d.port): ADD_SUCCESS\n")
        let mixed = dracctl(["add", "192.0.2.34", "--server", "127.0.0.1:\(d.port),127.0.0.1:9", "--timeout", "2s"])
        XCTAssertEqual(mixed.status, 1, mixed.output)
        XCTAssertTrue(mixed.stdout.contains("127.0.0.1:\(d.port): ADD_SUCCESS"), mixed.stdout)
        XCTAssertTrue(mixed.stdout.contains("127.0.0.1:9: failed:"), mixed.stdout)
        XCTAssertEqual(Set(dumpMap(d.map).keys), ["192.0.2.33", "192.0.2.34"])
        _ = d.stop()
    }

    /// dracctl writes while rpc.dracd commits: nothing written by either is lost.
    func testDracctlAndDaemonWriteConcurrently() throws {
        let d = try DracdInstance(dir: dir, args: ["-o", "rpcbind=no", "-o", "listen=127.0.0.1", "-a", dir + "/none.allow"])
        let t = Thread {
            for i in 0..<150 {
                _ = DRACClient.addBlocking(.v4(0x0a02_0000 | UInt32(i)), servers: ["127.0.0.1:\(d.port)"], timeout: 5)
            }
        }
        t.start()
        for i in 0..<30 {
            XCTAssertEqual(dracctl(["add", "10.3.0.\(i)", "--db", d.map]).status, 0)
        }
        XCTAssertTrue(eventually(60) { dumpMap(d.map).count == 180 }, "have \(dumpMap(d.map).count) of 180 entries")
        _ = d.stop()
        XCTAssertEqual(dumpMap(d.map).count, 180)
    }
}

extension DracctlTests {
    func testRpcFlagUsesRpcServersFromTheConfig() throws {
        let d = try DracdInstance(dir: dir, args: ["-o", "rpcbind=no", "-o", "listen=127.0.0.1", "-a", dir + "/none.allow"])
        let r = dracctl(["add", "192.0.2.35", "--rpc", "-o", "rpc_servers=127.0.0.1:\(d.port)"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(r.stdout, "127.0.0.1:\(d.port): ADD_SUCCESS\n")
        let ttl = dracctl(["add", "192.0.2.36", "--rpc", "--ttl", "5m"])
        XCTAssertEqual(ttl.status, 2)
        XCTAssertEqual(Set(dumpMap(d.map).keys), ["192.0.2.35"])
        _ = d.stop()
    }
}

extension DracctlTests {
    func testSharedOptionsMayComeBeforeTheCommand() throws {
        try makeMap()
        let conf = dir + "/drac.conf"
        FileManager.default.createFile(atPath: conf, contents: Data("map_file = \(map)\n".utf8))
        XCTAssertEqual(dracctl(["-c", conf, "add", "192.0.2.77", "--ttl", "5m"]).status, 0)
        XCTAssertEqual(dracctl(["-c", conf, "check", "192.0.2.77"]).status, 0)
        XCTAssertEqual(dracctl(["--db", map, "-o", "map_type=btree", "check", "192.0.2.77"]).status, 0)
        XCTAssertEqual(dracctl(["--db", map, "check", "192.0.2.78"]).status, 1)
    }
}
