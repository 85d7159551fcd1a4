// drac-smtpd end to end: line, message and recipient limits, error and idle limits, connection
// limits, many idle clients, pipelining, and SMTP smuggling through DATA.
import DRACCore
import Foundation
import Glibc
import XCTest

final class SmtpdLimitsTests: XCTestCase {
    var dir = ""
    var sink: SmtpSink!
    var smtpd: SmtpdInstance!

    /// 127.0.0.9 may relay (trusted network); anyone may send to example.org.
    static let trusted = "127.0.0.9"

    override func setUpWithError() throws {
        try Env.requireSandbox()
        dir = makeTempDir("smtpd-limits")
        makeSASLDB(dir + "/sasldb2", users: ["alice": "wonderland"])
        sink = try SmtpSink(dir: dir)
    }

    override func tearDown() {
        smtpd?.stop()
        sink?.stop()
    }

    func start(_ settings: [String] = []) throws {
        smtpd = try SmtpdInstance(dir: dir, backendPort: sink.port, settings: [
            "smtpd_use_drac = no", "smtpd_local_domains = example.org", "smtpd_trusted_networks = \(Self.trusted)/32",
        ] + settings)
    }

    func client(_ source: String = SmtpdLimitsTests.trusted, file: StaticString = #filePath, line: UInt = #line) throws -> SMTPClient {
        try ehloClient(port: smtpd.port, source: source, file: file, line: line)
    }

    /// A whole transaction to a remote recipient on `c`; returns the reply to the end of data.
    func send(_ c: SMTPClient, body: String = "Subject: ok\r\n\r\nfine\r\n") -> (code: Int, text: String)? {
        guard c.command("MAIL FROM:<a@example.org>").code == 250, c.command("RCPT TO:<b@remote.example>").code == 250,
              c.command("DATA").code == 354 else { return nil }
        c.send(body + ".\r\n")
        return c.reply()
    }

    // MARK: - Command lines

    func testCommandLineOver512IsRefusedAndTheSessionGoesOn() throws {
        try start()
        let c = try client()
        // 510 octets + CRLF = 512: the longest command line (RFC 5321 4.5.3.1.4).
        XCTAssertEqual(c.command("NOOP " + String(repeating: "x", count: 505)).code, 250)
        let long = c.command("NOOP " + String(repeating: "x", count: 506))
        XCTAssertTrue(long.text.hasPrefix("500 5.5.6"), long.text)
        let longMail = c.command("MAIL FROM:<" + String(repeating: "a", count: 600) + "@example.org>")
        XCTAssertTrue(longMail.text.hasPrefix("500 5.5.6"), longMail.text)
        XCTAssertEqual(send(c)?.code, 250)
        XCTAssertEqual(c.command("QUIT").code, 221)
        XCTAssertTrue(sink.settles(at: 1), "\(sink.delivered.count) messages")
    }

    func testEndlessLineWithoutLFGetsOneErrorAndTheSessionGoesOn() throws {
        try start()
        let c = try client()
        let chunk = String(repeating: "A", count: 10_000)
        for _ in 0..<10 {
            c.send(chunk)
            usleep(20_000)
        }
        // Nothing yet: the line has not ended.
        XCTAssertEqual(c.pendingText(timeout: 0.5), "")
        c.send("\r\nNOOP\r\n")
        let r = c.reply()
        XCTAssertTrue(r?.text.hasPrefix("500 5.5.6") == true, "\(String(describing: r))")
        // Exactly one error for the whole line: the next reply is NOOP's.
        XCTAssertEqual(c.reply()?.code, 250)
        XCTAssertEqual(send(c)?.code, 250)
        XCTAssertTrue(sink.settles(at: 1), "\(sink.delivered.count) messages")
    }

    // MARK: - Message size

    func testMessageSizeLimit() throws {
        try start(["smtpd_message_size_limit = 65536"])
        let c = try client()
        XCTAssertTrue(c.command("EHLO client.test").text.contains("250-SIZE 65536"))
        let declared = c.command("MAIL FROM:<a@example.org> SIZE=999999999")
        XCTAssertTrue(declared.text.hasPrefix("552 5.3.4"), declared.text)
        // 655 lines of 100 octets (CRLF included) + 36 octets = 65536: exactly the limit.
        let line = String(repeating: "x", count: 98) + "\r\n"
        let exact = String(repeating: line, count: 655) + String(repeating: "y", count: 34) + "\r\n"
        XCTAssertEqual(exact.utf8.count, 65536)
        XCTAssertEqual(send(c, body: exact)?.code, 250, "a message of exactly smtpd_message_size_limit octets")
        XCTAssertTrue(sink.settles(at: 1), "\(sink.delivered.count) messages")
        // One octet more.
        let over = String(repeating: line, count: 655) + String(repeating: "y", count: 35) + "\r\n"
        let r = send(c, body: over)
        XCTAssertTrue(r?.text.hasPrefix("552 5.3.4") == true, "\(String(describing: r))")
        // Much more (the text is read to its end, then refused).
        let big = send(c, body: String(repeating: line, count: 2000))
        XCTAssertTrue(big?.text.hasPrefix("552 5.3.4") == true, "\(String(describing: big))")
        XCTAssertTrue(sink.settles(at: 1), "the backend got a message that was too big")
        // The session goes on.
        XCTAssertEqual(send(c)?.code, 250)
        XCTAssertTrue(sink.settles(at: 2), "\(sink.delivered.count) messages")
        XCTAssertTrue(smtpd.log.contains("reject: message too big"), smtpd.log)
    }

    /// Text past the limit is read and dropped as it comes (not kept and scanned again, nor
    /// left to stop the reading): 4 MB over a 64 KB limit is refused as fast as it is sent.
    func testOversizedMessageIsReadThroughAndRefused() throws {
        try start(["smtpd_message_size_limit = 65536", "smtpd_shutdown_grace = 1s"])
        let c = try client()
        XCTAssertEqual(c.command("MAIL FROM:<a@example.org>").code, 250)
        XCTAssertEqual(c.command("RCPT TO:<b@remote.example>").code, 250)
        XCTAssertEqual(c.command("DATA").code, 354)
        let chunk = Array(String(repeating: String(repeating: "x", count: 98) + "\r\n", count: 640).utf8)   // 64000 octets
        let total = 64 * chunk.count   // 4 MB
        // Our own send loop with a send timeout: a server that stops reading must not hang the test.
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(c.tcp.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let t0 = Date()
        var sent = 0
        while sent < total && Date().timeIntervalSince(t0) < 15 {
            let n = chunk[(sent % chunk.count)...].withUnsafeBytes { Glibc.send(c.tcp.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n } else if errno != EAGAIN && errno != EINTR { break }
        }
        guard sent == total else {
            XCTFail("drac-smtpd stopped reading an oversized message: \(sent) of \(total) octets taken in \(Date().timeIntervalSince(t0)) s")
            return
        }
        c.send(".\r\n")
        let r = c.reply(timeout: 20)
        let d = Date().timeIntervalSince(t0)
        XCTAssertTrue(r?.text.hasPrefix("552 5.3.4") == true, "\(String(describing: r)) after \(d) s")
        XCTAssertLessThan(d, 8, "4 MB over the size limit took \(d) s")
        XCTAssertEqual(c.command("NOOP").code, 250)
        XCTAssertTrue(sink.settles(at: 0), "\(sink.delivered.count) messages")
    }

    // MARK: - Recipients

    func testRecipientLimit() throws {
        try start(["smtpd_recipient_limit = 100"])
        let c = try client("127.0.0.50")
        XCTAssertEqual(c.command("MAIL FROM:<a@remote.example>").code, 250)
        // Pipelined, 101 recipients in one write; replies come back in order.
        c.send((1...101).map { "RCPT TO:<user\($0)@example.org>\r\n" }.joined())
        var codes: [Int] = []
        var last = ""
        for _ in 1...101 {
            let r = c.reply()
            codes.append(r?.code ?? 0)
            last = r?.text ?? ""
        }
        XCTAssertEqual(codes.filter { $0 == 250 }.count, 100, "\(codes)")
        XCTAssertEqual(codes.last, 452)
        XCTAssertTrue(last.hasPrefix("452 4.5.3"), last)
        XCTAssertEqual(c.command("DATA").code, 354)
        c.send("Subject: many\r\n\r\nhi\r\n.\r\n")
        XCTAssertEqual(c.reply()?.code, 250)
        let msg = try XCTUnwrap(sink.delivered.first)
        XCTAssertEqual(msg.components(separatedBy: "X-Rcpt-Args:").count - 1, 100, msg)
        XCTAssertFalse(msg.contains("user101@"))
    }

    // MARK: - Errors and timeouts

    func testErrorLimitDisconnects() throws {
        try start(["smtpd_error_limit = 5"])
        let c = try client("127.0.0.51")
        for n in 1...4 { XCTAssertEqual(c.command("BOGUS \(n)").code, 500) }
        c.send("BOGUS 5\r\n")
        let rs = c.repliesUntilClosed(timeout: 5)
        XCTAssertEqual(rs.replies.map(\.code), [500, 421], "\(rs.replies)")
        XCTAssertTrue(rs.replies.last?.text.hasPrefix("421 4.7.0") == true, "\(rs.replies)")
        XCTAssertTrue(rs.closed)
        XCTAssertTrue(smtpd.log.contains("too many errors from [127.0.0.51]"), smtpd.log)
    }

    func testIdleClientTimesOut() throws {
        try start(["smtpd_timeout = 2s", "smtpd_data_timeout = 2s"])
        let c = try client("127.0.0.52")
        let t0 = Date()
        let rs = c.repliesUntilClosed(timeout: 8)
        let d = Date().timeIntervalSince(t0)
        XCTAssertEqual(rs.replies.map(\.code), [421], "\(rs.replies)")
        XCTAssertTrue(rs.replies.first?.text.hasPrefix("421 4.4.2") == true, "\(rs.replies)")
        XCTAssertTrue(rs.closed)
        XCTAssertGreaterThan(d, 1.5)
        XCTAssertLessThan(d, 4.5)
        // A client that keeps talking is not cut off after 2 s in total.
        let busy = try client("127.0.0.53")
        for _ in 0..<4 {
            usleep(1_000_000)
            XCTAssertEqual(busy.command("NOOP").code, 250)
        }
        // Stalled inside DATA: dropped after smtpd_data_timeout, and the backend gets nothing.
        let d1 = try client()
        XCTAssertEqual(d1.command("MAIL FROM:<a@example.org>").code, 250)
        XCTAssertEqual(d1.command("RCPT TO:<b@remote.example>").code, 250)
        XCTAssertEqual(d1.command("DATA").code, 354)
        d1.send("Subject: stalled\r\n\r\nhalf a message\r\n")
        let t1 = Date()
        let ds = d1.repliesUntilClosed(timeout: 8)
        XCTAssertEqual(ds.replies.map(\.code), [421], "\(ds.replies)")
        XCTAssertTrue(ds.closed)
        XCTAssertLessThan(Date().timeIntervalSince(t1), 4.5)
        usleep(300_000)
        XCTAssertTrue(sink.settles(at: 0), "\(sink.delivered.count) messages")
    }

    /// The client's time starts with our reply: a slow backend must not eat into it
    /// (RFC 5321 4.5.3.2.7: the server waits smtpd_timeout for the *next* command).
    func testTimeoutCountsFromOurReplyAfterASlowBackend() throws {
        // The backend answers RCPT after 3 s. Our idle timer (2 s) fires while we wait; the
        // reply then comes ~1 s before its next tick.
        sink?.stop()
        sink = try SmtpSink(dir: dir, extra: ["-W", "RCPT:3"])
        try start(["smtpd_timeout = 2s", "smtpd_data_timeout = 2s", "smtpd_backend_timeout = 10s"])
        let c = try client()
        XCTAssertEqual(c.command("MAIL FROM:<a@example.org>").code, 250)
        XCTAssertEqual(c.command("RCPT TO:<b@remote.example>").code, 250)   // after 3 s
        // 1.2 s of thinking after our reply, well within smtpd_timeout = 2s.
        usleep(1_200_000)
        let noop = c.command("NOOP")
        XCTAssertEqual(noop.code, 250, "idle timeout counted from before the backend's slow reply: \(noop)")
        smtpd.stop()

        // The same with the backend's 354 and smtpd_data_timeout.
        sink?.stop()
        sink = try SmtpSink(dir: dir, extra: ["-w", "3"])
        try start(["smtpd_timeout = 2s", "smtpd_data_timeout = 2s", "smtpd_backend_timeout = 10s"])
        let d = try client()
        XCTAssertEqual(d.command("MAIL FROM:<a@example.org>").code, 250)
        XCTAssertEqual(d.command("RCPT TO:<b@remote.example>").code, 250)
        XCTAssertEqual(d.command("DATA").code, 354)                        // after 3 s
        usleep(1_200_000)
        d.send("Subject: slow backend\r\n\r\nbody\r\n.\r\n")
        let end = d.reply()
        XCTAssertEqual(end?.code, 250, "data timeout counted from before the backend's 354: \(String(describing: end))")
    }

    // MARK: - Connection limits

    func testConnectionsPerClient() throws {
        try start(["smtpd_max_connections_per_client = 3"])
        var open: [SMTPClient] = []
        for _ in 0..<3 {
            let c = try XCTUnwrap(SMTPClient(port: smtpd.port, source: "127.0.0.60"))
            XCTAssertEqual(c.reply()?.code, 220)
            open.append(c)
        }
        let fourth = try XCTUnwrap(SMTPClient(port: smtpd.port, source: "127.0.0.60"))
        let rs = fourth.repliesUntilClosed(timeout: 5)
        XCTAssertEqual(rs.replies.map(\.code), [421], "\(rs.replies)")
        XCTAssertTrue(rs.replies.first?.text.hasPrefix("421 4.7.0") == true, "\(rs.replies)")
        XCTAssertTrue(rs.replies.first?.text.contains("[127.0.0.60]") == true, "\(rs.replies)")
        XCTAssertTrue(rs.closed)
        // Another address is not affected.
        let other = try XCTUnwrap(SMTPClient(port: smtpd.port, source: "127.0.0.61"))
        XCTAssertEqual(other.reply()?.code, 220)
        // A slot comes back when a connection ends.
        XCTAssertEqual(open.removeLast().command("QUIT").code, 221)
        XCTAssertTrue(eventually(5) {
            guard let c = SMTPClient(port: smtpd.port, source: "127.0.0.60") else { return false }
            return c.reply()?.code == 220
        })
        XCTAssertTrue(smtpd.log.contains("smtpd_max_connections_per_client"), smtpd.log)
    }

    func testTotalConnections() throws {
        try start(["smtpd_max_connections = 5"])
        var open: [SMTPClient] = []
        for i in 0..<5 {
            let c = try XCTUnwrap(SMTPClient(port: smtpd.port, source: "127.0.0.\(62 + i)"))
            XCTAssertEqual(c.reply()?.code, 220)
            open.append(c)
        }
        let sixth = try XCTUnwrap(SMTPClient(port: smtpd.port, source: "127.0.0.70"))
        let rs = sixth.repliesUntilClosed(timeout: 5)
        XCTAssertEqual(rs.replies.map(\.code), [421], "\(rs.replies)")
        XCTAssertTrue(rs.replies.first?.text.contains("too many connections") == true, "\(rs.replies)")
        XCTAssertTrue(rs.closed)
        XCTAssertEqual(open.removeFirst().command("QUIT").code, 221)
        XCTAssertTrue(eventually(5) {
            guard let c = SMTPClient(port: smtpd.port, source: "127.0.0.70") else { return false }
            return c.reply()?.code == 220
        })
        XCTAssertTrue(smtpd.log.contains("(smtpd_max_connections)"), smtpd.log)
    }

    func testManyIdleConnectionsDoNotStopService() throws {
        try start()
        var idle: [SMTPClient] = []
        // 300 idle clients from 30 addresses (within the per-client default of 50).
        for i in 0..<300 {
            let c = try XCTUnwrap(SMTPClient(port: smtpd.port, source: "127.0.1.\(1 + i % 30)"), "connection \(i)")
            idle.append(c)
        }
        var greeted = 0
        for c in idle where c.reply(timeout: 10)?.code == 220 { greeted += 1 }
        XCTAssertEqual(greeted, 300)
        let t0 = Date()
        let r = swaks(smtpd.port, ["-f", "a@example.org", "-t", "b@remote.example"], source: Self.trusted)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 3)
        XCTAssertTrue(sink.settles(at: 1), "\(sink.delivered.count) messages")
        // The idle ones are still served.
        for c in [idle[0], idle[150], idle[299]] { XCTAssertEqual(c.command("NOOP").code, 250) }
    }

    // MARK: - Pipelining (RFC 2920)

    /// A client that pipelines commands and never reads the replies must not make the server
    /// queue replies in memory: it stops taking commands while its replies are not read, and
    /// serves them all, in order, once they are. EHLO: 10 octets in, a multi-line reply out.
    func testPipelinedCommandsFromAClientThatDoesNotRead() throws {
        try start()
        let c = try client("127.0.0.72")
        let ehlo = c.command("EHLO client.test")
        XCTAssertEqual(ehlo.code, 250)
        let count = 150_000
        let sender = Thread { c.send(String(repeating: "EHLO x.test\r\n", count: count)) }
        sender.start()
        let before = residentKB(smtpd.process.pid)
        var during = before
        for _ in 0..<8 { sleep(1); during = max(during, residentKB(smtpd.process.pid)) }
        XCTAssertGreaterThan(before, 0)
        XCTAssertLessThan(during - before, 8 * 1024, "the server grew by \(during - before) KB for replies nobody read")
        // Now read them all: every EHLO answered, in order, then the session still works.
        var got = 0, lines = 0, other: [String] = [], tail: [UInt8] = []
        let deadline = Date().addingTimeInterval(90)
        while got < count && Date() < deadline {
            guard let more = c.tcp.receive(timeout: 1) else { break }
            tail += more
            while let lf = tail.firstIndex(of: 0x0A) {
                let line = tail[...lf]
                if line.starts(with: Array("250 ".utf8)) { got += 1 } else if !line.starts(with: Array("250-".utf8)) {
                    other.append(String(decoding: line, as: UTF8.self))
                }
                lines += 1
                tail.removeSubrange(...lf)
            }
        }
        XCTAssertEqual(got, count, "final 250 lines read")
        XCTAssertEqual(other, [], "replies other than 250")
        XCTAssertEqual(lines, count * ehlo.text.split(separator: "\n").count, "every reply as long as the first EHLO's")
        XCTAssertEqual(c.command("QUIT").code, 221)
    }

    func testPipelinedCommandsAndText() throws {
        try start()
        let c = try client("127.0.0.71")
        XCTAssertTrue(c.command("EHLO client.test").text.contains("250-PIPELINING"))
        // Envelope in one write: replies in order, the remote recipient refused (127.0.0.71 may not relay).
        c.send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<u1@example.org>\r\nRCPT TO:<victim@remote.example>\r\nRCPT TO:<u2@example.org>\r\nDATA\r\n")
        let codes = (0..<5).map { _ in c.reply()?.code ?? 0 }
        XCTAssertEqual(codes, [250, 250, 554, 250, 354])
        c.send("Subject: pipelined 1\r\n\r\nfirst\r\n.\r\n")
        XCTAssertEqual(c.reply()?.code, 250)
        // A whole transaction, message text included, and QUIT in one write.
        c.send("RSET\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<u3@example.org>\r\nDATA\r\nSubject: pipelined 2\r\n\r\nsecond\r\n.\r\nQUIT\r\n")
        let rs = c.repliesUntilClosed(timeout: 10)
        XCTAssertEqual(rs.replies.map(\.code), [250, 250, 250, 354, 250, 221], "\(rs.replies)")
        XCTAssertTrue(rs.closed)
        let msgs = sink.delivered
        XCTAssertEqual(msgs.count, 2)
        XCTAssertEqual(msgs.filter { $0.contains("Subject: pipelined 1\n\nfirst\n") }.count, 1, msgs.joined())
        XCTAssertEqual(msgs.filter { $0.contains("Subject: pipelined 2\n\nsecond\n") && $0.contains("<u3@example.org>") }.count, 1, msgs.joined())
        XCTAssertFalse(msgs.joined().contains("victim"))
    }

    // MARK: - Message text: smuggling, bare LF, long lines

    func testSmugglingVariantsAreRefusedAndNothingIsDelivered() throws {
        try start()
        let c = try client()
        let smuggled = "MAIL FROM:<x@y.example>\r\nRCPT TO:<victim@remote.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n"
        let variants = ["\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r"]
        for v in variants {
            XCTAssertEqual(c.command("MAIL FROM:<a@example.org>").code, 250)
            XCTAssertEqual(c.command("RCPT TO:<b@remote.example>").code, 250)
            XCTAssertEqual(c.command("DATA").code, 354)
            c.send("Subject: first\r\n\r\nhello" + v + smuggled + "\r\n.\r\n")
            let r = c.reply()
            XCTAssertTrue(r?.text.hasPrefix("550 5.5.2") == true, "\(v.debugDescription): \(String(describing: r))")
            // No reply to a smuggled command: the next reply is NOOP's.
            XCTAssertEqual(c.command("NOOP").text, "250 2.0.0 Ok", v.debugDescription)
        }
        usleep(500_000)
        XCTAssertTrue(sink.settles(at: 0), sink.delivered.joined())
        // The session is still usable.
        XCTAssertEqual(send(c)?.code, 250)
        XCTAssertTrue(sink.settles(at: 1), "\(sink.delivered.count) messages")
        XCTAssertFalse(sink.delivered.joined().contains("evil"))
        XCTAssertFalse(sink.delivered.joined().contains("victim"))
    }

    /// The same with every octet of the end-of-data candidates in its own TCP segment.
    func testSmugglingSplitAcrossReads() throws {
        try start()
        let c = try client()
        func sendPieces(_ pieces: [String]) {
            for p in pieces {
                c.send(p)
                usleep(40_000)
            }
        }
        for v in [["\n", ".", "\n"], ["\r", ".", "\r"], ["\r", "\n", ".", "\n"], ["\n", ".", "\r", "\n"]] {
            XCTAssertEqual(c.command("MAIL FROM:<a@example.org>").code, 250)
            XCTAssertEqual(c.command("RCPT TO:<b@remote.example>").code, 250)
            XCTAssertEqual(c.command("DATA").code, 354)
            sendPieces(["Subject: first\r\n\r\nhello"] + v + ["MAIL FROM:<x@y.example>\r\n", "RCPT TO:<victim@remote.example>\r\n",
                                                             "DATA\r\n", "evil\r\n", "\r", "\n", ".", "\r", "\n"])
            let r = c.reply()
            XCTAssertTrue(r?.text.hasPrefix("550 5.5.2") == true, "\(v): \(String(describing: r))")
            XCTAssertEqual(c.command("NOOP").text, "250 2.0.0 Ok", "\(v)")
        }
        usleep(300_000)
        XCTAssertTrue(sink.settles(at: 0), sink.delivered.joined())
        // A good message whose terminator arrives one octet at a time.
        XCTAssertEqual(c.command("MAIL FROM:<a@example.org>").code, 250)
        XCTAssertEqual(c.command("RCPT TO:<b@remote.example>").code, 250)
        XCTAssertEqual(c.command("DATA").code, 354)
        sendPieces(["Subject: split\r\n\r\n", ".", ".dot\r\nend", "\r", "\n", ".", "\r", "\n"])
        XCTAssertEqual(c.reply()?.code, 250)
        XCTAssertTrue(sink.settles(at: 1), "\(sink.delivered.count) messages")
        XCTAssertTrue(sink.delivered.first?.contains("\n.dot\nend\n") == true, sink.delivered.joined())
    }

    func testBareLFInHeaderAndLongLinesInText() throws {
        try start()
        let c = try client()
        let bare = send(c, body: "Subject: a\nX-Bad: b\r\n\r\nbody\r\n")
        XCTAssertTrue(bare?.text.hasPrefix("550 5.5.2") == true, "\(String(describing: bare))")
        // 998 octets + CRLF = 1000: the longest text line (RFC 5321 4.5.3.1.6).
        let ok = send(c, body: "Subject: long\r\n\r\n" + String(repeating: "z", count: 998) + "\r\n")
        XCTAssertEqual(ok?.code, 250)
        let long = send(c, body: "Subject: long\r\n\r\n" + String(repeating: "z", count: 999) + "\r\n")
        XCTAssertTrue(long?.text.hasPrefix("550 5.5.6") == true, "\(String(describing: long))")
        XCTAssertTrue(sink.settles(at: 1), "\(sink.delivered.count) messages")
        XCTAssertEqual(send(c)?.code, 250)
        XCTAssertTrue(sink.settles(at: 2), "\(sink.delivered.count) messages")
    }
}
