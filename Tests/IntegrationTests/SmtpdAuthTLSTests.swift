// drac-smtpd end to end: SASL AUTH with real clients (swaks, curl, Python smtplib), the AUTH
// error replies, AUTH only under TLS for non-loopback clients, STARTTLS (and its plaintext
// injection), implicit TLS, the brute-force throttle, and passwords kept out of the log.
import DRACCore
import Foundation
import Glibc
import XCTest

final class SmtpdAuthTLSTests: XCTestCase {
    var dir = ""
    var sink: SmtpSink!
    var smtpd: SmtpdInstance!
    var cert = ""
    var key = ""

    static let user = "alice@example.org"
    static let password = "wonderland"
    static let wrongPassword = "queenofhearts"

    override func setUpWithError() throws {
        try Env.requireSandbox()
        dir = makeTempDir("smtpd-auth")
        makeSASLDB(dir + "/sasldb2", users: ["alice": Self.password])
        (cert, key) = makeCertificate(dir: dir)
        sink = try SmtpSink(dir: dir)
    }

    override func tearDown() {
        smtpd?.stop()
        sink?.stop()
    }

    /// No DRAC map: relaying needs AUTH (or is to example.org, the local domain).
    func start(_ settings: [String] = [], listen: String = "smtp:127.0.0.1:0, submission:127.0.0.1:0") throws {
        smtpd = try SmtpdInstance(dir: dir, backendPort: sink.port, settings: [
            "smtpd_use_drac = no", "smtpd_local_domains = example.org",
            "smtpd_tls_cert_file = \(cert)", "smtpd_tls_key_file = \(key)",
        ] + settings, listen: listen)
    }

    /// Neither password nor any base64 form a client sent may be in the log.
    func assertNoSecretsInLog(file: StaticString = #filePath, line: UInt = #line) {
        let log = smtpd.log
        for secret in [Self.password, Self.wrongPassword, base64(Self.password), base64(Self.wrongPassword),
                       base64("\0\(Self.user)\0\(Self.password)"), base64("\0\(Self.user)\0\(Self.wrongPassword)")] {
            XCTAssertFalse(log.contains(secret), "the log contains \(secret):\n\(log)", file: file, line: line)
        }
    }

    func ehloClient(_ source: String, port: Int? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> SMTPClient {
        try IntegrationTests.ehloClient(port: port ?? smtpd.port, source: source, file: file, line: line)
    }

    // MARK: - Mechanisms through real clients

    func testSwaksEachMechanism() throws {
        try start(["smtpd_auth_failure_max_delay = 0"])
        // Without AUTH the same client may not relay: AUTH is what grants it below.
        let denied = swaks(smtpd.port, ["-f", Self.user, "-t", "friend@remote.example"], source: "127.0.0.40")
        XCTAssertNotEqual(denied.status, 0)
        XCTAssertTrue(denied.output.contains("554 5.7.1"), denied.output)
        for mech in ["PLAIN", "LOGIN", "CRAM-MD5"] {
            let r = swaks(smtpd.port, ["-f", Self.user, "-t", "friend@remote.example", "-a", mech,
                                       "-au", Self.user, "-ap", Self.password], source: "127.0.0.40")
            XCTAssertEqual(r.status, 0, "\(mech): \(r.output)")
            XCTAssertTrue(r.output.contains("235 2.7.0"), "\(mech): \(r.output)")
            XCTAssertTrue(smtpd.log.contains("sasl_method=\(mech), sasl_username=\(Self.user)"), smtpd.log)
        }
        XCTAssertTrue(sink.settles(at: 3), "\(sink.delivered.count) messages")
        XCTAssertTrue(sink.delivered.allSatisfy { $0.contains("with ESMTPA id") }, sink.delivered.joined())
        // A wrong password through each mechanism: 535 5.7.8.
        for mech in ["PLAIN", "LOGIN", "CRAM-MD5"] {
            let r = swaks(smtpd.port, ["-f", Self.user, "-t", "friend@remote.example", "-a", mech,
                                       "-au", Self.user, "-ap", Self.wrongPassword], source: "127.0.0.39")
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.output.contains("535 5.7.8"), "\(mech): \(r.output)")
        }
        XCTAssertTrue(sink.settles(at: 3), "\(sink.delivered.count) messages")
        assertNoSecretsInLog()
    }

    func testCurlEachMechanism() throws {
        try start(["smtpd_auth_failure_max_delay = 0"])
        let file = dir + "/curl-message.txt"
        try "From: alice@example.org\r\nTo: friend@remote.example\r\nSubject: curl\r\n\r\nsent by curl\r\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        func curl(_ mech: String, password: String, extra: [String] = [], url: String? = nil) -> CommandResult {
            runCommand("curl", ["-sS", "--max-time", "20", url ?? "smtp://127.0.0.1:\(smtpd.port)", "--interface", "127.0.0.41",
                                "--mail-from", Self.user, "--mail-rcpt", "friend@remote.example",
                                "--user", "\(Self.user):\(password)", "--login-options", "AUTH=\(mech)", "-T", file] + extra, timeout: 40)
        }
        for mech in ["PLAIN", "LOGIN", "CRAM-MD5"] {
            let r = curl(mech, password: Self.password)
            XCTAssertEqual(r.status, 0, "\(mech): \(r.output)")
            XCTAssertTrue(smtpd.log.contains("sasl_method=\(mech), sasl_username=\(Self.user)"), smtpd.log)
        }
        // STARTTLS (curl --ssl-reqd on smtp://), then AUTH PLAIN under TLS.
        let tls = curl("PLAIN", password: Self.password, extra: ["--ssl-reqd", "-k"])
        XCTAssertEqual(tls.status, 0, tls.output)
        XCTAssertTrue(sink.settles(at: 4), "\(sink.delivered.count) messages")
        XCTAssertEqual(sink.delivered.filter { $0.contains("with ESMTPSA id") }.count, 1, sink.delivered.joined())
        XCTAssertTrue(sink.delivered.allSatisfy { $0.contains("sent by curl") })
        // curl: 67 = "the user name, password, or similar was not accepted".
        let bad = curl("CRAM-MD5", password: Self.wrongPassword)
        XCTAssertEqual(bad.status, 67, bad.output)
        XCTAssertTrue(sink.settles(at: 4), "\(sink.delivered.count) messages")
        assertNoSecretsInLog()
    }

    static let smtplibScript = """
    import smtplib, ssl, sys
    host, port, src, mode, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    s = smtplib.SMTP(host, port, source_address=(src, 0), timeout=20)
    s.ehlo('py.test')
    if mode == 'tls':
        s.starttls(context=ssl._create_unverified_context())
        s.ehlo('py.test')
    print('AUTH-OFFERED', s.esmtp_features.get('auth', '').strip())
    try:
        s.login('alice@example.org', password)
    except smtplib.SMTPAuthenticationError as e:
        print('LOGIN-FAILED', e.smtp_code, e.smtp_error.decode())
        s.quit()
        sys.exit(0)
    print('LOGIN-OK')
    refused = s.sendmail('alice@example.org', ['friend@remote.example', 'user@example.org'],
                         'Subject: smtplib ' + mode + '\\r\\n\\r\\nhello from python\\r\\n')
    print('REFUSED', len(refused))
    print('QUIT', s.quit()[0])
    """

    func testPythonSmtplibPlainAndStartTLS() throws {
        try start(["smtpd_auth_failure_max_delay = 0"])
        let plain = python3(Self.smtplibScript, ["127.0.0.1", String(smtpd.port), "127.0.0.42", "plain", Self.password])
        XCTAssertEqual(plain.status, 0, plain.output)
        XCTAssertTrue(plain.stdout.contains("AUTH-OFFERED PLAIN LOGIN CRAM-MD5"), plain.output)
        XCTAssertTrue(plain.stdout.contains("LOGIN-OK\nREFUSED 0\nQUIT 221"), plain.output)
        let tls = python3(Self.smtplibScript, ["127.0.0.1", String(smtpd.port), "127.0.0.42", "tls", Self.password])
        XCTAssertEqual(tls.status, 0, tls.output)
        XCTAssertTrue(tls.stdout.contains("LOGIN-OK\nREFUSED 0\nQUIT 221"), tls.output)
        let bad = python3(Self.smtplibScript, ["127.0.0.1", String(smtpd.port), "127.0.0.42", "tls", Self.wrongPassword])
        XCTAssertTrue(bad.stdout.contains("LOGIN-FAILED 535"), bad.output)
        // smtplib prefers CRAM-MD5 when offered.
        XCTAssertTrue(smtpd.log.contains("sasl_method=CRAM-MD5, sasl_username=\(Self.user)"), smtpd.log)
        XCTAssertTrue(smtpd.log.contains("TLS established with [127.0.0.42]"), smtpd.log)
        XCTAssertTrue(sink.settles(at: 2), "\(sink.delivered.count) messages")
        XCTAssertEqual(sink.delivered.filter { $0.contains("with ESMTPSA id") && $0.contains("Subject: smtplib tls") }.count, 1,
                       sink.delivered.joined())
        XCTAssertEqual(sink.delivered.filter { $0.contains("with ESMTPA id") && $0.contains("Subject: smtplib plain") }.count, 1,
                       sink.delivered.joined())
        assertNoSecretsInLog()
    }

    // MARK: - AUTH protocol errors

    func testAuthErrorReplies() throws {
        try start(["smtpd_auth_failure_max_delay = 0", "smtpd_auth_failure_limit = 100"])
        let good = base64("\0\(Self.user)\0\(Self.password)")
        let c = try XCTUnwrap(SMTPClient(port: smtpd.port, source: "127.0.0.43"))
        XCTAssertEqual(c.reply()?.code, 220)
        XCTAssertEqual(c.command("AUTH PLAIN \(good)").code, 503, "AUTH before EHLO")
        let ehlo = c.command("EHLO client.test")
        XCTAssertTrue(ehlo.text.contains("250-AUTH PLAIN LOGIN CRAM-MD5"), ehlo.text)

        let wrong = c.command("AUTH PLAIN \(base64("\0\(Self.user)\0\(Self.wrongPassword)"))")
        XCTAssertEqual(wrong.code, 535)
        XCTAssertTrue(wrong.text.hasPrefix("535 5.7.8"), wrong.text)
        // LOGIN with a wrong password, through the continuation lines.
        XCTAssertEqual(c.command("AUTH LOGIN").code, 334)
        XCTAssertEqual(c.command(base64(Self.user)).code, 334)
        XCTAssertTrue(c.command(base64(Self.wrongPassword)).text.hasPrefix("535 5.7.8"))

        let unknown = c.command("AUTH DIGEST-MD5")
        XCTAssertTrue(unknown.text.hasPrefix("504 5.5.4"), unknown.text)
        XCTAssertTrue(c.command("AUTH NOSUCHMECH \(good)").text.hasPrefix("504"))

        // Cancel: "*" as the initial response and as a continuation line.
        XCTAssertTrue(c.command("AUTH PLAIN *").text.hasPrefix("501"))
        XCTAssertEqual(c.command("AUTH LOGIN").code, 334)
        XCTAssertTrue(c.command("*").text.hasPrefix("501"))
        // The session is back in command mode: a command is a command, not a SASL response.
        XCTAssertEqual(c.command("NOOP").code, 250)

        // Bad base64, as the initial response and as a continuation line.
        XCTAssertTrue(c.command("AUTH PLAIN !!!not*base64").text.hasPrefix("501 5.5.2"))
        XCTAssertEqual(c.command("AUTH LOGIN").code, 334)
        XCTAssertTrue(c.command("%%%%").text.hasPrefix("501 5.5.2"))
        XCTAssertEqual(c.command("NOOP").code, 250)

        // Relaying is still refused: none of that authenticated anyone.
        XCTAssertEqual(c.command("MAIL FROM:<\(Self.user)>").code, 250)
        XCTAssertEqual(c.command("RCPT TO:<friend@remote.example>").code, 554)
        // AUTH inside a transaction.
        let inTx = c.command("AUTH PLAIN \(good)")
        XCTAssertTrue(inTx.text.hasPrefix("503 5.5.1"), inTx.text)
        XCTAssertEqual(c.command("RSET").code, 250)

        let ok = c.command("AUTH PLAIN \(good)")
        XCTAssertTrue(ok.text.hasPrefix("235 2.7.0"), ok.text)
        // Twice.
        let twice = c.command("AUTH PLAIN \(good)")
        XCTAssertTrue(twice.text.hasPrefix("503 5.5.1"), twice.text)
        // After AUTH, EHLO no longer offers AUTH, and relaying works.
        XCTAssertFalse(c.command("EHLO client.test").text.contains("AUTH"))
        XCTAssertEqual(c.command("MAIL FROM:<\(Self.user)>").code, 250)
        XCTAssertEqual(c.command("RCPT TO:<friend@remote.example>").code, 250)
        XCTAssertEqual(c.command("DATA").code, 354)
        c.send("Subject: after errors\r\n\r\nbody\r\n.\r\n")
        XCTAssertEqual(c.reply()?.code, 250)
        XCTAssertEqual(c.command("QUIT").code, 221)
        XCTAssertTrue(sink.settles(at: 1), "\(sink.delivered.count) messages")
        XCTAssertTrue(smtpd.log.contains("SASL PLAIN authentication failed"), smtpd.log)
        assertNoSecretsInLog()
    }

    // MARK: - AUTH only under TLS for a client that is not loopback

    static let ipv6Script = """
    import base64, smtplib, ssl, sys
    host, port, src = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = smtplib.SMTP(host, port, source_address=(src, 0), timeout=20)
    s.ehlo('py6.test')
    print('PLAIN-AUTH-OFFERED', 'auth' in s.esmtp_features)
    print('PLAIN-STARTTLS-OFFERED', 'starttls' in s.esmtp_features)
    code, text = s.docmd('AUTH', 'PLAIN ' + base64.b64encode(b'\\0alice@example.org\\0wonderland').decode())
    print('PLAIN-AUTH', code, text.decode())
    code, text = s.docmd('AUTH', 'LOGIN')
    print('PLAIN-AUTH-LOGIN', code)
    s.starttls(context=ssl._create_unverified_context())
    s.ehlo('py6.test')
    print('TLS-AUTH-OFFERED', s.esmtp_features.get('auth', '').strip())
    s.login('alice@example.org', 'wonderland')
    print('TLS-LOGIN-OK')
    print('REFUSED', len(s.sendmail('alice@example.org', ['friend@remote.example'], 'Subject: v6\\r\\n\\r\\nover TLS\\r\\n')))
    print('QUIT', s.quit()[0])
    """

    func testAuthRequiresTLSForNonLoopbackClient() throws {
        // 2001:db8::5 and ::6 are on the namespace's lo, but not loopback addresses.
        try start(listen: "smtp:[2001:db8::5]:0")
        let r = python3(Self.ipv6Script, ["2001:db8::5", String(smtpd.port), "2001:db8::6"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("PLAIN-AUTH-OFFERED False"), r.output)
        XCTAssertTrue(r.stdout.contains("PLAIN-STARTTLS-OFFERED True"), r.output)
        XCTAssertTrue(r.stdout.contains("PLAIN-AUTH 538 5.7.11"), r.output)
        XCTAssertTrue(r.stdout.contains("PLAIN-AUTH-LOGIN 538"), r.output)
        XCTAssertTrue(r.stdout.contains("TLS-AUTH-OFFERED PLAIN LOGIN CRAM-MD5"), r.output)
        XCTAssertTrue(r.stdout.contains("TLS-LOGIN-OK\nREFUSED 0\nQUIT 221"), r.output)
        XCTAssertTrue(smtpd.log.contains("sasl_username=\(Self.user)"), smtpd.log)
        XCTAssertTrue(smtpd.log.contains("[2001:db8::6]"), smtpd.log)

        // swaks: AUTH without TLS cannot even start; with STARTTLS it works.
        let noTLS = swaksTo("2001:db8::5", smtpd.port, ["-f", Self.user, "-t", "friend@remote.example", "-a", "PLAIN",
                                                         "-au", Self.user, "-ap", Self.password], source: "2001:db8::6")
        XCTAssertNotEqual(noTLS.status, 0, noTLS.output)
        let withTLS = swaksTo("2001:db8::5", smtpd.port, ["-tls", "-f", Self.user, "-t", "friend@remote.example", "-a", "PLAIN",
                                                           "-au", Self.user, "-ap", Self.password], source: "2001:db8::6")
        XCTAssertEqual(withTLS.status, 0, withTLS.output)
        XCTAssertTrue(sink.settles(at: 2), "\(sink.delivered.count) messages")
        XCTAssertTrue(sink.delivered.allSatisfy { $0.contains("[IPv6:2001:db8::6]") && $0.contains("with ESMTPSA") }, sink.delivered.joined())
        assertNoSecretsInLog()
    }

    // MARK: - STARTTLS

    func testSwaksStartTLSThenAuth() throws {
        try start()
        let r = swaks(smtpd.port, ["-tls", "-f", Self.user, "-t", "friend@remote.example", "-a", "LOGIN",
                                   "-au", Self.user, "-ap", Self.password], source: "127.0.0.44")
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("220 2.0.0 Ready to start TLS"), r.output)
        XCTAssertTrue(smtpd.log.contains("TLS established with [127.0.0.44]"), smtpd.log)
        let msg = try XCTUnwrap(sink.delivered.first)
        XCTAssertTrue(msg.contains("with ESMTPSA id"), msg)
        // STARTTLS is not offered twice, nor accepted twice.
        let again = python3("""
        import smtplib, ssl, sys
        s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), source_address=('127.0.0.44', 0), timeout=20)
        s.ehlo('x'); s.starttls(context=ssl._create_unverified_context()); s.ehlo('x')
        print('OFFERED', 'starttls' in s.esmtp_features)
        print('AGAIN', s.docmd('STARTTLS')[0])
        """, [String(smtpd.port)])
        XCTAssertTrue(again.stdout.contains("OFFERED False\nAGAIN 554"), again.output)
    }

    static let injectionScript = """
    import socket, ssl, sys
    port, src = int(sys.argv[1]), sys.argv[2]
    s = socket.create_connection(('127.0.0.1', port), timeout=10, source_address=(src, 0))
    def reply(sock):
        # byte by byte: never read past the reply (the TLS handshake follows on this socket)
        lines, line = [], b''
        while True:
            b = sock.recv(1)
            if not b:
                return 'CLOSED ' + ' | '.join(lines)
            line += b
            if line.endswith(b'\\n'):
                text = line.decode().rstrip('\\r\\n')
                lines.append(text)
                line = b''
                if len(text) < 4 or text[3] != '-':
                    return ' | '.join(lines)
    print('GREETING', reply(s)[:3])
    s.sendall(b'EHLO inject.test\\r\\n'); print('EHLO', reply(s)[:3])
    # CVE-2011-0411: commands after STARTTLS in the same packet, in plaintext.
    s.sendall(b'STARTTLS\\r\\nRSET\\r\\nEHLO evil.test\\r\\n')
    print('STARTTLS', reply(s))
    t = ssl._create_unverified_context().wrap_socket(s, server_hostname='gw.example.org')
    print('HANDSHAKE', t.version())
    t.settimeout(2)
    try:
        extra = t.recv(4096)
        print('EXTRA', repr(extra))
    except (TimeoutError, socket.timeout):
        print('EXTRA none')
    t.settimeout(10)
    t.sendall(b'MAIL FROM:<a@example.org>\\r\\n'); print('MAIL-BEFORE-EHLO', reply(t))
    t.sendall(b'EHLO real.test\\r\\n'); print('EHLO-TLS', reply(t))
    t.sendall(b'MAIL FROM:<a@example.org>\\r\\n'); print('MAIL', reply(t))
    t.sendall(b'QUIT\\r\\n'); print('QUIT', reply(t)[:3])
    """

    func testStartTLSPlaintextInjectionIsDiscarded() throws {
        try start()
        let r = python3(Self.injectionScript, [String(smtpd.port), "127.0.0.45"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("STARTTLS 220 2.0.0 Ready to start TLS\n"), r.output)
        XCTAssertTrue(r.stdout.contains("HANDSHAKE TLSv1."), r.output)
        // Nothing answered the injected RSET/EHLO, and they did not count as an EHLO.
        XCTAssertTrue(r.stdout.contains("EXTRA none"), r.output)
        XCTAssertTrue(r.stdout.contains("MAIL-BEFORE-EHLO 503 5.5.1"), r.output)
        let ehlo = r.stdout.split(separator: "\n").first { $0.hasPrefix("EHLO-TLS ") } ?? ""
        XCTAssertTrue(ehlo.hasPrefix("EHLO-TLS 250-gw.example.org"), r.output)
        XCTAssertTrue(ehlo.contains("AUTH PLAIN"), r.output)
        XCTAssertFalse(ehlo.contains("STARTTLS"), r.output)
        XCTAssertTrue(r.stdout.contains("MAIL 250"), r.output)
        XCTAssertTrue(r.stdout.contains("QUIT 221"), r.output)
        XCTAssertTrue(smtpd.log.contains("discarded 22 octets sent after STARTTLS"), smtpd.log)
    }

    // MARK: - Implicit TLS (submissions, RFC 8314)

    func testImplicitTLSSubmissions() throws {
        try start(listen: "smtp:127.0.0.1:0, submissions:127.0.0.1:0")
        let port = try XCTUnwrap(smtpd.ports["submissions"])
        let r = swaks(port, ["--tlsc", "-f", Self.user, "-t", "friend@remote.example", "-a", "CRAM-MD5",
                             "-au", Self.user, "-ap", Self.password], source: "127.0.0.46")
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertFalse(r.output.contains("250-STARTTLS"), "STARTTLS offered under implicit TLS: \(r.output)")
        // AUTH is required on submissions, even to the local domain.
        let noAuth = swaks(port, ["--tlsc", "-f", Self.user, "-t", "user@example.org"], source: "127.0.0.46")
        XCTAssertNotEqual(noAuth.status, 0)
        XCTAssertTrue(noAuth.output.contains("530 5.7.0"), noAuth.output)
        // curl over smtps://
        let file = dir + "/m.txt"
        try "Subject: smtps\r\n\r\nimplicit TLS\r\n".write(toFile: file, atomically: true, encoding: .utf8)
        let curl = runCommand("curl", ["-sS", "-k", "--max-time", "20", "smtps://127.0.0.1:\(port)", "--interface", "127.0.0.46",
                                       "--mail-from", Self.user, "--mail-rcpt", "friend@remote.example",
                                       "--user", "\(Self.user):\(Self.password)", "--login-options", "AUTH=PLAIN", "-T", file], timeout: 40)
        XCTAssertEqual(curl.status, 0, curl.output)
        XCTAssertTrue(sink.settles(at: 2), "\(sink.delivered.count) messages")
        XCTAssertTrue(sink.delivered.allSatisfy { $0.contains("with ESMTPSA id") }, sink.delivered.joined())
        // A plaintext client gets no SMTP greeting there.
        let plain = try XCTUnwrap(SMTPClient(port: port, source: "127.0.0.47"))
        XCTAssertNil(plain.reply(timeout: 1.5))
        plain.send("EHLO plain.test\r\n")
        XCTAssertFalse(plain.pendingText(timeout: 1).contains("250"))
        assertNoSecretsInLog()
    }

    // MARK: - Password guessing

    func testBruteForceDelaysThenDisconnectsButNotOtherAddresses() throws {
        try start(["smtpd_auth_failure_limit = 3", "smtpd_auth_failure_max_delay = 4s"])
        let wrong = "AUTH PLAIN \(base64("\0\(Self.user)\0\(Self.wrongPassword)"))\r\n"
        let good = "AUTH PLAIN \(base64("\0\(Self.user)\0\(Self.password)"))"
        let attacker = try ehloClient("127.0.0.30")
        var took: [Double] = []
        for n in 1...2 {
            let t0 = Date()
            attacker.send(wrong)
            let r = attacker.reply(timeout: 10)
            took.append(Date().timeIntervalSince(t0))
            XCTAssertTrue(r?.text.hasPrefix("535 5.7.8") == true, "failure \(n): \(String(describing: r))")
        }
        // Third failure: while its reply is held back, alice from another address gets in at once.
        let t0 = Date()
        attacker.send(wrong)
        let alice = try ehloClient("127.0.0.31")
        let a0 = Date()
        let ok = alice.command(good)
        XCTAssertTrue(ok.text.hasPrefix("235"), ok.text)
        XCTAssertLessThan(Date().timeIntervalSince(a0), 1.0, "alice was slowed down by someone else's failures")
        let third = attacker.repliesUntilClosed(timeout: 10)
        took.append(Date().timeIntervalSince(t0))
        XCTAssertEqual(third.replies.map(\.code), [535, 421], "\(third.replies)")
        XCTAssertTrue(third.replies.last?.text.hasPrefix("421 4.7.0") == true, "\(third.replies)")
        XCTAssertTrue(third.closed, "not disconnected at smtpd_auth_failure_limit")
        XCTAssertGreaterThanOrEqual(took[1], took[0] + 0.5, "\(took)")
        XCTAssertGreaterThanOrEqual(took[2], took[0] + 1.5, "\(took)")
        XCTAssertLessThan(took[2], 7, "\(took)")

        // Failures 4 and 5, each on a new connection: the delay stays at its maximum and each
        // ends the connection.
        for n in 4...5 {
            let c = try ehloClient("127.0.0.30")
            let t = Date()
            c.send(wrong)
            let rs = c.repliesUntilClosed(timeout: 10)
            let d = Date().timeIntervalSince(t)
            XCTAssertEqual(rs.replies.map(\.code), [535, 421], "failure \(n): \(rs.replies)")
            XCTAssertTrue(rs.closed, "failure \(n): not disconnected")
            XCTAssertGreaterThanOrEqual(d, 3.0, "failure \(n) took \(d)")
        }
        // alice, meanwhile, sends mail through a real client without any delay.
        let t1 = Date()
        let r = swaks(smtpd.port, ["-f", Self.user, "-t", "friend@remote.example", "-a", "PLAIN",
                                   "-au", Self.user, "-ap", Self.password], source: "127.0.0.31")
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertLessThan(Date().timeIntervalSince(t1), 3.0, "alice slowed down (the attacker's delay is 4 s)")
        XCTAssertEqual(alice.command("QUIT").code, 221)
        XCTAssertTrue(smtpd.log.contains("[127.0.0.30]: 3 failed authentications, disconnecting"), smtpd.log)
        XCTAssertTrue(smtpd.log.contains("[127.0.0.30]: 5 failed authentications, disconnecting"), smtpd.log)
        assertNoSecretsInLog()
    }
}
