// drac-bench: measures rpc.dracd's durable add throughput and latency, and the floor it must beat.
//
//   drac-bench floor --db PATH --count N
//   drac-bench load --port P --transport udp|tcp --clients C (--seconds S | --adds N [--seconds CAP])
//                   [--client-base K]
//
// Output lines are `key=value` pairs, one line per measurement, e.g.
//   floor count=2000 rate=812.3/s p50=1.20ms p99=2.10ms
//   udp clients=8 adds=12345 failures=0 rate=4115.0/s p50=1.90ms p99=4.20ms retransmits=0 elapsed=3.00s
// Exit status: 0 on success, 1 if any add failed (or the floor could not be measured), 2 on usage errors.
import DRACCore
import DRACMap
import DRACRPC
import Foundation
#if canImport(Glibc)
import Glibc

// Error texts travel in Result values.
extension String: @retroactive Error {}
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

func usage(_ message: String? = nil) -> Never {
    if let message { writeStderr("drac-bench: \(message)\n") }
    writeStderr("""
    usage: drac-bench floor --db PATH --count N
           drac-bench sweep --db PATH [--entries N]
           drac-bench lookup --db PATH [--entries N] [--count N] [--reader open|watched]
           drac-bench load --port P --transport udp|tcp --clients C (--seconds S | --adds N [--seconds CAP]) [--client-base K] [--procedure add|null]

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

/// `--key value` options after the subcommand.
func parseOptions(_ args: ArraySlice<String>, allowed: Set<String>) -> [String: String] {
    var out: [String: String] = [:]
    var i = args.startIndex
    while i < args.endIndex {
        let a = args[i]
        guard a.hasPrefix("--") else { usage("unexpected argument \(a)") }
        var key = String(a.dropFirst(2))
        var value: String
        if let eq = key.firstIndex(of: "=") {
            value = String(key[key.index(after: eq)...])
            key = String(key[..<eq])
        } else {
            guard i + 1 < args.endIndex else { usage("--\(key) needs a value") }
            i += 1
            value = args[i]
        }
        guard allowed.contains(key) else { usage("unknown option --\(key)") }
        out[key] = value
        i += 1
    }
    return out
}

func intOption(_ opts: [String: String], _ key: String, min lower: Int = 1) -> Int? {
    guard let s = opts[key] else { return nil }
    guard let v = Int(s), v >= lower else { usage("--\(key) must be an integer >= \(lower), not \(s)") }
    return v
}

func doubleOption(_ opts: [String: String], _ key: String) -> Double? {
    guard let s = opts[key] else { return nil }
    guard let v = Double(s), v > 0, v.isFinite else { usage("--\(key) must be a positive number, not \(s)") }
    return v
}

// MARK: floor

func runFloor(_ opts: [String: String]) -> Int32 {
    guard let path = opts["db"] else { usage("floor needs --db PATH") }
    let count = intOption(opts, "count") ?? 2000
    var latencies: [Double] = []
    do {
        if opts["via"] == "writer" {
            // The same put + sync per add, through rpc.dracd's MapWriter (locks, stamps).
            _ = unlink(path)
            let w = try MapWriter(path: path, format: MapFormat(), announceEveryWrite: false)
            for i in 0..<count {
                let t = monotonicSeconds()
                try w.commit([.put(.v4(0x0a00_0000 | UInt32(i)), expiry: 1_800_000_000 + Int64(i))])
                latencies.append(monotonicSeconds() - t)
            }
            w.close()
            _ = unlink(path)
        } else {
            latencies = try MapFloor.measure(path: path, count: count)
        }
    } catch {
        writeStderr("drac-bench: floor measurement failed: \(error)\n")
        return 1
    }
    let sorted = latencies.sorted()
    let total = latencies.reduce(0, +)
    let rate = total > 0 ? Double(latencies.count) / total : .nan
    print("floor count=\(latencies.count) rate=\(fmt(rate, 1))/s p50=\(fmt(percentile(sorted, 0.5) * 1000, 2))ms p99=\(fmt(percentile(sorted, 0.99) * 1000, 2))ms")
    return 0
}

// MARK: sweep

/// Lock holds on a big map: a map of `entries` addresses, half of them expired, swept in chunks
/// as rpc.dracd and `dracctl expire` do; and one group-commit batch of the largest size.
func runSweep(_ opts: [String: String]) -> Int32 {
    guard let path = opts["db"] else { usage("sweep needs --db PATH") }
    let entries = intOption(opts, "entries") ?? 100_000
    _ = unlink(path)
    defer { _ = unlink(path) }
    do {
        let writer = try MapWriter(path: path, format: MapFormat())
        defer { writer.close() }
        let now = Int64(Date().timeIntervalSince1970)
        var i = 0
        while i < entries {
            let n = min(5000, entries - i)
            try writer.commit((i..<(i + n)).map { k in
                .put(.v4(0x0a00_0000 | UInt32(k)), expiry: k % 2 == 0 ? now - 10 : now + 3600)
            })
            i += n
        }
        // The largest batch the commit thread takes at once (CommitQueue.maxBatch).
        let batch = (0..<4096).map { k in MapOperation.put(.v4(0x0b00_0000 | UInt32(k)), expiry: now + 3600) }
        let t0 = monotonicSeconds()
        try writer.commit(batch)
        let batchHold = monotonicSeconds() - t0

        var after: [UInt8]? = nil
        var longest: UInt64 = 0, chunks = 0, deleted = 0, scanned = 0
        let t1 = monotonicSeconds()
        repeat {
            let c = try writer.sweepChunk(after: after, now: now)
            longest = max(longest, c.lockHeldNanoseconds)
            chunks += 1; deleted += c.deleted; scanned += c.scanned
            after = c.resumeAfter
        } while after != nil
        let total = monotonicSeconds() - t1
        print("sweep entries=\(entries + 4096) scanned=\(scanned) deleted=\(deleted) chunks=\(chunks) longest_lock_hold=\(fmt(Double(longest) / 1e6, 2))ms total=\(fmt(total * 1000, 1))ms")
        print("commit batch=4096 lock_hold=\(fmt(batchHold * 1000, 2))ms")
        return deleted == entries / 2 ? 0 : 1
    } catch {
        writeStderr("drac-bench: sweep failed: \(error)\n")
        return 1
    }
}

// MARK: load

enum Transport: String { case udp, tcp }

/// Lets all clients start together once every socket is connected.
final class StartGate: @unchecked Sendable {
    private let condition = NSCondition()
    private var open = false
    private var ready = 0
    private var finished = 0
    private(set) var startTime = 0.0

    func arriveAndWait() {
        condition.lock()
        ready += 1
        condition.broadcast()
        while !open { condition.wait() }
        condition.unlock()
    }

    /// Waits (bounded) for `n` clients to be ready, then opens the gate.
    func openWhenReady(_ n: Int, timeout: Double) {
        condition.lock()
        let limit = Date(timeIntervalSinceNow: timeout)
        while ready < n { if !condition.wait(until: limit) { break } }
        startTime = monotonicSeconds()
        open = true
        condition.broadcast()
        condition.unlock()
    }

    func clientFinished() {
        condition.lock()
        finished += 1
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until `n` clients finished or `deadline` (monotonic) passed; true if all finished.
    func waitFinished(_ n: Int, deadline: Double) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while finished < n {
            let left = deadline - monotonicSeconds()
            if left <= 0 { return false }
            _ = condition.wait(until: Date(timeIntervalSinceNow: left))
        }
        return true
    }
}

/// One client's results; written only by its thread, read after it finished.
final class ClientResult: @unchecked Sendable {
    var latencies: [Double] = []
    var failures = 0
    var retransmits = 0
    var reasons: [String: Int] = [:]
    var endTime = 0.0

    func fail(_ reason: String, count: Int = 1) {
        failures += count
        reasons[reason, default: 0] += count
    }
}

struct LoadPlan: Sendable {
    var transport: Transport
    var port: UInt16
    var clientIndex: Int        // the address' second octet
    var quota: Int?             // adds for this client, or nil for time-bound
    var softSeconds: Double     // no new adds after this many seconds
    var hardSeconds: Double     // abandon the outstanding add after this many
    var retransmitSeconds = 1.0
    /// NULL calls instead of adds: the RPC round trip alone, without the map or the disk.
    var null = false
}

/// A non-blocking socket connected to 127.0.0.1:port, or an error text.
func connectSocket(_ transport: Transport, port: UInt16, timeout: Double) -> Result<Int32, String> {
    let type = transport == .udp ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)
    let fd = socket(AF_INET, type | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return .failure("socket: \(String(cString: strerror(errno)))") }
    if transport == .tcp {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_port = port.bigEndian
    sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    let rc = withUnsafePointer(to: &sin) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if rc != 0 {
        guard errno == EINPROGRESS else {
            let e = String(cString: strerror(errno)); close(fd); return .failure("connect: \(e)")
        }
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let n = poll(&pfd, 1, Int32(timeout * 1000))
        guard n > 0 else { close(fd); return .failure("connect: timed out") }
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
        guard err == 0 else { close(fd); return .failure("connect: \(String(cString: strerror(err)))") }
    }
    return .success(fd)
}

/// Polls `fd` for `events` until `deadline` (monotonic). True when ready.
func waitFor(_ fd: Int32, _ events: Int32, until deadline: Double) -> Bool {
    while true {
        let left = deadline - monotonicSeconds()
        if left <= 0 { return false }
        var pfd = pollfd(fd: fd, events: Int16(events), revents: 0)
        let n = poll(&pfd, 1, Int32(max(1, min(left * 1000, 60_000)).rounded(.up)))
        if n > 0 { return true }
        if n < 0 && errno != EINTR { return true }   // let the following call report the error
    }
}

/// Sends all of `bytes` on a non-blocking socket before `deadline`; nil or an error text.
func sendAll(_ fd: Int32, _ bytes: [UInt8], until deadline: Double) -> String? {
    var sent = 0
    while sent < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
        if n > 0 { sent += n; continue }
        if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            guard waitFor(fd, Int32(POLLOUT), until: deadline) else { return "send timed out" }
            continue
        }
        return "send: \(n == 0 ? "nothing sent" : String(cString: strerror(errno)))"
    }
    return nil
}

enum ReplyCheck { case done, ignore, failed(String) }

/// Checks one reply against the outstanding xid: ADD_SUCCESS (or an empty NULL result), a
/// stale reply, or a failure.
func checkReply(_ bytes: [UInt8], xid: UInt32, null: Bool = false) -> ReplyCheck {
    switch DRACCodec.decodeReply(bytes) {
    case .failure(let e):
        // A reply we cannot decode may still belong to an earlier call; only fail on ours.
        if bytes.count >= 4, UInt32(bytes[0]) << 24 | UInt32(bytes[1]) << 16 | UInt32(bytes[2]) << 8 | UInt32(bytes[3]) != xid {
            return .ignore
        }
        return .failed("\(e)")
    case .success(let (rxid, results)):
        guard rxid == xid else { return .ignore }
        if null { return results.isEmpty ? .done : .failed("NULL result of \(results.count) bytes") }
        guard results.count == 4 else { return .failed("result of \(results.count) bytes") }
        let status = Int32(bitPattern: UInt32(results[0]) << 24 | UInt32(results[1]) << 16 | UInt32(results[2]) << 8 | UInt32(results[3]))
        guard status == 0 else {
            return .failed(AddStatus(rawValue: status).map { "\($0)" } ?? "add status \(status)")
        }
        return .done
    }
}

/// The distinct IPv4 address of add `seq` of client `client`: 10.client.(seq>>8).(seq&255),
/// moving on to 11.client..., 12.client... past 65536 adds.
func benchAddress(client: Int, seq: Int) -> IPAddress {
    let first = UInt32(10 + (seq >> 16) % 100)
    return .v4(first << 24 | UInt32(client & 0xff) << 16 | UInt32(seq & 0xffff))
}

func runClient(_ plan: LoadPlan, gate: StartGate, result: ClientResult) {
    defer { result.endTime = monotonicSeconds(); gate.clientFinished() }
    let fd: Int32
    switch connectSocket(plan.transport, port: plan.port, timeout: 5) {
    case .success(let s): fd = s
    case .failure(let e):
        result.fail(e)
        gate.arriveAndWait()
        return
    }
    defer { close(fd) }
    gate.arriveAndWait()
    let start = gate.startTime
    let softDeadline = start + plan.softSeconds
    let hardDeadline = start + plan.hardSeconds
    var xid = UInt32.random(in: 1...UInt32.max)
    var seq = 0
    var recvBuffer = [UInt8](repeating: 0, count: 65536)
    var stream: [UInt8] = []    // TCP bytes received, not yet parsed
    var fragments: [UInt8] = [] // TCP record being reassembled

    /// TCP: the next complete record from `stream`, or nil if more bytes are needed.
    func nextRecord() -> Result<[UInt8]?, String> {
        while stream.count >= 4 {
            let header = UInt32(stream[0]) << 24 | UInt32(stream[1]) << 16 | UInt32(stream[2]) << 8 | UInt32(stream[3])
            let length = Int(header & 0x7fff_ffff)
            guard length + fragments.count <= 1 << 20 else { return .failure("reply record of \(length) bytes") }
            guard stream.count >= 4 + length else { return .success(nil) }
            fragments += stream[4..<(4 + length)]
            stream.removeFirst(4 + length)
            if header & 0x8000_0000 != 0 {
                defer { fragments = [] }
                return .success(fragments)
            }
        }
        return .success(nil)
    }

    clientLoop: while true {
        if let quota = plan.quota, seq >= quota { break }
        let begin = monotonicSeconds()
        if begin >= softDeadline { break }
        xid &+= 1
        if xid == 0 { xid = 1 }
        let (version, args) = plan.null ? (1, []) : DRACCodec.encodeAddArguments(benchAddress(client: plan.clientIndex, seq: seq))
        seq += 1
        let call = DRACCodec.encodeCall(xid: xid, program: DRACProgram.number, version: version,
                                        procedure: plan.null ? DRACProgram.procNull : DRACProgram.procAdd, arguments: args)
        let wire = plan.transport == .tcp ? RPCRecordDecoder.frame(call) : call
        if let e = sendAll(fd, wire, until: hardDeadline) {
            result.fail(e)
            if plan.transport == .tcp { break clientLoop }
            continue
        }
        var nextRetransmit = begin + plan.retransmitSeconds
        waitReply: while true {
            // UDP: retransmit the same call every second until the hard deadline.
            let now = monotonicSeconds()
            if now >= hardDeadline {
                result.fail("no reply before the deadline (\(fmt(plan.hardSeconds, 0)) s)")
                break clientLoop
            }
            if plan.transport == .udp && now >= nextRetransmit {
                result.retransmits += 1
                if let e = sendAll(fd, wire, until: hardDeadline) { result.fail(e); continue clientLoop }
                nextRetransmit = now + plan.retransmitSeconds
            }
            let until = plan.transport == .udp ? min(nextRetransmit, hardDeadline) : hardDeadline
            guard waitFor(fd, Int32(POLLIN), until: until) else { continue waitReply }
            let n = recvBuffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue waitReply }
                let e = String(cString: strerror(errno))
                if plan.transport == .udp {
                    // ECONNREFUSED after an ICMP port unreachable: keep retransmitting.
                    result.reasons["recv: \(e) (transient)", default: 0] += 1
                    continue waitReply
                }
                result.fail("recv: \(e)")
                break clientLoop
            }
            if plan.transport == .udp {
                switch checkReply(Array(recvBuffer[0..<n]), xid: xid, null: plan.null) {
                case .ignore: continue waitReply
                case .failed(let why): result.fail(why)
                case .done: result.latencies.append(monotonicSeconds() - begin)
                }
                break waitReply
            }
            if n == 0 {
                result.fail("connection closed by rpc.dracd")
                break clientLoop
            }
            stream += recvBuffer[0..<n]
            while true {
                switch nextRecord() {
                case .failure(let e):
                    result.fail(e)
                    break clientLoop
                case .success(nil):
                    continue waitReply
                case .success(let record?):
                    switch checkReply(record, xid: xid, null: plan.null) {
                    case .ignore:
                        result.fail("reply with an unexpected xid")
                        continue
                    case .failed(let why): result.fail(why)
                    case .done: result.latencies.append(monotonicSeconds() - begin)
                    }
                    if !stream.isEmpty { result.fail("unexpected extra bytes after a reply") ; stream = [] }
                    break waitReply
                }
            }
        }
    }
}

func runLoad(_ opts: [String: String]) -> Int32 {
    guard let portValue = intOption(opts, "port"), portValue <= 65535 else { usage("load needs --port P") }
    guard let t = opts["transport"], let transport = Transport(rawValue: t) else { usage("load needs --transport udp|tcp") }
    let clients = intOption(opts, "clients") ?? 1
    let clientBase = intOption(opts, "client-base", min: 0) ?? 0
    guard clientBase + clients <= 256 else { usage("--client-base + --clients must be at most 256") }
    let procedure = opts["procedure"] ?? "add"
    guard procedure == "add" || procedure == "null" else { usage("--procedure is add or null") }
    let adds = intOption(opts, "adds")
    let seconds = doubleOption(opts, "seconds")
    guard adds != nil || seconds != nil else { usage("load needs --seconds S or --adds N") }
    // With --adds, --seconds (default 60) caps the run.
    let soft = seconds ?? 60
    let grace = 5.0

    let gate = StartGate()
    let results = (0..<clients).map { _ in ClientResult() }
    var threads: [Thread] = []
    for c in 0..<clients {
        var quota: Int? = nil
        if let adds { quota = adds / clients + (c < adds % clients ? 1 : 0) }
        let plan = LoadPlan(transport: transport, port: UInt16(portValue), clientIndex: clientBase + c,
                            quota: quota, softSeconds: soft, hardSeconds: soft + grace, null: procedure == "null")
        let result = results[c]
        let thread = Thread { runClient(plan, gate: gate, result: result) }
        thread.name = "drac-bench-\(c)"
        thread.stackSize = 1 << 20
        threads.append(thread)
        thread.start()
    }
    gate.openWhenReady(clients, timeout: 10)
    let start = gate.startTime
    // Clients stop themselves by start + soft + grace; allow a little more for thread exit.
    let allDone = gate.waitFinished(clients, deadline: start + soft + grace + 2)
    if !allDone {
        writeStderr("drac-bench: some clients did not finish in time\n")
    }
    let end = allDone ? results.map(\.endTime).max() ?? monotonicSeconds() : monotonicSeconds()
    let elapsed = max(end - start, 1e-9)

    var latencies: [Double] = []
    var failures = 0, retransmits = 0
    var reasons: [String: Int] = [:]
    for r in results {
        latencies += r.latencies
        failures += r.failures
        retransmits += r.retransmits
        for (k, v) in r.reasons { reasons[k, default: 0] += v }
    }
    if !allDone { failures += 1; reasons["client threads hung", default: 0] += 1 }
    latencies.sort()
    let rate = Double(latencies.count) / elapsed
    print("\(transport.rawValue)\(procedure == "null" ? "-null" : "") clients=\(clients) adds=\(latencies.count) failures=\(failures) rate=\(fmt(rate, 1))/s p50=\(fmt(percentile(latencies, 0.5) * 1000, 2))ms p99=\(fmt(percentile(latencies, 0.99) * 1000, 2))ms max=\(fmt((latencies.last ?? .nan) * 1000, 2))ms retransmits=\(retransmits) elapsed=\(fmt(elapsed, 2))s")
    for (reason, n) in reasons.sorted(by: { $0.value > $1.value }) {
        writeStderr("drac-bench: \(transport.rawValue) clients=\(clients): \(n) x \(reason)\n")
    }
    fflush(nil)   // all output streams (stdout is not concurrency-safe to name in Swift 6)
    if !allDone { exit(failures > 0 ? 1 : 0) }   // do not wait for hung threads
    return failures > 0 ? 1 : 0
}

/// What one drac-smtpd RCPT check costs: MapReader opens the map under the shared locks, reads
/// one key and closes it (so it sees every committed write), on a map of `entries` addresses.
func runLookup(_ opts: [String: String]) -> Int32 {
    guard let path = opts["db"] else { usage("lookup needs --db PATH") }
    let entries = intOption(opts, "entries") ?? 10_000
    let count = intOption(opts, "count") ?? 20_000
    _ = unlink(path)
    defer { _ = unlink(path) }
    do {
        let writer = try MapWriter(path: path, format: MapFormat())
        let now = Int64(Date().timeIntervalSince1970)
        var i = 0
        while i < entries {
            let n = min(5000, entries - i)
            try writer.commit((i..<(i + n)).map { k in .put(.v4(0x0a00_0000 | UInt32(k)), expiry: now + 3600) })
            i += n
        }
        writer.close()
        let watched = opts["reader"] == "watched"
        let plain = MapReader(path: path, format: MapFormat())
        let kept = WatchedMapReader(path: path, format: MapFormat())
        var hits = 0
        var times: [Double] = []
        times.reserveCapacity(count)
        for k in 0..<count {
            let t0 = monotonicSeconds()
            let address = IPAddress.v4(0x0a00_0000 | UInt32((k * 7919) % (entries * 2)))
            if try (watched ? kept.expiry(of: address) : plain.expiry(of: address)) != nil { hits += 1 }
            times.append(monotonicSeconds() - t0)
        }
        times.sort()
        let mean = times.reduce(0, +) / Double(times.count)
        print("lookup (\(watched ? "WatchedMapReader, handle kept" : "MapReader, open per lookup")): \(count) lookups on \(entries) entries, \(hits) hits: mean \(fmt(mean * 1e6, 1)) us, p50 \(fmt(percentile(times, 0.5) * 1e6, 1)) us, p99 \(fmt(percentile(times, 0.99) * 1e6, 1)) us (\(fmt(1 / mean, 0)) lookups/s on one thread)")
        return 0
    } catch {
        writeStderr("drac-bench: lookup: \(error)\n")
        return 1
    }
}

// MARK: main

signal(SIGPIPE, SIG_IGN)
let arguments = CommandLine.arguments
guard arguments.count >= 2 else { usage() }
let status: Int32
switch arguments[1] {
case "floor":
    status = runFloor(parseOptions(arguments[2...], allowed: ["db", "count", "via"]))
case "sweep":
    status = runSweep(parseOptions(arguments[2...], allowed: ["db", "entries"]))
case "lookup":
    status = runLookup(parseOptions(arguments[2...], allowed: ["db", "entries", "count", "reader"]))
case "load":
    status = runLoad(parseOptions(arguments[2...], allowed: ["port", "transport", "clients", "seconds", "adds", "client-base", "procedure"]))
case "-h", "--help", "help":
    usage()
default:
    usage("unknown subcommand \(arguments[1])")
}
exit(status)
