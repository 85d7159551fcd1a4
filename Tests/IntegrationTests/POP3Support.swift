// Fixtures for the drac-pop3d tests: the server, a raw POP3 client, Maildir and mbox writers.
import XCTest
import Foundation
import Glibc

/// A running drac-pop3d with its own directory, configuration, sasldb and log.
final class Pop3dInstance {
    let dir: String
    let process: Background
    var ports: [String: Int] = [:]

    /// `settings` are drac.conf lines added after the defaults (later lines win).
    init(dir: String, settings: [String], listen: String = "pop3:127.0.0.1:0") throws {
        self.dir = dir
        let conf = [
            "pop3d_listen = \(listen)",
            "pop3d_hostname = pop.example.org",
            "pop3d_sasldb_path = \(dir)/sasldb2",
            "pop3d_mail_location = maildir:\(dir)/mail/%d/%n",
            "pop3d_use_drac = no",
            "syslog_facility = local7",
        ] + settings
        try conf.joined(separator: "\n").appending("\n").write(toFile: dir + "/pop3d.conf", atomically: true, encoding: .utf8)
        process = try Background(Env.bin + "/drac-pop3d", ["-v", "-c", dir + "/pop3d.conf"],
                                 logPath: dir + "/pop3d-\(UUID().uuidString.prefix(6)).log")
        guard process.waitForLog("drac-pop3d: ready on") else { throw StartFailure(program: "drac-pop3d", log: process.log) }
        // "ready on pop3 127.0.0.1:41234, pop3s 127.0.0.1:40000"
        let line = process.log.split(separator: "\n").first { $0.contains("ready on") }!
        for item in line.components(separatedBy: "ready on ")[1].components(separatedBy: ", ") {
            let parts = item.split(separator: " ")
            ports[String(parts[0])] = Int(parts[1].split(separator: ":").last!)!
        }
    }

    var port: Int { ports["pop3"]! }
    var log: String { process.log }
    var pid: pid_t { process.pid }
    @discardableResult func stop(_ signal: Int32 = SIGTERM) -> Int32 { process.stop(signal) }
}

/// A POP3 client over a raw socket, for what curl and poplib cannot do (pipelining, dropped
/// connections, exact bytes).
final class POP3Raw {
    let tcp: RawTCP
    var pending: [UInt8] = []

    init?(port: Int, host: String = "127.0.0.1", source: String? = nil) {
        guard let t = RawTCP(port: port, host: host, source: source) else { return nil }
        tcp = t
    }

    func send(_ text: String) { tcp.send(Array(text.utf8)) }

    /// One line without CRLF, or nil when the connection closed or nothing came in time.
    func line(timeout: Double = 10) -> String? {
        guard let bytes = rawLine(timeout: timeout) else { return nil }
        return String(decoding: bytes.prefix(bytes.count - 2), as: UTF8.self)
    }

    /// One line with its CRLF, as octets.
    func rawLine(timeout: Double = 10) -> [UInt8]? {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if let lf = pending.firstIndex(of: 0x0A) {
                let l = Array(pending[...lf])
                pending.removeSubrange(...lf)
                return l
            }
            guard let more = tcp.receive(timeout: 0.2) else { return nil }
            pending += more
        }
        return nil
    }

    /// Sends a command, returns the status line.
    @discardableResult func command(_ line: String) -> String {
        send(line + "\r\n")
        return self.line() ?? "<no reply>"
    }

    /// The body of a multi-line response, exactly as sent (stuffed, CRLFs), up to and
    /// excluding the terminating ".\r\n".
    func multilineBody(timeout: Double = 20) -> [UInt8]? {
        var out: [UInt8] = []
        while let l = rawLine(timeout: timeout) {
            if l == Array(".\r\n".utf8) { return out }
            out += l
        }
        return nil
    }

    func multilineLines() -> [String] {
        guard let b = multilineBody() else { return ["<incomplete>"] }
        return String(decoding: b, as: UTF8.self).components(separatedBy: "\r\n").filter { !$0.isEmpty }
    }

    /// Greeting read and USER/PASS accepted (asserted).
    static func login(port: Int, user: String, password: String, host: String = "127.0.0.1", source: String? = nil,
                      file: StaticString = #filePath, line: UInt = #line) throws -> POP3Raw {
        let c = try XCTUnwrap(POP3Raw(port: port, host: host, source: source), file: file, line: line)
        XCTAssertTrue(c.line()?.hasPrefix("+OK") == true, file: file, line: line)
        XCTAssertTrue(c.command("USER \(user)").hasPrefix("+OK"), file: file, line: line)
        let r = c.command("PASS \(password)")
        XCTAssertTrue(r.hasPrefix("+OK"), r, file: file, line: line)
        return c
    }
}

var deliveryCounter = 0

/// Writes mail the way MDAs do, and reads back what is left.
enum Mailbox {
    /// A Maildir message delivered into new/ (via tmp/, as Postfix does). Returns its file name.
    @discardableResult
    static func deliver(_ message: String, to maildir: String, name: String? = nil) -> String {
        for sub in ["tmp", "new", "cur"] {
            try? FileManager.default.createDirectory(atPath: maildir + "/" + sub, withIntermediateDirectories: true)
        }
        deliveryCounter += 1
        let c = deliveryCounter
        let n = name ?? "\(1_700_000_000 + c).V801I\(c)M\(c * 7).test.example"
        FileManager.default.createFile(atPath: maildir + "/tmp/" + n, contents: Data(message.utf8))
        rename(maildir + "/tmp/" + n, maildir + "/new/" + n)
        return n
    }

    /// Files in new/ and cur/.
    static func files(_ maildir: String) -> [String] {
        let fm = FileManager.default
        return ((try? fm.contentsOfDirectory(atPath: maildir + "/new")) ?? []).map { "new/" + $0 } +
            ((try? fm.contentsOfDirectory(atPath: maildir + "/cur")) ?? []).map { "cur/" + $0 }
    }

    /// A message with `lines` body lines (CRLF or LF line ends).
    static func message(subject: String, body: [String], crlf: Bool = false) -> String {
        let eol = crlf ? "\r\n" : "\n"
        return ["From: sender@example.net", "To: user@example.org", "Subject: \(subject)",
                "Message-ID: <\(subject.replacingOccurrences(of: " ", with: "."))@example.net>", ""]
            .joined(separator: eol) + eol + body.joined(separator: eol) + eol
    }

    /// What RETR must send for a stored message: CRLF lines, dot-stuffed.
    static func expectedRetr(_ stored: String) -> [UInt8] {
        var out: [UInt8] = []
        let lines = stored.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false)
        for (i, l) in lines.enumerated() {
            if i == lines.count - 1 && l.isEmpty { break }
            if l.hasPrefix(".") { out.append(0x2E) }
            out += Array(l.utf8) + [0x0D, 0x0A]
        }
        return out
    }

    /// CRLF size of a stored message (RFC 1939 LIST).
    static func crlfSize(_ stored: String) -> Int {
        let lf = stored.replacingOccurrences(of: "\r\n", with: "\n")
        return lf.utf8.count + lf.utf8.filter { $0 == 0x0A }.count
    }
}
