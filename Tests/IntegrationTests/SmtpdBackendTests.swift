// drac-smtpd end to end with its backend: Postfix's verdicts and queue ids, XFORWARD, a backend
// that is down, slow, rejecting or dropping, graceful shutdown, and IPv6.
import DRACCore
import Foundation
import Glibc
import XCTest

final class SmtpdBackendTests: XCTestCase {
    var dir = ""
    var sink: SmtpSink?
    var postfix: PostfixBackend?
    var smtpd: SmtpdInstance!

    static let trusted = "127.0.0.80"

    override func setUpWithError() throws {
        try Env.requireSandbox()
        dir = makeTempDir("smtpd-backend")
        makeSASLDB(dir + "/sasldb2", users: ["alice": "wonderland"])
    }

    override func tearDown() {
        smtpd?.stop()
        sink?.stop()
        postfix?.stop()
    }

    func start(backendPort: Int, _ settings: [String] = [], listen: String = "smtp:127.0.0.1:0",
               trusted: String = SmtpdBackendTests.trusted + "/32") throws {
        smtpd = try SmtpdInstance(dir: dir, backendPort: backendPort, settings: [
            "smtpd_use_drac = no", "smtpd_local_domains = example.org", "smtpd_trusted_networks = \(trusted)",
        ] + settings, listen: listen)
    }

    func client(_ source: String = SmtpdBackendTests.trusted, file: StaticString = #filePath, line: UInt = #line) throws -> SMTPClient {
        try ehloClient(port: smtpd.port, source: source, file: file, line: line)
    }

    /// SIGTERM with only idle clients left: drac-smtpd says 421 to them and exits 0 at once.
    func stopSmtpd(file: StaticString = #filePath, line: UInt = #line) {
        let t0 = Date()
        XCTAssertEqual(smtpd.stop(), 0, smtpd.log, file: file, line: line)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 5, "slow graceful stop:\n\(smtpd.log)", file: file, line: line)
    }

    /// MAIL, RCPT and DATA, each expected to succeed.
    func openTransaction(_ c: SMTPClient, to: String = "b@remote.example") {
        XCTAssertEqual(c.command("MAIL FROM:<a@example.org>").code, 250)
        XCTAssertEqual(c.command("RCPT TO:<\(to)>").code, 250)
        XCTAssertEqual(c.command("DATA").code, 354)
    }

    // MARK: - Postfix as the backend

    /// The queue id in Postfix's reply, e.g. `250 2.0.0 Ok: queued as 4XyZ1`.
    func queueID(_ text: String) -> String? {
        guard let r = text.range(of: "queued as ") else { return nil }
        let id = text[r.upperBound...].prefix { $0.isLetter || $0.isNumber }
        return id.isEmpty ? nil : String(id)
    }

    /// Postfix's `QUEUEID: client=..., orig_client=...` line (XFORWARD), once it is logged.
    func postfixClientLine(_ pf: PostfixBackend, _ id: String) -> String {
        _ = eventually(10) { pf.log.contains("\(id): client=") }
        return pf.log.split(separator: "\n").first { $0.contains("\(id): client=") }.map(String.init) ?? ""
    }

    func testPostfixQueueIdAndForwardedClientAddress() throws {
        let pf = try PostfixBackend(dir: dir)
        postfix = pf
        try start(backendPort: pf.port, trusted: "127.0.0.80/30")
        let r = swaks(smtpd.port, ["-f", "a@example.org", "-t", "friend@remote.example", "--ehlo", "client.test"], source: Self.trusted)
        XCTAssertEqual(r.status, 0, r.output)
        // Postfix's own reply reaches the client unchanged.
        XCTAssertTrue(r.output.contains("250 2.0.0 Ok: queued as "), r.output)
        let id = try XCTUnwrap(queueID(r.output), r.output)
        XCTAssertTrue(smtpd.log.contains("queue_id=\(id)"), smtpd.log)
        // XFORWARD: Postfix logs the real client next to the proxy's address.
        let line = postfixClientLine(pf, id)
        XCTAssertTrue(line.contains("orig_client=unknown[\(Self.trusted)]"), "\(line)\n\(pf.log)")
        XCTAssertTrue(eventually(10) { pf.log.contains("\(id): to=<friend@remote.example>") }, pf.log)

        // Two transactions in one session from another client, then a third client: each
        // message is attributed to its own client (Postfix forgets XFORWARD after each one).
        let c = try client("127.0.0.81")
        var ids: [String] = []
        for n in 1...2 {
            XCTAssertEqual(c.command("MAIL FROM:<a@example.org>").code, 250)
            XCTAssertEqual(c.command("RCPT TO:<friend\(n)@remote.example>").code, 250)
            XCTAssertEqual(c.command("DATA").code, 354)
            c.send("Subject: \(n)\r\n\r\nbody\r\n.\r\n")
            let reply = c.reply()?.text ?? ""
            ids.append(try XCTUnwrap(queueID(reply), reply))
        }
        XCTAssertEqual(c.command("QUIT").code, 221)
        let r3 = swaks(smtpd.port, ["-f", "a@example.org", "-t", "friend3@remote.example"], source: "127.0.0.82")
        XCTAssertEqual(r3.status, 0, r3.output)
        ids.append(try XCTUnwrap(queueID(r3.output), r3.output))
        for (id, client) in zip(ids, ["127.0.0.81", "127.0.0.81", "127.0.0.82"]) {
            let line = postfixClientLine(pf, id)
            XCTAssertTrue(line.contains("orig_client=unknown[\(client)]"), "\(id) should be from \(client): \(line)\n\(pf.log)")
            XCTAssertTrue(smtpd.log.contains("queue_id=\(id)"), smtpd.log)
        }
    }

    func testPostfixVerdictsPerRecipientAndAtEndOfData() throws {
        try "blocked@remote.example REJECT No such user here\n".write(toFile: dir + "/rcpt_access", atomically: true, encoding: .utf8)
        try "/^Subject: reject me/ REJECT content refused by the backend\n".write(toFile: dir + "/header_checks", atomically: true, encoding: .utf8)
        let pf = try PostfixBackend(dir: dir, extraMain: [
            "smtpd_recipient_restrictions = check_recipient_access texthash:\(dir)/rcpt_access, permit_mynetworks, reject_unauth_destination",
            "header_checks = regexp:\(dir)/header_checks",
        ])
        postfix = pf
        try start(backendPort: pf.port)
        let c = try client()
        XCTAssertEqual(c.command("MAIL FROM:<a@example.org>").code, 250)
        XCTAssertEqual(c.command("RCPT TO:<ok@remote.example>").code, 250)
        let blocked = c.command("RCPT TO:<blocked@remote.example>")
        XCTAssertTrue(blocked.text.hasPrefix("554 5.7.1 <blocked@remote.example>: Recipient address rejected: No such user here"), blocked.text)
        XCTAssertEqual(c.command("RCPT TO:<other@remote.example>").code, 250)
        XCTAssertEqual(c.command("DATA").code, 354)
        c.send("Subject: hello\r\n\r\nfine\r\n.\r\n")
        let accepted = c.reply()
        XCTAssertTrue(accepted?.text.hasPrefix("250 2.0.0 Ok: queued as ") == true, "\(String(describing: accepted))")
        // Postfix refuses the message at the end of data: the client gets that, never a 250.
        XCTAssertEqual(c.command("MAIL FROM:<a@example.org>").code, 250)
        XCTAssertEqual(c.command("RCPT TO:<ok@remote.example>").code, 250)
        XCTAssertEqual(c.command("DATA").code, 354)
        c.send("Subject: reject me\r\n\r\nbad\r\n.\r\n")
        let refused = c.reply()
        XCTAssertTrue(refused?.text.hasPrefix("550 5.7.1 content refused by the backend") == true, "\(String(describing: refused))")
        XCTAssertEqual(c.command("QUIT").code, 221)
        XCTAssertTrue(smtpd.log.contains("refused by backend"), smtpd.log)
        XCTAssertTrue(smtpd.log.contains("(backend); from=<a@example.org> to=<blocked@remote.example>"), smtpd.log)
        XCTAssertTrue(eventually(10) { pf.log.contains("reject: header Subject: reject me") }, pf.log)
    }

    // MARK: - A backend that fails

    func testBackendDownGives451NeverA250() throws {
        try start(backendPort: freePort())
        let c = try client()
        let mail = c.command("MAIL FROM:<a@example.org>")
        XCTAssertTrue(mail.text.hasPrefix("451 4.4.1"), mail.text)
        XCTAssertEqual(c.command("RCPT TO:<b@remote.example>").code, 503)
        XCTAssertEqual(c.command("NOOP").code, 250)
        XCTAssertEqual(c.command("QUIT").code, 221)
        let r = swaks(smtpd.port, ["-f", "a@example.org", "-t", "user@example.org"], source: "127.0.0.81")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("451 4.4.1"), r.output)
        XCTAssertFalse(r.output.contains("<-  250 2.1.0"), r.output)
        XCTAssertTrue(smtpd.log.contains("cannot connect"), smtpd.log)
    }

    func testSlowBackendTimesOut() throws {
        // smtp-sink: greeting delayed 10 s on one sink, the reply to DATA on another, the reply
        // to the end of data on a third.
        let slowGreeting = try SmtpSink(dir: dir, extra: ["-W", "CONNECT:10"])
        defer { slowGreeting.stop() }
        try start(backendPort: slowGreeting.port, ["smtpd_backend_timeout = 2s"])
        let c = try client()
        var t0 = Date()
        let mail = c.command("MAIL FROM:<a@example.org>")
        XCTAssertTrue(mail.text.hasPrefix("451 4.4.1"), mail.text)
        XCTAssertGreaterThan(Date().timeIntervalSince(t0), 1.5)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 4.5)
        stopSmtpd()

        let slowData = try SmtpSink(dir: dir, extra: ["-w", "10"])
        sink = slowData
        try start(backendPort: slowData.port, ["smtpd_backend_timeout = 2s"])
        let c2 = try client()
        XCTAssertEqual(c2.command("MAIL FROM:<a@example.org>").code, 250)
        XCTAssertEqual(c2.command("RCPT TO:<b@remote.example>").code, 250)
        t0 = Date()
        let data = c2.command("DATA")
        XCTAssertTrue(data.text.hasPrefix("451 4.4.1"), data.text)
        XCTAssertGreaterThan(Date().timeIntervalSince(t0), 1.5)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 4.5)
        XCTAssertEqual(c2.command("NOOP").code, 250)
        // The transaction stays open (a graceful stop would wait for it): end it.
        XCTAssertEqual(c2.command("RSET").code, 250)
        XCTAssertEqual(c2.command("QUIT").code, 221)
        stopSmtpd()
        // smtp-sink opens its dump file at DATA; nothing was written to it.
        XCTAssertTrue(slowData.settles(at: 0), slowData.delivered.joined())

        let slowDot = try SmtpSink(dir: dir, extra: ["-W", ".:10"])
        defer { slowDot.stop() }
        try start(backendPort: slowDot.port, ["smtpd_backend_timeout = 5s", "smtpd_backend_data_timeout = 2s"])
        let c3 = try client()
        openTransaction(c3)
        c3.send("Subject: slow\r\n\r\nbody\r\n.\r\n")
        t0 = Date()
        let end = c3.reply()
        XCTAssertTrue(end?.text.hasPrefix("451 4.4.1") == true, "\(String(describing: end))")
        XCTAssertGreaterThan(Date().timeIntervalSince(t0), 1.5)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 4.5)
        XCTAssertEqual(c3.command("RSET").code, 250)
        XCTAssertTrue(smtpd.log.contains("timeout waiting for end of data"), smtpd.log)
    }

    func testBackendRejectingOrDroppingAtEndOfData() throws {
        let rejecting = try SmtpSink(dir: dir, extra: ["-f", ".", "-B", "554 5.7.1 content rejected by the test sink"])
        defer { rejecting.stop() }
        try start(backendPort: rejecting.port)
        let c = try client()
        openTransaction(c)
        c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
        let r = c.reply()
        XCTAssertEqual(r?.text, "554 5.7.1 content rejected by the test sink")
        XCTAssertEqual(c.command("NOOP").code, 250)
        let sw = swaks(smtpd.port, ["-f", "a@example.org", "-t", "b@remote.example"], source: Self.trusted)
        XCTAssertNotEqual(sw.status, 0)
        XCTAssertTrue(sw.output.contains("554 5.7.1 content rejected by the test sink"), sw.output)
        XCTAssertFalse(sw.output.contains("<-  250 2.0.0"), sw.output)
        stopSmtpd()

        // A temporary refusal.
        let soft = try SmtpSink(dir: dir, extra: ["-r", ".", "-b", "452 4.3.1 insufficient system storage"])
        defer { soft.stop() }
        try start(backendPort: soft.port)
        let c2 = try client()
        openTransaction(c2)
        c2.send("Subject: x\r\n\r\nbody\r\n.\r\n")
        XCTAssertEqual(c2.reply()?.text, "452 4.3.1 insufficient system storage")
        stopSmtpd()

        // The backend hangs up after the final dot without a reply; or answers 421.
        for extra in [["-q", "."], ["-Q", "."], ["-Q", "RCPT"]] {
            let dropping = try SmtpSink(dir: dir, extra: extra)
            defer { dropping.stop() }
            try start(backendPort: dropping.port)
            let c3 = try client()
            XCTAssertEqual(c3.command("MAIL FROM:<a@example.org>").code, 250)
            let rcpt = c3.command("RCPT TO:<b@remote.example>")
            if extra[1] == "RCPT" {
                XCTAssertTrue(rcpt.text.hasPrefix("451 4.4.1"), "\(extra): \(rcpt.text)")
            } else {
                XCTAssertEqual(rcpt.code, 250)
                XCTAssertEqual(c3.command("DATA").code, 354)
                c3.send("Subject: x\r\n\r\nbody\r\n.\r\n")
                let end = c3.reply()
                XCTAssertTrue(end?.text.hasPrefix("451 4.4.1") == true, "\(extra): \(String(describing: end))")
            }
            XCTAssertEqual(c3.command("NOOP").code, 250)
            XCTAssertEqual(c3.command("RSET").code, 250)
            XCTAssertEqual(c3.command("QUIT").code, 221)
            stopSmtpd()
        }
    }

    // MARK: - Graceful shutdown

    func testGracefulShutdownFinishesTheTransaction() throws {
        let s = try SmtpSink(dir: dir)
        sink = s
        try start(backendPort: s.port, ["smtpd_shutdown_grace = 20s"])
        let idle = try client("127.0.0.82")
        let c = try client()
        openTransaction(c)
        c.send("Subject: shutdown\r\n\r\nfirst half\r\n")
        usleep(200_000)
        kill(smtpd.process.pid, SIGTERM)
        // The idle client is told at once; new connections are refused.
        let idleReplies = idle.repliesUntilClosed(timeout: 5)
        XCTAssertEqual(idleReplies.replies.map(\.code), [421], "\(idleReplies.replies)")
        XCTAssertTrue(idleReplies.replies.first?.text.hasPrefix("421 4.3.2") == true, "\(idleReplies.replies)")
        XCTAssertTrue(eventually(5) { RawTCP(port: smtpd.port) == nil }, "still accepting connections after SIGTERM")
        XCTAssertTrue(smtpd.process.process.isRunning)
        // The transaction in progress finishes.
        c.send("second half\r\n.\r\n")
        let rs = c.repliesUntilClosed(timeout: 10)
        XCTAssertEqual(rs.replies.first?.code, 250, "\(rs.replies)")
        XCTAssertTrue(rs.replies.dropFirst().allSatisfy { $0.code == 421 }, "\(rs.replies)")
        XCTAssertTrue(rs.closed)
        XCTAssertTrue(eventually(10) { !smtpd.process.process.isRunning }, "drac-smtpd still running after its last client left")
        smtpd.process.process.waitUntilExit()
        XCTAssertEqual(smtpd.process.process.terminationStatus, 0, smtpd.log)
        XCTAssertTrue(s.settles(at: 1), "\(s.delivered.count) messages")
        XCTAssertTrue(s.delivered.first?.contains("first half\nsecond half\n") == true, s.delivered.joined())
    }

    func testShutdownGraceOverDropsAStalledClient() throws {
        let s = try SmtpSink(dir: dir)
        sink = s
        try start(backendPort: s.port, ["smtpd_shutdown_grace = 2s"])
        let c = try client()
        openTransaction(c)
        c.send("Subject: stalled\r\n\r\nhalf\r\n")
        usleep(200_000)
        let t0 = Date()
        kill(smtpd.process.pid, SIGTERM)
        let text = c.pendingText(timeout: 8)
        XCTAssertFalse(text.contains("250"), text)
        XCTAssertTrue(c.tcp.closedByPeer(within: 1), "still connected")
        let d = Date().timeIntervalSince(t0)
        XCTAssertGreaterThan(d, 1.5)
        XCTAssertTrue(eventually(5) { !smtpd.process.process.isRunning })
        smtpd.process.process.waitUntilExit()
        XCTAssertEqual(smtpd.process.process.terminationStatus, 0, smtpd.log)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 8)
        usleep(300_000)
        XCTAssertTrue(s.settles(at: 0), s.delivered.joined())
        XCTAssertTrue(smtpd.log.contains("grace period over, closing 1 connection(s)"), smtpd.log)
    }

    // MARK: - IPv6

    func testRelayOverIPv6() throws {
        let s = try SmtpSink(dir: dir)
        sink = s
        try start(backendPort: s.port, listen: "smtp:[::1]:0", trusted: "::1/128")
        let r = swaksTo("::1", smtpd.port, ["-f", "a@example.org", "-t", "friend@remote.example", "--ehlo", "v6.test"], source: "::1")
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(s.settles(at: 1), "\(s.delivered.count) messages")
        XCTAssertTrue(s.delivered.first?.contains("Received: from v6.test ([IPv6:::1])") == true, s.delivered.joined())
        XCTAssertTrue(smtpd.log.contains("connect from [::1]"), smtpd.log)
        XCTAssertTrue(smtpd.log.contains("relay via mynetworks"), smtpd.log)
    }
}
