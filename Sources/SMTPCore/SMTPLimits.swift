// Every limit drac-smtpd enforces, in one place, each with the RFC section it comes from.

/// Limits on what a client may send. Defaults follow the RFC minimums that a server must accept
/// (we accept exactly those, no more) and Postfix's defaults where the RFC leaves it open.
public struct SMTPLimits: Sendable, Equatable {
    /// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF.
    public var commandLine = 512
    /// RFC 4954 §4: an AUTH command or continuation line may be up to 12288 octets.
    public var authLine = 12_288
    /// RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including CRLF.
    public var textLine = 1000
    /// RFC 5321 §4.5.3.1.7 says the message size limit is the server's choice (at least 64K);
    /// announced in EHLO with SIZE (RFC 1870) and enforced while streaming. Postfix's default.
    public var messageSize = 10_240_000
    /// RFC 5321 §4.5.3.1.8: at least 100 recipients must be accepted; Postfix takes 1000.
    public var recipients = 1000
    /// Errors (4xx/5xx replies) after which the session is dropped (Postfix smtpd_hard_error_limit).
    public var errors = 20
    /// Server timeout waiting for the next command: RFC 5321 §4.5.3.2.7, at least 5 minutes.
    public var commandTimeoutSeconds: Int64 = 300
    /// Timeout waiting for the next chunk of message text: RFC 5321 §4.5.3.2.5 asks the client
    /// to wait 3 minutes for our reply to each chunk; we give the client as long to send one.
    public var dataTimeoutSeconds: Int64 = 180

    public init() {}
}
