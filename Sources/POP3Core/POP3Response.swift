// POP3 responses (RFC 1939 §3) with response codes (RFC 2449 §8, RFC 3206) and SASL continuations.

/// One response: a status line, and for multi-line responses (CAPA, LIST, UIDL, AUTH's
/// mechanism list) the lines that follow it up to the terminating `.`.
///
/// Message text (RETR, TOP) is not a `POP3Response`: it streams through `DotStuffer`.
public struct POP3Response: Sendable, Equatable, CustomStringConvertible {
    public enum Status: Sendable, Equatable {
        case ok
        case err
        /// RFC 5034 §4: a SASL server challenge, `+ ` and base64.
        case continuation
    }

    /// An extended response code (RFC 2449 §8), the first word of an `-ERR` in brackets.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        /// RFC 3206 §4: the failure is about authentication itself (bad credentials, a refused
        /// mechanism, plaintext refused), not a system problem: the client should ask the user.
        public static let auth = Code("AUTH")
        /// RFC 2449 §8.1.2: the maildrop is in use by another session.
        public static let inUse = Code("IN-USE")
        /// RFC 3206 §5: a transient system failure; trying again later may work.
        public static let sysTemp = Code("SYS/TEMP")
        /// RFC 3206 §5: a permanent system failure; the user should contact the administrator.
        public static let sysPerm = Code("SYS/PERM")
        public var description: String { name }
    }

    public var status: Status
    public var code: Code?
    /// The status line's text (for a continuation: the base64 challenge).
    public var text: String
    /// The lines of a multi-line response, unstuffed; nil for a single-line response.
    public var lines: [String]?

    public init(_ status: Status, code: Code? = nil, _ text: String, lines: [String]? = nil) {
        self.status = status
        self.code = code
        self.text = text
        self.lines = lines
    }

    public static func ok(_ text: String = "") -> POP3Response { POP3Response(.ok, text) }
    public static func err(_ text: String) -> POP3Response { POP3Response(.err, text) }
    public static func err(_ code: Code, _ text: String) -> POP3Response { POP3Response(.err, code: code, text) }
    /// A multi-line positive response (RFC 1939 §3).
    public static func multiline(_ text: String = "", _ lines: [String]) -> POP3Response {
        POP3Response(.ok, text, lines: lines)
    }
    /// RFC 5034 §4: a server challenge, already base64-encoded (empty for an empty challenge).
    public static func continuation(_ base64: String) -> POP3Response { POP3Response(.continuation, base64) }

    public var isOK: Bool { status == .ok }

    /// The status line without CRLF: `+OK text`, `-ERR [CODE] text`, `+ challenge`.
    public var statusLine: String {
        switch status {
        case .ok: return text.isEmpty ? "+OK" : "+OK " + text
        case .err:
            var s = "-ERR"
            if let code { s += " [\(code.name)]" }
            if !text.isEmpty { s += " " + text }
            return s
        case .continuation: return "+ " + text
        }
    }

    /// The wire form: the status line, then for a multi-line response each line dot-stuffed
    /// (RFC 1939 §3: a line that begins with "." gets one more) and the terminating `.`, every
    /// line ending in CRLF.
    public var encoded: String {
        var out = statusLine + "\r\n"
        if let lines {
            for line in lines {
                if line.hasPrefix(".") { out += "." }
                out += line
                out += "\r\n"
            }
            out += ".\r\n"
        }
        return out
    }

    /// The wire form as octets, for the connection handler.
    public var bytes: [UInt8] { Array(encoded.utf8) }

    /// One line for logs: the status line, and the number of lines of a multi-line response.
    public var description: String {
        statusLine + (lines.map { " (\($0.count) lines)" } ?? "")
    }
}
