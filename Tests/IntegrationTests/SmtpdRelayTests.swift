// drac-smtpd end to end: who may relay (DRAC, SASL, trusted, local domains), backend verdicts.
import DRACCore
import Foundation
import Glibc
import XCTest

final class SmtpdRelayTests: XCTestCase {
    var dir = ""
    var sink: SmtpSink!
    var smtpd: SmtpdInstance!

    override func setUpWithError() throws {
        try Env.requireSandbox()
        dir = makeTempDir("smtpd")
        // rpc.dracd creates the map, dracctl adds entries.
        try createMap(in: dir)
        makeSASLDB(dir + "/sasldb2", users: ["alice": "wonderland"])
        sink = try SmtpSink(dir: dir)
    }

    override func tearDown() {
        smtpd?.stop()
        sink?.stop()
    }

    func start(_ settings: [String] = []) throws {
        smtpd = try SmtpdInstance(dir: dir, backendPort: sink.port,
                                  settings: ["smtpd_local_domains = example.org", "smtpd_trusted_networks = 127.0.0.9/32"] + settings)
    }

    func testDracEntryLetsThatAddressRelayAndNoOther() throws {
        try start()
        XCTAssertEqual(dracctl(["add", "127.0.0.7", "--db", dir + "/dracd.db"]).status, 0)
        let ok = swaks(smtpd.port, ["-f", "roamer@example.org", "-t", "friend@remote.example"], source: "127.0.0.7")
        XCTAssertEqual(ok.status, 0, ok.output)
        let denied = swaks(smtpd.port, ["-f", "roamer@example.org", "-t", "friend@remote.example"], source: "127.0.0.8")
        XCTAssertNotEqual(denied.status, 0)
        XCTAssertTrue(denied.output.contains("554 5.7.1 <friend@remote.example>: Relay access denied"), denied.output)
        XCTAssertEqual(sink.messages.count, 1)
        XCTAssertTrue(smtpd.log.contains("relay via drac"), smtpd.log)
        XCTAssertTrue(smtpd.log.contains("NOQUEUE: reject: relay denied: RCPT from [127.0.0.8]"), smtpd.log)
    }

    func testExpiredButUnsweptEntryGrantsNothing() throws {
        try start()
        XCTAssertEqual(dracctl(["add", "127.0.0.7", "--ttl", "1s", "--db", dir + "/dracd.db"]).status, 0)
        sleep(2)
        // Nobody swept: the entry is still in the file, but its time has passed.
        XCTAssertNotNil(dumpMap(dir + "/dracd.db")["127.0.0.7"])
        let r = swaks(smtpd.port, ["-f", "a@example.org", "-t", "b@remote.example"], source: "127.0.0.7")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("554 5.7.1"), r.output)
        XCTAssertEqual(sink.messages.count, 0)
    }

    func testEveryCommittedAddIsSeenOnTheNextLookup() throws {
        try start()
        // One session: denied, then dracctl adds the address, and the next RCPT relays.
        let c = try ehloClient(port: smtpd.port, source: "127.0.0.11")
        XCTAssertEqual(c.command("MAIL FROM:<a@example.org>").code, 250)
        XCTAssertEqual(c.command("RCPT TO:<b@remote.example>").code, 554)
        XCTAssertEqual(dracctl(["add", "127.0.0.11", "--db", dir + "/dracd.db"]).status, 0)
        XCTAssertEqual(c.command("RCPT TO:<b@remote.example>").code, 250)
        XCTAssertEqual(dracctl(["del", "127.0.0.11", "--db", dir + "/dracd.db"]).status, 0)
        XCTAssertEqual(c.command("RCPT TO:<c@remote.example>").code, 554)
        XCTAssertEqual(c.command("QUIT").code, 221)
    }

    func testRpcDracdAddsAreHonoured() throws {
        // The real writer: rpc.dracd (fixed port, no rpcbind) adds 127.0.0.12 by RPC.
        let d = try DracdInstance(dir: dir, args: ["-o", "rpcbind=no", "-o", "listen=127.0.0.1"])
        defer { _ = d.stop() }
        try start()
        let add = dracctl(["add", "127.0.0.12", "--server", "127.0.0.1:\(d.port)"])
        XCTAssertEqual(add.status, 0, add.output)
        XCTAssertEqual(swaks(smtpd.port, ["-f", "a@example.org", "-t", "b@remote.example"], source: "127.0.0.12").status, 0)
        XCTAssertNotEqual(swaks(smtpd.port, ["-f", "a@example.org", "-t", "b@remote.example"], source: "127.0.0.13").status, 0)
    }

    func testLocalDomainFromAnyoneTrustedNetworkAndSASL() throws {
        try start()
        XCTAssertEqual(swaks(smtpd.port, ["-f", "x@remote.example", "-t", "user@example.org"], source: "127.0.0.20").status, 0)
        XCTAssertEqual(swaks(smtpd.port, ["-f", "x@remote.example", "-t", "user@EXAMPLE.ORG"], source: "127.0.0.20").status, 0)
        // A subdomain of a local domain is not local.
        XCTAssertNotEqual(swaks(smtpd.port, ["-f", "x@remote.example", "-t", "user@sub.example.org"], source: "127.0.0.20").status, 0)
        XCTAssertEqual(swaks(smtpd.port, ["-f", "x@example.org", "-t", "y@remote.example"], source: "127.0.0.9").status, 0)
        let sasl = swaks(smtpd.port, ["-f", "alice@example.org", "-t", "y@remote.example", "-a", "PLAIN",
                                       "-au", "alice@example.org", "-ap", "wonderland"], source: "127.0.0.21")
        XCTAssertEqual(sasl.status, 0, sasl.output)
        XCTAssertFalse(smtpd.log.contains("wonderland"))
        XCTAssertTrue(smtpd.log.contains("sasl_username=alice@example.org"), smtpd.log)
        XCTAssertTrue(smtpd.log.contains("relay via sasl"), smtpd.log)
        XCTAssertTrue(smtpd.log.contains("relay via mynetworks"), smtpd.log)
        XCTAssertEqual(sink.messages.count, 4)
    }

    func testSenderGrantsNothing() throws {
        try start()
        for from in ["", "postmaster@example.org", "user@example.org", "y@remote.example"] {
            let r = swaks(smtpd.port, ["-f", from, "-t", "y@remote.example"], source: "127.0.0.22")
            XCTAssertNotEqual(r.status, 0, "from <\(from)> relayed: \(r.output)")
        }
        XCTAssertEqual(sink.messages.count, 0)
    }

    func testRoutingTricksAimedAtALocalDomainAreRefused() throws {
        try start()
        let c = try ehloClient(port: smtpd.port, source: "127.0.0.23")
        XCTAssertEqual(c.command("MAIL FROM:<a@remote.example>").code, 250)
        let tricks = [
            "<victim%remote.example@example.org>", "<remote.example!victim@example.org>",
            "<@example.org:victim@remote.example>", "<@example.org,@example.org:victim@remote.example>",
            "<\"victim@remote.example\"@example.org>", "<victim@remote.example@example.org>",
            "<victim@example.org.>", "<\"victim%remote.example\"@example.org>", "<victim\\@remote.example@example.org>",
            "<victim@remote.example>@example.org", "<victim@[127.0.0.1]>", "<VICTIM%REMOTE.EXAMPLE@EXAMPLE.ORG>",
        ]
        for t in tricks {
            let r = c.command("RCPT TO:\(t)")
            XCTAssertTrue(r.code >= 500, "\(t) -> \(r)")
        }
        XCTAssertEqual(c.command("RSET").code, 250)
        XCTAssertEqual(c.command("QUIT").code, 221)
        XCTAssertEqual(sink.messages.count, 0)
        XCTAssertTrue(smtpd.log.contains("routing trick"), smtpd.log)
    }

    func testSubmissionListenerRequiresAuth() throws {
        try start()
        let port = try XCTUnwrap(smtpd.ports["submission"])
        // Even a local recipient and even a trusted or DRAC-listed client need AUTH here.
        XCTAssertEqual(dracctl(["add", "127.0.0.24", "--db", dir + "/dracd.db"]).status, 0)
        for source in ["127.0.0.24", "127.0.0.9"] {
            let r = swaks(port, ["-f", "a@example.org", "-t", "user@example.org"], source: source)
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.output.contains("530 5.7.0"), r.output)
        }
        let ok = swaks(port, ["-f", "alice@example.org", "-t", "y@remote.example", "-a", "LOGIN",
                              "-au", "alice@example.org", "-ap", "wonderland"], source: "127.0.0.24")
        XCTAssertEqual(ok.status, 0, ok.output)
    }

    func testXclientAndXforwardFromClientsAreRefused() throws {
        try start()
        let c = try ehloClient(port: smtpd.port, source: "127.0.0.25")
        XCTAssertEqual(c.command("XCLIENT ADDR=127.0.0.9").code, 550)
        XCTAssertEqual(c.command("XFORWARD ADDR=127.0.0.9").code, 550)
        XCTAssertEqual(c.command("MAIL FROM:<a@example.org>").code, 250)
        XCTAssertEqual(c.command("RCPT TO:<b@remote.example>").code, 554)
    }

    func testMessageTextArrivesIntactWithReceivedHeader() throws {
        try start()
        let c = try ehloClient(port: smtpd.port, source: "127.0.0.9")
        XCTAssertEqual(c.command("MAIL FROM:<a@example.org>").code, 250)
        XCTAssertEqual(c.command("RCPT TO:<b@remote.example>").code, 250)
        XCTAssertEqual(c.command("DATA").code, 354)
        let body = "Subject: dots\r\n\r\n..leading dot stuffed\r\n...two\r\nplain\r\n"
        c.send(body + ".\r\n")
        let r = c.reply()
        XCTAssertEqual(r?.code, 250, "\(String(describing: r))")
        let msg = try XCTUnwrap(sink.messages.first)
        XCTAssertTrue(msg.contains("Received: from client.test ([127.0.0.9])\n\tby gw.example.org (drac-smtpd) with ESMTP id"), msg)
        // smtp-sink unstuffs like any MTA (and stores LF line ends): the client's dot-stuffing
        // reached it intact.
        XCTAssertTrue(msg.contains("\n.leading dot stuffed\n..two\nplain\n"), msg)
    }
}
