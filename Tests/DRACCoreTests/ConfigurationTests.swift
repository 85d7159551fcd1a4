// drac.conf parsing, overrides and validation.
import XCTest
@testable import DRACCore

final class ConfigurationTests: XCTestCase {
    func testDefaults() throws {
        let c = try DRACConfig(ConfigSource())
        XCTAssertEqual(c.mapFile, "/etc/drac/dracd.db")
        XCTAssertEqual(c.expireSeconds, 1800)
        XCTAssertEqual(c.mapFormat, MapFormat(kind: .btree, nulTerminated: false, cidrKeys: false))
        XCTAssertEqual(c.allowFile, "/etc/drac/dracd.allow")
        XCTAssertTrue(c.useRpcbind)
        XCTAssertEqual(c.transports, [.udp, .tcp])
    }

    func testFileAndOverrides() throws {
        var s = ConfigSource()
        try s.parseFile("""
        # comment
        map_file = /var/lib/drac/map.db   # trailing comment
        expire=45
        map_type = hash
        listen = 127.0.0.1, ::1
        rpc_transports = tcp
        map_nul_terminate = yes
        idle_timeout = 2m
        pid_file = /tmp/a#b
        """, name: "drac.conf")
        try s.parseOverride("expire=10m")
        let c = try DRACConfig(s)
        XCTAssertEqual(c.mapFile, "/var/lib/drac/map.db")
        XCTAssertEqual(c.expireSeconds, 600)
        XCTAssertEqual(c.mapFormat.kind, .hash)
        XCTAssertTrue(c.mapFormat.nulTerminated)
        XCTAssertEqual(c.listen, [IPAddress("127.0.0.1")!, IPAddress("::1")!])
        XCTAssertEqual(c.transports, [.tcp])
        XCTAssertEqual(c.idleTimeoutSeconds, 120)
        XCTAssertEqual(c.pidFile, "/tmp/a#b")
    }

    func testErrorsNameSourceAndLine() {
        let table: [(String, Int?, String)] = [
            ("mapfile = x\n", 1, "unknown key 'mapfile'"),
            ("\n\nexpire = soon\n", 3, "expire"),
            ("map_type = gdbm\n", 1, "btree or hash"),
            ("rpcbind = maybe\n", 1, "yes or no"),
            ("listen = 1.2.3.400\n", 1, "not an IP address"),
            ("rpc_port = 70000\n", 1, "0 to 65535"),
            ("just words\n", 1, "key = value"),
            ("rpc_transports = sctp\n", 1, "udp and/or tcp"),
            ("expire = 0\n", 1, "expire"),
        ]
        for (text, line, fragment) in table {
            var s = ConfigSource()
            do {
                try s.parseFile(text, name: "test.conf")
                _ = try DRACConfig(s)
                XCTFail("accepted \(text)")
            } catch {
                XCTAssertEqual(error.line, line, text)
                XCTAssertEqual(error.source, "test.conf")
                XCTAssertTrue(error.message.contains(fragment), "\(error.message) lacks \(fragment)")
            }
        }
    }

    func testOverrideErrorsNameTheOverride() {
        var s = ConfigSource()
        XCTAssertThrowsError(try s.parseOverride("nokey")) { e in
            XCTAssertTrue("\(e)".contains("-o nokey"))
        }
    }

    func testEveryKeyIsAccepted() throws {
        // Each documented key parses with a sample value: the list in drac.conf(5) and the enum agree.
        let samples: [ConfigKey: String] = [
            .mapFile: "/x.db", .mapType: "btree", .mapNulTerminate: "no", .mapCidrKeys: "no", .expire: "30",
            .sweepInterval: "1s", .allowFile: "/a", .rpcbind: "yes", .listen: "*", .rpcPort: "0",
            .rpcTransports: "udp tcp", .maxConnections: "10", .idleTimeout: "30s", .rpcMaxRecord: "8192",
            .syslogFacility: "local3", .pidFile: "", .rpcServers: "localhost, 127.0.0.2", .rpcTimeout: "5",
        ]
        // drac-smtpd's keys are checked in SMTPCoreTests (SMTPDConfigTests).
        XCTAssertEqual(Set(samples.keys), Set(ConfigKey.allCases.filter { !$0.rawValue.hasPrefix("smtpd_") && !$0.rawValue.hasPrefix("pop3d_") }))
        var s = ConfigSource()
        for (k, v) in samples { try s.parseOverride("\(k.rawValue)=\(v)") }
        let c = try DRACConfig(s)
        XCTAssertEqual(c.rpcServers, ["localhost", "127.0.0.2"])
        XCTAssertEqual(c.syslogFacility, "local3")
    }
}
