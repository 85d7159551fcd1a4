// Pop-before-SMTP end to end: POP3 login -> rpc.dracd (via the real rpcbind) -> map ->
// drac-smtpd and a Postfix front that both let that client relay, and nobody else.
import XCTest
import Foundation
import Glibc

final class StackTests: XCTestCase {
    override func setUpWithError() throws { try Env.requireSandbox() }

    func testPOP3LoginLetsThatClientRelayAndNobodyElse() throws {
        let dir = makeTempDir("stack")
        let password = "wonderland"
        makeSASLDB(dir + "/sasldb2", users: ["alice": password])
        chmod(dir + "/sasldb2", 0o644)
        Mailbox.deliver(Mailbox.message(subject: "hi", body: ["hello"]), to: dir + "/mail/example.org/alice")
        XCTAssertEqual(runCommand("chown", ["-R", "nobody:nogroup", dir + "/mail"]).status, 0)

        let rpcbind = try Rpcbind(dir: dir)
        defer { rpcbind.stop() }
        // rpc.dracd registered with rpcbind; its default allow list (no file) admits loopback.
        let dracd = try DracdInstance(dir: dir, args: ["-a", dir + "/missing.allow"])
        defer { _ = dracd.stop() }
        let map = dracd.map
        let pop = try Pop3dInstance(dir: dir, settings: [
            "pop3d_mail_user = nobody",
            "pop3d_use_drac = yes",
            "rpc_servers = localhost",
            "rpc_timeout = 3s",
        ])
        defer { pop.stop() }
        let sink = try SmtpSink(dir: dir)
        defer { sink.stop() }
        let smtpd = try SmtpdInstance(dir: dir, backendPort: sink.port, settings: ["smtpd_local_domains = example.org"],
                                      listen: "smtp:127.0.0.1:0")
        defer { smtpd.stop() }
        let front = try PostfixBackend(dir: dir, extraMain: [
            "mynetworks = 127.0.0.1/32",
            "smtpd_relay_restrictions = permit_mynetworks, check_client_access btree:\(String(map.dropLast(3))), reject_unauth_destination",
        ])
        defer { front.stop() }

        func relays(_ port: Int, from source: String) -> CommandResult {
            runCommand("swaks", ["--server", "127.0.0.1:\(port)", "--local-interface", source, "--timeout", "20",
                                 "--hide-informational", "--from", "alice@example.org", "--to", "friend@elsewhere.example"], timeout: 60)
        }

        // Before any login: neither gateway lets 127.0.0.5 relay.
        XCTAssertNotEqual(relays(smtpd.port, from: "127.0.0.5").status, 0)
        XCTAssertNotEqual(relays(front.port, from: "127.0.0.5").status, 0)

        // A POP3 login from 127.0.0.5 (curl) records 127.0.0.5 through RPC.
        let login = runCommand("curl", ["-sS", "--interface", "127.0.0.5", "--max-time", "20",
                                        "pop3://127.0.0.1:\(pop.port)/", "-u", "alice@example.org:\(password)"])
        XCTAssertEqual(login.status, 0, login.output + pop.log)
        XCTAssertTrue(eventually(10) { dumpMap(map)["127.0.0.5"] != nil }, "map: \(dumpMap(map))\n\(pop.log)\n\(dracd.log)")
        XCTAssertTrue(pop.log.contains("drac add 127.0.0.5 to localhost: ok"), pop.log)
        XCTAssertTrue(dracd.log.contains("add 127.0.0.5"), dracd.log)
        XCTAssertEqual(dracctl(["check", "127.0.0.5", "--db", map]).status, 0)

        // drac-smtpd and the Postfix front now relay for 127.0.0.5, still not for 127.0.0.6.
        let viaGateway = relays(smtpd.port, from: "127.0.0.5")
        XCTAssertEqual(viaGateway.status, 0, viaGateway.output + smtpd.log)
        XCTAssertTrue(eventually(10) { sink.messages.contains { $0.contains("friend@elsewhere.example") } })
        let viaPostfix = relays(front.port, from: "127.0.0.5")
        XCTAssertEqual(viaPostfix.status, 0, viaPostfix.output + front.log)
        let other = relays(smtpd.port, from: "127.0.0.6")
        XCTAssertNotEqual(other.status, 0)
        XCTAssertTrue(other.output.contains("554 5.7.1"), other.output)
        let otherPostfix = relays(front.port, from: "127.0.0.6")
        XCTAssertNotEqual(otherPostfix.status, 0)
        XCTAssertTrue(otherPostfix.output.contains("Relay access denied"), otherPostfix.output)

        // A failed login records nothing.
        let failed = runCommand("curl", ["-sS", "--interface", "127.0.0.7", "--max-time", "20",
                                         "pop3://127.0.0.1:\(pop.port)/", "-u", "alice@example.org:wrong"])
        XCTAssertNotEqual(failed.status, 0)
        usleep(500_000)
        XCTAssertNil(dumpMap(map)["127.0.0.7"])
        XCTAssertNotEqual(relays(smtpd.port, from: "127.0.0.7").status, 0)

        // rpc.dracd down: the login still succeeds, the failure is logged.
        XCTAssertEqual(dracd.stop(), 0)
        let started = Date()
        let down = runCommand("curl", ["-sS", "--interface", "127.0.0.8", "--max-time", "20",
                                       "pop3://127.0.0.1:\(pop.port)/1", "-u", "alice@example.org:\(password)"])
        XCTAssertEqual(down.status, 0, down.output + pop.log)
        XCTAssertTrue(down.stdout.contains("hello"))
        XCTAssertLessThan(Date().timeIntervalSince(started), 2.5, "the login waited for rpc.dracd")
        XCTAssertTrue(eventually(10) { pop.log.contains("drac add 127.0.0.8 to localhost failed") }, pop.log)
        XCTAssertNil(dumpMap(map)["127.0.0.8"])
    }
}
