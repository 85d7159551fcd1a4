// drac-pop3d with real clients: curl (pop3://, pop3s://, STLS), Python's poplib, raw sockets.
import XCTest
import Foundation
import Glibc

final class Pop3dTests: XCTestCase {
    let user = "alice@example.org"
    let password = "wonderland"

    override func setUpWithError() throws { try Env.requireSandbox() }

    /// A directory with a sasldb (alice, bob) and a Maildir tree owned by `nobody`, which the
    /// server becomes (pop3d_mail_user) after binding.
    func makeSite(_ name: String) -> String {
        let dir = makeTempDir(name)
        makeSASLDB(dir + "/sasldb2", users: ["alice": password, "bob": "builder"])
        chmod(dir + "/sasldb2", 0o644)
        try? FileManager.default.createDirectory(atPath: dir + "/mail/example.org", withIntermediateDirectories: true)
        return dir
    }

    func maildir(_ dir: String, _ local: String = "alice") -> String { dir + "/mail/example.org/" + local }

    /// Gives the mail tree to nobody (after delivering as root, as an MDA running as root would).
    func chownMail(_ dir: String) {
        XCTAssertEqual(runCommand("chown", ["-R", "nobody:nogroup", dir + "/mail"]).status, 0)
    }

    func start(_ dir: String, _ settings: [String] = [], listen: String = "pop3:127.0.0.1:0") throws -> Pop3dInstance {
        chownMail(dir)
        return try Pop3dInstance(dir: dir, settings: ["pop3d_mail_user = nobody"] + settings, listen: listen)
    }

    // MARK: - Reading mail with real clients

    func testCurlListsAndRetrievesExactOctets() throws {
        let dir = makeSite("pop3-curl")
        let plain = Mailbox.message(subject: "first", body: ["Hello Alice,", "", "See you."])
        let dotted = Mailbox.message(subject: "dots", body: [".", "..two", ".leading dot", "end."])
        let crlf = Mailbox.message(subject: "crlf", body: ["stored with", "CRLF line ends"], crlf: true)
        for m in [plain, dotted, crlf] { Mailbox.deliver(m, to: maildir(dir)) }
        let p = try start(dir)
        defer { p.stop() }

        let list = runCommand("curl", ["-sS", "--max-time", "20", "pop3://127.0.0.1:\(p.port)/", "-u", "\(user):\(password)"])
        XCTAssertEqual(list.status, 0, list.output + p.log)
        let expected = [plain, dotted, crlf].enumerated().map { "\($0.offset + 1) \(Mailbox.crlfSize($0.element))" }
        XCTAssertEqual(list.stdout.components(separatedBy: "\r\n").filter { !$0.isEmpty }, expected)

        // curl undoes the dot-stuffing: what it prints is the message with CRLF line ends.
        for (i, m) in [plain, dotted, crlf].enumerated() {
            let r = runCommand("curl", ["-sS", "--max-time", "20", "pop3://127.0.0.1:\(p.port)/\(i + 1)", "-u", "\(user):\(password)"])
            XCTAssertEqual(r.status, 0, r.output)
            let want = m.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\n", with: "\r\n")
            XCTAssertEqual(r.stdout, want, "message \(i + 1)")
        }
        // Every message moved from new/ to cur/ and kept (nothing deleted by reading).
        XCTAssertEqual(Mailbox.files(maildir(dir)).filter { $0.hasPrefix("cur/") }.count, 3, "\(Mailbox.files(maildir(dir)))")
        XCTAssertTrue(p.log.contains("Login: user=<\(user)>, method="), p.log)
        XCTAssertFalse(p.log.contains(password), "the password reached the log")
    }

    func testPoplibUIDLStableAcrossSessionsAndTopAndRetr() throws {
        let dir = makeSite("pop3-poplib")
        let bodies = (1...3).map { n in Mailbox.message(subject: "msg \(n)", body: (1...20).map { "line \($0) of \(n)" } + [".stuffed"]) }
        for m in bodies { Mailbox.deliver(m, to: maildir(dir)) }
        let p = try start(dir)
        defer { p.stop() }
        let script = """
        import poplib, sys, json
        out = []
        for session in range(2):
            c = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=20)
            caps = c.capa()
            c.user(sys.argv[2]); c.pass_(sys.argv[3])
            count, size = c.stat()
            uidl = [x.decode() for x in c.uidl()[1]]
            top = [x.decode() for x in c.top(2, 3)[1]]
            retr = [x.decode() for x in c.retr(3)[1]]
            out.append({'caps': sorted(caps.keys()), 'stat': [count, size], 'uidl': uidl, 'top': top, 'retr': retr})
            c.quit()
        print(json.dumps(out))
        """
        let r = python3(script, [String(p.port), user, password])
        XCTAssertEqual(r.status, 0, r.output + p.log)
        let data = try XCTUnwrap(r.stdout.data(using: .utf8))
        let sessions = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        XCTAssertEqual(sessions.count, 2)
        let uidl1 = sessions[0]["uidl"] as? [String], uidl2 = sessions[1]["uidl"] as? [String]
        XCTAssertEqual(uidl1, uidl2, "UIDLs changed between sessions")
        XCTAssertEqual(Set((uidl1 ?? []).map { $0.split(separator: " ")[1] }).count, 3, "UIDLs not unique")
        XCTAssertEqual(sessions[0]["stat"] as? [Int], [3, bodies.map(Mailbox.crlfSize).reduce(0, +)])
        for cap in ["PIPELINING", "RESP-CODES", "TOP", "UIDL", "USER", "AUTH-RESP-CODE", "SASL", "IMPLEMENTATION"] {
            XCTAssertTrue((sessions[0]["caps"] as? [String] ?? []).contains(cap), "CAPA lacks \(cap)")
        }
        // TOP 2 3: the headers, the empty line, three body lines.
        XCTAssertEqual(sessions[0]["top"] as? [String],
                       ["From: sender@example.net", "To: user@example.org", "Subject: msg 2", "Message-ID: <msg.2@example.net>", "",
                        "line 1 of 2", "line 2 of 2", "line 3 of 2"])
        // poplib un-stuffs: the last line is ".stuffed" again.
        XCTAssertEqual((sessions[0]["retr"] as? [String])?.last, ".stuffed")
    }

    // MARK: - UPDATE, IN-USE, pipelining

    /// A command pipelined behind a message larger than the socket buffers is answered once
    /// the message has gone out, however its last chunk was sent (here: when the socket
    /// drained for a client that started reading late).
    func testCommandPipelinedBehindALargeMessageIsAnswered() throws {
        let dir = makeSite("pop3-behind-large")
        let big = Mailbox.message(subject: "big", body: (0..<120_000).map { "line \($0) of a message larger than the socket buffers" })
        Mailbox.deliver(big, to: maildir(dir))
        let p = try start(dir)
        defer { p.stop() }
        let c = try POP3Raw.login(port: p.port, user: user, password: password)
        c.send("RETR 1\r\nNOOP\r\n")
        sleep(1)
        XCTAssertEqual(c.line(), "+OK \(Mailbox.crlfSize(big)) octets")
        XCTAssertEqual(c.multilineBody()?.count, Mailbox.expectedRetr(big).count)
        XCTAssertEqual(c.line(timeout: 10), "+OK", "NOOP behind the message")
        XCTAssertTrue(c.command("QUIT").hasPrefix("+OK"))
    }

    /// Messages not in the page cache take the thread-pool path (the event loop sends only
    /// what is cached): evicted files, small and large, still arrive byte-exact, and TOP too.
    func testRetrOfMessagesEvictedFromThePageCache() throws {
        let dir = makeSite("pop3-evicted")
        let small = Mailbox.message(subject: "small", body: ["one line", ".dot"])
        let large = Mailbox.message(subject: "large", body: (0..<40_000).map { $0 % 7 == 0 ? ".\($0)" : "line \($0) of a large message" })
        for m in [small, large] { Mailbox.deliver(m, to: maildir(dir)) }
        let p = try start(dir)
        defer { p.stop() }
        let c = try POP3Raw.login(port: p.port, user: user, password: password)
        // Login moved the files to cur/: write them out and drop them from the cache.
        for f in Mailbox.files(maildir(dir)) {
            let fd = open(maildir(dir) + "/" + f, O_RDONLY)
            XCTAssertGreaterThanOrEqual(fd, 0, f)
            fsync(fd)
            XCTAssertEqual(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0)
            close(fd)
        }
        for (n, m) in [(2, large), (1, small)] {
            XCTAssertEqual(c.command("RETR \(n)"), "+OK \(Mailbox.crlfSize(m)) octets")
            XCTAssertEqual(c.multilineBody(), Mailbox.expectedRetr(m), "RETR \(n)")
        }
        for f in Mailbox.files(maildir(dir)) {
            let fd = open(maildir(dir) + "/" + f, O_RDONLY)
            _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
            close(fd)
        }
        XCTAssertTrue(c.command("TOP 2 3").hasPrefix("+OK"))
        let head = Mailbox.expectedRetr(large)
        let headerEnd = String(decoding: head, as: UTF8.self).range(of: "\r\n\r\n")!
        let want = String(decoding: head, as: UTF8.self)[..<headerEnd.upperBound] +
            "..0\r\nline 1 of a large message\r\nline 2 of a large message\r\n"
        XCTAssertEqual(String(decoding: c.multilineBody() ?? [], as: UTF8.self), String(want))
        XCTAssertTrue(c.command("QUIT").hasPrefix("+OK"))
    }

    func testDeletionsHappenOnlyAfterQuit() throws {
        let dir = makeSite("pop3-dele")
        for n in 1...3 { Mailbox.deliver(Mailbox.message(subject: "m\(n)", body: ["body \(n)"]), to: maildir(dir)) }
        let p = try start(dir)
        defer { p.stop() }

        // A dropped connection deletes nothing.
        do {
            let c = try POP3Raw.login(port: p.port, user: user, password: password)
            XCTAssertTrue(c.command("DELE 1").hasPrefix("+OK"))
            XCTAssertTrue(c.command("DELE 2").hasPrefix("+OK"))
        }
        XCTAssertTrue(eventually(5) { p.log.contains("Disconnected: Connection closed") }, p.log)
        XCTAssertEqual(Mailbox.files(maildir(dir)).count, 3)

        // DELE, RSET, DELE, QUIT: only the last mark counts.
        let c = try POP3Raw.login(port: p.port, user: user, password: password)
        XCTAssertTrue(c.command("DELE 1").hasPrefix("+OK"))
        XCTAssertTrue(c.command("RSET").hasPrefix("+OK"))
        XCTAssertTrue(c.command("DELE 2").hasPrefix("+OK"))
        XCTAssertTrue(c.command("RETR 2").hasPrefix("-ERR"), "a deleted message must not be retrievable")
        XCTAssertTrue(c.command("STAT").hasPrefix("+OK 2 "))
        XCTAssertEqual(Mailbox.files(maildir(dir)).count, 3, "deleted before QUIT")
        let quit = c.command("QUIT")
        XCTAssertTrue(quit.hasPrefix("+OK"), quit)
        let left = Mailbox.files(maildir(dir))
        XCTAssertEqual(left.count, 2, "\(left)")

        // The survivors are messages 1 and 3 of before.
        let d = try POP3Raw.login(port: p.port, user: user, password: password)
        d.send("RETR 1\r\n")
        XCTAssertTrue(d.line()?.hasPrefix("+OK") == true)
        XCTAssertTrue(String(decoding: d.multilineBody() ?? [], as: UTF8.self).contains("body 1"))
        d.send("RETR 2\r\n")
        XCTAssertTrue(d.line()?.hasPrefix("+OK") == true)
        XCTAssertTrue(String(decoding: d.multilineBody() ?? [], as: UTF8.self).contains("body 3"))
        XCTAssertTrue(d.command("QUIT").hasPrefix("+OK"))
        XCTAssertTrue(p.log.contains("del=1/3"), p.log)
    }

    func testSecondSessionGetsInUseAndPipelinedCommandsAnswerInOrder() throws {
        let dir = makeSite("pop3-inuse")
        let stored = Mailbox.message(subject: "pipe", body: ["a", ".b", "c"])
        Mailbox.deliver(stored, to: maildir(dir))
        let p = try start(dir)
        defer { p.stop() }
        let first = try POP3Raw.login(port: p.port, user: user, password: password)
        let second = try XCTUnwrap(POP3Raw(port: p.port))
        XCTAssertTrue(second.line()?.hasPrefix("+OK") == true)
        XCTAssertTrue(second.command("USER \(user)").hasPrefix("+OK"))
        let refused = second.command("PASS \(password)")
        XCTAssertTrue(refused.hasPrefix("-ERR [IN-USE]"), refused)
        XCTAssertTrue(second.tcp.closedByPeer(within: 5))

        // RFC 2449 §6.6: one write with five commands, five responses in order.
        first.send("STAT\r\nLIST\r\nUIDL 1\r\nRETR 1\r\nNOOP\r\n")
        XCTAssertEqual(first.line(), "+OK 1 \(Mailbox.crlfSize(stored))")
        XCTAssertTrue(first.line()?.hasPrefix("+OK") == true)
        XCTAssertEqual(first.multilineLines(), ["1 \(Mailbox.crlfSize(stored))"])
        XCTAssertTrue(first.line()?.hasPrefix("+OK 1 ") == true)
        XCTAssertTrue(first.line()?.hasPrefix("+OK") == true)
        XCTAssertEqual(first.multilineBody(), Mailbox.expectedRetr(stored), "RETR octets")
        XCTAssertTrue(first.line()?.hasPrefix("+OK") == true)
        XCTAssertTrue(first.command("QUIT").hasPrefix("+OK"))
        // Once the first session is over, the maildrop is free again.
        let third = try POP3Raw.login(port: p.port, user: user, password: password)
        XCTAssertTrue(third.command("QUIT").hasPrefix("+OK"))
    }

    /// A client that pipelines RETR for a whole large maildrop and reads nothing must not make
    /// the server read the maildrop into memory (back-pressure: no new command while the socket
    /// is full); once it reads, every message arrives byte-exact and in order.
    func testPipelinedRetrOfALargeMaildropWithASlowReader() throws {
        let dir = makeSite("pop3-backpressure")
        let count = 80
        var stored: [String] = []
        for i in 1...count {
            // ~250 KB each, 20 MB in all, with lines that need dot-stuffing.
            let body = (0..<2500).map { $0 % 50 == 0 ? ".line \($0) of message \(i)" : "line \($0) of message \(i) " + String(repeating: "x", count: 70) }
            let m = Mailbox.message(subject: "big \(i)", body: body)
            Mailbox.deliver(m, to: maildir(dir))
            stored.append(m)
        }
        let p = try start(dir)
        defer { p.stop() }
        let c = try POP3Raw.login(port: p.port, user: user, password: password)
        XCTAssertEqual(c.command("NOOP"), "+OK")
        let before = residentKB(p.pid)
        c.send((1...count).map { "RETR \($0)\r\n" }.joined())
        sleep(3)
        let during = residentKB(p.pid)
        XCTAssertGreaterThan(before, 0)
        XCTAssertLessThan(during - before, 8 * 1024,
                          "the server grew by \(during - before) KB while the client read nothing (20 MB requested)")

        var expected: [UInt8] = []
        for m in stored {
            expected += Array("+OK \(Mailbox.crlfSize(m)) octets\r\n".utf8) + Mailbox.expectedRetr(m) + Array(".\r\n".utf8)
        }
        var got: [UInt8] = []
        got.reserveCapacity(expected.count)
        let deadline = Date().addingTimeInterval(60)
        while got.count < expected.count && Date() < deadline {
            guard let more = c.tcp.receive(timeout: 1) else { break }
            got += more
        }
        XCTAssertEqual(got.count, expected.count, "octets received")
        XCTAssertTrue(got == expected, "the responses differ from the messages")
        XCTAssertEqual(c.command("QUIT"), "+OK Logging out, \(count) messages left.")
        XCTAssertTrue(p.log.contains("retr=\(count)/"), String(p.log.suffix(2000)))
    }

    // MARK: - mbox

    func testMboxReadDeleteKeepsNewMail() throws {
        let dir = makeSite("pop3-mbox")
        let mbox = dir + "/mail/alice.mbox"
        let m1 = Mailbox.message(subject: "one", body: ["first", "From the start, this line is quoted by nobody"])
        let m2 = Mailbox.message(subject: "two", body: ["second", ".dot"])
        let text = "From sender@example.net Mon Nov 23 10:00:00 2026\n" + m1 + "\n" +
            "From sender@example.net Mon Nov 23 10:01:00 2026\n" + m2 + "\n"
        FileManager.default.createFile(atPath: mbox, contents: Data(text.utf8))
        let p = try start(dir, ["pop3d_mail_location = mbox:\(dir)/mail/%n.mbox"])
        defer { p.stop() }
        let c = try POP3Raw.login(port: p.port, user: user, password: password)
        XCTAssertEqual(c.command("STAT"), "+OK 2 \(Mailbox.crlfSize(m1) + Mailbox.crlfSize(m2))")
        c.send("RETR 2\r\n")
        XCTAssertTrue(c.line()?.hasPrefix("+OK") == true)
        XCTAssertEqual(c.multilineBody(), Mailbox.expectedRetr(m2))
        XCTAssertTrue(c.command("DELE 1").hasPrefix("+OK"))
        // New mail arrives during the session; it must survive the UPDATE.
        let m3 = "From other@example.net Mon Nov 23 10:05:00 2026\n" + Mailbox.message(subject: "three", body: ["late"]) + "\n"
        let h = try XCTUnwrap(FileHandle(forWritingAtPath: mbox))
        h.seekToEndOfFile(); h.write(Data(m3.utf8)); h.closeFile()
        XCTAssertTrue(c.command("QUIT").hasPrefix("+OK"))
        let after = try String(contentsOfFile: mbox, encoding: .utf8)
        XCTAssertFalse(after.contains("Subject: one"), after)
        XCTAssertTrue(after.contains("Subject: two") && after.contains("Subject: three"), after)
        XCTAssertTrue(after.hasPrefix("From sender@example.net Mon Nov 23 10:01:00 2026\n"), after)
    }

    // MARK: - TLS and plaintext refusal

    func testSTLSAndImplicitTLSWithCurl() throws {
        let dir = makeSite("pop3-tls")
        let (cert, key) = makeCertificate(dir: dir)
        chmod(key, 0o644)
        Mailbox.deliver(Mailbox.message(subject: "secret", body: ["over TLS"]), to: maildir(dir))
        let p = try start(dir, ["pop3d_tls_cert_file = \(cert)", "pop3d_tls_key_file = \(key)"],
                          listen: "pop3:127.0.0.1:0, pop3s:127.0.0.1:0")
        defer { p.stop() }
        // STLS (curl --ssl-reqd on pop3:// upgrades with STLS, RFC 2595).
        let stls = runCommand("curl", ["-sS", "-k", "--ssl-reqd", "--max-time", "20", "pop3://127.0.0.1:\(p.port)/1", "-u", "\(user):\(password)"])
        XCTAssertEqual(stls.status, 0, stls.output + p.log)
        XCTAssertTrue(stls.stdout.contains("over TLS"), stls.stdout)
        let pop3s = runCommand("curl", ["-sS", "-k", "--max-time", "20", "pop3s://127.0.0.1:\(p.ports["pop3s"]!)/", "-u", "\(user):\(password)"])
        XCTAssertEqual(pop3s.status, 0, pop3s.output + p.log)
        XCTAssertTrue(pop3s.stdout.hasPrefix("1 "), pop3s.stdout)
        XCTAssertEqual(p.log.components(separatedBy: "TLS established").count - 1, 2, p.log)
        XCTAssertTrue(p.log.contains(", TLS, ") || p.log.contains(", TLS\n") || p.log.contains("lip=127.0.0.1, TLS"), p.log)
    }

    /// Off loopback, passwords need TLS: an address of the test's own namespace on lo
    /// (192.0.2.10 is not loopback as far as the server can tell).
    func testPlaintextRefusedOffLoopbackUntilSTLS() throws {
        let add = runCommand("ip", ["addr", "add", "192.0.2.10/32", "dev", "lo"])
        XCTAssertTrue(add.status == 0 || add.output.contains("File exists"), add.output)
        let dir = makeSite("pop3-plain")
        let (cert, key) = makeCertificate(dir: dir)
        chmod(key, 0o644)
        Mailbox.deliver(Mailbox.message(subject: "x", body: ["y"]), to: maildir(dir))
        let p = try start(dir, ["pop3d_tls_cert_file = \(cert)", "pop3d_tls_key_file = \(key)"], listen: "pop3:192.0.2.10:0")
        defer { p.stop() }
        let c = try XCTUnwrap(POP3Raw(port: p.port, host: "192.0.2.10", source: "192.0.2.10"))
        XCTAssertTrue(c.line()?.hasPrefix("+OK") == true)
        c.send("CAPA\r\n")
        XCTAssertTrue(c.line()?.hasPrefix("+OK") == true)
        let caps = c.multilineLines()
        XCTAssertTrue(caps.contains("STLS"), "\(caps)")
        XCTAssertFalse(caps.contains("USER"), "\(caps)")
        XCTAssertFalse(caps.contains { $0.hasPrefix("SASL") && ($0.contains("PLAIN") || $0.contains("LOGIN")) }, "\(caps)")
        let r = c.command("USER \(user)")
        XCTAssertTrue(r.hasPrefix("-ERR [AUTH] Plaintext authentication disallowed"), r)
        // curl with STLS logs in from the same address.
        let ok = runCommand("curl", ["-sS", "-k", "--ssl-reqd", "--interface", "192.0.2.10", "--max-time", "20",
                                     "pop3://192.0.2.10:\(p.port)/", "-u", "\(user):\(password)"])
        XCTAssertEqual(ok.status, 0, ok.output + p.log)
        // Without TLS, curl cannot log in with a password in the clear (CRAM-MD5 stays allowed).
        let refused = runCommand("curl", ["-sS", "--interface", "192.0.2.10", "--max-time", "20", "--login-options", "AUTH=PLAIN",
                                          "pop3://192.0.2.10:\(p.port)/", "-u", "\(user):\(password)"])
        XCTAssertNotEqual(refused.status, 0, refused.output)
    }

    // MARK: - SASL mechanisms

    func testAuthPlainLoginCramMD5AndErrors() throws {
        let dir = makeSite("pop3-auth")
        Mailbox.deliver(Mailbox.message(subject: "x", body: ["y"]), to: maildir(dir))
        let p = try start(dir)
        defer { p.stop() }
        let script = """
        import socket, sys, base64, hmac, hashlib
        port, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
        def session(steps):
            s = socket.create_connection(('127.0.0.1', port), timeout=20)
            f = s.makefile('rb')
            out = [f.readline().decode().rstrip()]
            for step in steps:
                if callable(step):
                    step = step(out[-1])
                s.sendall(step.encode() + b'\\r\\n')
                out.append(f.readline().decode().rstrip())
            s.close()
            return out
        b = lambda t: base64.b64encode(t.encode()).decode()
        def cram(line):
            chal = base64.b64decode(line[2:])
            d = hmac.new(pw.encode(), chal, hashlib.md5).hexdigest()
            return b(user + ' ' + d)
        print(session(['AUTH PLAIN ' + b('\\0' + user + '\\0' + pw), 'QUIT'])[1])
        print(session(['AUTH PLAIN', b('\\0' + user + '\\0' + pw), 'QUIT'])[2])
        print(session(['AUTH LOGIN', b(user), b(pw), 'QUIT'])[3])
        print(session(['AUTH CRAM-MD5', cram, 'QUIT'])[2])
        print(session(['AUTH PLAIN ' + b('\\0' + user + '\\0wrong')])[1])
        print(session(['AUTH PLAIN', '*'])[2])
        print(session(['AUTH PLAIN !!notbase64'])[1])
        print(session(['AUTH KERBEROS_V5'])[1])
        print(session(['AUTH'])[1])
        """
        let r = python3(script, [String(p.port), user, password])
        XCTAssertEqual(r.status, 0, r.output)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 9, r.output)
        guard lines.count == 9 else { return }
        for i in 0..<4 { XCTAssertTrue(lines[i].hasPrefix("+OK"), "mechanism \(i): \(lines[i])\n\(p.log)") }
        XCTAssertTrue(lines[4].hasPrefix("-ERR [AUTH]"), lines[4])
        XCTAssertTrue(lines[5].hasPrefix("-ERR"), lines[5])
        XCTAssertTrue(lines[6].hasPrefix("-ERR"), lines[6])
        XCTAssertTrue(lines[7].hasPrefix("-ERR"), lines[7])
        XCTAssertTrue(lines[8].hasPrefix("+OK"), "AUTH without a mechanism lists them: \(lines[8])")
        XCTAssertTrue(p.log.contains("method=CRAM-MD5"), p.log)
        XCTAssertFalse(p.log.contains(password), "the password reached the log")
        XCTAssertFalse(p.log.contains(base64("\0" + user + "\0" + password)), "the credentials reached the log")
    }

    // MARK: - Limits and brute force

    func testFailedLoginsCloseAndThrottlePerAddress() throws {
        let dir = makeSite("pop3-fail")
        let p = try start(dir, ["pop3d_failed_logins = 2", "pop3d_auth_failure_limit = 3", "pop3d_auth_failure_max_delay = 1s"])
        defer { p.stop() }
        // Per connection: the second failure closes with [AUTH].
        let c = try XCTUnwrap(POP3Raw(port: p.port, source: "127.0.0.2"))
        XCTAssertTrue(c.line()?.hasPrefix("+OK") == true)
        c.command("USER \(user)")
        XCTAssertTrue(c.command("PASS nope").hasPrefix("-ERR [AUTH]"))
        c.command("USER \(user)")
        XCTAssertTrue(c.command("PASS nope").hasPrefix("-ERR [AUTH]"))
        XCTAssertTrue(c.tcp.closedByPeer(within: 5))
        // Per address: the third failure from 127.0.0.2 disconnects at once, even on a new
        // connection; 127.0.0.3 is unaffected and the right password still works there.
        let d = try XCTUnwrap(POP3Raw(port: p.port, source: "127.0.0.2"))
        XCTAssertTrue(d.line()?.hasPrefix("+OK") == true)
        d.command("USER \(user)")
        XCTAssertTrue(d.command("PASS nope").hasPrefix("-ERR [AUTH]"))
        XCTAssertTrue(d.tcp.closedByPeer(within: 5))
        XCTAssertTrue(p.log.contains("failed logins, disconnecting (pop3d_auth_failure_limit)"), p.log)
        let e = try POP3Raw.login(port: p.port, user: user, password: password, source: "127.0.0.3")
        XCTAssertTrue(e.command("QUIT").hasPrefix("+OK"))
        XCTAssertFalse(p.log.contains("nope"), "a password reached the log")
    }

    func testLongLinesBadCommandsAndConnectionLimits() throws {
        let dir = makeSite("pop3-limits")
        let p = try start(dir, ["pop3d_max_connections_per_client = 2", "pop3d_commands_before_login = 5"])
        defer { p.stop() }
        let c = try XCTUnwrap(POP3Raw(port: p.port))
        XCTAssertTrue(c.line()?.hasPrefix("+OK") == true)
        XCTAssertTrue(c.command(String(repeating: "X", count: 20_000)).hasPrefix("-ERR"))
        XCTAssertTrue(c.command("NOOP").hasPrefix("-ERR"), "NOOP is a TRANSACTION command")
        // A second connection is allowed, a third from the same address is refused.
        let c2 = try XCTUnwrap(POP3Raw(port: p.port))
        XCTAssertTrue(c2.line()?.hasPrefix("+OK") == true)
        let c3 = try XCTUnwrap(POP3Raw(port: p.port))
        XCTAssertEqual(c3.line(), "-ERR [SYS/TEMP] Too many connections from your address.")
        XCTAssertTrue(c3.tcp.closedByPeer(within: 5))
        // Commands before login are counted: the session ends.
        for _ in 0..<6 { c.send("CAPA\r\n") }
        XCTAssertTrue(c.tcp.closedByPeer(within: 5))
        // The server keeps serving (another address: c2 still holds one of 127.0.0.1's two slots).
        let d = try POP3Raw.login(port: p.port, user: user, password: password, source: "127.0.0.9")
        XCTAssertTrue(d.command("QUIT").hasPrefix("+OK"))
    }

    // MARK: - Privileges and shutdown

    func testServesAsMailUserAndStopsCleanly() throws {
        let dir = makeSite("pop3-priv")
        Mailbox.deliver(Mailbox.message(subject: "x", body: ["y"]), to: maildir(dir))
        let p = try start(dir)
        let status = try String(contentsOfFile: "/proc/\(p.pid)/status", encoding: .utf8)
        let uidLine = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }.map(String.init) ?? ""
        XCTAssertEqual(uidLine.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().map(String.init),
                       ["65534", "65534", "65534", "65534"], "not running as nobody: \(uidLine)")
        // An idle logged-in client gets [SYS/TEMP] at shutdown and nothing is deleted.
        let c = try POP3Raw.login(port: p.port, user: user, password: password)
        XCTAssertTrue(c.command("DELE 1").hasPrefix("+OK"))
        XCTAssertEqual(p.stop(), 0)
        XCTAssertEqual(c.line(), "-ERR [SYS/TEMP] Server shutting down.")
        XCTAssertEqual(Mailbox.files(maildir(dir)).count, 1)
    }

    func testRefusesToStartWithBadSettings() throws {
        let dir = makeSite("pop3-bad")
        let cases: [([String], String)] = [
            (["-o", "pop3d_mail_location=imap:/x"], "pop3d_mail_location"),
            (["-o", "pop3d_listen=pop3s:127.0.0.1:0"], "needs pop3d_tls_cert_file"),
            (["-o", "pop3d_mail_user=no-such-user-here"], "no such user"),
            (["-o", "pop3d_mail_user=nobody", "-o", "pop3d_mail_location=maildir:~/Maildir"], "home directory"),
            (["-o", "pop3d_timeout=soon"], "pop3d_timeout"),
        ]
        for (args, text) in cases {
            let r = runCommand(Env.bin + "/drac-pop3d", ["-c", "/dev/null", "-o", "pop3d_listen=pop3:127.0.0.1:0",
                                                         "-o", "pop3d_sasldb_path=\(dir)/sasldb2"] + args, timeout: 20)
            XCTAssertEqual(r.status, 1, "\(args): \(r.output)")
            XCTAssertTrue(r.stderr.contains(text), "\(args): \(r.stderr)")
        }
    }
}

/// The DRAC add after login against real rpc.dracd instances (fixed ports, no rpcbind).
final class Pop3dDracTests: XCTestCase {
    override func setUpWithError() throws { try Env.requireSandbox() }

    func site(_ name: String) -> String {
        let dir = makeTempDir(name)
        makeSASLDB(dir + "/sasldb2", users: ["alice": "wonderland"])
        chmod(dir + "/sasldb2", 0o644)
        try? FileManager.default.createDirectory(atPath: dir + "/mail/example.org/alice", withIntermediateDirectories: true)
        XCTAssertEqual(runCommand("chown", ["-R", "nobody:nogroup", dir + "/mail"]).status, 0)
        return dir
    }

    /// An IPv6 client is added with protocol version 2, and refreshed while its session lasts.
    func testIPv6ClientAddedByV2AndRefreshedDuringTheSession() throws {
        let dir = site("pop3-drac6")
        let dracd = try DracdInstance(dir: dir, args: ["-o", "rpcbind=no", "-o", "listen=127.0.0.1", "-a", dir + "/missing.allow"])
        defer { _ = dracd.stop() }
        let p = try Pop3dInstance(dir: dir, settings: [
            "pop3d_mail_user = nobody", "pop3d_use_drac = yes", "rpc_servers = 127.0.0.1:\(dracd.port)", "pop3d_drac_refresh = 10s",
        ], listen: "pop3:[::1]:0")
        defer { p.stop() }
        let c = try POP3Raw.login(port: p.port, user: "alice@example.org", password: "wonderland", host: "::1")
        XCTAssertTrue(eventually(10) { dumpMap(dracd.map)["::1"] != nil }, "map: \(dumpMap(dracd.map))\n\(p.log)\n\(dracd.log)")
        XCTAssertTrue(dracd.log.contains("add ::1 from 127.0.0.1 udp v2"), dracd.log)
        let first = Int(dumpMap(dracd.map)["::1"] ?? "") ?? 0
        // The session stays open past the refresh interval: the entry is renewed.
        XCTAssertTrue(eventually(20) { p.log.components(separatedBy: "drac add ::1 to 127.0.0.1:\(dracd.port): ok").count - 1 >= 2 }, p.log)
        XCTAssertTrue(eventually(5) { (Int(dumpMap(dracd.map)["::1"] ?? "") ?? 0) > first }, "expiry not renewed: \(dumpMap(dracd.map))")
        XCTAssertTrue(c.command("QUIT").hasPrefix("+OK"))
    }

    /// A server that refuses us (we are not in its allow list) is logged; the login succeeds.
    func testRefusedAddIsLoggedAndTheLoginSucceeds() throws {
        let dir = site("pop3-dracperm")
        try "255.0.0.0 10.0.0.0\n".write(toFile: dir + "/ten.allow", atomically: true, encoding: .utf8)
        let dracd = try DracdInstance(dir: dir, args: ["-o", "rpcbind=no", "-o", "listen=127.0.0.1", "-a", dir + "/ten.allow"])
        defer { _ = dracd.stop() }
        let p = try Pop3dInstance(dir: dir, settings: [
            "pop3d_mail_user = nobody", "pop3d_use_drac = yes", "rpc_servers = 127.0.0.1:\(dracd.port)",
        ])
        defer { p.stop() }
        let c = try POP3Raw.login(port: p.port, user: "alice@example.org", password: "wonderland", source: "127.0.0.4")
        XCTAssertTrue(c.command("STAT").hasPrefix("+OK 0 0"))
        XCTAssertTrue(eventually(10) { p.log.contains("drac add 127.0.0.4 to 127.0.0.1:\(dracd.port) refused: ADD_PERM") }, p.log)
        XCTAssertNil(dumpMap(dracd.map)["127.0.0.4"])
        XCTAssertTrue(c.command("QUIT").hasPrefix("+OK"))
    }
}
