// SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463, RFC 2034).

/// One reply: a three-digit code, an optional enhanced status code, and one or more text lines.
public struct SMTPReply: Sendable, Equatable, CustomStringConvertible {
    public var code: Int
    /// "2.0.0", or nil when the reply has none (greeting, 354, EHLO lines: RFC 2034 §3).
    public var enhanced: String?
    public var lines: [String]

    public init(_ code: Int, _ enhanced: String?, _ text: String) {
        self.code = code
        self.enhanced = enhanced
        self.lines = [text]
    }

    public init(code: Int, enhanced: String?, lines: [String]) {
        self.code = code
        self.enhanced = enhanced
        self.lines = lines.isEmpty ? [""] : lines
    }

    public var isPositive: Bool { code >= 200 && code < 400 }
    public var isTransient: Bool { code >= 400 && code < 500 }
    public var isPermanent: Bool { code >= 500 }

    /// The wire form: `250-first`, ..., `250 last`, each CRLF-terminated (RFC 5321 §4.2.1).
    public var encoded: String {
        var out = ""
        for (i, line) in lines.enumerated() {
            out += String(code)
            out += i == lines.count - 1 ? " " : "-"
            if let e = enhanced { out += e + (line.isEmpty ? "" : " ") }
            out += line
            out += "\r\n"
        }
        return out
    }

    /// One line for logs: `550 5.7.1 text` (multi-line replies joined by spaces).
    public var description: String {
        "\(code)" + (enhanced.map { " " + $0 } ?? "") + " " + lines.joined(separator: " ")
    }
}

extension SMTPReply {
    public static func ok(_ text: String = "Ok") -> SMTPReply { SMTPReply(250, "2.0.0", text) }
    public static let badSequence = SMTPReply(503, "5.5.1", "Error: bad sequence of commands")
    public static let notRecognized = SMTPReply(500, "5.5.2", "Error: command not recognized")
    public static let lineTooLong = SMTPReply(500, "5.5.6", "Error: line too long")
    public static let tooManyErrors = SMTPReply(421, "4.7.0", "Error: too many errors")
    public static let timeout = SMTPReply(421, "4.4.2", "Error: timeout exceeded")
    public static let shuttingDown = SMTPReply(421, "4.3.2", "Service shutting down, try again later")
    public static let backendUnavailable = SMTPReply(451, "4.4.1", "Error: mail server behind this gateway not available, try again later")
}
