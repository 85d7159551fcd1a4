// The DRAC client (DRAC's `dracauth`): add an address to one or more rpc.dracd servers.
import DRACCore
import Foundation
import Glibc

/// Why an add to one server did not succeed.
public enum DRACClientError: Error, Equatable, Sendable, CustomStringConvertible {
    case badServerName(String)
    case resolve(String)
    case notRegistered
    case rpcbind(String)
    case timeout
    case network(String)
    case rpc(String)

    public var description: String {
        switch self {
        case .badServerName(let s): return "bad server name '\(s)'"
        case .resolve(let m): return "cannot resolve: \(m)"
        case .notRegistered: return "DRAC program 900101 is not registered with rpcbind there"
        case .rpcbind(let m): return "rpcbind: \(m)"
        case .timeout: return "timed out"
        case .network(let m): return m
        case .rpc(let m): return m
        }
    }
}

/// A server as written in drac.conf or on a command line: `host`, `host:port`, `[v6]:port`,
/// or a bare IPv6 address. Without a port the DRAC port is found through rpcbind.
public struct DRACServerName: Equatable, Sendable {
    public var host: String
    public var port: Int?

    public init(host: String, port: Int?) {
        self.host = host
        self.port = port
    }

    public init?(_ text: String) {
        guard !text.isEmpty, text.utf8.count <= 255 else { return nil }
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.isEmpty { port = nil } else {
                guard rest.first == ":", let p = Int(rest.dropFirst()), (1...65535).contains(p) else { return nil }
                port = p
            }
        } else if text.filter({ $0 == ":" }).count == 1 {
            let parts = text.split(separator: ":")
            guard parts.count == 2, let p = Int(parts[1]), (1...65535).contains(p) else { return nil }
            host = String(parts[0]); port = p
        } else {
            host = text; port = nil
        }
        guard !host.isEmpty else { return nil }
    }
}

public enum DRACClient {
    public enum Transport: String, Sendable { case udp, tcp }

    public struct Outcome: Sendable {
        public var server: String
        public var result: Result<AddStatus, DRACClientError>
        public var succeeded: Bool { if case .success(.success) = result { return true } else { return false } }
    }

    /// Adds `address` to every server at once and returns one outcome per server, in order.
    /// Returns by `timeout` (seconds) whatever the servers do; a server still busy then is
    /// reported as timed out. IPv4 (and IPv4-mapped) addresses go as v1, IPv6 as v2.
    public static func add(_ address: IPAddress, servers: [String], transport: Transport = .udp,
                           timeout: Double, sourceAddress: IPAddress? = nil) async -> [Outcome] {
        await withCheckedContinuation { cont in
            let t = Thread {
                cont.resume(returning: addBlocking(address, servers: servers, transport: transport, timeout: timeout, sourceAddress: sourceAddress))
            }
            t.start()
        }
    }

    /// The same, blocking the calling thread at most `timeout` seconds.
    public static func addBlocking(_ address: IPAddress, servers: [String], transport: Transport = .udp,
                                   timeout: Double, sourceAddress: IPAddress? = nil) -> [Outcome] {
        let deadline = monotonicSeconds() + timeout
        let box = OutcomeBox(count: servers.count)
        for (i, server) in servers.enumerated() {
            let t = Thread {
                let r = addOne(address.unmapped, server: server, transport: transport, deadline: deadline, sourceAddress: sourceAddress)
                box.set(i, r)
            }
            t.start()
        }
        let results = box.wait(until: deadline + 0.05)
        return servers.enumerated().map { i, s in Outcome(server: s, result: results[i] ?? .failure(.timeout)) }
    }

    static func addOne(_ address: IPAddress, server: String, transport: Transport, deadline: Double,
                       sourceAddress: IPAddress?) -> Result<AddStatus, DRACClientError> {
        guard let name = DRACServerName(server) else { return .failure(.badServerName(server)) }
        let candidates: [IPAddress]
        switch resolve(name.host) {
        case .success(let c): candidates = c
        case .failure(let e): return .failure(e)
        }
        let (version, args) = DRACCodec.encodeAddArguments(address)
        var lastError = DRACClientError.resolve("no addresses for \(name.host)")
        for candidate in candidates {
            if let src = sourceAddress, src.isV4 != candidate.unmapped.isV4 { continue }
            let port: Int
            if let p = name.port {
                port = p
            } else {
                switch rpcbindLookup(candidate, version: version, transport: transport, deadline: deadline) {
                case .success(let p): port = p
                case .failure(let e): lastError = e; continue
                }
            }
            let xid = UInt32.random(in: 1...UInt32.max)
            let call = DRACCodec.encodeCall(xid: xid, program: DRACProgram.number, version: version, procedure: DRACProgram.procAdd, arguments: args)
            let reply = transport == .udp
                ? udpCall(call, xid: xid, to: candidate, port: port, deadline: deadline, source: sourceAddress)
                : tcpCall(call, xid: xid, to: candidate, port: port, deadline: deadline, source: sourceAddress)
            switch reply {
            case .success(let results):
                var r = XDRReader(results)
                guard let v = try? r.uint32(), r.remaining == 0 else { return .failure(.rpc("malformed ADD result")) }
                return .success(AddStatus(rawValue: Int32(bitPattern: v)) ?? .unknown)
            case .failure(let e):
                if e == .timeout { return .failure(e) }
                lastError = e
            }
        }
        return .failure(lastError)
    }

    // MARK: rpcbind (RFC 1833): RPCBPROC_GETADDR, version 3

    static func rpcbindLookup(_ host: IPAddress, version: UInt32, transport: Transport, deadline: Double) -> Result<Int, DRACClientError> {
        let netid = transport.rawValue + (host.unmapped.isV4 ? "" : "6")
        var w = XDRWriter()
        w.uint32(DRACProgram.number); w.uint32(version)
        w.string(netid); w.string(""); w.string("")
        let xid = UInt32.random(in: 1...UInt32.max)
        let call = DRACCodec.encodeCall(xid: xid, program: 100000, version: 3, procedure: 3, arguments: w.bytes)
        switch udpCall(call, xid: xid, to: host, port: 111, deadline: deadline, source: nil) {
        case .failure(.timeout): return .failure(.rpcbind("no answer from rpcbind on \(host)"))
        case .failure(let e): return .failure(.rpcbind("\(e)"))
        case .success(let results):
            var r = XDRReader(results)
            guard let uaddr = try? r.opaque(max: 128), let text = String(bytes: uaddr, encoding: .utf8) else {
                return .failure(.rpcbind("malformed GETADDR reply"))
            }
            if text.isEmpty { return .failure(.notRegistered) }
            // Universal address: the host, then the port as two decimal bytes (`h.h.h.h.p1.p2`).
            let parts = text.split(separator: ".")
            guard parts.count >= 3, let hi = Int(parts[parts.count - 2]), let lo = Int(parts[parts.count - 1]),
                  (0...255).contains(hi), (0...255).contains(lo), hi * 256 + lo > 0 else {
                return .failure(.rpcbind("bad universal address '\(text)'"))
            }
            return .success(hi * 256 + lo)
        }
    }

    // MARK: transports

    static func udpCall(_ call: [UInt8], xid: UInt32, to host: IPAddress, port: Int, deadline: Double, source: IPAddress?) -> Result<[UInt8], DRACClientError> {
        let target = RawSocketAddress(host, port: port)
        let fd = socket(target.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failure(.network("socket: \(String(cString: strerror(errno)))")) }
        defer { close(fd) }
        if let source, case .failure(let e) = RawSocketAddress(source, port: 0).bind(fd) { return .failure(e) }
        if case .failure(let e) = target.connect(fd) { return .failure(e) }
        var wait = 0.5
        var buffer = [UInt8](repeating: 0, count: 65536)
        while monotonicSeconds() < deadline {
            _ = call.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            let sliceEnd = min(deadline, monotonicSeconds() + wait)
            while true {
                let left = sliceEnd - monotonicSeconds()
                if left <= 0 { break }
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let rc = poll(&p, 1, Int32(max(1, left * 1000)))
                if rc < 0 { if errno == EINTR { continue }; return .failure(.network("poll: \(String(cString: strerror(errno)))")) }
                if rc == 0 { break }
                let n = recv(fd, &buffer, buffer.count, 0)
                if n < 0 {
                    if errno == ECONNREFUSED { return .failure(.network("connection refused (nothing listening on \(host) port \(port)/udp)")) }
                    if errno == EINTR || errno == EAGAIN { continue }
                    return .failure(.network("recv: \(String(cString: strerror(errno)))"))
                }
                switch DRACCodec.decodeReply(Array(buffer[0..<n])) {
                case .success(let (rxid, results)) where rxid == xid: return .success(results)
                case .success: continue   // a late reply to another call
                case .failure(let e): return .failure(.rpc("\(e)"))
                }
            }
            wait *= 2
        }
        return .failure(.timeout)
    }

    static func tcpCall(_ call: [UInt8], xid: UInt32, to host: IPAddress, port: Int, deadline: Double, source: IPAddress?) -> Result<[UInt8], DRACClientError> {
        let target = RawSocketAddress(host, port: port)
        let fd = socket(target.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return .failure(.network("socket: \(String(cString: strerror(errno)))")) }
        defer { close(fd) }
        if let source, case .failure(let e) = RawSocketAddress(source, port: 0).bind(fd) { return .failure(e) }
        if case .failure(let e) = target.connect(fd) {
            guard case .network(let m) = e, m.contains("in progress") else { return .failure(e) }
            switch waitFor(fd, POLLOUT, deadline: deadline) {
            case .failure(let e): return .failure(e)
            case .success: break
            }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err != 0 { return .failure(.network("connect to \(host) port \(port)/tcp: \(String(cString: strerror(err)))")) }
        }
        var out = RPCRecordDecoder.frame(call)[...]
        while !out.isEmpty {
            if case .failure(let e) = waitFor(fd, POLLOUT, deadline: deadline) { return .failure(e) }
            let n = out.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 { if errno == EAGAIN || errno == EINTR { continue }; return .failure(.network("send: \(String(cString: strerror(errno)))")) }
            out = out.dropFirst(n)
        }
        var received: [UInt8] = []
        var record: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            // Parse complete fragments out of what arrived.
            while received.count >= 4 {
                let header = UInt32(received[0]) << 24 | UInt32(received[1]) << 16 | UInt32(received[2]) << 8 | UInt32(received[3])
                let len = Int(header & 0x7fff_ffff)
                guard record.count + len <= 65536 else { return .failure(.rpc("reply record too long")) }
                guard received.count >= 4 + len else { break }
                record += received[4..<(4 + len)]
                received.removeFirst(4 + len)
                if header & 0x8000_0000 != 0 {
                    switch DRACCodec.decodeReply(record) {
                    case .success(let (rxid, results)) where rxid == xid: return .success(results)
                    case .success: record = []; continue
                    case .failure(let e): return .failure(.rpc("\(e)"))
                    }
                }
            }
            if case .failure(let e) = waitFor(fd, POLLIN, deadline: deadline) { return .failure(e) }
            let n = recv(fd, &chunk, chunk.count, 0)
            if n == 0 { return .failure(.network("server closed the connection")) }
            if n < 0 { if errno == EAGAIN || errno == EINTR { continue }; return .failure(.network("recv: \(String(cString: strerror(errno)))")) }
            received += chunk[0..<n]
        }
    }

    static func waitFor(_ fd: Int32, _ events: Int32, deadline: Double) -> Result<Void, DRACClientError> {
        while true {
            let left = deadline - monotonicSeconds()
            if left <= 0 { return .failure(.timeout) }
            var p = pollfd(fd: fd, events: Int16(events), revents: 0)
            let rc = poll(&p, 1, Int32(max(1, left * 1000)))
            if rc > 0 { return .success(()) }
            if rc < 0, errno != EINTR { return .failure(.network("poll: \(String(cString: strerror(errno)))")) }
        }
    }

    static func resolve(_ host: String) -> Result<[IPAddress], DRACClientError> {
        if let a = IPAddress(host) { return .success([a]) }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(host, nil, &hints, &res)
        guard rc == 0 else { return .failure(.resolve("\(host): \(String(cString: gai_strerror(rc)))")) }
        defer { freeaddrinfo(res) }
        var out: [IPAddress] = []
        var p = res
        while let ai = p {
            if let a = RawSocketAddress.ipAddress(ai.pointee.ai_addr), !out.contains(a) { out.append(a) }
            p = ai.pointee.ai_next
        }
        // Prefer IPv4 first for names like localhost (rpcbind answers on both).
        out.sort { $0.isV4 && !$1.isV4 }
        return out.isEmpty ? .failure(.resolve("no address for \(host)")) : .success(out)
    }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Results written by the per-server threads; the caller waits with a deadline.
final class OutcomeBox: @unchecked Sendable {
    private let condition = NSCondition()
    private var results: [Result<AddStatus, DRACClientError>?]
    private var done = 0

    init(count: Int) { results = Array(repeating: nil, count: count) }

    func set(_ i: Int, _ r: Result<AddStatus, DRACClientError>) {
        condition.lock()
        results[i] = r
        done += 1
        condition.signal()
        condition.unlock()
    }

    func wait(until deadline: Double) -> [Result<AddStatus, DRACClientError>?] {
        condition.lock()
        defer { condition.unlock() }
        while done < results.count {
            let left = deadline - monotonicSeconds()
            if left <= 0 { break }
            _ = condition.wait(until: Date(timeIntervalSinceNow: left))
        }
        return results
    }
}

/// A sockaddr for an IPAddress and port (the client's sockets, rpc.dracd's UDP transport).
public struct RawSocketAddress: @unchecked Sendable {
    var storage: sockaddr_storage
    var length: socklen_t
    var family: Int32

    /// A received peer address, as recvfrom(2) or recvmmsg(2) filled it in.
    public init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
        family = Int32(storage.ss_family)
    }

    public init(_ address: IPAddress, port: Int) {
        switch address.unmapped {
        case .v4(let a):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = in_port_t(UInt16(port).bigEndian)
            sin.sin_addr.s_addr = a.bigEndian
            var st = sockaddr_storage()
            withUnsafeBytes(of: &sin) { src in withUnsafeMutableBytes(of: &st) { $0.copyMemory(from: src) } }
            storage = st
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
            family = AF_INET
        case .v6(let b):
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: b) }
            var st = sockaddr_storage()
            withUnsafeBytes(of: &sin6) { src in withUnsafeMutableBytes(of: &st) { $0.copyMemory(from: src) } }
            storage = st
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            family = AF_INET6
        }
    }

    func bind(_ fd: Int32) -> Result<Void, DRACClientError> {
        let rc = withSockaddr { Glibc.bind(fd, $0, $1) }
        return rc == 0 ? .success(()) : .failure(.network("bind source address: \(String(cString: strerror(errno)))"))
    }

    func connect(_ fd: Int32) -> Result<Void, DRACClientError> {
        let rc = withSockaddr { Glibc.connect(fd, $0, $1) }
        if rc == 0 { return .success(()) }
        if errno == EINPROGRESS { return .failure(.network("connect in progress")) }
        return .failure(.network("connect: \(String(cString: strerror(errno)))"))
    }

    /// Calls `body` with the address as a `sockaddr` pointer and its length.
    public func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var s = storage
        return withUnsafePointer(to: &s) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) } }
    }

    /// The address (nil for a family other than IPv4 and IPv6).
    public var address: IPAddress? { withSockaddr { sa, _ in Self.ipAddress(sa) } }

    /// The port, in host order.
    public var port: Int {
        withSockaddr { sa, _ in
            switch family {
            case AF_INET: return sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
            case AF_INET6: return sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            default: return 0
            }
        }
    }

    static func ipAddress(_ sa: UnsafePointer<sockaddr>?) -> IPAddress? {
        guard let sa else { return nil }
        switch Int32(sa.pointee.sa_family) {
        case AF_INET:
            return sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { .v4(UInt32(bigEndian: $0.pointee.sin_addr.s_addr)) }
        case AF_INET6:
            return sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                var a = p.pointee.sin6_addr
                return .v6(withUnsafeBytes(of: &a) { Array($0) })
            }
        default: return nil
        }
    }
}
