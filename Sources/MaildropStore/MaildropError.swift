// The one error type of the maildrop store, and what each case means to the POP3 server.

/// Why a maildrop could not be opened, read or updated.
///
/// The POP3 server maps these to responses: `inUse` is `-ERR [IN-USE]` (RFC 2449 §8.1.1) after
/// PASS/APOP, `invalidUser` and `badTemplate` are configuration or account problems (log them,
/// answer `-ERR [SYS/PERM]`), `io` is everything else (`-ERR [SYS/TEMP]`; the text is for the
/// log, never for the client).
public enum MaildropError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Another session holds the maildrop (POP3 `[IN-USE]`).
    case inUse
    /// The user name cannot be mapped to a path safely.
    case invalidUser(String)
    /// `pop3d_mail_location` is not a usable template.
    case badTemplate(String)
    /// Anything else: the text names the path and the system error, for the log.
    case io(String)

    public var description: String {
        switch self {
        case .inUse: return "maildrop in use by another session"
        case .invalidUser(let why): return "invalid user for a maildrop path: \(why)"
        case .badTemplate(let why): return "bad mail location template: \(why)"
        case .io(let why): return why
        }
    }
}
