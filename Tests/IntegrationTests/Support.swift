// Fixtures for the integration tests: run commands, start rpcbind and rpc.dracd, raw RPC sockets.
import XCTest
import Foundation
import Glibc
@testable import DRACCore
@testable import DRACRPC

struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var output: String { stdout + stderr }
}

enum Env {
    /// Where the built products are (scripts/test passes it).
    static var bin: String { ProcessInfo.processInfo.environment["DRAC_BIN"] ?? FileManager.default.currentDirectoryPath + "/.build/debug" }

    /// The integration tests start rpcbind, which binds every interface: they run only inside
    /// the private network namespace scripts/test creates.
    static func requireSandbox() throws {
        guard ProcessInfo.processInfo.environment["DRAC_TEST_NETNS"] == "1" else {
            throw XCTSkip("integration tests run through scripts/test (private network namespace)")
        }
        var head: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&head) == 0 else { return }
        defer { freeifaddrs(head) }
        var p = head
        while let ifa = p {
            let name = String(cString: ifa.pointee.ifa_name)
            if name != "lo" { XCTFail("not in a private network namespace: interface \(name) exists") }
            p = ifa.pointee.ifa_next
        }
    }
}

/// Runs a program to completion (killed after `timeout`) and captures its output. Spawned and
/// reaped here (posix_spawn + waitpid), output through files: a daemon that the program leaves
/// behind cannot hold us up.
@discardableResult
func runCommand(_ program: String, _ args: [String], timeout: Double = 30) -> CommandResult {
    let base = NSTemporaryDirectory() + "drac-cmd-\(UUID().uuidString)"
    defer { unlink(base + ".out"); unlink(base + ".err") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, base + ".out", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, base + ".err", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    let argv = [program] + args
    var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    defer { for p in cargs { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawnp(&pid, program, &actions, nil, &cargs, environ)
    guard rc == 0 else { return CommandResult(status: -1, stdout: "", stderr: "cannot run \(program): \(String(cString: strerror(rc)))") }
    var status: Int32 = 0
    let end = Date().addingTimeInterval(timeout)
    while waitpid(pid, &status, WNOHANG) == 0 {
        if Date() > end { kill(pid, SIGKILL); waitpid(pid, &status, 0); break }
        usleep(10_000)
    }
    let exit: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    let o = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
    let e = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
    return CommandResult(status: exit, stdout: o, stderr: e)
}

func dracctl(_ args: [String]) -> CommandResult { runCommand(Env.bin + "/dracctl", args) }

/// Polls `condition` until it holds or `timeout` passes.
func eventually(_ timeout: Double = 10, _ condition: () -> Bool) -> Bool {
    let end = Date().addingTimeInterval(timeout)
    while Date() < end {
        if condition() { return true }
        usleep(50_000)
    }
    return condition()
}

/// A background process we started, stopped by its PID.
final class Background {
    let process = Process()
    let logPath: String

    init(_ program: String, _ args: [String], logPath: String) throws {
        self.logPath = logPath
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)!
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = args
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var pid: pid_t { process.processIdentifier }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func waitForLog(_ text: String, timeout: Double = 20) -> Bool {
        eventually(timeout) { log.contains(text) || !process.isRunning }
        return log.contains(text)
    }

    /// Sends `signal` and waits for the exit; SIGKILL after `timeout`. Returns the exit status.
    @discardableResult
    func stop(_ signal: Int32 = SIGTERM, timeout: Double = 15) -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        kill(pid, signal)
        if !eventually(timeout, { !process.isRunning }) { kill(pid, SIGKILL) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(pid, SIGKILL); process.waitUntilExit() } }
}

/// The system's rpcbind, inside the test namespace (its socket lives in the private /run).
final class Rpcbind {
    let process: Background

    init(dir: String) throws {
        process = try Background("/usr/sbin/rpcbind", ["-f"], logPath: dir + "/rpcbind.log")
        guard eventually(10, { runCommand("rpcinfo", ["-p", "127.0.0.1"], timeout: 5).status == 0 }) else {
            throw StartFailure(program: "rpcbind", log: process.log)
        }
    }

    func stop() { process.stop() }
}

/// A running rpc.dracd with its own directory, map and log.
final class DracdInstance {
    let dir: String
    let process: Background
    let port: Int
    var map: String { dir + "/dracd.db" }

    /// Starts `rpc.dracd -f` with `args` (before the map argument) and waits for "ready".
    init(dir: String, args: [String], map: String? = nil) throws {
        self.dir = dir
        let mapPath = map ?? dir + "/dracd.db"
        process = try Background(Env.bin + "/rpc.dracd", ["-f", "-o", "pid_file="] + args + [mapPath],
                                 logPath: dir + "/dracd-\(UUID().uuidString.prefix(8)).log")
        guard process.waitForLog("ready on port") else {
            throw StartFailure(program: "rpc.dracd", log: process.log)
        }
        let line = process.log.split(separator: "\n").first { $0.contains("ready on port") }!
        port = Int(line.split(separator: " ").last!)!
    }

    var log: String { process.log }
    func stop(_ signal: Int32 = SIGTERM) -> Int32 { process.stop(signal) }
}

struct StartFailure: Error, CustomStringConvertible {
    var program: String
    var log: String
    var description: String { "\(program) did not start:\n\(log)" }
}

func makeTempDir(_ name: String) -> String {
    let d = "/tmp/drac-it-\(name)-\(UUID().uuidString.prefix(8))"
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

/// The map's contents as `db5.3_dump -p` prints them: key -> value.
func dumpMap(_ path: String) -> [String: String] {
    let r = runCommand("db5.3_dump", ["-p", path])
    var out: [String: String] = [:]
    var lines = r.stdout.split(separator: "\n").map(String.init)
    guard let start = lines.firstIndex(of: "HEADER=END"), let end = lines.firstIndex(of: "DATA=END") else { return [:] }
    lines = Array(lines[(start + 1)..<end])
    var i = 0
    while i + 1 < lines.count {
        out[String(lines[i].dropFirst())] = String(lines[i + 1].dropFirst())
        i += 2
    }
    return out
}

/// Postfix's own reader: `postmap -q ADDRESS btree:MAP` (without the .db suffix).
func postmapQuery(_ address: String, map: String, dir: String) -> CommandResult {
    let conf = dir + "/postfix-conf"
    try? FileManager.default.createDirectory(atPath: conf, withIntermediateDirectories: true)
    FileManager.default.createFile(atPath: conf + "/main.cf", contents: Data("compatibility_level = 3.6\n".utf8))
    let name = map.hasSuffix(".db") ? String(map.dropLast(3)) : map
    return runCommand("postmap", ["-c", conf, "-q", address, "btree:" + name])
}

/// Sends raw bytes as one UDP datagram from `source` and returns the reply, or nil on timeout.
func rawUDP(_ bytes: [UInt8], port: Int, host: String = "127.0.0.1", source: String? = nil, timeout: Double = 1.5) -> [UInt8]? {
    let target = IPAddress(host)!
    let fd = socket(target.isV4 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
    defer { close(fd) }
    if let source { _ = RawSocketAddress(IPAddress(source)!, port: 0).bind(fd) }
    _ = RawSocketAddress(target, port: port).connect(fd)
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    guard poll(&p, 1, Int32(timeout * 1000)) == 1 else { return nil }
    var buf = [UInt8](repeating: 0, count: 65536)
    let n = recv(fd, &buf, buf.count, 0)
    return n > 0 ? Array(buf[0..<n]) : nil
}

/// A raw TCP connection to the daemon.
final class RawTCP {
    let fd: Int32
    /// `receiveBuffer`: SO_RCVBUF set before connecting (a small window that stays small).
    init?(port: Int, host: String = "127.0.0.1", source: String? = nil, receiveBuffer: Int32? = nil) {
        let target = IPAddress(host)!
        fd = socket(target.isV4 ? AF_INET : AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        if var size = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        if let source { _ = RawSocketAddress(IPAddress(source)!, port: 0).bind(fd) }
        if case .failure = RawSocketAddress(target, port: port).connect(fd) { close(fd); return nil }
    }
    deinit { close(fd) }
    func send(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
    /// Reads what arrives within `timeout`; nil means the peer closed the connection.
    func receive(timeout: Double) -> [UInt8]? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(timeout * 1000)) == 1 else { return [] }
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &buf, buf.count, 0)
        return n > 0 ? Array(buf[0..<n]) : nil
    }
    /// True once the peer has closed the connection (within `timeout`).
    func closedByPeer(within timeout: Double) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if receive(timeout: 0.2) == nil { return true }
        }
        return false
    }
}

/// A hand-built DRAC call, so tests can corrupt any field.
func dracCall(xid: UInt32 = 42, rpcvers: UInt32 = 2, prog: UInt32 = 900101, vers: UInt32 = 1, proc: UInt32 = 1,
              credBody: [UInt8] = [], args: [UInt8]) -> [UInt8] {
    var w = XDRWriter()
    w.uint32(xid); w.uint32(0); w.uint32(rpcvers); w.uint32(prog); w.uint32(vers); w.uint32(proc)
    w.uint32(0); w.opaque(credBody)
    w.uint32(0); w.uint32(0)
    return w.bytes + args
}

/// The accept_stat of a reply, or nil if it was denied or malformed.
func acceptStat(_ reply: [UInt8]?) -> UInt32? {
    guard let reply else { return nil }
    var r = XDRReader(reply)
    guard (try? r.uint32()) != nil, (try? r.uint32()) == 1, (try? r.uint32()) == 0 else { return nil }
    _ = try? r.uint32(); _ = try? r.opaque(max: 400)
    return try? r.uint32()
}

func addStatus(_ outcomes: [DRACClient.Outcome]) -> [String] {
    outcomes.map { o in
        switch o.result {
        case .success(let s): return "\(s)"
        case .failure(let e): return "error: \(e)"
        }
    }
}

/// A process's resident memory in KiB (VmRSS of /proc/PID/status), -1 if unreadable.
func residentKB(_ pid: pid_t) -> Int {
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
}
