// Parsing one SMTP command line (RFC 5321 §4.1.1) into a verb and its argument.

/// A command as the client sent it. Paths are parsed later by `SMTPPath` (DRACCore), so that
/// a syntax error there gets its own reply code.
public enum SMTPCommand: Sendable, Equatable {
    case ehlo(String)
    case helo(String)
    case mail(Substring)        // what follows "MAIL FROM:"
    case rcpt(Substring)        // what follows "RCPT TO:"
    case data
    case rset
    case noop
    case quit
    case vrfy(String)
    case expn(String)
    case help
    case auth(mechanism: String, initial: String?)
    case starttls
    case xclient
    case xforward
    case bdat
    /// A verb we know but whose arguments are wrong: 501 with this text.
    case syntaxError(String)
    /// An unknown verb (kept for the log, truncated).
    case unknown(String)

    /// The verb for logs and error counters.
    public var verb: String {
        switch self {
        case .ehlo: "EHLO"
        case .helo: "HELO"
        case .mail: "MAIL"
        case .rcpt: "RCPT"
        case .data: "DATA"
        case .rset: "RSET"
        case .noop: "NOOP"
        case .quit: "QUIT"
        case .vrfy: "VRFY"
        case .expn: "EXPN"
        case .help: "HELP"
        case .auth: "AUTH"
        case .starttls: "STARTTLS"
        case .xclient: "XCLIENT"
        case .xforward: "XFORWARD"
        case .bdat: "BDAT"
        case .syntaxError: "syntax"
        case .unknown(let v): v
        }
    }
}

public enum SMTPCommandParser {
    /// Parses a command line without its CRLF. The line has already passed the length limit.
    /// Verbs are case-insensitive (RFC 5321 §2.4); the verb ends at the first space.
    public static func parse(_ line: Substring) -> SMTPCommand {
        // Control characters (a stray CR, ESC, DEL...) have no place in a command and would
        // otherwise reach log lines; 8-bit octets need SMTPUTF8, which we do not offer.
        if line.utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 >= 0x7F }) {
            return .syntaxError("Error: invalid character in command")
        }
        let verbEnd = line.firstIndex(of: " ") ?? line.endIndex
        let verb = line[..<verbEnd].uppercased()
        let rest = verbEnd == line.endIndex ? Substring("") : line[line.index(after: verbEnd)...]
        let arg = rest.trimmingSpaces()

        switch verb {
        case "EHLO", "HELO":
            // RFC 5321 §4.1.1.1: a domain or address literal. We check only that there is one
            // word; the name is advisory and goes into Received: after quoting.
            guard !arg.isEmpty, !arg.contains(" "), arg.utf8.count <= 255 else {
                return .syntaxError("Syntax: \(verb) hostname")
            }
            return verb == "EHLO" ? .ehlo(String(arg)) : .helo(String(arg))
        case "MAIL":
            guard let a = afterPrefix(rest, "FROM:") else { return .syntaxError("Syntax: MAIL FROM:<address>") }
            return .mail(a)
        case "RCPT":
            guard let a = afterPrefix(rest, "TO:") else { return .syntaxError("Syntax: RCPT TO:<address>") }
            return .rcpt(a)
        case "DATA": return arg.isEmpty ? .data : .syntaxError("Syntax: DATA")
        case "RSET": return arg.isEmpty ? .rset : .syntaxError("Syntax: RSET")
        case "NOOP": return .noop                      // RFC 5321 §4.1.1.9: argument ignored
        case "QUIT": return arg.isEmpty ? .quit : .syntaxError("Syntax: QUIT")
        case "VRFY": return arg.isEmpty ? .syntaxError("Syntax: VRFY address") : .vrfy(String(arg))
        case "EXPN": return .expn(String(arg))
        case "HELP": return .help
        case "STARTTLS": return arg.isEmpty ? .starttls : .syntaxError("Syntax: STARTTLS")
        case "AUTH":
            // RFC 4954 §4: AUTH mechanism [initial-response]
            let parts = arg.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 1 || parts.count == 2 else { return .syntaxError("Syntax: AUTH mechanism [initial-response]") }
            return .auth(mechanism: parts[0].uppercased(), initial: parts.count == 2 ? String(parts[1]) : nil)
        case "XCLIENT": return .xclient
        case "XFORWARD": return .xforward
        case "BDAT": return .bdat
        default:
            return .unknown(String(verb.prefix(32)))
        }
    }

    /// `FROM:` / `TO:` matched case-insensitively right after the verb's space (RFC 5321 §4.1.1.2).
    private static func afterPrefix(_ s: Substring, _ prefix: String) -> Substring? {
        guard s.utf8.count >= prefix.utf8.count else { return nil }
        let head = s.prefix(prefix.count)
        guard head.uppercased() == prefix else { return nil }
        var rest = s.dropFirst(prefix.count)
        while rest.last == " " || rest.last == "\t" { rest = rest.dropLast() }
        return rest
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return s
    }
}
