// Fixtures for drac-smtpd tests: the gateway, smtp-sink and Postfix backends, SMTP clients.
import DRACCore
import Foundation
import Glibc
import XCTest

/// A free TCP port on 127.0.0.1 (bind to 0, read it, close).
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: a.sin_port))
}

/// Postfix's smtp-sink: accepts everything, writes each message to `dir/mail/`.
final class SmtpSink {
    let process: Background
    let port: Int
    let mailDir: String

    /// `extra`: smtp-sink options such as `-w 5` (delay) or `-R` (reject).
    init(dir: String, extra: [String] = []) throws {
        port = freePort()
        mailDir = dir + "/sink-\(port)"
        try FileManager.default.createDirectory(atPath: mailDir, withIntermediateDirectories: true)
        chmod(mailDir, 0o777)
        process = try Background("/usr/sbin/smtp-sink", ["-u", "nobody", "-d", mailDir + "/%M."] + extra + ["127.0.0.1:\(port)", "256"],
                                 logPath: dir + "/sink-\(port).log")
        guard eventually(10, { RawTCP(port: port) != nil }) else { throw StartFailure(program: "smtp-sink", log: process.log) }
    }

    /// The messages received so far, as smtp-sink wrote them (its X- headers first).
    var messages: [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: mailDir)) ?? []
        return files.sorted().compactMap { try? String(contentsOfFile: mailDir + "/" + $0, encoding: .utf8) }
    }

    func stop() { process.stop() }
}

/// A private Postfix instance on 127.0.0.1:port that accepts mail from loopback and discards it
/// after all smtpd checks, with XFORWARD allowed from loopback (INTEROP.md section 3).
final class PostfixBackend {
    let dir: String
    let port: Int
    var logFile: String { dir + "/maillog" }

    init(dir base: String, extraMain: [String] = []) throws {
        dir = base + "/postfix"
        port = freePort()
        let fm = FileManager.default
        for d in ["", "/queue", "/data"] { try fm.createDirectory(atPath: dir + d, withIntermediateDirectories: true) }
        // master creates its lock file in data_directory as the postfix user.
        if let pw = getpwnam("postfix") { chown(dir + "/data", pw.pointee.pw_uid, pw.pointee.pw_gid) }
        let main = [
            "compatibility_level = 3.6",
            "queue_directory = \(dir)/queue",
            "data_directory = \(dir)/data",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            "myhostname = backend.example.org",
            "mydestination =",
            "default_transport = discard:",
            "smtpd_authorized_xforward_hosts = 127.0.0.0/8",
            "maillog_file = \(dir)/maillog",
            "maillog_file_prefixes = \(dir)",
            "smtputf8_enable = no",
            "master_service_disable =",
            "alias_maps =",
            "alias_database =",
        ] + extraMain
        try main.joined(separator: "\n").appending("\n").write(toFile: dir + "/main.cf", atomically: true, encoding: .utf8)
        let master = """
        127.0.0.1:\(port) inet n - n - - smtpd
        pickup    unix  n       -       n       60      1       pickup
        cleanup   unix  n       -       n       -       0       cleanup
        qmgr      unix  n       -       n       300     1       qmgr
        rewrite   unix  -       -       n       -       -       trivial-rewrite
        bounce    unix  -       -       n       -       0       bounce
        defer     unix  -       -       n       -       0       bounce
        trace     unix  -       -       n       -       0       bounce
        verify    unix  -       -       n       -       1       verify
        flush     unix  n       -       n       1000?   0       flush
        proxymap  unix  -       -       n       -       -       proxymap
        smtp      unix  -       -       n       -       -       smtp
        relay     unix  -       -       n       -       -       smtp
        showq     unix  n       -       n       -       -       showq
        error     unix  -       -       n       -       -       error
        retry     unix  -       -       n       -       -       error
        discard   unix  -       -       n       -       -       discard
        local     unix  -       n       n       -       -       local
        anvil     unix  -       -       n       -       1       anvil
        scache    unix  -       -       n       -       1       scache
        postlog   unix-dgram n  -       n       -       1       postlogd

        """
        try master.write(toFile: dir + "/master.cf", atomically: true, encoding: .utf8)
        let r = runCommand("script", ["-qc", "postfix -c \(dir) start", "/dev/null"], timeout: 60)
        guard eventually(20, { RawTCP(port: port) != nil }) else {
            throw StartFailure(program: "postfix", log: r.output + ((try? String(contentsOfFile: dir + "/maillog", encoding: .utf8)) ?? ""))
        }
    }

    var log: String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }

    func stop() { _ = runCommand("postfix", ["-c", dir, "stop"], timeout: 60) }
}

/// drac-smtpd started with a drac.conf written for the test; listeners on port 0.
final class SmtpdInstance {
    let dir: String
    let process: Background
    var ports: [String: Int] = [:]
    var confPath: String { dir + "/smtpd.conf" }

    init(dir: String, backendPort: Int, settings: [String], listen: String = "smtp:127.0.0.1:0, submission:127.0.0.1:0") throws {
        self.dir = dir
        let conf = [
            "map_file = \(dir)/dracd.db",
            "smtpd_listen = \(listen)",
            "smtpd_backend = 127.0.0.1:\(backendPort)",
            "smtpd_hostname = gw.example.org",
            "smtpd_sasldb_path = \(dir)/sasldb2",
        ] + settings
        try conf.joined(separator: "\n").appending("\n").write(toFile: dir + "/smtpd.conf", atomically: true, encoding: .utf8)
        process = try Background(Env.bin + "/drac-smtpd", ["-v", "-c", dir + "/smtpd.conf"], logPath: dir + "/smtpd-\(UUID().uuidString.prefix(6)).log")
        guard process.waitForLog("drac-smtpd: ready on") else { throw StartFailure(program: "drac-smtpd", log: process.log) }
        // "ready on smtp 127.0.0.1:41234, submission 127.0.0.1:40000"
        let line = process.log.split(separator: "\n").first { $0.contains("ready on") }!
        for item in line.components(separatedBy: "ready on ")[1].components(separatedBy: ", ") {
            let parts = item.split(separator: " ")
            ports[String(parts[0])] = Int(parts[1].split(separator: ":").last!)!
        }
    }

    var port: Int { ports["smtp"]! }
    var log: String { process.log }
    @discardableResult func stop(_ signal: Int32 = SIGTERM) -> Int32 { process.stop(signal) }
}

/// Creates a sasldb with the given users (all in realm example.org).
func makeSASLDB(_ path: String, users: [String: String]) {
    for (user, password) in users {
        let r = runCommand("sh", ["-c", "printf %s \"$1\" | saslpasswd2 -c -p -f \"$2\" -u example.org \"$3\"", "sh", password, path, user])
        XCTAssertEqual(r.status, 0, r.output)
    }
}

/// A self-signed certificate and key for gw.example.org.
func makeCertificate(dir: String) -> (cert: String, key: String) {
    let cert = dir + "/cert.pem", key = dir + "/key.pem"
    let r = runCommand("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=gw.example.org",
                                   "-keyout", key, "-out", cert], timeout: 60)
    XCTAssertEqual(r.status, 0, r.output)
    return (cert, key)
}

/// An SMTP client over a raw socket, for the transcripts real clients cannot produce
/// (pipelining, smuggling, injection, garbage).
final class SMTPClient {
    let tcp: RawTCP
    var pending: [UInt8] = []

    init?(port: Int, source: String = "127.0.0.1") {
        guard let t = RawTCP(port: port, source: source) else { return nil }
        tcp = t
    }

    func send(_ text: String) { tcp.send(Array(text.utf8)) }

    /// One reply (all its lines), or nil when the connection closed or nothing came in time.
    func reply(timeout: Double = 10) -> (code: Int, text: String)? {
        var lines: [String] = []
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if let lf = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[..<lf], as: UTF8.self).trimmingCharacters(in: .newlines)
                pending.removeSubrange(...lf)
                lines.append(line)
                let u = Array(line.utf8)
                if u.count >= 4 && u[3] == UInt8(ascii: "-") { continue }
                return (Int(line.prefix(3)) ?? 0, lines.joined(separator: "\n"))
            }
            guard let more = tcp.receive(timeout: 0.2) else { return nil }
            pending += more
        }
        return nil
    }

    /// Sends a command and returns its reply code.
    @discardableResult func command(_ line: String) -> (code: Int, text: String) {
        send(line + "\r\n")
        return reply() ?? (0, "<no reply>")
    }
}

/// A raw client that has read the greeting and said EHLO (each step asserted).
func ehloClient(port: Int, source: String, file: StaticString = #filePath, line: UInt = #line) throws -> SMTPClient {
    let c = try XCTUnwrap(SMTPClient(port: port, source: source), file: file, line: line)
    XCTAssertEqual(c.reply()?.code, 220, file: file, line: line)
    XCTAssertEqual(c.command("EHLO client.test").code, 250, file: file, line: line)
    return c
}

/// An empty map, created the way it is in production: rpc.dracd (no rpcbind) starts and stops.
func createMap(in dir: String) throws {
    let d = try DracdInstance(dir: dir, args: ["-o", "rpcbind=no", "-o", "listen=127.0.0.1", "-a", dir + "/none.allow"])
    _ = d.stop()
}

/// swaks with the usual test options; returns its result (exit 0 = the message was accepted).
func swaks(_ port: Int, _ args: [String], source: String = "127.0.0.1") -> CommandResult {
    runCommand("swaks", ["--server", "127.0.0.1:\(port)", "--local-interface", source, "--timeout", "20", "--hide-informational"] + args, timeout: 60)
}

// MARK: - Helpers for SmtpdAuthTLSTests, SmtpdLimitsTests, SmtpdBackendTests

/// Runs a Python 3 script (`python3 -c SCRIPT ARGS...`); tests read what it prints.
func python3(_ script: String, _ args: [String] = [], timeout: Double = 60) -> CommandResult {
    runCommand("python3", ["-c", script] + args, timeout: timeout)
}

/// swaks against any server address (IPv6 too), without the 127.0.0.1 default of `swaks()`.
func swaksTo(_ host: String, _ port: Int, _ args: [String], source: String? = nil) -> CommandResult {
    runCommand("swaks", ["--server", host, "--port", String(port), "--timeout", "20", "--hide-informational"]
               + (source.map { ["--local-interface", $0] } ?? []) + args, timeout: 60)
}

/// The base64 of a string (SASL responses as a client sends them).
func base64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }

extension SMTPClient {
    /// Every reply until the peer closes the connection or `timeout` passes; `closed` says which.
    func repliesUntilClosed(timeout: Double) -> (replies: [(code: Int, text: String)], closed: Bool) {
        var out: [(code: Int, text: String)] = []
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if let r = reply(timeout: max(0.1, end.timeIntervalSinceNow)) { out.append(r); continue }
            // nil: closed, or nothing in time. A closed socket reads as nil at once.
            guard let more = tcp.receive(timeout: 0.05) else { return (out, true) }
            pending += more
        }
        return (out, false)
    }

    /// What arrives within `timeout` without waiting for a complete reply (buffered octets first).
    func pendingText(timeout: Double) -> String {
        var all = pending
        pending = []
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            guard let more = tcp.receive(timeout: 0.1) else { break }
            all += more
        }
        return String(decoding: all, as: UTF8.self)
    }
}

extension SmtpSink {
    /// Messages with content: smtp-sink opens its dump file at DATA and removes it only when it
    /// notices that the transaction was aborted, so an empty file may be seen for a moment.
    var delivered: [String] { messages.filter { !$0.isEmpty } }
}

extension SmtpSink {
    /// True once exactly `n` messages with content are there (an aborted transaction's partial
    /// dump file goes away when smtp-sink notices the abort).
    func settles(at n: Int, within timeout: Double = 3) -> Bool {
        eventually(timeout) { delivered.count == n }
    }
}
