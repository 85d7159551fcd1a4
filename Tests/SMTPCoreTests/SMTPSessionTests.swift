// SMTPSession as transcripts: lines and results in, actions out (RFC 5321, 4954, 3207, 2920, 1870).
import XCTest
@testable import SMTPCore
import DRACCore

/// Drives one session like the connection handler does: feeds lines, fulfils what the session
/// asked for (backend replies, SASL results, DRAC lookups) and keeps every log line it emitted.
struct Harness {
    var session: SMTPSession
    var logs: [String] = []
    var actions: [SMTPAction] = []
    let now: Int64 = 1_800_000_000

    init(_ settings: SessionSettings, client: String = "192.0.2.10", secure: Bool = false) {
        session = SMTPSession(settings: settings, client: IPAddress(client)!, secure: secure)
    }

    private mutating func record(_ a: [SMTPAction]) -> [SMTPAction] {
        actions += a
        for case .log(let text) in a { logs.append(text) }
        return a
    }

    @discardableResult
    mutating func send(_ line: String, tooLong: Bool = false, file: StaticString = #filePath, line l: UInt = #line) -> [SMTPAction] {
        // The session traps on a line fed while it waits: fail the test, not the test process.
        guard !session.isWaiting else { XCTFail("line fed while waiting: \(line)", file: file, line: l); return [] }
        XCTAssertFalse(session.isClosed, "line fed after close: \(line)", file: file, line: l)
        return record(session.received(line: Substring(line), tooLong: tooLong))
    }

    // The session traps (precondition) on a result it did not ask for; fail the test instead
    // of the whole test process.
    private func waiting(_ what: String, _ file: StaticString, _ line: UInt) -> Bool {
        XCTAssertTrue(session.isWaiting, "\(what) while the session is not waiting", file: file, line: line)
        return session.isWaiting
    }

    @discardableResult
    mutating func backend(_ code: Int, _ enhanced: String? = nil, _ text: String = "Ok",
                          file: StaticString = #filePath, line: UInt = #line) -> [SMTPAction] {
        guard waiting("backend reply", file, line) else { return [] }
        return record(session.backendReplied(SMTPReply(code, enhanced, text)))
    }

    @discardableResult
    mutating func sasl(_ r: AuthResult, file: StaticString = #filePath, line: UInt = #line) -> [SMTPAction] {
        guard waiting("SASL result", file, line) else { return [] }
        return record(session.authResult(r))
    }

    @discardableResult
    mutating func drac(_ expiry: Int64?, file: StaticString = #filePath, line: UInt = #line) -> [SMTPAction] {
        guard waiting("DRAC result", file, line) else { return [] }
        return record(session.dracLookedUp(expiry: expiry, now: now))
    }

    @discardableResult
    mutating func dataEnded(size: Int, problem: DataScanner.Problem? = nil) -> [SMTPAction] {
        record(session.dataEnded(size: size, problem: problem))
    }

    /// EHLO, expecting a 250.
    mutating func ehlo(_ name: String = "client.example", file: StaticString = #filePath, line: UInt = #line) {
        let a = send("EHLO \(name)", file: file, line: line)
        XCTAssertEqual(a.replyCodes, [250], file: file, line: line)
    }

    /// MAIL FROM accepted by the backend.
    mutating func mail(_ from: String = "<alice@remote.example>", file: StaticString = #filePath, line: UInt = #line) {
        let a = send("MAIL FROM:\(from)", file: file, line: line)
        guard case .backendMail? = a.first else { return XCTFail("MAIL not forwarded: \(a)", file: file, line: line) }
        XCTAssertEqual(backend(250, "2.1.0").replyCodes, [250], file: file, line: line)
    }

    /// RCPT TO that the policy accepts without a lookup, accepted by the backend.
    mutating func rcpt(_ to: String, file: StaticString = #filePath, line: UInt = #line) {
        let a = send("RCPT TO:\(to)", file: file, line: line)
        guard case .backendRcpt? = a.first else { return XCTFail("RCPT not forwarded: \(a)", file: file, line: line) }
        XCTAssertEqual(backend(250, "2.1.5").replyCodes, [250], file: file, line: line)
    }
}

extension Array where Element == SMTPAction {
    /// Every reply the client gets, in order (plain, closing, STARTTLS and 354 replies).
    var replies: [SMTPReply] {
        compactMap {
            switch $0 {
            case .reply(let r), .close(let r), .startTLS(let r), .beginData(let r): return r
            default: return nil
            }
        }
    }
    var replyCodes: [Int] { replies.map(\.code) }
    var withoutLogs: [SMTPAction] { filter { if case .log = $0 { return false } else { return true } } }
    var logs: [String] { compactMap { if case .log(let t) = $0 { return t } else { return nil } } }
}

final class SMTPSessionTests: XCTestCase {
    static let hostname = "mx.local.example"
    static let now: Int64 = 1_800_000_000

    static func policy(trusted: [String] = ["10.0.0.0/8", "2001:db8:1::/48"], drac: Bool = true) -> RelayPolicy {
        RelayPolicy(trustedNetworks: AllowList(rules: trusted.map { AllowRule(cidr: $0)! }),
                    localDomains: ["local.example"], relayDomains: ["backup.example"], dracEnabled: drac)
    }

    static func settings(_ listener: ListenerKind = .smtp, policy: RelayPolicy = policy(), limits: SMTPLimits = SMTPLimits(),
                         startTLS: Bool = false, plain: [String] = [], secure: [String] = [],
                         authRequiresTLS: Bool = true, dsn: Bool = false) -> SessionSettings {
        SessionSettings(hostname: hostname, listener: listener, policy: policy, limits: limits, startTLSAvailable: startTLS,
                        mechanismsPlain: plain, mechanismsSecure: secure, authRequiresTLS: authRequiresTLS, backendOffersDSN: dsn)
    }

    /// The production-like AUTH setup: STARTTLS available, AUTH only under TLS.
    static var authSettings: SessionSettings {
        settings(startTLS: true, plain: ["PLAIN", "LOGIN"], secure: ["PLAIN", "LOGIN", "CRAM-MD5"])
    }

    static func mailbox(_ s: String) -> Mailbox {
        guard case .success((.mailbox(let m), _)) = SMTPPath.parseForward(Substring("<\(s)>")) else { fatalError(s) }
        return m
    }

    static func reply(_ code: Int, _ enhanced: String?, _ text: String) -> SMTPAction { .reply(SMTPReply(code, enhanced, text)) }

    func assertReply(_ actions: [SMTPAction], _ code: Int, _ enhanced: String?, file: StaticString = #filePath, line: UInt = #line) {
        let rest = actions.withoutLogs
        XCTAssertEqual(rest.count, 1, "expected one reply, got \(actions)", file: file, line: line)
        guard case .reply(let r)? = rest.first else { return XCTFail("expected a reply, got \(actions)", file: file, line: line) }
        XCTAssertEqual(r.code, code, "\(r)", file: file, line: line)
        XCTAssertEqual(r.enhanced, enhanced, "\(r)", file: file, line: line)
    }

    // MARK: - Greeting, EHLO, HELO

    func testGreeting() {
        let s = SMTPSession(settings: Self.settings(), client: IPAddress("192.0.2.10")!, secure: false)
        XCTAssertEqual(s.greeting(), Self.reply(220, nil, "mx.local.example ESMTP drac-smtpd"))
        XCTAssertEqual(SMTPReply(220, nil, "mx.local.example ESMTP drac-smtpd").encoded, "220 mx.local.example ESMTP drac-smtpd\r\n")
    }

    func testEHLOKeywords() {
        let size = "SIZE 10240000"
        let cases: [(String, SessionSettings, Bool, Bool, [String])] = [
            // name, settings, secure, tlsEstablished after connect, lines after the host name
            ("plain, nothing", Self.settings(), false, false, ["PIPELINING", size, "ENHANCEDSTATUSCODES", "8BITMIME"]),
            ("STARTTLS offered, AUTH hidden until TLS", Self.authSettings, false, false,
             ["PIPELINING", size, "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME"]),
            ("after TLS: no STARTTLS, AUTH shown", Self.authSettings, false, true,
             ["PIPELINING", size, "AUTH PLAIN LOGIN CRAM-MD5", "ENHANCEDSTATUSCODES", "8BITMIME"]),
            ("implicit TLS", Self.settings(.submissions, startTLS: false, plain: ["PLAIN"], secure: ["PLAIN", "LOGIN"]), true, false,
             ["PIPELINING", size, "AUTH PLAIN LOGIN", "ENHANCEDSTATUSCODES", "8BITMIME"]),
            ("AUTH allowed without TLS", Self.settings(startTLS: true, plain: ["PLAIN", "LOGIN"], secure: ["PLAIN"], authRequiresTLS: false), false, false,
             ["PIPELINING", size, "STARTTLS", "AUTH PLAIN LOGIN", "ENHANCEDSTATUSCODES", "8BITMIME"]),
            ("STARTTLS not available", Self.settings(startTLS: false, plain: ["PLAIN"], secure: ["PLAIN"]), false, false,
             ["PIPELINING", size, "ENHANCEDSTATUSCODES", "8BITMIME"]),
            ("DSN when the backend offers it", Self.settings(dsn: true), false, false,
             ["PIPELINING", size, "ENHANCEDSTATUSCODES", "8BITMIME", "DSN"]),
        ]
        for (name, settings, secure, tls, expected) in cases {
            var h = Harness(settings, secure: secure)
            if tls { h.session.tlsEstablished() }
            let a = h.send("EHLO client.example")
            XCTAssertEqual(a, [.reply(SMTPReply(code: 250, enhanced: nil, lines: [Self.hostname] + expected))], name)
        }
        var limits = SMTPLimits()
        limits.messageSize = 5000
        var h = Harness(Self.settings(limits: limits))
        XCTAssertEqual(h.send("EHLO x").replies.first?.lines[2], "SIZE 5000")
        XCTAssertEqual(h.send("EHLO x").replies.first?.encoded,
                       "250-mx.local.example\r\n250-PIPELINING\r\n250-SIZE 5000\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n")
    }

    func testHELO() {
        var h = Harness(Self.settings(dsn: true))
        XCTAssertEqual(h.send("HELO client.example"), [Self.reply(250, nil, "mx.local.example")])
        XCTAssertEqual(h.session.helo, "client.example")
        XCTAssertFalse(h.session.esmtp)
        XCTAssertEqual(h.session.protocolName, "SMTP")
        h.send("EHLO other.example")
        XCTAssertEqual(h.session.helo, "other.example")
        XCTAssertTrue(h.session.esmtp)
        XCTAssertEqual(h.session.protocolName, "ESMTP")
        XCTAssertEqual(h.send("EHLO"), [Self.reply(501, "5.5.4", "Syntax: EHLO hostname")])
    }

    // MARK: - Sequence errors

    func testCommandsOutOfSequence() {
        var h = Harness(Self.settings(), client: "10.1.2.3")
        assertReply(h.send("MAIL FROM:<a@remote.example>"), 503, "5.5.1")
        assertReply(h.send("RCPT TO:<b@remote.example>"), 503, "5.5.1")
        assertReply(h.send("DATA"), 503, "5.5.1")
        h.ehlo()
        assertReply(h.send("RCPT TO:<b@remote.example>"), 503, "5.5.1")
        assertReply(h.send("DATA"), 503, "5.5.1")
        h.mail()
        XCTAssertEqual(h.send("MAIL FROM:<c@remote.example>"), [Self.reply(503, "5.5.1", "Error: nested MAIL command")])
        XCTAssertEqual(h.send("DATA"), [Self.reply(554, "5.5.1", "Error: no valid recipients")])
        XCTAssertEqual(h.session.errors, 7)
        XCTAssertFalse(h.actions.contains { if case .backendRcpt = $0 { return true } else { return false } })
    }

    // MARK: - A whole transaction

    func testFullTransactionViaDRAC() {
        var h = Harness(Self.settings())
        XCTAssertEqual(h.session.greeting().replyCode, 220)
        h.ehlo()
        let alice = Self.mailbox("alice@remote.example"), bob = Self.mailbox("bob@remote.example")
        XCTAssertEqual(h.send("MAIL FROM:<alice@remote.example> SIZE=1000"),
                       [.backendMail(.mailbox(alice), [MailParameter(keyword: "SIZE", value: "1000")])])
        XCTAssertTrue(h.session.isWaiting)
        XCTAssertEqual(h.backend(250, "2.1.0", "Ok"), [Self.reply(250, "2.1.0", "Ok")])
        XCTAssertTrue(h.session.inTransaction)
        // A remote domain from an address we do not know: ask the DRAC map.
        XCTAssertEqual(h.send("RCPT TO:<bob@remote.example>"), [.lookupDRAC])
        XCTAssertTrue(h.session.isWaiting)
        XCTAssertEqual(h.drac(h.now + 60), [.backendRcpt(.mailbox(bob), [])])
        XCTAssertEqual(h.backend(250, "2.1.5", "Ok"), [Self.reply(250, "2.1.5", "Ok")])
        XCTAssertEqual(h.send("DATA"), [.backendData])
        XCTAssertEqual(h.backend(354, nil, "End data with <CR><LF>.<CR><LF>"), [.beginData(SMTPReply(354, nil, "End data with <CR><LF>.<CR><LF>"))])
        XCTAssertTrue(h.session.inData)
        XCTAssertEqual(h.dataEnded(size: 1234), [])
        XCTAssertTrue(h.session.isWaiting)
        let end = h.backend(250, "2.0.0", "Ok: queued as ABC")
        XCTAssertEqual(end.withoutLogs, [Self.reply(250, "2.0.0", "Ok: queued as ABC")])
        XCTAssertEqual(end.logs.count, 1)
        let log = end.logs.first ?? ""
        for part in ["[192.0.2.10]", "from=<alice@remote.example>", "to=<bob@remote.example>", "relay via drac", "accepted",
                     "size=1234", "queue_id=ABC"] {
            XCTAssertTrue(log.contains(part), "'\(part)' missing from: \(log)")
        }
        XCTAssertFalse(h.session.inTransaction)
        XCTAssertFalse(h.session.isWaiting)
        // The next transaction starts clean.
        XCTAssertEqual(h.send("RCPT TO:<bob@remote.example>").replyCodes, [503])
        XCTAssertEqual(h.send("QUIT"), [.close(SMTPReply(221, "2.0.0", "Bye"))])
        XCTAssertTrue(h.session.isClosed)
        XCTAssertEqual(h.session.countsText, "ehlo=1 mail=1 rcpt=2 data=1 quit=1 commands=6")
    }

    func testTwoRecipientsTwoReasonsAreLogged() {
        var h = Harness(Self.settings())
        h.ehlo()
        h.mail("<>")
        h.rcpt("<postmaster@local.example>")          // local domain: no lookup
        XCTAssertEqual(h.send("RCPT TO:<carol@remote.example>"), [.lookupDRAC])
        XCTAssertEqual(h.drac(h.now + 3600).count, 1)
        h.backend(250, "2.1.5")
        h.send("DATA")
        h.backend(354)
        h.dataEnded(size: 10)
        let log = h.backend(250, "2.0.0", "Ok: queued as 4XyZ1").logs.first ?? ""
        XCTAssertTrue(log.contains("from=<>"), log)
        XCTAssertTrue(log.contains("to=<postmaster@local.example>,<carol@remote.example>"), log)
        XCTAssertTrue(log.contains("local domain/relay via drac"), log)
        XCTAssertTrue(log.contains("queue_id=4XyZ1"), log)
    }

    // MARK: - Relay decisions

    func testSASLIdentityRelays() {
        var h = Harness(Self.authSettings, secure: true)
        h.ehlo()
        XCTAssertEqual(h.send("AUTH PLAIN AGFsaWNlAHNlY3JldA=="), [.authStart(mechanism: "PLAIN", initial: Array("\0alice\0secret".utf8))])
        h.sasl(.success(identity: "alice"))
        h.mail()
        // No DRAC lookup for an authenticated client.
        XCTAssertEqual(h.send("RCPT TO:<bob@remote.example>"), [.backendRcpt(.mailbox(Self.mailbox("bob@remote.example")), [])])
        h.backend(250)
        h.send("DATA"); h.backend(354); h.dataEnded(size: 5)
        let log = h.backend(250, "2.0.0", "Ok: queued as Q1").logs.first ?? ""
        XCTAssertTrue(log.contains("relay via sasl"), log)
        XCTAssertTrue(log.contains("sasl_username=alice"), log)
        XCTAssertEqual(h.session.protocolName, "ESMTPSA")
    }

    func testTrustedNetworkRelays() {
        for client in ["10.9.8.7", "::ffff:10.9.8.7", "2001:db8:1:2::5"] {
            var h = Harness(Self.settings(), client: client)
            h.ehlo()
            h.mail()
            XCTAssertEqual(h.send("RCPT TO:<bob@remote.example>"), [.backendRcpt(.mailbox(Self.mailbox("bob@remote.example")), [])], client)
            h.backend(250)
            h.send("DATA"); h.backend(354); h.dataEnded(size: 5)
            let log = h.backend(250, "2.0.0", "Ok").logs.first ?? ""
            XCTAssertTrue(log.contains("relay via mynetworks"), "\(client): \(log)")
            XCTAssertFalse(log.contains("queue_id="), log)
        }
        XCTAssertEqual(SMTPSession(settings: Self.settings(), client: IPAddress("::ffff:10.9.8.7")!, secure: false).client, IPAddress("10.9.8.7")!)
    }

    func testDRACEntryThatIsNotLiveDeniesRelay() {
        for expiry in [Self.now - 1, Self.now, nil] as [Int64?] {
            var h = Harness(Self.settings())
            h.ehlo()
            h.mail()
            XCTAssertEqual(h.send("RCPT TO:<bob@remote.example>"), [.lookupDRAC])
            let a = h.drac(expiry)
            XCTAssertEqual(a.withoutLogs, [Self.reply(554, "5.7.1", "<bob@remote.example>: Relay access denied")], "\(String(describing: expiry))")
            XCTAssertEqual(a.logs.count, 1)
            XCTAssertTrue(a.logs.first?.contains("reject: relay denied") ?? false, "\(a)")
            XCTAssertTrue(a.logs.first?.contains("to=<bob@remote.example>") ?? false, "\(a)")
            XCTAssertFalse(h.actions.contains { if case .backendRcpt = $0 { return true } else { return false } })
            // Still in the transaction, with no recipient.
            XCTAssertTrue(h.session.inTransaction)
            XCTAssertEqual(h.send("DATA").replyCodes, [554])
        }
    }

    /// The sender never grants relay: a local-domain or null sender to a remote recipient.
    func testSenderDoesNotGrantRelay() {
        for from in ["<user@local.example>", "<>", "<bob@remote.example>"] {
            var h = Harness(Self.settings())
            h.ehlo()
            h.mail(from)
            XCTAssertEqual(h.send("RCPT TO:<bob@remote.example>"), [.lookupDRAC], from)
            XCTAssertEqual(h.drac(nil).replyCodes, [554], from)
        }
    }

    func testDRACDisabledDeniesWithoutLookup() {
        var h = Harness(Self.settings(policy: Self.policy(drac: false)))
        h.ehlo()
        h.mail()
        let a = h.send("RCPT TO:<bob@remote.example>")
        XCTAssertEqual(a.withoutLogs, [Self.reply(554, "5.7.1", "<bob@remote.example>: Relay access denied")])
        XCTAssertFalse(a.contains(.lookupDRAC))
    }

    func testLocalRelayDomainAndPostmasterNeedNoLookup() {
        let cases: [(String, ForwardPath)] = [
            ("<bob@local.example>", .mailbox(Self.mailbox("bob@local.example"))),
            ("<Bob@LOCAL.Example>", .mailbox(Mailbox(localPart: "Bob", domain: .name("local.example")))),
            ("<x@backup.example>", .mailbox(Self.mailbox("x@backup.example"))),
            ("<Postmaster>", .postmaster),
        ]
        for (to, path) in cases {
            var h = Harness(Self.settings())
            h.ehlo()
            h.mail()
            XCTAssertEqual(h.send("RCPT TO:\(to)"), [.backendRcpt(path, [])], to)
        }
    }

    /// Subdomains and address literals are not local: they need the map.
    func testNotQuiteLocalNeedsALookup() {
        for to in ["<bob@sub.local.example>", "<bob@local.example.evil.example>", "<bob@[192.0.2.1]>", "<bob@[IPv6:2001:db8::1]>"] {
            var h = Harness(Self.settings())
            h.ehlo()
            h.mail()
            XCTAssertEqual(h.send("RCPT TO:\(to)"), [.lookupDRAC], to)
            XCTAssertEqual(h.drac(nil).replyCodes, [554], to)
        }
    }

    func testSubmissionNeedsAuth() {
        for kind in [ListenerKind.submission, .submissions] {
            var h = Harness(Self.settings(kind, plain: ["PLAIN"], secure: ["PLAIN"]), client: "10.1.2.3", secure: true)
            h.ehlo()
            let a = h.send("MAIL FROM:<alice@local.example>")
            XCTAssertEqual(a.withoutLogs, [Self.reply(530, "5.7.0", "Authentication required")], "\(kind)")
            XCTAssertEqual(a.logs.count, 1)
            XCTAssertFalse(h.session.inTransaction)
            // After AUTH, the same MAIL goes through, and RCPT relays via SASL.
            h.send("AUTH PLAIN AGFsaWNlAHNlY3JldA==")
            h.sasl(.success(identity: "alice"))
            h.mail("<alice@local.example>")
            XCTAssertEqual(h.send("RCPT TO:<bob@remote.example>"), [.backendRcpt(.mailbox(Self.mailbox("bob@remote.example")), [])])
        }
    }

    /// Addresses that could route past the relay check are refused before any decision, from
    /// any client, trusted or not.
    func testRoutingTricksInRCPT() {
        let tricks: [(String, Int, String)] = [
            ("<user%other.com@local.example>", 550, "5.7.1"),
            ("<@a:u@b.example>", 550, "5.7.1"),
            ("<@relay.example:u@local.example>", 550, "5.7.1"),
            ("<\"u@x\"@local.example>", 550, "5.7.1"),
            ("<\"u%x\"@local.example>", 550, "5.7.1"),
            ("<host!u@local.example>", 550, "5.7.1"),
            ("<u@local.example.>", 550, "5.7.1"),
            ("<u@local..example>", 550, "5.7.1"),
            ("<u@local.example@remote.example>", 550, "5.7.1"),
            ("<u@remote.example>@local.example", 550, "5.7.1"),
            ("<u@127.0.0.1>", 550, "5.7.1"),
            ("<u@local_example>", 501, "5.1.3"),
            ("<>", 501, "5.1.3"),
            ("u@local.example", 501, "5.1.3"),
            ("<u@local.example", 501, "5.1.3"),
        ]
        for client in ["192.0.2.10", "10.1.2.3"] {
            for (to, code, enhanced) in tricks {
                var h = Harness(Self.settings(), client: client)
                h.ehlo()
                h.mail()
                let a = h.send("RCPT TO:\(to)")
                assertReply(a, code, enhanced)
                XCTAssertEqual(a.replyCodes, [code], "\(client) \(to)")
                XCTAssertFalse(a.contains { if case .backendRcpt = $0 { return true }; if case .lookupDRAC = $0 { return true }; return false },
                               "\(client) \(to): \(a)")
                XCTAssertFalse(h.session.isWaiting)
            }
        }
    }

    func testXCLIENTAndXFORWARDAreRefused() {
        var h = Harness(Self.settings(), client: "10.1.2.3")
        h.ehlo()
        for line in ["XCLIENT ADDR=127.0.0.1 NAME=localhost", "XFORWARD ADDR=127.0.0.1"] {
            let a = h.send(line)
            XCTAssertEqual(a.withoutLogs, [Self.reply(550, "5.7.0", "Error: insufficient authorization")], line)
            XCTAssertEqual(a.logs.count, 1)
        }
        XCTAssertEqual(h.session.errors, 2)
    }

    // MARK: - Other verbs

    func testSimpleVerbs() {
        var h = Harness(Self.settings())
        h.ehlo()
        assertReply(h.send("VRFY root"), 252, "2.0.0")
        assertReply(h.send("EXPN staff"), 502, "5.5.1")
        assertReply(h.send("HELP"), 214, "2.0.0")
        XCTAssertEqual(h.send("NOOP"), [.reply(.ok())])
        XCTAssertEqual(h.send("RSET"), [.reply(.ok())], "RSET outside a transaction resets nothing at the backend")
        XCTAssertEqual(h.send("FOO bar"), [.reply(.notRecognized)])
        XCTAssertEqual(h.send("BDAT 10 LAST"), [Self.reply(502, "5.5.1", "Error: command not implemented")])
        XCTAssertEqual(h.send("RSET now"), [Self.reply(501, "5.5.4", "Syntax: RSET")])
        XCTAssertEqual(h.session.errors, 4, "EXPN, FOO, BDAT, RSET now")
        XCTAssertEqual(h.send("QUIT"), [.close(SMTPReply(221, "2.0.0", "Bye"))])
        XCTAssertTrue(h.session.isClosed)
    }

    func testRSETInATransaction() {
        var h = Harness(Self.settings(), client: "10.1.2.3")
        h.ehlo()
        h.mail()
        XCTAssertEqual(h.send("RSET"), [.backendRset, .reply(.ok())])
        XCTAssertFalse(h.session.inTransaction)
        XCTAssertEqual(h.send("RCPT TO:<a@remote.example>").replyCodes, [503])
        // With a recipient the abandoned transaction is logged.
        h.mail()
        h.rcpt("<b@remote.example>")
        let a = h.send("RSET")
        XCTAssertEqual(a.withoutLogs, [.backendRset, .reply(.ok())])
        XCTAssertTrue(a.logs.first?.contains("abandoned") ?? false, "\(a)")
        // EHLO in a transaction resets it too (RFC 5321 §4.1.4).
        h.mail()
        let e = h.send("EHLO again.example")
        XCTAssertEqual(e.first, .backendRset)
        XCTAssertEqual(e.replyCodes, [250])
        XCTAssertFalse(h.session.inTransaction)
    }

    /// QUIT in the middle of a transaction tells the backend to forget it, and logs it.
    func testQUITInATransaction() {
        var h = Harness(Self.settings(), client: "10.1.2.3")
        h.ehlo()
        h.mail()
        h.rcpt("<b@remote.example>")
        let a = h.send("QUIT")
        XCTAssertEqual(a.withoutLogs, [.backendRset, .close(SMTPReply(221, "2.0.0", "Bye"))])
        XCTAssertTrue(a.logs.first?.contains("abandoned") ?? false, "\(a)")
        XCTAssertTrue(h.session.isClosed)
    }

    // MARK: - Line lengths and the error limit

    func testLineTooLong() {
        var h = Harness(Self.settings())
        h.ehlo()
        XCTAssertEqual(h.send("", tooLong: true), [.reply(.lineTooLong)])
        XCTAssertEqual(SMTPReply.lineTooLong.code, 500)
        XCTAssertEqual(SMTPReply.lineTooLong.enhanced, "5.5.6")
        // RFC 5321 §4.5.3.1.4: 512 octets with the CRLF is the most a command line may be.
        let ok = "NOOP " + String(repeating: "x", count: 510 - 5)
        XCTAssertEqual(ok.utf8.count + 2, 512)
        XCTAssertEqual(h.send(ok), [.reply(.ok())])
        let long = "NOOP " + String(repeating: "x", count: 511 - 5)
        XCTAssertEqual(long.utf8.count + 2, 513)
        XCTAssertEqual(h.send(long), [.reply(.lineTooLong)])
        let rcpt = "RCPT TO:<" + String(repeating: "a", count: 520) + "@remote.example>"
        XCTAssertEqual(h.send(rcpt), [.reply(.lineTooLong)])
    }

    /// RFC 4954 §4: an AUTH line may be 12288 octets.
    func testLongAUTHLineIsAccepted() {
        var h = Harness(Self.authSettings, secure: true)
        h.ehlo()
        let response = Base64.encode([UInt8](repeating: 0x61, count: 9204))
        let line = "AUTH PLAIN " + response
        XCTAssertLessThanOrEqual(line.utf8.count + 2, 12_288)
        XCTAssertGreaterThan(line.utf8.count, 12_000)
        XCTAssertEqual(h.send(line), [.authStart(mechanism: "PLAIN", initial: [UInt8](repeating: 0x61, count: 9204))])
        XCTAssertEqual(h.session.lineLimit, 12_288)
        h.sasl(.challenge([]))
        XCTAssertEqual(h.session.lineLimit, 12_288)
        // A long continuation line is fine too.
        XCTAssertEqual(h.send(response), [.authStep([UInt8](repeating: 0x61, count: 9204))])
    }

    func testErrorLimitCloses() {
        var limits = SMTPLimits()
        limits.errors = 3
        var h = Harness(Self.settings(limits: limits))
        h.ehlo()
        XCTAssertEqual(h.send("FOO"), [.reply(.notRecognized)])
        XCTAssertEqual(h.send("MAIL FROM <x@y.example>").replyCodes, [501])
        let a = h.send("BAR")
        XCTAssertEqual(a.withoutLogs, [.reply(.notRecognized), .close(.tooManyErrors)])
        XCTAssertEqual(SMTPReply.tooManyErrors.code, 421)
        XCTAssertTrue(a.logs.first?.contains("too many errors") ?? false)
        XCTAssertTrue(h.session.isClosed)
        XCTAssertEqual(h.session.errors, 3)
    }

    func testBackendRejectionsCountTowardsTheErrorLimit() {
        var limits = SMTPLimits()
        limits.errors = 2
        var h = Harness(Self.settings(limits: limits), client: "10.1.2.3")
        h.ehlo()
        h.send("MAIL FROM:<a@remote.example>")
        let a = h.backend(550, "5.1.8", "Sender rejected")
        XCTAssertEqual(a.withoutLogs, [Self.reply(550, "5.1.8", "Sender rejected")])
        h.send("MAIL FROM:<a@remote.example>")
        let b = h.backend(451, "4.3.0", "Try later")
        XCTAssertEqual(b.withoutLogs, [Self.reply(451, "4.3.0", "Try later"), .close(.tooManyErrors)])
    }

    // MARK: - MAIL and RCPT parameters (RFC 1870, 6152, 4954 §5, 3461)

    func testMAILParameters() {
        let cases: [(String, [MailParameter]?, Int?)] = [
            // parameters, what goes to the backend (nil: refused), refusal code
            ("SIZE=10240000", [MailParameter(keyword: "SIZE", value: "10240000")], nil),
            ("size=0", [MailParameter(keyword: "SIZE", value: "0")], nil),
            ("SIZE=10240001", nil, 552),
            ("SIZE=99999999999999999999", nil, 501),
            ("SIZE=123456789012345678901", nil, 501),
            ("SIZE=abc", nil, 501),
            ("SIZE=-1", nil, 501),
            ("SIZE", nil, 501),
            ("BODY=8BITMIME", [MailParameter(keyword: "BODY", value: "8BITMIME")], nil),
            ("body=8bitmime", [MailParameter(keyword: "BODY", value: "8BITMIME")], nil),
            ("BODY=7BIT", [MailParameter(keyword: "BODY", value: "7BIT")], nil),
            ("BODY=junk", nil, 501),
            ("BODY=BINARYMIME", nil, 501),
            ("BODY", nil, 501),
            ("AUTH=<>", [], nil),
            ("AUTH=<alice@local.example>", [], nil),
            ("SIZE=10 AUTH=<> BODY=8BITMIME", [MailParameter(keyword: "SIZE", value: "10"), MailParameter(keyword: "BODY", value: "8BITMIME")], nil),
            ("XYZZY=1", nil, 555),
            ("SMTPUTF8", nil, 555),
            ("RET=HDRS", nil, 555),
            ("ENVID=abc", nil, 555),
            ("SIZE=1 SIZE=2", nil, 501),    // duplicate: SMTPPath syntax error
        ]
        for (params, forwarded, code) in cases {
            var h = Harness(Self.settings(), client: "10.1.2.3")
            h.ehlo()
            let a = h.send("MAIL FROM:<a@remote.example> \(params)")
            if let forwarded {
                XCTAssertEqual(a, [.backendMail(.mailbox(Self.mailbox("a@remote.example")), forwarded)], params)
            } else {
                XCTAssertEqual(a.replyCodes, [code!], "\(params): \(a)")
                XCTAssertFalse(h.session.isWaiting, params)
                XCTAssertFalse(a.contains { if case .backendMail = $0 { return true } else { return false } }, params)
            }
        }
        var h = Harness(Self.settings())
        h.ehlo()
        XCTAssertEqual(h.send("MAIL FROM:<a@remote.example> SIZE=10240001"), [Self.reply(552, "5.3.4", "Message size exceeds fixed limit")])
        XCTAssertEqual(h.send("MAIL FROM:<a@remote.example> FOO=1"), [Self.reply(555, "5.5.4", "Unsupported option: FOO")])
        XCTAssertEqual(h.send("MAIL FROM:<a@remote..example>").replies, [SMTPReply(501, "5.1.7", "Bad sender address syntax")])
    }

    func testDSNParametersOnlyWhenTheBackendOffersDSN() {
        for dsn in [false, true] {
            var h = Harness(Self.settings(dsn: dsn), client: "10.1.2.3")
            h.ehlo()
            let a = h.send("MAIL FROM:<a@remote.example> RET=HDRS ENVID=QQ314159")
            if dsn {
                XCTAssertEqual(a, [.backendMail(.mailbox(Self.mailbox("a@remote.example")),
                                                [MailParameter(keyword: "RET", value: "HDRS"), MailParameter(keyword: "ENVID", value: "QQ314159")])])
                h.backend(250)
            } else {
                XCTAssertEqual(a.replyCodes, [555])
                h.mail()
            }
            let r = h.send("RCPT TO:<b@remote.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@remote.example")
            if dsn {
                XCTAssertEqual(r, [.backendRcpt(.mailbox(Self.mailbox("b@remote.example")),
                                                [MailParameter(keyword: "NOTIFY", value: "SUCCESS,FAILURE"),
                                                 MailParameter(keyword: "ORCPT", value: "rfc822;b@remote.example")])])
            } else {
                XCTAssertEqual(r.replyCodes, [555])
            }
        }
        var h = Harness(Self.settings(dsn: true), client: "10.1.2.3")
        h.ehlo()
        h.mail()
        XCTAssertEqual(h.send("RCPT TO:<b@remote.example> FOO=bar").replyCodes, [555])
    }

    func testRecipientLimit() {
        var limits = SMTPLimits()
        limits.recipients = 2
        var h = Harness(Self.settings(limits: limits), client: "10.1.2.3")
        h.ehlo()
        h.mail()
        h.rcpt("<a@remote.example>")
        h.rcpt("<b@remote.example>")
        XCTAssertEqual(h.send("RCPT TO:<c@remote.example>"), [Self.reply(452, "4.5.3", "Error: too many recipients")])
        // The transaction goes on with the two it has.
        XCTAssertEqual(h.send("DATA"), [.backendData])
    }

    // MARK: - Backend replies

    func testBackendRejectsMAILAndRCPT() {
        var h = Harness(Self.settings(), client: "10.1.2.3")
        h.ehlo()
        h.send("MAIL FROM:<a@remote.example>")
        let m = h.backend(451, "4.3.0", "Temporary failure")
        XCTAssertEqual(m.withoutLogs, [Self.reply(451, "4.3.0", "Temporary failure")])
        XCTAssertTrue(m.logs.first?.contains("reject: MAIL") ?? false)
        XCTAssertFalse(h.session.inTransaction)
        XCTAssertEqual(h.session.errors, 1)
        h.mail()
        h.send("RCPT TO:<b@remote.example>")
        let r = h.backend(550, "5.1.1", "User unknown")
        XCTAssertEqual(r.withoutLogs, [Self.reply(550, "5.1.1", "User unknown")])
        XCTAssertTrue(r.logs.first?.contains("to=<b@remote.example>") ?? false)
        XCTAssertEqual(h.session.errors, 2)
        XCTAssertTrue(h.session.inTransaction)
        XCTAssertEqual(h.send("DATA").replyCodes, [554], "the refused recipient does not count")
    }

    func testBackendDATAReplies() {
        // 354 is the only reply that starts the text; a positive non-354 is never passed on.
        let cases: [(SMTPReply, SMTPReply)] = [
            (SMTPReply(250, "2.0.0", "Ok"), .backendUnavailable),
            (SMTPReply(220, nil, "hello"), .backendUnavailable),
            (SMTPReply(334, nil, ""), .backendUnavailable),
            (SMTPReply(451, "4.3.0", "Later"), SMTPReply(451, "4.3.0", "Later")),
            (SMTPReply(554, "5.5.1", "No valid recipients"), SMTPReply(554, "5.5.1", "No valid recipients")),
        ]
        for (backend, client) in cases {
            var h = Harness(Self.settings(), client: "10.1.2.3")
            h.ehlo()
            h.mail()
            h.rcpt("<b@remote.example>")
            XCTAssertEqual(h.send("DATA"), [.backendData])
            let a = h.session.backendReplied(backend)
            XCTAssertEqual(a, [.reply(client)], "\(backend)")
            XCTAssertFalse(h.session.inData)
            XCTAssertTrue(h.session.inTransaction, "the transaction stays: \(backend)")
            XCTAssertEqual(h.session.errors, 1)
        }
        XCTAssertEqual(SMTPReply.backendUnavailable.code, 451)
    }

    func testBackendEndOfDataReplies() {
        let cases: [(SMTPReply, SMTPReply, String)] = [
            (SMTPReply(451, "4.3.0", "Queue file write error"), SMTPReply(451, "4.3.0", "Queue file write error"), "refused by backend"),
            (SMTPReply(554, "5.7.1", "Spam"), SMTPReply(554, "5.7.1", "Spam"), "refused by backend"),
            (SMTPReply(354, nil, "again?"), .backendUnavailable, "refused by backend"),
            (SMTPReply(250, "2.0.0", "Ok: queued as Z9"), SMTPReply(250, "2.0.0", "Ok: queued as Z9"), "accepted"),
        ]
        for (backend, client, outcome) in cases {
            var h = Harness(Self.settings(), client: "10.1.2.3")
            h.ehlo()
            h.mail()
            h.rcpt("<b@remote.example>")
            h.send("DATA")
            h.backend(354)
            h.dataEnded(size: 42)
            let a = h.session.backendReplied(backend)
            XCTAssertEqual(a.withoutLogs, [.reply(client)], "\(backend)")
            XCTAssertTrue(a.logs.first?.contains(outcome) ?? false, "\(a)")
            XCTAssertFalse(h.session.inTransaction)
            XCTAssertEqual(h.session.errors, client.code == 250 ? 0 : 1)
        }
    }

    func testDataProblemsAbortTheBackend() {
        for problem in [DataScanner.Problem.bareLF, .bareCR, .lineTooLong, .tooBig] {
            var h = Harness(Self.settings(), client: "10.1.2.3")
            h.ehlo()
            h.mail()
            h.rcpt("<b@remote.example>")
            h.send("DATA")
            h.backend(354)
            let a = h.dataEnded(size: 77, problem: problem)
            XCTAssertEqual(a.withoutLogs, [.backendAbort, .reply(problem.reply)], "\(problem)")
            XCTAssertEqual(a.first, .backendAbort, "the backend goes before the client hears anything")
            XCTAssertTrue(a.logs.first?.contains(problem.logText) ?? false, "\(a)")
            XCTAssertFalse(h.session.isWaiting)
            XCTAssertFalse(h.session.inTransaction)
            XCTAssertEqual(h.session.errors, 1)
            // The session goes on: a new transaction may start.
            XCTAssertEqual(h.send("MAIL FROM:<a@remote.example>").count, 1)
        }
    }

    // MARK: - AUTH (RFC 4954)

    static let password = "s3cr3t-P4ssw0rd"
    static let plainResponse = Base64.encode(Array("\0alice\0\(password)".utf8))

    func assertNoCredentials(_ h: Harness, file: StaticString = #filePath, line: UInt = #line) {
        for log in h.logs {
            for secret in [Self.password, Self.plainResponse, Base64.encode(Array(Self.password.utf8)), "AGFsaWNlAHNlY3JldA==", "secret"] {
                XCTAssertFalse(log.contains(secret), "credential in log: \(log)", file: file, line: line)
            }
        }
    }

    func testAUTHSequence() {
        var h = Harness(Self.authSettings, secure: true)
        XCTAssertEqual(h.send("AUTH PLAIN \(Self.plainResponse)"), [Self.reply(503, "5.5.1", "Error: send EHLO first")])
        h.send("HELO client.example")
        XCTAssertEqual(h.send("AUTH PLAIN \(Self.plainResponse)"), [Self.reply(503, "5.5.1", "Error: send EHLO first")])
        h.ehlo()
        XCTAssertEqual(h.send("AUTH PLAIN \(Self.plainResponse)"), [.authStart(mechanism: "PLAIN", initial: Array("\0alice\0\(Self.password)".utf8))])
        XCTAssertEqual(h.sasl(.success(identity: "alice")).withoutLogs, [.authSucceeded, Self.reply(235, "2.7.0", "Authentication successful")])
        XCTAssertEqual(h.session.identity, "alice")
        XCTAssertEqual(h.send("AUTH PLAIN \(Self.plainResponse)"), [Self.reply(503, "5.5.1", "Error: already authenticated")])
        let ehlo = h.send("EHLO client.example").replies.first?.lines ?? []
        XCTAssertFalse(ehlo.contains { $0.hasPrefix("AUTH") }, "\(ehlo)")
        assertNoCredentials(h)
    }

    func testAUTHNeedsTLSWhenRequired() {
        var h = Harness(Self.authSettings)
        h.ehlo()
        XCTAssertEqual(h.send("AUTH PLAIN \(Self.plainResponse)"), [Self.reply(538, "5.7.11", "Encryption required for requested authentication mechanism")])
        XCTAssertNil(h.session.identity)
        // Without any mechanism configured, AUTH is simply not enabled.
        var off = Harness(Self.settings(startTLS: true), secure: true)
        off.ehlo()
        assertReply(off.send("AUTH PLAIN ="), 503, "5.5.1")
        // When TLS is not required, the plaintext list applies.
        var plain = Harness(Self.settings(plain: ["PLAIN"], secure: ["PLAIN", "CRAM-MD5"], authRequiresTLS: false))
        plain.ehlo()
        XCTAssertEqual(plain.send("AUTH CRAM-MD5"), [Self.reply(504, "5.5.4", "Error: unsupported authentication mechanism")])
        XCTAssertEqual(plain.send("AUTH PLAIN ="), [.authStart(mechanism: "PLAIN", initial: [])])
        assertNoCredentials(h)
    }

    func testAUTHInitialResponses() {
        let cases: [(String, [SMTPAction])] = [
            ("AUTH PLAIN =", [.authStart(mechanism: "PLAIN", initial: [])]),
            ("AUTH plain", [.authStart(mechanism: "PLAIN", initial: nil)]),
            ("AUTH PLAIN !!!!", [Self.reply(501, "5.5.2", "Error: malformed initial response (not base64)")]),
            ("AUTH PLAIN \(Self.plainResponse.dropLast())", [Self.reply(501, "5.5.2", "Error: malformed initial response (not base64)")]),
            ("AUTH PLAIN *", [Self.reply(501, "5.7.0", "Authentication cancelled")]),
            ("AUTH FOO", [Self.reply(504, "5.5.4", "Error: unsupported authentication mechanism")]),
            ("AUTH FOO \(Self.plainResponse)", [Self.reply(504, "5.5.4", "Error: unsupported authentication mechanism")]),
            ("AUTH", [Self.reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")]),
        ]
        for (line, expected) in cases {
            var h = Harness(Self.authSettings, secure: true)
            h.ehlo()
            XCTAssertEqual(h.send(line), expected, line)
            assertNoCredentials(h)
        }
    }

    func testAUTHLOGINChallenges() {
        var h = Harness(Self.authSettings, secure: true)
        h.ehlo()
        XCTAssertEqual(h.send("AUTH LOGIN"), [.authStart(mechanism: "LOGIN", initial: nil)])
        XCTAssertEqual(h.sasl(.challenge(Array("Username:".utf8))), [.reply(SMTPReply(334, nil, "VXNlcm5hbWU6"))])
        XCTAssertEqual(SMTPReply(334, nil, "VXNlcm5hbWU6").encoded, "334 VXNlcm5hbWU6\r\n")
        // The next line is a response, not a command, even if it looks like one.
        XCTAssertEqual(h.send("YWxpY2U="), [.authStep(Array("alice".utf8))])
        XCTAssertEqual(h.sasl(.challenge(Array("Password:".utf8))), [.reply(SMTPReply(334, nil, "UGFzc3dvcmQ6"))])
        XCTAssertEqual(h.send(Base64.encode(Array(Self.password.utf8))), [.authStep(Array(Self.password.utf8))])
        let ok = h.sasl(.success(identity: "alice"))
        XCTAssertEqual(ok.withoutLogs, [.authSucceeded, Self.reply(235, "2.7.0", "Authentication successful")])
        XCTAssertTrue(ok.logs.first?.contains("sasl_method=LOGIN") ?? false, "\(ok)")
        XCTAssertTrue(ok.logs.first?.contains("sasl_username=alice") ?? false, "\(ok)")
        XCTAssertEqual(h.session.identity, "alice")
        assertNoCredentials(h)
    }

    func testAUTHContinuationCancelAndGarbage() {
        for (line, expected) in [("*", SMTPReply(501, "5.7.0", "Authentication cancelled")),
                                 ("not base64!", SMTPReply(501, "5.5.2", "Error: malformed authentication response (not base64)")),
                                 ("QR==", SMTPReply(501, "5.5.2", "Error: malformed authentication response (not base64)"))] {
            var h = Harness(Self.authSettings, secure: true)
            h.ehlo()
            h.send("AUTH LOGIN")
            h.sasl(.challenge(Array("Username:".utf8)))
            XCTAssertEqual(h.send(line), [.reply(expected)], line)
            XCTAssertNil(h.session.identity)
            // Back to commands.
            XCTAssertEqual(h.send("NOOP"), [.reply(.ok())], line)
            // And AUTH may be tried again.
            XCTAssertEqual(h.send("AUTH PLAIN ="), [.authStart(mechanism: "PLAIN", initial: [])])
        }
        // A too-long continuation line ends the exchange as well.
        var h = Harness(Self.authSettings, secure: true)
        h.ehlo()
        h.send("AUTH LOGIN")
        h.sasl(.challenge([]))
        XCTAssertEqual(h.send("", tooLong: true), [.reply(.lineTooLong)])
        XCTAssertEqual(h.send("NOOP"), [.reply(.ok())])
    }

    func testAUTHFailures() {
        let cases: [(AuthResult, SMTPReply, Bool)] = [
            (.badCredentials, SMTPReply(535, "5.7.8", "Error: authentication failed"), true),
            (.malformed, SMTPReply(501, "5.5.2", "Error: malformed authentication response"), true),
            (.unknownMechanism, SMTPReply(504, "5.5.4", "Error: unsupported authentication mechanism"), false),
            (.tooWeak, SMTPReply(534, "5.7.9", "Error: authentication mechanism is too weak"), false),
            (.temporary("saslauthd not running"), SMTPReply(454, "4.7.0", "Temporary authentication failure"), false),
        ]
        for (result, reply, throttled) in cases {
            var h = Harness(Self.authSettings, secure: true)
            h.ehlo()
            h.send("AUTH PLAIN \(Self.plainResponse)")
            let a = h.sasl(result)
            XCTAssertEqual(a.withoutLogs, (throttled ? [.authFailed(user: nil)] : []) + [.reply(reply)], "\(result)")
            XCTAssertTrue(a.logs.first?.contains("SASL PLAIN authentication failed") ?? false, "\(a)")
            XCTAssertNil(h.session.identity)
            XCTAssertEqual(h.session.errors, 1)
            // No relay after a failed AUTH: a remote recipient needs the DRAC map.
            h.mail()
            XCTAssertEqual(h.send("RCPT TO:<bob@remote.example>"), [.lookupDRAC])
            assertNoCredentials(h)
        }
    }

    func testAUTHDuringATransaction() {
        var h = Harness(Self.authSettings, client: "10.1.2.3", secure: true)
        h.ehlo()
        h.mail()
        XCTAssertEqual(h.send("AUTH PLAIN \(Self.plainResponse)"), [Self.reply(503, "5.5.1", "Error: MAIL transaction in progress")])
        XCTAssertNil(h.session.identity)
        assertNoCredentials(h)
    }

    /// Credentials must not reach a log even when the session is closed for too many errors.
    func testCredentialsNeverLoggedOnTheErrorLimitPath() {
        var limits = SMTPLimits()
        limits.errors = 2
        var h = Harness(SessionSettings(hostname: Self.hostname, listener: .smtp, policy: Self.policy(), limits: limits,
                                        startTLSAvailable: true, mechanismsPlain: ["PLAIN"], mechanismsSecure: ["PLAIN", "LOGIN"]), secure: true)
        h.ehlo()
        h.send("AUTH PLAIN \(Self.plainResponse)")
        h.sasl(.badCredentials)
        h.send("AUTH LOGIN")
        h.sasl(.challenge(Array("Password:".utf8)))
        h.send(Base64.encode(Array(Self.password.utf8)))
        let a = h.sasl(.badCredentials)
        XCTAssertEqual(a.withoutLogs.last, .close(.tooManyErrors))
        XCTAssertFalse(h.logs.isEmpty)
        assertNoCredentials(h)
    }

    // MARK: - STARTTLS (RFC 3207)

    func testSTARTTLS() {
        var h = Harness(Self.authSettings)
        h.ehlo()
        XCTAssertEqual(h.send("STARTTLS"), [.startTLS(SMTPReply(220, "2.0.0", "Ready to start TLS"))])
        // RFC 3207 §4.2: everything from before TLS is forgotten, EHLO included.
        XCTAssertNil(h.session.helo)
        XCTAssertFalse(h.session.esmtp)
        h.session.tlsEstablished()
        XCTAssertTrue(h.session.secure)
        XCTAssertEqual(h.send("MAIL FROM:<a@remote.example>"), [Self.reply(503, "5.5.1", "Error: send HELO/EHLO first")])
        assertReply(h.send("AUTH PLAIN ="), 503, "5.5.1")
        let ehlo = h.send("EHLO client.example").replies.first?.lines ?? []
        XCTAssertFalse(ehlo.contains("STARTTLS"), "\(ehlo)")
        XCTAssertTrue(ehlo.contains("AUTH PLAIN LOGIN CRAM-MD5"), "\(ehlo)")
        XCTAssertEqual(h.send("STARTTLS"), [Self.reply(554, "5.5.1", "Error: TLS already active")])
        XCTAssertEqual(h.session.protocolName, "ESMTPS")
    }

    func testSTARTTLSForgetsIdentity() {
        var h = Harness(Self.settings(startTLS: true, plain: ["PLAIN"], secure: ["PLAIN"], authRequiresTLS: false))
        h.ehlo()
        h.send("AUTH PLAIN \(Self.plainResponse)")
        h.sasl(.success(identity: "alice"))
        XCTAssertEqual(h.session.identity, "alice")
        XCTAssertEqual(h.send("STARTTLS").replyCodes, [220])
        XCTAssertNil(h.session.identity)
        h.session.tlsEstablished()
        h.ehlo()
        h.mail()
        XCTAssertEqual(h.send("RCPT TO:<bob@remote.example>"), [.lookupDRAC], "no SASL relay after STARTTLS without a new AUTH")
    }

    func testSTARTTLSRefusals() {
        var h = Harness(Self.settings(startTLS: false))
        h.ehlo()
        XCTAssertEqual(h.send("STARTTLS"), [Self.reply(502, "5.5.1", "Error: command not implemented")])
        var t = Harness(Self.settings(startTLS: true), client: "10.1.2.3")
        t.ehlo()
        t.mail()
        XCTAssertEqual(t.send("STARTTLS"), [Self.reply(503, "5.5.1", "Error: MAIL transaction in progress")])
        XCTAssertTrue(t.session.inTransaction)
        var s = Harness(Self.settings(startTLS: true), secure: true)
        s.ehlo()
        XCTAssertEqual(s.send("STARTTLS").replyCodes, [554])
        XCTAssertEqual(s.send("STARTTLS x"), [Self.reply(501, "5.5.4", "Syntax: STARTTLS")])
    }

    // MARK: - Helpers on replies

    func testQueueID() {
        XCTAssertEqual(SMTPSession.queueID(in: SMTPReply(250, "2.0.0", "Ok: queued as 4XyZ1")), "4XyZ1")
        XCTAssertEqual(SMTPSession.queueID(in: SMTPReply(250, "2.0.0", "Ok: queued as ABC-1.2 thanks")), "ABC-1.2")
        XCTAssertNil(SMTPSession.queueID(in: SMTPReply(250, "2.0.0", "Ok")))
        XCTAssertNil(SMTPSession.queueID(in: SMTPReply(250, "2.0.0", "Ok: queued as ")))
        XCTAssertNil(SMTPSession.queueID(in: SMTPReply(250, "2.0.0", "queued as <script>")))
    }

    func testReplyEncoding() {
        XCTAssertEqual(SMTPReply(550, "5.7.1", "No").encoded, "550 5.7.1 No\r\n")
        XCTAssertEqual(SMTPReply(code: 250, enhanced: nil, lines: ["a", "b"]).encoded, "250-a\r\n250 b\r\n")
        XCTAssertEqual(SMTPReply(code: 250, enhanced: "2.0.0", lines: []).encoded, "250 2.0.0\r\n")
        XCTAssertEqual(SMTPReply(451, "4.4.1", "x").description, "451 4.4.1 x")
        XCTAssertTrue(SMTPReply(354, nil, "").isPositive)
        XCTAssertTrue(SMTPReply(421, nil, "").isTransient)
        XCTAssertTrue(SMTPReply(554, nil, "").isPermanent)
    }
}

extension SMTPAction {
    var replyCode: Int? { [self].replies.first?.code }
}
