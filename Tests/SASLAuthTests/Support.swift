// Test support: sasldb files made with the real saslpasswd2, MD5/HMAC-MD5 for CRAM-MD5, threads.
import Foundation
import SASLAuth

struct TestSetupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Where saslpasswd2 is (Debian: sasl2-bin puts it in /usr/sbin, often not on a test's PATH).
func saslpasswd2Path() throws -> String {
    let candidates = ["/usr/sbin/saslpasswd2", "/usr/bin/saslpasswd2", "/usr/local/sbin/saslpasswd2"]
        + (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/saslpasswd2" }
    guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw TestSetupError("saslpasswd2 not found (looked in \(candidates.joined(separator: ", "))): "
                                + "apt-get install -y sasl2-bin")
    }
    return found
}

/// `echo -n PASSWORD | saslpasswd2 -c -p -f SASLDB -u REALM USER`, run to completion.
/// A plain function (not a test closure) so no actor isolation is involved in the child's wait.
func saslpasswd2(user: String, realm: String, password: String, sasldb: String) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try saslpasswd2Path())
    process.arguments = ["-c", "-p", "-f", sasldb, "-u", realm, user]
    let input = Pipe()
    let errors = Pipe()
    process.standardInput = input
    process.standardOutput = FileHandle.nullDevice
    process.standardError = errors
    try process.run()
    input.fileHandleForWriting.write(Data(password.utf8))
    try input.fileHandleForWriting.close()
    let message = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw TestSetupError("saslpasswd2 \(user)@\(realm) -> \(sasldb): exit \(process.terminationStatus): "
                                + String(decoding: message, as: UTF8.self))
    }
}

/// Two sasldb files made once per test process:
/// - `primary`: alice@example.org "secret", bob@mail.example.net "hunter2" (bob's realm is the
///   serverFQDN the tests use), carol@example.org "pässwörd".
/// - `secondary`: alice@example.org "other-secret" only.
struct SASLDBFixture: Sendable {
    static let serverFQDN = "mail.example.net"
    let directory: String
    let primary: String
    let secondary: String

    init() throws {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("sasl-tests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        directory = dir
        primary = dir + "/sasldb2"
        secondary = dir + "/sasldb2-other"
        try saslpasswd2(user: "alice", realm: "example.org", password: "secret", sasldb: primary)
        try saslpasswd2(user: "bob", realm: SASLDBFixture.serverFQDN, password: "hunter2", sasldb: primary)
        try saslpasswd2(user: "carol", realm: "example.org", password: "pässwörd", sasldb: primary)
        try saslpasswd2(user: "alice", realm: "example.org", password: "other-secret", sasldb: secondary)
    }
}

/// Made on first use; the error (saslpasswd2 missing...) is reported by every test that needs it.
let sasldbFixture: Result<SASLDBFixture, TestSetupError> = {
    do {
        return .success(try SASLDBFixture())
    } catch {
        return .failure(TestSetupError("\(error)"))
    }
}()

func info(secure: Bool = false) -> SASLConnectionInfo {
    SASLConnectionInfo(service: "smtp", serverFQDN: SASLDBFixture.serverFQDN,
                       local: SASLEndpoint(ip: "192.0.2.1", port: 25),
                       remote: SASLEndpoint(ip: "198.51.100.7", port: 40000), secure: secure)
}

/// An RFC 4616 PLAIN message.
func plainMessage(authzid: String = "", _ authcid: String, _ password: String) -> [UInt8] {
    Array(authzid.utf8) + [0] + Array(authcid.utf8) + [0] + Array(password.utf8)
}

// MARK: - Threads

/// Written by one thread before the semaphore is signalled, read by the waiter after.
private final class ThreadResultBox<T>: @unchecked Sendable {
    var value: (T, pthread_t)?
}

/// Runs `body` on a new thread and waits for it; returns its result and the thread's id.
func onNewThread<T: Sendable>(_ body: @escaping @Sendable () -> T) -> (result: T, thread: pthread_t) {
    let box = ThreadResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        box.value = (body(), pthread_self())
        done.signal()
    }
    thread.start()
    done.wait()
    return box.value!
}

// MARK: - MD5 and HMAC-MD5 (RFC 1321, RFC 2104), for CRAM-MD5 responses (RFC 2195)

func md5(_ message: [UInt8]) -> [UInt8] {
    let shifts: [UInt32] = [7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                            5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
                            4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                            6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21]
    // RFC 1321 §3.4: T[i] = floor(2^32 * |sin(i)|).
    let table: [UInt32] = (1...64).map { UInt32(truncatingIfNeeded: Int64(abs(sin(Double($0))) * 4294967296.0)) }
    var a0: UInt32 = 0x6745_2301, b0: UInt32 = 0xefcd_ab89, c0: UInt32 = 0x98ba_dcfe, d0: UInt32 = 0x1032_5476

    var padded = message
    let bitLength = UInt64(message.count) &* 8
    padded.append(0x80)
    while padded.count % 64 != 56 { padded.append(0) }
    for i in 0..<8 { padded.append(UInt8(truncatingIfNeeded: bitLength >> (8 * UInt64(i)))) }

    for chunk in stride(from: 0, to: padded.count, by: 64) {
        let words: [UInt32] = (0..<16).map { i in
            let o = chunk + 4 * i
            return UInt32(padded[o]) | UInt32(padded[o + 1]) << 8 | UInt32(padded[o + 2]) << 16 | UInt32(padded[o + 3]) << 24
        }
        var a = a0, b = b0, c = c0, d = d0
        for i in 0..<64 {
            var f: UInt32
            let g: Int
            switch i {
            case 0..<16: f = (b & c) | (~b & d); g = i
            case 16..<32: f = (d & b) | (~d & c); g = (5 * i + 1) % 16
            case 32..<48: f = b ^ c ^ d; g = (3 * i + 5) % 16
            default: f = c ^ (b | ~d); g = (7 * i) % 16
            }
            f = f &+ a &+ table[i] &+ words[g]
            a = d
            d = c
            c = b
            b = b &+ (f << shifts[i] | f >> (32 - shifts[i]))
        }
        a0 = a0 &+ a
        b0 = b0 &+ b
        c0 = c0 &+ c
        d0 = d0 &+ d
    }
    return [a0, b0, c0, d0].flatMap { w in (0..<4).map { UInt8(truncatingIfNeeded: w >> (8 * UInt32($0))) } }
}

func hmacMD5(key: [UInt8], message: [UInt8]) -> [UInt8] {
    var k = key.count > 64 ? md5(key) : key
    k += [UInt8](repeating: 0, count: 64 - k.count)
    return md5(k.map { $0 ^ 0x5c } + md5(k.map { $0 ^ 0x36 } + message))
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

/// RFC 2195 §2: the response is "user SP lowercase-hex(HMAC-MD5(secret, challenge))".
func cramMD5Response(user: String, secret: String, challenge: [UInt8]) -> [UInt8] {
    Array("\(user) \(hex(hmacMD5(key: Array(secret.utf8), message: challenge)))".utf8)
}
