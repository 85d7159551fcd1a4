// pop3load: a POP3 load generator for Benchmarks/pop3d-bench.sh (drac-pop3d against Dovecot).
// One source file, Foundation/Glibc only, blocking sockets and one thread per client:
//
//   swiftc -O Benchmarks/Pop3Load/main.swift -o pop3load
//
//   pop3load logins --port P [--host 127.0.0.1] --users u1:p1,u2:p2,... --clients N --seconds S
//                   [--sources A.B.C.D/PREFIX] [--timeout T]
//       Each client thread loops connect, greeting, USER, PASS, QUIT (client i logs in as user
//       i, so there must be at least N users) until S seconds have passed. A login's latency runs
//       from connect() to the +OK of QUIT; after that +OK the client waits for the server to
//       close (so the TIME_WAIT is the server's and the client's ports do not run out).
//       --sources: every new connection binds (before connect) to the next address of this IPv4
//       network, round-robin over one counter shared by all clients, so consecutive logins come
//       from different addresses (for a server that does something per client address, such as
//       a DRAC add). With a prefix of 24 or less the .0 and .255 addresses of each /24 are left
//       out (a /16 gives 65,024 addresses). On Linux all of 127.0.0.0/8 is local (routed to lo),
//       so a loopback range needs no configured addresses. The line then also reports
//       sources=<distinct addresses used> and source_range=<the network>.
//   pop3load retr --port P [--host 127.0.0.1] --user U --pass X [--repeat R] [--batch B]
//                 [--expect N] [--timeout T]
//       R sessions (default 3), one after the other, each: CAPA (PIPELINING is required when
//       B > 1), USER, PASS, STAT, LIST, then RETR 1..N, B commands written at a time (default 16:
//       pipelined in batches, RFC 2449 PIPELINING), each response read to its terminating "."
//       line and de-stuffed, and its octet count checked against the LIST size; then QUIT,
//       nothing deleted. The RETR phase is timed from the first RETR written to the last "."
//       line read. The line reports the MEDIAN session (by messages/s); best_* fields give the
//       fastest session.
//
// Every reply must start with +OK: any -ERR, short or malformed reply, size mismatch, closed
// connection or timeout (default 10 s per read) aborts the whole run with a message on stderr
// and exit status 1. Usage errors exit with 2.
//
// Output: one line of key=value pairs on stdout, e.g.
//   logins clients=8 logins=41234 seconds=5.00 rate=8246.8/s p50=0.912ms p99=2.310ms max=9.100ms cpu=1.21s cpu_share=24%
//          [sources=41234 source_range=127.11.0.0/16]
//   retr messages=1000 octets=10342000 response_octets=10358123 statistic=median sessions=3 batch=16
//        rate=9012.3msg/s mb_rate=93.35MB/s open_ms=4.10 best_rate=9100.2msg/s best_mb_rate=94.26MB/s cpu=0.31s cpu_share=30%
// MB is 10^6 octets; mb_rate counts every octet of the RETR responses (status lines, stuffed
// dots and terminators included); octets is the sum of the de-stuffed messages (= LIST sizes).
// cpu is this process's own user+system CPU time over the whole run, cpu_share that time over
// the wall-clock time (100% = one core busy).
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// MARK: helpers

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func writeStderr(_ s: String) {
    FileHandle.standardError.write(Data(s.utf8))
}

/// Aborts the whole run: a benchmark figure from a server that errs is no figure.
func fail(_ message: String) -> Never {
    writeStderr("pop3load: \(message)\n")
    exit(1)
}

func usage(_ message: String? = nil) -> Never {
    if let message { writeStderr("pop3load: \(message)\n") }
    writeStderr("""
    usage: pop3load logins --port P [--host H] --users u1:p1,u2:p2,... --clients N --seconds S
                           [--sources A.B.C.D/PREFIX] [--timeout T]
           pop3load retr --port P [--host H] --user U --pass X [--repeat R] [--batch B] [--expect N] [--timeout T]

    """)
    exit(2)
}

/// Nearest-rank percentile of sorted values.
func percentile(_ sorted: [Double], _ q: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let rank = Int((q * Double(sorted.count)).rounded(.up))
    return sorted[min(max(rank, 1), sorted.count) - 1]
}

func fmt(_ v: Double, _ digits: Int) -> String {
    v.isNaN ? "nan" : String(format: "%.\(digits)f", v)
}

/// This process's user + system CPU seconds so far.
func cpuSeconds() -> Double {
    var ru = rusage()
    getrusage(RUSAGE_SELF.rawValue, &ru)
    func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return s(ru.ru_utime) + s(ru.ru_stime)
}

func parseOptions(_ args: ArraySlice<String>, allowed: Set<String>) -> [String: String] {
    var out: [String: String] = [:]
    var i = args.startIndex
    while i < args.endIndex {
        let a = args[i]
        guard a.hasPrefix("--"), allowed.contains(String(a.dropFirst(2))) else { usage("unknown option \(a)") }
        guard i + 1 < args.endIndex else { usage("\(a) needs a value") }
        out[String(a.dropFirst(2))] = args[i + 1]
        i += 2
    }
    return out
}

func intOption(_ o: [String: String], _ key: String, default d: Int? = nil, min: Int = 1) -> Int {
    guard let s = o[key] else {
        if let d { return d }
        usage("--\(key) is required")
    }
    guard let v = Int(s), v >= min else { usage("--\(key): expected a number >= \(min), got '\(s)'") }
    return v
}

// MARK: the server's address

/// A parsed IPv4 or IPv6 literal and port, reused by every connect.
struct Endpoint {
    var storage = sockaddr_storage()
    var length: socklen_t = 0
    var family: Int32 = 0
    let text: String

    init(host: String, port: Int) {
        text = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        guard (1...65535).contains(port) else { usage("--port: expected 1 to 65535") }
        var v4 = sockaddr_in()
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET, host, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeBytes(of: v4) { src in
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) }
            }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
            family = AF_INET
        } else if inet_pton(AF_INET6, host, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeBytes(of: v6) { src in
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) }
            }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            family = AF_INET6
        } else {
            usage("--host: expected an IPv4 or IPv6 address, got '\(host)'")
        }
    }
}

// MARK: client source addresses (--sources)

/// An IPv4 network whose addresses are handed out round-robin, one per new connection, from one
/// counter shared by every client thread.
final class SourcePool: Sendable {
    let network: UInt32     // host order
    let prefix: Int
    let usable: Int         // addresses handed out (.0 and .255 of each /24 left out for prefix <= 24)
    let text: String
    private let counter = Atomic<Int>(0)

    init(_ spec: String) {
        let parts = spec.split(separator: "/", omittingEmptySubsequences: false)
        var a = in_addr()
        guard parts.count == 2, let p = Int(parts[1]), (0...32).contains(p),
              inet_pton(AF_INET, String(parts[0]), &a) == 1 else {
            usage("--sources: expected an IPv4 network A.B.C.D/PREFIX such as 127.1.0.0/16, got '\(spec)'")
        }
        let n = UInt32(bigEndian: a.s_addr)
        let mask: UInt32 = p == 0 ? 0 : ~UInt32(0) << UInt32(32 - p)
        guard n & ~mask == 0 else { usage("--sources: \(spec) has bits set outside the /\(p) prefix") }
        network = n
        prefix = p
        let size = 1 << (32 - p)
        usable = p <= 24 ? size / 256 * 254 : size
        text = spec
    }

    /// The i-th usable address (0 <= i < usable), host order.
    func address(_ i: Int) -> UInt32 {
        if prefix <= 24 { return network &+ UInt32((i / 254) * 256 + 1 + i % 254) }
        return network &+ UInt32(i)
    }

    /// The next address, round-robin.
    func take() -> UInt32 {
        address(counter.wrappingAdd(1, ordering: .relaxed).oldValue % usable)
    }

    /// Connections that took an address so far.
    var taken: Int { counter.load(ordering: .relaxed) }

    static func text(_ a: UInt32) -> String {
        "\(a >> 24).\((a >> 16) & 255).\((a >> 8) & 255).\(a & 255)"
    }
}

// MARK: one blocking connection with a line reader

final class Connection {
    let fd: Int32
    let label: String
    private let capacity = 1 << 18
    private let buf: UnsafeMutablePointer<UInt8>
    private var start = 0
    private var end = 0
    /// Every octet read from the server, for the response-octet count.
    var received = 0

    /// source: an IPv4 address (host order) to bind to before connecting.
    init(_ ep: Endpoint, timeout: Int, label: String, source: UInt32? = nil) {
        self.label = label
        let s = socket(ep.family, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { fail("\(label): socket: \(String(cString: strerror(errno)))") }
        if let source {
            // IP_BIND_ADDRESS_NO_PORT (24): the port is chosen at connect(), for the whole
            // 4-tuple, instead of at bind() from the ports free on that address alone.
            var one: Int32 = 1
            setsockopt(s, Int32(IPPROTO_IP), 24, &one, socklen_t(MemoryLayout<Int32>.size))
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_addr.s_addr = source.bigEndian
            let rc = withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard rc == 0 else { fail("\(label): bind to \(SourcePool.text(source)): \(String(cString: strerror(errno)))") }
        }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = ep.storage
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, ep.length) }
        }
        guard rc == 0 else { fail("\(label): connect to \(ep.text): \(String(cString: strerror(errno)))") }
        fd = s
        buf = .allocate(capacity: capacity)
    }

    deinit {
        close(fd)
        buf.deallocate()
    }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { fail("\(label): write: \(String(cString: strerror(errno)))") }
            off += n
        }
    }

    /// Reads more octets after the buffered ones; false on EOF.
    private func fill(_ what: String) -> Bool {
        if start > 0 && (end == capacity || start >= capacity / 2) {
            if end > start { memmove(buf, buf + start, end - start) }
            end -= start
            start = 0
        }
        guard end < capacity else { fail("\(label): a line of more than \(capacity) octets while reading \(what)") }
        while true {
            let n = recv(fd, buf + end, capacity - end, 0)
            if n > 0 {
                end += n
                received += n
                return true
            }
            if n == 0 { return false }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { fail("\(label): timed out waiting for \(what)") }
            fail("\(label): read (\(what)): \(String(cString: strerror(errno)))")
        }
    }

    /// The next line without its CRLF, as a pointer into the buffer (valid until the next read)
    /// and a length. Lines must end with CRLF (RFC 1939 §3).
    @inline(__always)
    func line(_ what: String) -> (UnsafeMutablePointer<UInt8>, Int) {
        while true {
            if end > start, let lf = memchr(buf + start, 0x0A, end - start) {
                let p = buf + start
                let lfIndex = lf.assumingMemoryBound(to: UInt8.self) - p
                guard lfIndex >= 1 && p[lfIndex - 1] == 0x0D else {
                    fail("\(label): a line without CRLF while reading \(what): \(String(decoding: UnsafeBufferPointer(start: p, count: lfIndex), as: UTF8.self).prefix(120))")
                }
                start += lfIndex + 1
                return (p, lfIndex - 1)
            }
            guard fill(what) else { fail("\(label): the server closed the connection while we waited for \(what)") }
        }
    }

    func lineString(_ what: String) -> String {
        let (p, n) = line(what)
        return String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self)
    }

    /// A status line that must be +OK; returns its text.
    @discardableResult
    func ok(_ what: String) -> String {
        let s = lineString(what)
        guard s.hasPrefix("+OK") else { fail("\(label): \(what): expected +OK, got: \(s.prefix(200))") }
        return s
    }

    /// The multi-line body after a +OK, without the terminating "." line, de-stuffed.
    func multiline(_ what: String) -> [String] {
        var out: [String] = []
        while true {
            let (p, n) = line(what)
            if n == 1 && p[0] == 0x2E { return out }
            let skip = (n > 0 && p[0] == 0x2E) ? 1 : 0
            out.append(String(decoding: UnsafeBufferPointer(start: p + skip, count: n - skip), as: UTF8.self))
        }
    }

    /// After QUIT's +OK: the server closes (RFC 1939 §6). Waits for the EOF so the server is the
    /// side that closes first.
    func awaitClose(_ what: String) {
        if end > start { fail("\(label): unexpected data after \(what)") }
        start = 0; end = 0
        if fill("the server to close after \(what)") { fail("\(label): unexpected data after \(what)") }
    }

    // The RETR reader: counts de-stuffed octets (each line + CRLF) up to the "." line.
    @inline(__always)
    func retrBody(_ what: String) -> Int {
        var octets = 0
        while true {
            // Scan whole buffered lines without leaving the loop.
            if end > start, let lf = memchr(buf + start, 0x0A, end - start) {
                let p = buf + start
                let lfIndex = lf.assumingMemoryBound(to: UInt8.self) - p
                guard lfIndex >= 1 && p[lfIndex - 1] == 0x0D else {
                    fail("\(label): a line without CRLF in \(what)")
                }
                let n = lfIndex - 1
                start += lfIndex + 1
                if n > 0 && p[0] == 0x2E {
                    if n == 1 { return octets }
                    octets += n - 1 + 2
                } else {
                    octets += n + 2
                }
                continue
            }
            guard fill(what) else { fail("\(label): the server closed the connection in \(what)") }
        }
    }
}

// MARK: logins

/// One client's figures; written only by its own thread, read after every thread has joined.
final class ClientResult {
    var logins = 0
    var latencies: [Double] = []
    var finished = 0.0
}

func runLogins(_ o: [String: String]) {
    let ep = Endpoint(host: o["host"] ?? "127.0.0.1", port: intOption(o, "port"))
    let clients = intOption(o, "clients")
    let seconds = Double(o["seconds"] ?? "") ?? 0
    guard seconds > 0 else { usage("--seconds: expected a positive number") }
    let timeout = intOption(o, "timeout", default: 10)
    guard let usersText = o["users"] else { usage("--users is required") }
    let users: [(String, String)] = usersText.split(separator: ",").map { item in
        guard let c = item.firstIndex(of: ":") else { usage("--users: expected user:password, got '\(item)'") }
        return (String(item[..<c]), String(item[item.index(after: c)...]))
    }
    guard users.count >= clients else {
        usage("--users: \(clients) clients need \(clients) different users (a maildrop takes one session at a time), got \(users.count)")
    }
    let sources = o["sources"].map(SourcePool.init)
    if sources != nil && ep.family != AF_INET { usage("--sources needs an IPv4 --host") }

    let results = (0..<clients).map { _ -> ClientResult in
        let r = ClientResult()
        r.latencies.reserveCapacity(Int(seconds * 20_000))
        return r
    }
    let cpu0 = cpuSeconds()
    let group = DispatchGroup()
    let go = DispatchSemaphore(value: 0)
    let t0 = monotonicSeconds() + 0.05
    let deadline = t0 + seconds
    for i in 0..<clients {
        let (user, pass) = users[i]
        let r = results[i]
        group.enter()
        let t = Thread {
            go.wait()
            let userCmd = "USER \(user)\r\n", passCmd = "PASS \(pass)\r\n"
            while monotonicSeconds() < deadline {
                let begin = monotonicSeconds()
                let source = sources?.take()
                let label = "client \(i + 1) (\(user))\(source.map { " from \(SourcePool.text($0))" } ?? ""), login \(r.logins + 1)"
                let c = Connection(ep, timeout: timeout, label: label, source: source)
                c.ok("the greeting")
                c.send(userCmd)
                c.ok("the reply to USER")
                c.send(passCmd)
                c.ok("the reply to PASS")
                c.send("QUIT\r\n")
                c.ok("the reply to QUIT")
                let done = monotonicSeconds()
                c.awaitClose("QUIT")
                r.latencies.append(done - begin)
                r.logins += 1
            }
            r.finished = monotonicSeconds()
            group.leave()
        }
        t.stackSize = 1 << 20
        t.start()
    }
    while monotonicSeconds() < t0 { usleep(1000) }
    for _ in 0..<clients { go.signal() }
    group.wait()
    let wall = (results.map(\.finished).max() ?? t0) - t0
    let cpu = cpuSeconds() - cpu0
    let total = results.reduce(0) { $0 + $1.logins }
    let all = results.flatMap(\.latencies).sorted()
    let ms = { (v: Double) in fmt(v * 1000, 3) + "ms" }
    print("logins clients=\(clients) logins=\(total) seconds=\(fmt(wall, 2)) rate=\(fmt(Double(total) / wall, 1))/s"
          + " p50=\(ms(percentile(all, 0.50))) p99=\(ms(percentile(all, 0.99))) max=\(ms(all.last ?? .nan))"
          + " cpu=\(fmt(cpu, 2))s cpu_share=\(fmt(100 * cpu / wall, 0))%"
          + (sources.map { " sources=\(min($0.taken, $0.usable)) source_range=\($0.text)" } ?? ""))
}

// MARK: RETR

struct Session {
    var rate: Double        // messages/s in the RETR phase
    var mbRate: Double      // 10^6 response octets/s in the RETR phase
    var openMs: Double      // connect to the end of LIST
    var messages: Int
    var octets: Int         // de-stuffed, = the LIST sizes
    var responseOctets: Int // everything RETR's responses took on the wire
}

func retrSession(_ ep: Endpoint, user: String, pass: String, batch: Int, expect: Int?, timeout: Int, label: String) -> Session {
    let begin = monotonicSeconds()
    let c = Connection(ep, timeout: timeout, label: label)
    c.ok("the greeting")
    if batch > 1 {
        c.send("CAPA\r\n")
        c.ok("the reply to CAPA")
        let caps = c.multiline("CAPA's capability list")
        guard caps.contains(where: { $0.uppercased() == "PIPELINING" }) else {
            fail("\(label): the server does not announce PIPELINING in CAPA; run with --batch 1")
        }
    }
    c.send("USER \(user)\r\n")
    c.ok("the reply to USER")
    c.send("PASS \(pass)\r\n")
    c.ok("the reply to PASS")
    c.send("STAT\r\n")
    let stat = c.ok("the reply to STAT").split(separator: " ")
    guard stat.count >= 3, let count = Int(stat[1]), let total = Int(stat[2]) else { fail("\(label): malformed STAT reply") }
    if let expect, count != expect { fail("\(label): STAT says \(count) messages, expected \(expect)") }
    guard count > 0 else { fail("\(label): the maildrop is empty") }
    c.send("LIST\r\n")
    c.ok("the reply to LIST")
    var sizes = [Int](repeating: -1, count: count + 1)
    for l in c.multiline("LIST's scan listing") {
        let f = l.split(separator: " ")
        guard f.count >= 2, let n = Int(f[0]), let s = Int(f[1]), n >= 1, n <= count, sizes[n] < 0 else {
            fail("\(label): malformed or duplicate LIST line: \(l)")
        }
        sizes[n] = s
    }
    guard !sizes.dropFirst().contains(-1) else { fail("\(label): LIST did not list every message") }
    let listed = sizes.dropFirst().reduce(0, +)
    guard listed == total else { fail("\(label): LIST sizes add up to \(listed), STAT says \(total)") }
    let opened = monotonicSeconds()

    let received0 = c.received
    let t0 = monotonicSeconds()
    var n = 1
    var octets = 0
    while n <= count {
        let last = min(n + batch - 1, count)
        var cmds = ""
        for k in n...last { cmds += "RETR \(k)\r\n" }
        c.send(cmds)
        for k in n...last {
            c.ok("the reply to RETR \(k)")
            let got = c.retrBody("RETR \(k)'s message")
            guard got == sizes[k] else {
                fail("\(label): RETR \(k) gave \(got) octets after de-stuffing, LIST said \(sizes[k])")
            }
            octets += got
        }
        n = last + 1
    }
    let t1 = monotonicSeconds()
    // Octets already buffered past the last "." line (none: nothing was sent after the batch).
    let responseOctets = c.received - received0
    c.send("QUIT\r\n")
    c.ok("the reply to QUIT")
    c.awaitClose("QUIT")
    let dt = t1 - t0
    return Session(rate: Double(count) / dt, mbRate: Double(responseOctets) / dt / 1e6,
                   openMs: (opened - begin) * 1000, messages: count, octets: octets, responseOctets: responseOctets)
}

func runRetr(_ o: [String: String]) {
    let ep = Endpoint(host: o["host"] ?? "127.0.0.1", port: intOption(o, "port"))
    guard let user = o["user"], let pass = o["pass"] else { usage("--user and --pass are required") }
    let repeats = intOption(o, "repeat", default: 3)
    let batch = intOption(o, "batch", default: 16)
    let expect = o["expect"].map { _ in intOption(o, "expect") }
    let timeout = intOption(o, "timeout", default: 10)
    let cpu0 = cpuSeconds()
    let w0 = monotonicSeconds()
    var sessions: [Session] = []
    for r in 1...repeats {
        sessions.append(retrSession(ep, user: user, pass: pass, batch: batch, expect: expect, timeout: timeout,
                                    label: "retr session \(r) (\(user))"))
    }
    let wall = monotonicSeconds() - w0
    let cpu = cpuSeconds() - cpu0
    let sorted = sessions.sorted { $0.rate < $1.rate }
    let median = sorted[sorted.count / 2]   // the middle one (the upper middle for an even count)
    let best = sorted.last!
    print("retr messages=\(median.messages) octets=\(median.octets) response_octets=\(median.responseOctets)"
          + " statistic=median sessions=\(repeats) batch=\(batch)"
          + " rate=\(fmt(median.rate, 1))msg/s mb_rate=\(fmt(median.mbRate, 2))MB/s open_ms=\(fmt(median.openMs, 2))"
          + " best_rate=\(fmt(best.rate, 1))msg/s best_mb_rate=\(fmt(best.mbRate, 2))MB/s"
          + " cpu=\(fmt(cpu, 2))s cpu_share=\(fmt(100 * cpu / wall, 0))%")
}

// MARK: main

signal(SIGPIPE, SIG_IGN)
let args = CommandLine.arguments
guard args.count >= 2 else { usage() }
switch args[1] {
case "logins":
    runLogins(parseOptions(args.dropFirst(2), allowed: ["port", "host", "users", "clients", "seconds", "sources", "timeout"]))
case "retr":
    runRetr(parseOptions(args.dropFirst(2), allowed: ["port", "host", "user", "pass", "repeat", "batch", "expect", "timeout"]))
default:
    usage("unknown mode \(args[1])")
}
