// Parsing one POP3 command line (RFC 1939 §3, RFC 2449, RFC 5034, RFC 2595) into a command.

/// A command as the client sent it. Message numbers are parsed but not checked against the
/// maildrop (that is the session's job: "no such message" needs the maildrop).
public enum POP3Command: Sendable, Equatable {
    /// RFC 1939 §7: USER name.
    case user(String)
    /// RFC 1939 §7: PASS string. Everything after the first space, spaces included (RFC 1939
    /// §7 notes that a password may contain spaces).
    case pass(String)
    /// RFC 1939 §7: APOP. Not supported (it needs cleartext passwords on the server).
    case apop
    /// RFC 5034 §4: AUTH mechanism [initial-response]. A bare `AUTH` (no mechanism) is the
    /// pre-RFC 5034 mechanism listing some clients (Outlook) still send.
    case auth(mechanism: String?, initial: String?)
    /// RFC 2595 §4: STLS.
    case stls
    /// RFC 2449 §5: CAPA.
    case capa
    case quit
    case stat
    /// LIST [msg]
    case list(Int?)
    case retr(Int)
    case dele(Int)
    case noop
    case rset
    /// TOP msg n: the headers, the blank line, and at most `lines` lines of the body.
    case top(Int, lines: Int)
    /// UIDL [msg]
    case uidl(Int?)
    /// A command we know whose arguments are wrong: `-ERR` with this text.
    case syntaxError(verb: String, text: String)
    /// A verb we do not know (upper-cased, truncated, for the reply and the log).
    case unknown(String)

    /// The verb for replies, logs and counters.
    public var verb: String {
        switch self {
        case .user: "USER"
        case .pass: "PASS"
        case .apop: "APOP"
        case .auth: "AUTH"
        case .stls: "STLS"
        case .capa: "CAPA"
        case .quit: "QUIT"
        case .stat: "STAT"
        case .list: "LIST"
        case .retr: "RETR"
        case .dele: "DELE"
        case .noop: "NOOP"
        case .rset: "RSET"
        case .top: "TOP"
        case .uidl: "UIDL"
        case .syntaxError(let v, _): v
        case .unknown(let v): v
        }
    }
}

public enum POP3CommandParser {
    /// Parses a command line without its CRLF. The line has already passed the length limit.
    /// Keywords are case-insensitive (RFC 1939 §3); the keyword ends at the first space.
    public static func parse(_ line: Substring, limits: POP3Limits = POP3Limits()) -> POP3Command {
        let verbEnd = line.firstIndex(of: " ") ?? line.endIndex
        let verbText = line[..<verbEnd]
        let rest = verbEnd == line.endIndex ? Substring("") : line[line.index(after: verbEnd)...]
        // Keywords are 3 or 4 ASCII letters (RFC 1939 §3); anything else is unknown. Control
        // characters and 8-bit octets never reach a reply or a log line through the verb.
        guard (1...8).contains(verbText.utf8.count), verbText.utf8.allSatisfy(isASCIILetter) else {
            return .unknown(sanitized(verbText))
        }
        let verb = verbText.uppercased()

        // USER and PASS take the rest of the line, which may be 8-bit (UTF-8 names and
        // passwords); only control characters are refused (a NUL would split a SASL PLAIN
        // message). Everything else is ASCII without controls.
        if verb == "USER" || verb == "PASS" {
            if rest.utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) {
                return .syntaxError(verb: verb, text: "Invalid characters in \(verb) argument.")
            }
            if verb == "USER" {
                // Dovecot takes the rest of the line as the name; so do we, minus outer spaces.
                var name = rest
                while name.first == " " || name.first == "\t" { name = name.dropFirst() }
                while name.last == " " || name.last == "\t" { name = name.dropLast() }
                guard !name.isEmpty else { return .syntaxError(verb: verb, text: "Syntax: USER name") }
                return .user(String(name))
            }
            guard !rest.isEmpty else { return .syntaxError(verb: verb, text: "Syntax: PASS password") }
            return .pass(String(rest))
        }
        if rest.utf8.contains(where: { $0 < 0x20 || $0 >= 0x7F }) {
            return .syntaxError(verb: verb, text: "Invalid characters in command.")
        }
        let args = rest.split(separator: " ", omittingEmptySubsequences: true)

        switch verb {
        case "STAT": return args.isEmpty ? .stat : .syntaxError(verb: verb, text: "Syntax: STAT")
        case "NOOP": return args.isEmpty ? .noop : .syntaxError(verb: verb, text: "Syntax: NOOP")
        case "RSET": return args.isEmpty ? .rset : .syntaxError(verb: verb, text: "Syntax: RSET")
        case "QUIT": return args.isEmpty ? .quit : .syntaxError(verb: verb, text: "Syntax: QUIT")
        case "CAPA": return args.isEmpty ? .capa : .syntaxError(verb: verb, text: "Syntax: CAPA")
        case "STLS": return args.isEmpty ? .stls : .syntaxError(verb: verb, text: "Syntax: STLS")
        case "APOP": return .apop
        case "LIST", "UIDL":
            guard args.count <= 1 else { return .syntaxError(verb: verb, text: "Syntax: \(verb) [message]") }
            var n: Int? = nil
            if let a = args.first {
                guard let v = number(a, limits) else { return .syntaxError(verb: verb, text: invalidNumber(a)) }
                n = v
            }
            return verb == "LIST" ? .list(n) : .uidl(n)
        case "RETR", "DELE":
            guard args.count == 1 else { return .syntaxError(verb: verb, text: "Syntax: \(verb) message") }
            guard let n = number(args[0], limits) else { return .syntaxError(verb: verb, text: invalidNumber(args[0])) }
            return verb == "RETR" ? .retr(n) : .dele(n)
        case "TOP":
            guard args.count == 2 else { return .syntaxError(verb: verb, text: "Syntax: TOP message lines") }
            guard let n = number(args[0], limits) else { return .syntaxError(verb: verb, text: invalidNumber(args[0])) }
            guard let lines = number(args[1], limits) else {
                return .syntaxError(verb: verb, text: "Invalid number of lines: \(String(args[1].prefix(limits.argument)))")
            }
            return .top(n, lines: lines)
        case "AUTH":
            // RFC 5034 §4: AUTH mechanism [initial-response]; RFC 4422 §3.1: mechanism names
            // are 1 to 20 characters of A-Z, 0-9, '-' and '_'.
            guard args.count <= 2 else { return .syntaxError(verb: verb, text: "Syntax: AUTH mechanism [initial-response]") }
            guard let mech = args.first else { return .auth(mechanism: nil, initial: nil) }
            guard mech.utf8.count <= min(20, limits.argument),
                  mech.utf8.allSatisfy({ isASCIILetter($0) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x5F }) else {
                return .syntaxError(verb: verb, text: "Invalid authentication mechanism name.")
            }
            return .auth(mechanism: mech.uppercased(), initial: args.count == 2 ? String(args[1]) : nil)
        default:
            return .unknown(sanitized(verbText))
        }
    }

    /// A message number or line count: ASCII digits only (no sign, no spaces), at most
    /// `limits.argument` of them. Values too large for any maildrop come back as `Int.max`
    /// ("no such message" for a number, "the whole body" for TOP's line count).
    static func number(_ s: Substring, _ limits: POP3Limits) -> Int? {
        guard !s.isEmpty, s.utf8.count <= limits.argument, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        var v = 0
        for c in s.utf8 {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int(c - 0x30))
            if o1 || o2 { return Int.max }
            v = a
        }
        return v
    }

    static func invalidNumber(_ s: Substring) -> String { "Invalid message number: \(String(s.prefix(40)))" }

    static func isASCIILetter(_ c: UInt8) -> Bool { (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) }

    /// An unknown verb as replies and logs show it: printable ASCII, upper case, at most 16.
    static func sanitized(_ s: Substring) -> String {
        String(String(decoding: s.utf8.prefix(16).map { $0 > 0x20 && $0 < 0x7F ? $0 : UInt8(ascii: "?") }, as: UTF8.self).uppercased())
    }
}
