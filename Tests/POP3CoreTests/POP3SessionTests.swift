// POP3Session as transcripts: lines and results in, actions out (RFC 1939, 2449, 5034, 2595, 3206).
import XCTest
@testable import POP3Core
import SMTPCore
import DRACCore

/// Drives one session like the connection handler does: feeds lines, fulfils what the session
/// asked for (password checks, SASL steps, the maildrop, messages, deletions) and keeps every
/// action it emitted.
struct Harness {
    var session: POP3Session
    var actions: [POP3Action] = []

    init(_ settings: POP3Settings, client: String = "192.0.2.10", local: String? = "192.0.2.1", secure: Bool = false) {
        session = POP3Session(settings: settings, client: IPAddress(client)!, local: local.flatMap { IPAddress($0) }, secure: secure)
    }

    var logs: [String] { actions.logs }

    private mutating func record(_ a: [POP3Action]) -> [POP3Action] {
        actions += a
        return a
    }

    @discardableResult
    mutating func send(_ line: String, tooLong: Bool = false, file: StaticString = #filePath, line l: UInt = #line) -> [POP3Action] {
        // The session traps on a line fed while it waits: fail the test, not the test process.
        guard !session.isWaiting else { XCTFail("line fed while waiting: \(line)", file: file, line: l); return [] }
        return record(session.received(line: Substring(line), tooLong: tooLong))
    }

    private func waiting(_ what: String, _ file: StaticString, _ line: UInt) -> Bool {
        XCTAssertTrue(session.isWaiting, "\(what) while the session is not waiting", file: file, line: line)
        return session.isWaiting
    }

    @discardableResult
    mutating func password(_ r: AuthResult, file: StaticString = #filePath, line: UInt = #line) -> [POP3Action] {
        guard waiting("password result", file, line) else { return [] }
        return record(session.passwordChecked(r))
    }

    @discardableResult
    mutating func sasl(_ r: AuthResult, file: StaticString = #filePath, line: UInt = #line) -> [POP3Action] {
        guard waiting("SASL result", file, line) else { return [] }
        return record(session.authResult(r))
    }

    @discardableResult
    mutating func maildrop(_ r: MaildropOpenResult, file: StaticString = #filePath, line: UInt = #line) -> [POP3Action] {
        guard waiting("maildrop result", file, line) else { return [] }
        return record(session.maildropOpened(r))
    }

    @discardableResult
    mutating func sent(octets: Int, file: StaticString = #filePath, line: UInt = #line) -> [POP3Action] {
        guard waiting("message sent", file, line) else { return [] }
        return record(session.messageSent(octets: octets))
    }

    @discardableResult
    mutating func committed(ok: Bool, file: StaticString = #filePath, line: UInt = #line) -> [POP3Action] {
        guard waiting("deletions committed", file, line) else { return [] }
        return record(session.deletionsCommitted(ok: ok))
    }

    @discardableResult
    mutating func dropped() -> [POP3Action] { record(session.connectionClosed()) }

    @discardableResult
    mutating func timedOut() -> [POP3Action] { record(session.timedOut()) }

    /// USER/PASS accepted, the maildrop opened with `messages`: the session is in TRANSACTION.
    mutating func login(_ user: String = "alice", messages: [MessageInfo] = POP3SessionTests.three,
                        file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(send("USER \(user)", file: file, line: line).statusLines, ["+OK"], file: file, line: line)
        XCTAssertEqual(send("PASS secret", file: file, line: line), [.checkPassword(user: user, password: "secret")], file: file, line: line)
        XCTAssertEqual(password(.success(identity: user), file: file, line: line), [.openMaildrop(user: user)], file: file, line: line)
        let a = maildrop(.ok(messages), file: file, line: line)
        XCTAssertEqual(a.statusLines, ["+OK Logged in."], file: file, line: line)
        XCTAssertEqual(session.state, .transaction, file: file, line: line)
    }
}

extension Array where Element == POP3Action {
    /// Every response the client gets, in order (plain, closing and STLS responses).
    var responses: [POP3Response] {
        compactMap {
            switch $0 {
            case .reply(let r), .startTLS(let r): return r
            case .close(let r): return r
            case .sendMessage(_, _, let r): return r
            default: return nil
            }
        }
    }
    var statusLines: [String] { responses.map(\.statusLine) }
    var withoutLogs: [POP3Action] { filter { if case .log = $0 { return false } else { return true } } }
    var logs: [String] { compactMap { if case .log(let t) = $0 { return t } else { return nil } } }
    var closes: Bool { contains { if case .close = $0 { return true } else { return false } } }
    var commits: [[Int]] { compactMap { if case .commitDeletions(let n) = $0 { return n } else { return nil } } }
    var logins: [POP3Action] { filter { if case .recordLogin = $0 { return true } else { return false } } }
    var authFailures: Int { filter { if case .authFailed = $0 { return true } else { return false } }.count }
}

final class POP3SessionTests: XCTestCase {
    static let three = [MessageInfo(size: 120, uid: "uid-1"), MessageInfo(size: 200, uid: "uid-2"), MessageInfo(size: 80, uid: "uid-3")]

    /// Production-like: STLS available, passwords only under TLS.
    static func settings(limits: POP3Limits = POP3Limits(), plain: [String] = ["PLAIN", "LOGIN", "CRAM-MD5"],
                         secure: [String] = ["PLAIN", "LOGIN", "CRAM-MD5"], requiresTLS: Bool = true,
                         stls: Bool = true) -> POP3Settings {
        POP3Settings(hostname: "pop.example.org", limits: limits, mechanismsPlain: plain, mechanismsSecure: secure,
                     plaintextRequiresTLS: requiresTLS, stlsAvailable: stls)
    }

    /// A session where passwords may travel (under TLS).
    static func secureHarness(limits: POP3Limits = POP3Limits()) -> Harness {
        Harness(settings(limits: limits), secure: true)
    }

    func capa(_ h: inout Harness, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        let a = h.send("CAPA", file: file, line: line)
        XCTAssertEqual(a.count, 1, file: file, line: line)
        guard case .reply(let r)? = a.first, r.isOK, let lines = r.lines else {
            XCTFail("CAPA: \(a)", file: file, line: line)
            return []
        }
        return lines
    }

    static let plaintextError = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."

    // MARK: - Greeting and CAPA

    func testGreeting() {
        let h = Harness(Self.settings())
        XCTAssertEqual(h.session.greeting(), .reply(.ok("pop.example.org drac-pop3d ready.")))
        XCTAssertEqual(h.session.state, .authorization)
        XCTAssertEqual(h.session.timeoutSeconds, 600)
        XCTAssertEqual(h.session.lineLimit, 12_288)
    }

    func testCapaBeforeTLSHidesPlaintext() {
        var h = Harness(Self.settings())
        XCTAssertEqual(capa(&h), ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS",
                                  "SASL CRAM-MD5", "IMPLEMENTATION drac-pop3d"])
        XCTAssertEqual(h.send("CAPA").first.map { if case .reply(let r) = $0 { return r.encoded } else { return "" } },
                       "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nSASL CRAM-MD5\r\nIMPLEMENTATION drac-pop3d\r\n.\r\n")
    }

    func testCapaUnderTLS() {
        var h = Self.secureHarness()
        XCTAssertEqual(capa(&h), ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER",
                                  "SASL PLAIN LOGIN CRAM-MD5", "IMPLEMENTATION drac-pop3d"])
    }

    func testCapaWhenPlaintextAllowedWithoutTLS() {
        // Loopback: the caller turns the requirement off.
        var h = Harness(Self.settings(requiresTLS: false, stls: false))
        XCTAssertEqual(capa(&h), ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER",
                                  "SASL PLAIN LOGIN CRAM-MD5", "IMPLEMENTATION drac-pop3d"])
    }

    func testCapaWithoutMechanismsHasNoSASLLine() {
        var h = Harness(Self.settings(plain: [], secure: []), secure: true)
        XCTAssertFalse(capa(&h).contains { $0.hasPrefix("SASL") })
    }

    func testCapaInTransaction() {
        var h = Self.secureHarness()
        h.login()
        XCTAssertEqual(capa(&h), ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "IMPLEMENTATION drac-pop3d"])
    }

    // MARK: - USER / PASS

    func testUserPassLogin() {
        var h = Self.secureHarness()
        XCTAssertEqual(h.send("USER alice"), [.reply(.ok())])
        XCTAssertEqual(h.send("PASS my secret pass"), [.checkPassword(user: "alice", password: "my secret pass")])
        XCTAssertTrue(h.session.isWaiting)
        XCTAssertEqual(h.password(.success(identity: "alice@example.org")), [.openMaildrop(user: "alice@example.org")])
        XCTAssertTrue(h.session.isWaiting)
        XCTAssertTrue(h.actions.logins.isEmpty, "no DRAC record before the maildrop is open")
        let a = h.maildrop(.ok(Self.three))
        XCTAssertEqual(a.withoutLogs, [.recordLogin(user: "alice@example.org", mechanism: "PLAIN"), .reply(.ok("Logged in."))])
        XCTAssertEqual(a.logs, ["Login: user=<alice@example.org>, method=PLAIN, rip=192.0.2.10, lip=192.0.2.1, TLS"])
        XCTAssertEqual(h.session.state, .transaction)
        XCTAssertEqual(h.session.user, "alice@example.org")
        XCTAssertEqual(h.session.mechanism, "PLAIN")
        XCTAssertEqual(h.session.maildrop?.count, 3)
        XCTAssertFalse(h.logs.joined().contains("secret"))
    }

    func testPassWithoutUser() {
        var h = Self.secureHarness()
        XCTAssertEqual(h.send("PASS secret").statusLines, ["-ERR No username given."])
        XCTAssertEqual(h.session.state, .authorization)
    }

    func testFailedPassNeedsUserAgain() {
        var h = Self.secureHarness()
        h.send("USER alice")
        h.send("PASS wrong")
        let a = h.password(.badCredentials)
        XCTAssertEqual(a.withoutLogs, [.authFailed(user: "alice"), .reply(.err(.auth, "Authentication failed."))])
        XCTAssertEqual(a.logs, ["Login failed (authentication failed): user=<alice>, method=PLAIN, rip=192.0.2.10, lip=192.0.2.1, TLS"])
        XCTAssertEqual(h.session.failedLogins, 1)
        XCTAssertEqual(h.send("PASS again").statusLines, ["-ERR No username given."])
        // RFC 1939 §7: after a failed PASS the client may start again with USER.
        h.send("USER alice")
        XCTAssertEqual(h.send("PASS right"), [.checkPassword(user: "alice", password: "right")])
    }

    func testUserReplacesPendingUser() {
        var h = Self.secureHarness()
        h.send("USER alice")
        h.send("USER bob")
        XCTAssertEqual(h.send("PASS pw"), [.checkPassword(user: "bob", password: "pw")])
    }

    func testFailedLoginsCloseAtTheLimit() {
        var h = Self.secureHarness()
        for i in 1...3 {
            h.send("USER alice")
            h.send("PASS wrong\(i)")
            let a = h.password(.badCredentials)
            XCTAssertEqual(a.authFailures, 1)
            if i < 3 {
                XCTAssertEqual(a.withoutLogs.last, .reply(.err(.auth, "Authentication failed.")))
                XCTAssertFalse(h.session.isClosed)
            } else {
                XCTAssertEqual(a.withoutLogs.last, .close(.err(.auth, "Authentication failed.")))
                XCTAssertTrue(h.session.isClosed)
                XCTAssertEqual(a.logs.last, "Disconnected: Too many failed logins (auth failed, 3 attempts): user=<alice>, method=PLAIN, rip=192.0.2.10, lip=192.0.2.1, TLS")
            }
        }
        XCTAssertFalse(h.logs.joined().contains("wrong"))
    }

    func testTemporaryFailureDoesNotCount() {
        var h = Self.secureHarness()
        for _ in 1...5 {
            h.send("USER alice")
            h.send("PASS pw")
            let a = h.password(.temporary("saslauthd: connect: No such file"))
            XCTAssertEqual(a.statusLines, ["-ERR [SYS/TEMP] Temporary authentication failure."])
            XCTAssertEqual(a.authFailures, 0)
            XCTAssertTrue(a.logs[0].contains("temporary failure: saslauthd: connect: No such file"), a.logs[0])
        }
        XCTAssertEqual(h.session.failedLogins, 0)
        XCTAssertFalse(h.session.isClosed)
    }

    func testPasswordCheckThatAsksForMoreIsTemporary() {
        var h = Self.secureHarness()
        h.send("USER alice")
        h.send("PASS pw")
        XCTAssertEqual(h.password(.challenge([1])).statusLines, ["-ERR [SYS/TEMP] Temporary authentication failure."])
        XCTAssertEqual(h.session.state, .authorization)
    }

    // MARK: - Plaintext refusal (RFC 2595 §2.1)

    func testPlaintextRefusedOutsideTLS() {
        var h = Harness(Self.settings())
        let a = h.send("USER alice")
        XCTAssertEqual(a.statusLines, [Self.plaintextError])
        XCTAssertEqual(a.logs, ["Login failed (plaintext authentication disallowed on non-secure connection): user=<alice>, method=PLAIN, rip=192.0.2.10, lip=192.0.2.1"])
        XCTAssertEqual(h.send("PASS secret").statusLines, [Self.plaintextError])
        XCTAssertFalse(h.actions.contains { if case .checkPassword = $0 { return true } else { return false } })
        XCTAssertEqual(h.actions.authFailures, 0, "a refusal is not a password guess")
        XCTAssertFalse(h.logs.joined().contains("secret"))
    }

    func testPlaintextSASLRefusedOutsideTLS() {
        var h = Harness(Self.settings(limits: { var l = POP3Limits(); l.failedLogins = 10; return l }()))
        XCTAssertEqual(h.send("AUTH PLAIN AGFsaWNlAHNlY3JldA==").statusLines, [Self.plaintextError])
        XCTAssertEqual(h.send("AUTH LOGIN").statusLines, [Self.plaintextError])
        XCTAssertEqual(h.send("auth plain").statusLines, [Self.plaintextError])
        XCTAssertFalse(h.actions.contains { if case .authStart = $0 { return true } else { return false } })
        // CRAM-MD5 does not send the password: allowed.
        XCTAssertEqual(h.send("AUTH CRAM-MD5"), [.authStart(mechanism: "CRAM-MD5", initial: nil)])
    }

    func testPlaintextRefusalsCloseAtTheLimit() {
        var h = Harness(Self.settings())
        h.send("USER a")
        h.send("USER b")
        let a = h.send("USER c")
        XCTAssertEqual(a.withoutLogs.last, .close(.err(.auth, POP3Session.plaintextDisallowed)))
        XCTAssertTrue(h.session.isClosed)
        XCTAssertEqual(a.logs.last, "Disconnected: Too many failed logins (auth failed, 3 attempts): user=<c>, method=PLAIN, rip=192.0.2.10, lip=192.0.2.1")
    }

    func testOnePlaintextAttemptThenQuitIsLoggedAsSuch() {
        var h = Harness(Self.settings())
        h.send("USER alice")
        let a = h.send("QUIT")
        XCTAssertEqual(a.withoutLogs, [.close(.ok("Logging out."))])
        XCTAssertEqual(a.logs, ["Disconnected: Logged out (tried to use disallowed plaintext auth): user=<alice>, method=PLAIN, rip=192.0.2.10, lip=192.0.2.1"])
    }

    func testPlaintextAllowedWhenNotRequired() {
        var h = Harness(Self.settings(requiresTLS: false), client: "127.0.0.1", local: "127.0.0.1")
        XCTAssertEqual(h.send("USER alice"), [.reply(.ok())])
        XCTAssertEqual(h.send("PASS pw"), [.checkPassword(user: "alice", password: "pw")])
        h.password(.success(identity: "alice"))
        XCTAssertEqual(h.maildrop(.ok([])).logs, ["Login: user=<alice>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1"])
    }

    // MARK: - STLS (RFC 2595 §4)

    func testSTLSForgetsUserAndShowsPasswordsAfterwards() {
        var h = Harness(Self.settings(requiresTLS: false))
        h.send("USER alice")
        XCTAssertEqual(h.send("STLS"), [.startTLS(.ok("Begin TLS negotiation now."))])
        h.session.tlsEstablished()
        XCTAssertTrue(h.session.secure)
        XCTAssertEqual(h.send("PASS pw").statusLines, ["-ERR No username given."])
        XCTAssertFalse(capa(&h).contains("STLS"))
        XCTAssertEqual(h.send("STLS").statusLines, ["-ERR TLS is already active."])
    }

    func testSTLSThenPlaintextIsAllowed() {
        var h = Harness(Self.settings())
        XCTAssertEqual(h.send("USER alice").statusLines, [Self.plaintextError])
        h.send("STLS")
        h.session.tlsEstablished()
        XCTAssertTrue(capa(&h).contains("USER"))
        XCTAssertEqual(h.send("USER alice"), [.reply(.ok())])
        XCTAssertEqual(h.send("PASS pw"), [.checkPassword(user: "alice", password: "pw")])
    }

    func testSTLSDoesNotResetFailureCounter() {
        var h = Harness(Self.settings())
        h.send("USER a")
        h.send("USER b")
        h.send("STLS")
        h.session.tlsEstablished()
        XCTAssertEqual(h.session.failedLogins, 2)
        h.send("USER alice")
        h.send("PASS wrong")
        XCTAssertTrue(h.password(.badCredentials).closes)
    }

    func testSTLSUnavailable() {
        var h = Harness(Self.settings(stls: false))
        XCTAssertEqual(h.send("STLS").statusLines, ["-ERR TLS support isn't enabled."])
        XCTAssertFalse(capa(&h).contains("STLS"))
    }

    func testSTLSAfterLogin() {
        var h = Self.secureHarness()
        h.login()
        XCTAssertEqual(h.send("STLS").statusLines, ["-ERR STLS not allowed after login."])
    }

    // MARK: - AUTH (RFC 5034)

    func testAuthPlainWithInitialResponse() {
        var h = Self.secureHarness()
        let ir = Array("\u{0}alice\u{0}secret".utf8)
        XCTAssertEqual(h.send("AUTH PLAIN \(Base64.encode(ir))"), [.authStart(mechanism: "PLAIN", initial: ir)])
        XCTAssertEqual(h.sasl(.success(identity: "alice")), [.openMaildrop(user: "alice")])
        let a = h.maildrop(.ok(Self.three))
        XCTAssertEqual(a.withoutLogs, [.recordLogin(user: "alice", mechanism: "PLAIN"), .reply(.ok("Logged in."))])
    }

    func testAuthEmptyInitialResponse() {
        var h = Self.secureHarness()
        XCTAssertEqual(h.send("AUTH PLAIN ="), [.authStart(mechanism: "PLAIN", initial: [])])
    }

    func testAuthLoginExchange() {
        var h = Self.secureHarness()
        XCTAssertEqual(h.send("AUTH LOGIN"), [.authStart(mechanism: "LOGIN", initial: nil)])
        XCTAssertEqual(h.sasl(.challenge(Array("Username:".utf8))).statusLines, ["+ VXNlcm5hbWU6"])
        XCTAssertEqual(h.session.state, .authorization)
        XCTAssertEqual(h.send(Base64.encode(Array("alice".utf8))), [.authStep(Array("alice".utf8))])
        XCTAssertEqual(h.sasl(.challenge(Array("Password:".utf8))).statusLines, ["+ UGFzc3dvcmQ6"])
        XCTAssertEqual(h.send(Base64.encode(Array("secret".utf8))), [.authStep(Array("secret".utf8))])
        XCTAssertEqual(h.sasl(.success(identity: "alice")), [.openMaildrop(user: "alice")])
        let a = h.maildrop(.ok([]))
        XCTAssertEqual(a.withoutLogs.first, .recordLogin(user: "alice", mechanism: "LOGIN"))
        XCTAssertEqual(a.logs, ["Login: user=<alice>, method=LOGIN, rip=192.0.2.10, lip=192.0.2.1, TLS"])
    }

    func testAuthCramMD5EmptyResponseLine() {
        var h = Self.secureHarness()
        h.send("AUTH CRAM-MD5")
        XCTAssertEqual(h.sasl(.challenge([])).statusLines, ["+ "])
        // RFC 5034 §4: an empty line is an empty response.
        XCTAssertEqual(h.send(""), [.authStep([])])
    }

    func testAuthCancelledByClient() {
        var h = Self.secureHarness()
        h.send("AUTH LOGIN")
        h.sasl(.challenge(Array("Username:".utf8)))
        let a = h.send("*")
        XCTAssertEqual(a.statusLines, ["-ERR Authentication aborted by client."])
        XCTAssertEqual(a.authFailures, 0)
        XCTAssertEqual(h.session.failedLogins, 0)
        XCTAssertEqual(h.send("NOOP").statusLines, ["-ERR NOOP not allowed before login."], "back to commands")
    }

    func testAuthContinuationNotBase64() {
        var h = Self.secureHarness()
        h.send("AUTH LOGIN")
        h.sasl(.challenge(Array("Username:".utf8)))
        let a = h.send("*not base64*")
        XCTAssertEqual(a.statusLines, ["-ERR [AUTH] Invalid base64 data in response."])
        XCTAssertEqual(a.authFailures, 1)
        XCTAssertEqual(h.session.failedLogins, 1)
        XCTAssertEqual(h.session.state, .authorization)
    }

    func testAuthContinuationTooLong() {
        var h = Self.secureHarness()
        h.send("AUTH LOGIN")
        h.sasl(.challenge([]))
        XCTAssertEqual(h.send("", tooLong: true).statusLines, ["-ERR Input line too long."])
        XCTAssertEqual(h.send("NOOP").statusLines, ["-ERR NOOP not allowed before login."], "the exchange is over")
    }

    func testAuthErrors() {
        var h = Self.secureHarness(limits: { var l = POP3Limits(); l.badCommands = 100; return l }())
        XCTAssertEqual(h.send("AUTH DIGEST-MD5").statusLines, ["-ERR [AUTH] Unsupported authentication mechanism."])
        XCTAssertEqual(h.send("AUTH PLAIN not*base64").statusLines, ["-ERR [AUTH] Invalid base64 data in initial response."])
        XCTAssertEqual(h.send("AUTH PLAIN *").statusLines, ["-ERR Authentication aborted by client."])
        XCTAssertEqual(h.send("AUTH PLAIN a b").statusLines, ["-ERR Syntax: AUTH mechanism [initial-response]"])
        XCTAssertEqual(h.session.failedLogins, 0)
        XCTAssertEqual(h.actions.authFailures, 0)
    }

    func testAuthWithoutMechanismListsThem() {
        var h = Self.secureHarness()
        XCTAssertEqual(h.send("AUTH"), [.reply(.multiline("", ["PLAIN", "LOGIN", "CRAM-MD5"]))])
        var p = Harness(Self.settings())
        XCTAssertEqual(p.send("AUTH").first.map { if case .reply(let r) = $0 { return r.encoded } else { return "" } },
                       "+OK\r\nCRAM-MD5\r\n.\r\n")
    }

    func testAuthNotEnabled() {
        var h = Harness(Self.settings(plain: [], secure: []), secure: true)
        XCTAssertEqual(h.send("AUTH PLAIN").statusLines, ["-ERR [AUTH] Authentication not enabled."])
    }

    func testSASLFailureOutcomes() {
        let cases: [(AuthResult, String, Int)] = [
            (.badCredentials, "-ERR [AUTH] Authentication failed.", 1),
            (.malformed, "-ERR [AUTH] Malformed authentication response.", 1),
            (.unknownMechanism, "-ERR [AUTH] Unsupported authentication mechanism.", 0),
            (.tooWeak, "-ERR [AUTH] Authentication mechanism too weak for this connection.", 0),
            (.temporary("backend down"), "-ERR [SYS/TEMP] Temporary authentication failure.", 0),
        ]
        for (result, status, counted) in cases {
            var h = Self.secureHarness()
            h.send("AUTH CRAM-MD5")
            h.sasl(.challenge(Array("<1.2@host>".utf8)))
            h.send(Base64.encode(Array("alice 0123456789abcdef".utf8)))
            let a = h.sasl(result)
            XCTAssertEqual(a.statusLines, [status], "\(result)")
            XCTAssertEqual(a.authFailures, counted, "\(result)")
            XCTAssertEqual(h.session.failedLogins, counted, "\(result)")
            XCTAssertEqual(h.session.state, .authorization)
            XCTAssertTrue(a.logs[0].hasPrefix("Login failed ("), a.logs[0])
            XCTAssertTrue(a.logs[0].contains("method=CRAM-MD5"), a.logs[0])
            if counted == 1 {
                // .authFailed comes before the reply, so the handler can delay the reply.
                let i = a.firstIndex { if case .authFailed = $0 { return true } else { return false } }!
                let j = a.firstIndex { if case .reply = $0 { return true } else { return false } }!
                XCTAssertLessThan(i, j)
            }
        }
    }

    func testAuthInTransaction() {
        var h = Self.secureHarness()
        h.login()
        XCTAssertEqual(h.send("AUTH PLAIN").statusLines, ["-ERR AUTH not allowed after login."])
        XCTAssertEqual(h.send("USER bob").statusLines, ["-ERR USER not allowed after login."])
        XCTAssertEqual(h.send("PASS pw").statusLines, ["-ERR PASS not allowed after login."])
        XCTAssertEqual(h.send("APOP a b").statusLines, ["-ERR APOP not allowed after login."])
    }

    func testAPOPNotEnabled() {
        var h = Self.secureHarness()
        XCTAssertEqual(h.send("APOP alice c4c9334bac560ecc979e58001b3e22fb").statusLines, ["-ERR APOP not enabled."])
    }

    // MARK: - Opening the maildrop

    func testMaildropInUseClosesWithoutRecording() {
        var h = Self.secureHarness()
        h.send("USER alice")
        h.send("PASS secret")
        h.password(.success(identity: "alice"))
        let a = h.maildrop(.inUse)
        XCTAssertEqual(a.withoutLogs, [.close(.err(.inUse, "Mailbox is locked by another POP3 session."))])
        XCTAssertEqual(a.logs, ["Login failed (maildrop in use): user=<alice>, method=PLAIN, rip=192.0.2.10, lip=192.0.2.1, TLS",
                                "Disconnected: Maildrop in use (auth succeeded): user=<alice>, method=PLAIN, rip=192.0.2.10, lip=192.0.2.1, TLS"])
        XCTAssertTrue(h.session.isClosed)
        XCTAssertTrue(h.actions.logins.isEmpty)
        XCTAssertEqual(h.session.received(line: "NOOP"), [], "input after close is ignored")
    }

    func testDroppedWhileOpeningTheMaildrop() {
        var h = Self.secureHarness()
        h.send("AUTH PLAIN =")
        h.sasl(.success(identity: "alice"))
        XCTAssertEqual(h.dropped(), [.log("Disconnected: Connection closed (auth succeeded): user=<alice>, method=PLAIN, rip=192.0.2.10, lip=192.0.2.1, TLS")])
        // The handler's open finishes later: ignored, no DRAC record for a client that left.
        XCTAssertEqual(h.session.maildropOpened(.ok(Self.three)), [])
        XCTAssertTrue(h.actions.logins.isEmpty)
    }

    func testMaildropFailureClosesWithSysTemp() {
        var h = Self.secureHarness()
        h.send("AUTH PLAIN =")
        h.sasl(.success(identity: "alice"))
        let a = h.maildrop(.failed("open /var/mail/alice: Permission denied"))
        XCTAssertEqual(a.withoutLogs, [.close(.err(.sysTemp, POP3Session.internalError))])
        XCTAssertTrue(a.logs[0].contains("Permission denied"))
        XCTAssertTrue(h.actions.logins.isEmpty)
    }

    func testInvalidMaildropViewIsRefused() {
        for bad in [[MessageInfo(size: 1, uid: "same"), MessageInfo(size: 2, uid: "same")],
                    [MessageInfo(size: 1, uid: "has space")],
                    [MessageInfo(size: -1, uid: "x")]] {
            var h = Self.secureHarness()
            h.send("USER alice")
            h.send("PASS pw")
            h.password(.success(identity: "alice"))
            let a = h.maildrop(.ok(bad))
            XCTAssertEqual(a.withoutLogs, [.close(.err(.sysTemp, POP3Session.internalError))], "\(bad)")
            XCTAssertTrue(h.actions.logins.isEmpty)
        }
    }

    func testLargeMaildropIsServedInParts() {
        var limits = POP3Limits()
        limits.maildropMessages = 2
        var h = Self.secureHarness(limits: limits)
        h.send("USER alice")
        h.send("PASS pw")
        h.password(.success(identity: "alice"))
        let a = h.maildrop(.ok(Self.three))
        XCTAssertTrue(a.logs[0].hasPrefix("warning: user=<alice>: maildrop has 3 messages; this session shows the first 2"), a.logs[0])
        XCTAssertEqual(h.send("STAT").statusLines, ["+OK 2 320"])
    }

    // MARK: - TRANSACTION

    func testStatListUidl() {
        var h = Self.secureHarness()
        h.login()
        XCTAssertEqual(h.send("STAT").statusLines, ["+OK 3 400"])
        XCTAssertEqual(h.send("LIST"), [.reply(.multiline("3 messages (400 octets)", ["1 120", "2 200", "3 80"]))])
        XCTAssertEqual(h.send("LIST 2").statusLines, ["+OK 2 200"])
        XCTAssertEqual(h.send("UIDL"), [.reply(.multiline("", ["1 uid-1", "2 uid-2", "3 uid-3"]))])
        XCTAssertEqual(h.send("UIDL 3").statusLines, ["+OK 3 uid-3"])
        XCTAssertEqual(h.send("NOOP").statusLines, ["+OK"])
    }

    func testNumbersOutOfRange() {
        var h = Self.secureHarness()
        h.login()
        for line in ["LIST 4", "LIST 0", "UIDL 4", "RETR 4", "TOP 4 1", "DELE 0", "RETR 99999999999999999999"] {
            XCTAssertEqual(h.send(line).statusLines, ["-ERR no such message, only 3 messages in maildrop"], line)
            h.send("NOOP")      // keep the bad-command counter low
        }
        var one = Self.secureHarness()
        one.login(messages: [MessageInfo(size: 1, uid: "u")])
        XCTAssertEqual(one.send("LIST 2").statusLines, ["-ERR no such message, only 1 message in maildrop"])
    }

    func testRetrAndTop() {
        var h = Self.secureHarness()
        h.login()
        let a = h.send("RETR 2")
        XCTAssertEqual(a, [.sendMessage(number: 2, topLines: nil, response: .ok("200 octets"))])
        XCTAssertTrue(h.session.isWaiting, "pipelined commands wait while the message streams")
        XCTAssertEqual(h.sent(octets: 205), [])
        XCTAssertEqual(h.send("TOP 1 10"), [.sendMessage(number: 1, topLines: 10, response: .ok())])
        h.sent(octets: 60)
        XCTAssertEqual(h.send("TOP 3 0"), [.sendMessage(number: 3, topLines: 0, response: .ok())])
        h.sent(octets: 30)
        XCTAssertEqual(h.session.retrCount, 1)
        XCTAssertEqual(h.session.retrBytes, 205)
        XCTAssertEqual(h.session.topCount, 2)
        XCTAssertEqual(h.session.topBytes, 90)
        XCTAssertEqual(h.send("QUIT").logs, ["Disconnected: Logged out top=2/90, retr=1/205, del=0/3, size=400: user=<alice>, rip=192.0.2.10, lip=192.0.2.1, TLS"])
    }

    func testMessageUnavailable() {
        var h = Self.secureHarness()
        h.login()
        h.send("RETR 1")
        let a = h.session.messageUnavailable(reason: "ENOENT")
        XCTAssertEqual(a.statusLines, ["-ERR Message 1 expunged."])
        XCTAssertTrue(a.logs[0].contains("message 1 unavailable: ENOENT"))
        XCTAssertFalse(h.session.isWaiting)
        XCTAssertEqual(h.session.retrCount, 0)
    }

    func testDeleAndRset() {
        var h = Self.secureHarness()
        h.login()
        XCTAssertEqual(h.send("DELE 1").statusLines, ["+OK message 1 deleted"])
        XCTAssertEqual(h.send("DELE 1").statusLines, ["-ERR message 1 already deleted"])
        XCTAssertEqual(h.send("RETR 1").statusLines, ["-ERR message 1 is deleted"])
        XCTAssertEqual(h.send("TOP 1 0").statusLines, ["-ERR message 1 is deleted"])
        XCTAssertEqual(h.send("LIST 1").statusLines, ["-ERR message 1 is deleted"])
        XCTAssertEqual(h.send("UIDL 1").statusLines, ["-ERR message 1 is deleted"])
        XCTAssertEqual(h.send("STAT").statusLines, ["+OK 2 280"])
        XCTAssertEqual(h.send("LIST"), [.reply(.multiline("2 messages (280 octets)", ["2 200", "3 80"]))])
        XCTAssertEqual(h.send("UIDL"), [.reply(.multiline("", ["2 uid-2", "3 uid-3"]))])
        XCTAssertEqual(h.send("RSET").statusLines, ["+OK maildrop has 3 messages (400 octets)"])
        XCTAssertEqual(h.send("STAT").statusLines, ["+OK 3 400"])
        XCTAssertEqual(h.send("RETR 1"), [.sendMessage(number: 1, topLines: nil, response: .ok("120 octets"))])
        h.sent(octets: 125)
        // RSET then QUIT deletes nothing.
        let q = h.send("QUIT")
        XCTAssertEqual(q.withoutLogs, [.close(.ok("Logging out, 3 messages left."))])
        XCTAssertTrue(h.actions.commits.isEmpty)
    }

    func testQuitCommitsDeletionsInUpdate() {
        var h = Self.secureHarness()
        h.login()
        h.send("DELE 3")
        h.send("DELE 1")
        let a = h.send("QUIT")
        XCTAssertEqual(a, [.commitDeletions([1, 3])])
        XCTAssertEqual(h.session.state, .update)
        XCTAssertTrue(h.session.isWaiting)
        let c = h.committed(ok: true)
        XCTAssertEqual(c.withoutLogs, [.close(.ok("Logging out, 2 messages deleted (1 left)."))])
        XCTAssertEqual(c.logs, ["Disconnected: Logged out top=0/0, retr=0/0, del=2/3, size=400: user=<alice>, rip=192.0.2.10, lip=192.0.2.1, TLS"])
        XCTAssertTrue(h.session.isClosed)
        XCTAssertEqual(h.session.state, .closed)
    }

    func testCommitFailure() {
        var h = Self.secureHarness()
        h.login()
        h.send("DELE 2")
        h.send("QUIT")
        let c = h.committed(ok: false)
        XCTAssertEqual(c.withoutLogs, [.close(.err(.sysTemp, "Some deleted messages were not removed."))])
        XCTAssertEqual(c.logs.last, "Disconnected: Logged out, deletions failed top=0/0, retr=0/0, del=0/3, size=400: user=<alice>, rip=192.0.2.10, lip=192.0.2.1, TLS")
    }

    func testDroppedConnectionDeletesNothing() {
        var h = Self.secureHarness()
        h.login()
        h.send("DELE 1")
        h.send("DELE 2")
        let a = h.dropped()
        XCTAssertEqual(a, [.log("Disconnected: Connection closed top=0/0, retr=0/0, del=0/3, size=400: user=<alice>, rip=192.0.2.10, lip=192.0.2.1, TLS")])
        XCTAssertTrue(h.session.isClosed)
        XCTAssertTrue(h.actions.commits.isEmpty)
        XCTAssertEqual(h.dropped(), [], "logged once")
        XCTAssertEqual(h.session.deletionsCommitted(ok: true), [], "a stray result after close is ignored")
        XCTAssertTrue(h.actions.commits.isEmpty)
    }

    func testDroppedDuringRetrDeletesNothing() {
        var h = Self.secureHarness()
        h.login()
        h.send("DELE 1")
        h.send("RETR 2")
        XCTAssertEqual(h.dropped().logs.count, 1)
        XCTAssertEqual(h.session.messageSent(octets: 10), [])
        XCTAssertTrue(h.actions.commits.isEmpty)
    }

    func testAutologoutInTransactionDeletesNothingAndSaysNothing() {
        var h = Self.secureHarness()
        h.login()
        h.send("DELE 1")
        let a = h.timedOut()
        // RFC 1939 §3: close without a response and without entering UPDATE.
        XCTAssertEqual(a.withoutLogs, [.close(nil)])
        XCTAssertEqual(a.logs, ["Disconnected: Inactivity top=0/0, retr=0/0, del=0/3, size=400: user=<alice>, rip=192.0.2.10, lip=192.0.2.1, TLS"])
        XCTAssertTrue(h.actions.commits.isEmpty)
    }

    func testAutologoutInAuthorization() {
        var h = Harness(Self.settings())
        let a = h.timedOut()
        XCTAssertEqual(a.withoutLogs, [.close(nil)])
        XCTAssertEqual(a.logs, ["Disconnected: Inactivity (no auth attempts): rip=192.0.2.10, lip=192.0.2.1"])
    }

    func testConnectionClosedDuringCommitLetsUpdateFinish() {
        var h = Self.secureHarness()
        h.login()
        h.send("DELE 1")
        h.send("QUIT")
        XCTAssertEqual(h.dropped(), [])
        XCTAssertEqual(h.session.state, .update)
        let c = h.committed(ok: true)
        XCTAssertEqual(c.withoutLogs, [], "nobody to answer")
        XCTAssertEqual(c.logs, ["Disconnected: Connection closed after QUIT top=0/0, retr=0/0, del=1/3, size=400: user=<alice>, rip=192.0.2.10, lip=192.0.2.1, TLS"])
        XCTAssertTrue(h.session.isClosed)
    }

    func testShutdown() {
        var h = Self.secureHarness()
        h.login()
        h.send("DELE 1")
        let a = h.session.shuttingDown()
        XCTAssertEqual(a.withoutLogs, [.close(.err(.sysTemp, "Server shutting down."))])
        XCTAssertTrue(h.actions.commits.isEmpty)
        var u = Self.secureHarness()
        u.login()
        u.send("DELE 1")
        u.send("QUIT")
        XCTAssertEqual(u.session.shuttingDown(), [], "UPDATE in progress finishes")
        XCTAssertEqual(u.committed(ok: true).withoutLogs.count, 1)
    }

    func testEmptyMaildrop() {
        var h = Self.secureHarness()
        h.login(messages: [])
        XCTAssertEqual(h.send("STAT").statusLines, ["+OK 0 0"])
        XCTAssertEqual(h.send("LIST").first.map { if case .reply(let r) = $0 { return r.encoded } else { return "" } },
                       "+OK 0 messages (0 octets)\r\n.\r\n")
        XCTAssertEqual(h.send("RETR 1").statusLines, ["-ERR no such message, only 0 messages in maildrop"])
        XCTAssertEqual(h.send("QUIT").withoutLogs, [.close(.ok("Logging out, 0 messages left."))])
    }

    // MARK: - Every command in every state

    /// Each command line, the status line it gets first in AUTHORIZATION (insecure,
    /// production settings) and in TRANSACTION; "wait" when it asks the handler for something.
    static let everyCommand: [(String, String, String)] = [
        ("USER alice", plaintextError, "-ERR USER not allowed after login."),
        ("PASS pw", plaintextError, "-ERR PASS not allowed after login."),
        ("APOP a b", "-ERR APOP not enabled.", "-ERR APOP not allowed after login."),
        ("AUTH CRAM-MD5", "wait", "-ERR AUTH not allowed after login."),
        ("AUTH PLAIN", plaintextError, "-ERR AUTH not allowed after login."),
        ("STLS", "startTLS", "-ERR STLS not allowed after login."),
        ("CAPA", "+OK Capability list follows", "+OK Capability list follows"),
        ("STAT", "-ERR STAT not allowed before login.", "+OK 3 400"),
        ("LIST", "-ERR LIST not allowed before login.", "+OK 3 messages (400 octets)"),
        ("LIST 1", "-ERR LIST not allowed before login.", "+OK 1 120"),
        ("RETR 1", "-ERR RETR not allowed before login.", "wait"),
        ("TOP 1 1", "-ERR TOP not allowed before login.", "wait"),
        ("DELE 1", "-ERR DELE not allowed before login.", "+OK message 1 deleted"),
        ("NOOP", "-ERR NOOP not allowed before login.", "+OK"),
        ("RSET", "-ERR RSET not allowed before login.", "+OK maildrop has 3 messages (400 octets)"),
        ("UIDL", "-ERR UIDL not allowed before login.", "+OK"),
        ("UIDL 1", "-ERR UIDL not allowed before login.", "+OK 1 uid-1"),
        ("LAST", "-ERR Unknown command: LAST", "-ERR Unknown command: LAST"),
        ("RETR x", "-ERR Invalid message number: x", "-ERR Invalid message number: x"),
        ("QUIT", "+OK Logging out.", "+OK Logging out, 3 messages left."),
    ]

    func testEveryCommandInEveryState() {
        for (line, inAuthorization, inTransaction) in Self.everyCommand {
            var a = Harness(Self.settings())
            check(a.send(line), inAuthorization, line: line, state: "AUTHORIZATION")
            // TRANSACTION: a session logged in over TLS.
            var t = Self.secureHarness()
            t.login()
            check(t.send(line), inTransaction, line: line, state: "TRANSACTION")
            // UPDATE: the session waits for the commit and takes no command.
            var u = Self.secureHarness()
            u.login()
            u.send("DELE 1")
            u.send("QUIT")
            XCTAssertEqual(u.session.state, .update)
            XCTAssertTrue(u.session.isWaiting)
        }
    }

    private func check(_ actions: [POP3Action], _ expected: String, line: String, state: String,
                       file: StaticString = #filePath, l: UInt = #line) {
        let first = actions.withoutLogs.first
        switch expected {
        case "wait":
            switch first {
            case .authStart?, .sendMessage?, .checkPassword?: break
            default: XCTFail("\(state) \(line): expected a request, got \(actions)", file: file, line: l)
            }
        case "startTLS":
            guard case .startTLS? = first else { return XCTFail("\(state) \(line): \(actions)", file: file, line: l) }
        default:
            XCTAssertEqual(actions.statusLines.first, expected, "\(state) \(line)", file: file, line: l)
        }
    }

    // MARK: - Limits

    func testLineLengths() {
        var h = Self.secureHarness()
        // RFC 2449 §4: 255 octets with the CRLF, so 253 without.
        let ok = "USER " + String(repeating: "u", count: 248)
        XCTAssertEqual(h.send(ok).statusLines, ["+OK"])
        XCTAssertEqual(h.send(ok + "u").statusLines, ["-ERR Input line too long."])
        // An AUTH line may be longer (RFC 5034 §4).
        let ir = Base64.encode(Array(repeating: 0x61, count: 600))
        XCTAssertEqual(h.send("AUTH PLAIN " + ir), [.authStart(mechanism: "PLAIN", initial: Array(repeating: 0x61, count: 600))])
        h.sasl(.badCredentials)
        XCTAssertEqual(h.send("", tooLong: true).statusLines, ["-ERR Input line too long."])
    }

    func testBadCommandsInARowClose() {
        var limits = POP3Limits()
        limits.badCommands = 3
        var h = Self.secureHarness(limits: limits)
        h.login()
        h.send("XYZZ")
        h.send("RETR 9")
        h.send("NOOP")                        // a good command resets the run
        h.send("XYZZ")
        h.send("XYZZ")
        let a = h.send("XYZZ")
        XCTAssertEqual(a.withoutLogs, [.reply(.err("Unknown command: XYZZ")), .close(.err("Too many bad commands."))])
        XCTAssertTrue(a.logs[0].hasPrefix("Disconnected: Too many bad commands top=0/0"), a.logs[0])
        XCTAssertTrue(h.actions.commits.isEmpty)
    }

    func testCommandsBeforeLoginLimit() {
        var limits = POP3Limits()
        limits.commandsBeforeLogin = 5
        var h = Harness(Self.settings(limits: limits))
        for _ in 1...5 { XCTAssertEqual(h.send("CAPA").statusLines, ["+OK Capability list follows"]) }
        let a = h.send("CAPA")
        XCTAssertEqual(a.withoutLogs, [.close(.err("Too many commands before login."))])
        XCTAssertEqual(a.logs, ["Disconnected: Too many commands before login (no auth attempts): rip=192.0.2.10, lip=192.0.2.1"])
        XCTAssertTrue(h.session.isClosed)
    }

    func testCommandsAfterLoginAreNotLimitedByTheLoginLimit() {
        var limits = POP3Limits()
        limits.commandsBeforeLogin = 2
        var h = Self.secureHarness(limits: limits)
        h.login()
        for _ in 1...10 { XCTAssertEqual(h.send("NOOP").statusLines, ["+OK"]) }
    }

    func testAutologoutTimerIsAtLeastTenMinutes() {
        var limits = POP3Limits()
        limits.autologoutSeconds = 30
        XCTAssertEqual(Harness(Self.settings(limits: limits)).session.timeoutSeconds, 600)
        limits.autologoutSeconds = 900
        XCTAssertEqual(Harness(Self.settings(limits: limits)).session.timeoutSeconds, 900)
    }

    // MARK: - Logs and secrets

    func testQuitBeforeLoginLog() {
        var h = Harness(Self.settings(), client: "::ffff:198.51.100.7", local: nil)
        let a = h.send("QUIT")
        XCTAssertEqual(a.withoutLogs, [.close(.ok("Logging out."))])
        XCTAssertEqual(a.logs, ["Disconnected: Logged out (no auth attempts): rip=198.51.100.7"])
    }

    func testActionDescriptionsHideSecrets() {
        let actions: [POP3Action] = [.checkPassword(user: "alice", password: "hunter2"),
                                     .authStart(mechanism: "PLAIN", initial: Array("\u{0}alice\u{0}hunter2".utf8)),
                                     .authStep(Array("hunter2".utf8))]
        let text = "\(actions)"
        XCTAssertFalse(text.contains("hunter2"), text)
        XCTAssertTrue(text.contains("checkPassword(user: alice, password: <hidden>)"), text)
    }

    func testUserNameIsSanitizedInLogs() {
        var h = Self.secureHarness()
        h.send("AUTH PLAIN =")
        // A SASL backend could hand back anything as the identity.
        h.sasl(.success(identity: "ev\u{1B}il\u{7F}"))
        let a = h.maildrop(.ok([]))
        XCTAssertTrue(a.logs.contains("Login: user=<ev?il?>, method=PLAIN, rip=192.0.2.10, lip=192.0.2.1, TLS"), "\(a.logs)")
    }

    func testNoPasswordInAnyLogOfAFullSession() {
        var h = Self.secureHarness()
        h.send("USER alice")
        h.send("PASS Sup3rSecret!")
        h.password(.badCredentials)
        h.send("AUTH PLAIN \(Base64.encode(Array("\u{0}alice\u{0}Sup3rSecret!".utf8)))")
        h.sasl(.success(identity: "alice"))
        h.maildrop(.ok(Self.three))
        h.send("QUIT")
        XCTAssertGreaterThanOrEqual(h.logs.count, 3)
        for line in h.logs { XCTAssertFalse(line.contains("Sup3rSecret"), line) }
    }
}
