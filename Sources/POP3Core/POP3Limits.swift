// Every limit drac-pop3d enforces, in one place, each with the RFC section it comes from.

/// Limits on what a POP3 client may send and how long a session may idle. Defaults follow the
/// RFCs where they fix a number and Dovecot's behaviour where they leave it open.
public struct POP3Limits: Sendable, Equatable {
    /// RFC 1939 §3: "Such a timer MUST be of at least 10 minutes' duration."
    public static let minimumAutologoutSeconds: Int64 = 600

    /// RFC 2449 §4: a command line is at most 255 octets including the CRLF.
    public var commandLine = 255
    /// RFC 1939 §3: "Each argument may be up to 40 characters long." Applied to message
    /// numbers, TOP's line count and SASL mechanism names. USER and PASS are bounded by the
    /// command line only: RFC 2449 §4 raised the line to 255 octets, and real user names
    /// (`user@domain`) and passphrases are longer than 40 octets.
    public var argument = 40
    /// RFC 5034 §4: the AUTH command stays under the 255-octet line of RFC 2449 (a client with a
    /// longer initial response must send it as a continuation instead), but the client's SASL
    /// responses are not bounded by it. We allow 12288 octets for both the AUTH line and its
    /// continuation lines, as RFC 4954 §4 does for SMTP (lenient, like Dovecot, towards clients
    /// that send a long initial response anyway).
    public var authLine = 12_288
    /// Commands accepted in the AUTHORIZATION state before the session is closed. RFC 1939
    /// leaves this open; a real client needs about four (CAPA, STLS, CAPA, AUTH) plus retries.
    public var commandsBeforeLogin = 20
    /// Failed logins (bad credentials, malformed responses, refused plaintext) per connection;
    /// the last one closes the connection with `-ERR [AUTH]` (RFC 3206 §4). Failures per client
    /// address are the handler's business (`AuthThrottle`, from the `.authFailed` action).
    public var failedLogins = 3
    /// Bad commands in a row (unknown, wrong syntax, wrong state) before the connection is
    /// closed (Dovecot: 3 before login, 20 after; one figure here).
    public var badCommands = 10
    /// RFC 1939 §3: the inactivity autologout timer, in AUTHORIZATION and TRANSACTION alike.
    /// Values under 10 minutes are raised to 10 minutes (see `autologout`).
    public var autologoutSeconds: Int64 = 600
    /// The most messages one session lists (a maildrop view): a larger maildrop is served in
    /// parts, its first messages in this session and the rest once those are deleted.
    public var maildropMessages = 100_000

    public init() {}

    /// The autologout timer actually used: never under RFC 1939's 10 minutes.
    public var autologout: Int64 { max(Self.minimumAutologoutSeconds, autologoutSeconds) }
}
