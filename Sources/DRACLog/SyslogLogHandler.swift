// A swift-log LogHandler that writes to syslog(3), optionally also to stderr (foreground runs).
import Foundation
import Glibc
import Logging

/// Sends log lines to syslog with the given facility, Postfix style: `ident[pid]: message`.
/// Metadata is appended as `key=value`; callers put the facts a mail admin greps for in the
/// message itself.
public struct SyslogLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let alsoStderr: Bool
    private let ident: String

    /// Calls openlog once for the process. `facility` is a drac.conf name such as `mail`.
    public static func bootstrap(ident: String, facility: String, alsoStderr: Bool, level: Logger.Level = .info) {
        let fac = facilityCode(facility)
        // openlog keeps the pointer: give it storage that lives as long as the process.
        let identCopy = strdup(ident)
        openlog(identCopy, LOG_PID | LOG_NDELAY, fac)
        LoggingSystem.bootstrap { _ in
            var h = SyslogLogHandler(ident: ident, alsoStderr: alsoStderr)
            h.logLevel = level
            return h
        }
    }

    public init(ident: String, alsoStderr: Bool) {
        self.ident = ident
        self.alsoStderr = alsoStderr
    }

    public static func facilityCode(_ name: String) -> Int32 {
        switch name {
        case "daemon": return LOG_DAEMON
        case "auth": return LOG_AUTH
        case "authpriv": return LOG_AUTHPRIV
        case "user": return LOG_USER
        case "local0": return LOG_LOCAL0
        case "local1": return LOG_LOCAL1
        case "local2": return LOG_LOCAL2
        case "local3": return LOG_LOCAL3
        case "local4": return LOG_LOCAL4
        case "local5": return LOG_LOCAL5
        case "local6": return LOG_LOCAL6
        case "local7": return LOG_LOCAL7
        default: return LOG_MAIL
        }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var text = "\(event.message)"
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        if !merged.isEmpty {
            text += " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        let priority: Int32
        switch event.level {
        case .trace, .debug: priority = LOG_DEBUG
        case .info: priority = LOG_INFO
        case .notice: priority = LOG_NOTICE
        case .warning: priority = LOG_WARNING
        case .error: priority = LOG_ERR
        case .critical: priority = LOG_CRIT
        }
        if SyslogSocket.available() {
            text.withCString { cstr in withVaList([cstr]) { vsyslog(priority, "%s", $0) } }
        }
        if alsoStderr {
            // Same shape as the syslog line, so tests and admins grep one format.
            let prefix = event.level >= .warning ? "\(event.level): " : ""
            let line = Array("\(ident)[\(getpid())]: \(prefix)\(text)\n".utf8)
            _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        }
    }
}

/// Whether a syslog daemon listens on /dev/log, checked at most every few seconds. Without one,
/// glibc's syslog() tries to connect again on every line, which costs three system calls a line.
enum SyslogSocket {
    private static let state = SyslogState()

    static func available() -> Bool { state.available() }
}

private final class SyslogState: @unchecked Sendable {
    private let lock = NSLock()
    private var checkedAt: Int = 0
    private var present = true

    func available() -> Bool {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
        lock.lock()
        defer { lock.unlock() }
        if ts.tv_sec - checkedAt >= 5 || checkedAt == 0 {
            checkedAt = ts.tv_sec
            present = access("/dev/log", W_OK) == 0
        }
        return present
    }
}

/// Writes a message to stderr unbuffered (start-up errors, the "ready" line).
public func printStderr(_ s: String) {
    var bytes = Array(s.utf8)
    bytes.withUnsafeMutableBytes { p in _ = write(2, p.baseAddress, p.count) }
}
