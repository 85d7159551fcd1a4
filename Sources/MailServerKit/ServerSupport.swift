// Small pieces both mail servers need: names, ids, limits, line framing.
import DRACCore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import SMTPCore

public enum ServerName {
    /// The configured name, or the host's (gethostname) when none is set.
    public static func resolve(_ configured: String) -> String {
        guard configured.isEmpty else { return configured }
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count)
        return String(cString: buf)
    }
}

/// Short unique session ids for log lines: the process id in base 36, a dot, a counter
/// (like a Postfix queue id).
public final class SessionIDs: Sendable {
    private let counter = NIOLockedValueBox<UInt64>(0)
    private let prefix = String(UInt64(getpid()), radix: 36, uppercase: true) + "."
    public init() {}
    public func next() -> String {
        let n = counter.withLockedValue { $0 += 1; return $0 }
        return prefix + String(n, radix: 36, uppercase: true)
    }
}

extension AuthThrottle {
    /// The throttle as both servers configure it: disconnect from `limit` failures on, delays
    /// doubling from 1 s (or `maxDelay` if smaller) up to `maxDelay`.
    public init(limit: Int, maxDelay: Double) {
        self.init()
        disconnectAfter = limit
        self.maxDelay = maxDelay
        baseDelay = min(1, maxDelay)
    }
}

extension MailServer where Kind: RawRepresentable, Kind.RawValue == String {
    /// Where we listen, as `pop3 127.0.0.1:110, pop3s [::]:995`.
    public var listenerDescription: String {
        listeners.map { "\($0.kind.rawValue) \($0.address.ipAddress.map { $0.contains(":") ? "[\($0)]" : $0 } ?? "?"):\($0.address.port ?? 0)" }
            .joined(separator: ", ")
    }
}

/// Raises the soft open-file limit to `wanted` (within the hard limit), warning when it cannot.
public func raiseOpenFileLimit(to wanted: Int, setting: String, logger: Logger) {
    var r = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &r) == 0, r.rlim_cur < rlim_t(wanted) else { return }
    r.rlim_cur = min(rlim_t(wanted), r.rlim_max)
    if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &r) != 0 || r.rlim_cur < rlim_t(wanted) {
        logger.warning("open file limit \(r.rlim_cur) is below the \(wanted) that \(setting) needs")
    }
}

/// Cuts CRLF (or LF) terminated command lines out of a connection's input buffer. A line
/// longer than the limit is dropped as it arrives (never buffered whole) and reported once
/// its end is seen, so the server can answer it in order.
public struct LineFramer {
    public enum Line {
        case text(String)
        case tooLong
    }
    private var discarding = false
    public init() {}

    /// The next complete line, or nil when more input is needed.
    public mutating func next(from input: inout ByteBuffer, limit: Int) -> Line? {
        guard let lf = input.readableBytesView.firstIndex(of: 0x0A) else {
            if input.readableBytes > limit {
                discarding = true
                input.clear()
            }
            return nil
        }
        var length = lf - input.readerIndex
        let tooLong = discarding || length > limit
        discarding = false
        let slice = input.readSlice(length: length + 1)!
        if tooLong { return .tooLong }
        if length > 0 && slice.getInteger(at: slice.readerIndex + length - 1, as: UInt8.self) == 0x0D { length -= 1 }
        return .text(String(decoding: slice.readableBytesView.prefix(length), as: UTF8.self))
    }
}

/// Switches a connection to TLS after the server said yes to STARTTLS (RFC 3207) or STLS
/// (RFC 2595); the reply must have been written. Whatever the client sent after the command in
/// the clear is discarded and logged, never read as commands after the handshake (RFC 3207
/// §5, RFC 2595 §4, CVE-2011-0411).
public func startTLS(_ context: ChannelHandlerContext, _ tls: NIOSSLContext, discarding input: inout ByteBuffer,
                     command: String, session id: String, client: IPAddress, logger: Logger) {
    context.flush()
    if input.readableBytes > 0 {
        logger.warning("\(id): [\(client)]: discarded \(input.readableBytes) octets sent after \(command) before TLS")
    }
    input.clear()
    do {
        try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls), position: .first)
    } catch {
        logger.error("\(id): cannot start TLS: \(error)")
        context.close(promise: nil)
    }
}

/// Runs a body that may be asked for again while it runs (from a callback inside it): the
/// inner request makes the running call go round once more instead of re-entering, so the
/// stack stays flat and no request is lost.
public final class Rerunner {
    private var running = false
    private var again = false

    public init() {}

    public func run(_ body: () -> Void) {
        if running {
            again = true
            return
        }
        running = true
        defer { running = false }
        repeat {
            again = false
            body()
        } while again
    }
}
