// The step-by-step SASL server protocol that drac-smtpd and drac-pop3d talk to (after Postfix xsasl.h).
//
// The protocol layer owns the wire format: it base64-decodes client responses (RFC 4954 §4, RFC 5034
// §4), turns "=" into an empty initial response, handles "*" (cancel) and maps outcomes to replies.
// This layer sees raw bytes only and never says *why* credentials were refused.

/// What one SASL step produced.
public enum SASLOutcome: Sendable, Equatable {
    /// Send these bytes as the next server challenge (the protocol layer base64-encodes them;
    /// an empty array is the empty challenge `334 ` of RFC 4954 §4).
    case challenge([UInt8])
    /// Authenticated. `identity` is the authorization identity in canonical form, as the backend
    /// gives it (Cyrus: `SASL_USERNAME`; see `CyrusSASLServer` for the exact forms).
    case success(identity: String)
    /// The exchange is over and failed.
    case failure(SASLFailure)
}

/// Why an exchange failed, at the granularity the protocol replies need (RFC 4954 §6, RFC 3463).
public enum SASLFailure: Sendable, Equatable {
    /// Wrong password, unknown user, disabled or expired account, authorization refused: one case
    /// for all so that neither the reply nor its timing tells a client which. SMTP: 535 5.7.8.
    case badCredentials
    /// The client's response could not be parsed (SASL_BADPROT; PLAIN without two NULs...).
    /// SMTP: 501 5.5.2.
    case malformed
    /// The mechanism is not offered (SASL_NOMECH). SMTP: 504 5.5.4.
    case unknownMechanism
    /// The mechanism is not allowed on this channel (SASL_TOOWEAK, SASL_ENCRYPT). SMTP: 534 5.7.9 / 538 5.7.11.
    case tooWeak
    /// The backend could not decide (saslauthd down, SASL_TRYAGAIN, SASL_UNAVAIL, anything
    /// unexpected). The text is for the log, never for the client. SMTP: 454 4.7.0.
    case temporary(String)
    /// The client cancelled with "*" (RFC 4954 §4). SMTP: 501 5.7.0.
    case cancelled
}

/// One authentication exchange per `start`; a session may run several exchanges in a row (a client
/// may retry AUTH after a failure), each begun by `start`.
///
/// Calls may block (a saslauthd round trip), so run them off the event loop. A session is used by
/// one exchange at a time; implementations serialize calls internally, so handing the session to a
/// thread pool is safe (hence `Sendable`).
public protocol SASLSession: AnyObject, Sendable {
    /// Begins an exchange. `initialResponse` is nil when the client sent none and `[]` for the
    /// empty initial response `=` (RFC 4954 §4). Mechanism names are case-insensitive.
    func start(mechanism: String, initialResponse: [UInt8]?) -> SASLOutcome
    /// Continues the exchange after a `.challenge`. Outside an exchange it returns `.failure(.malformed)`.
    func step(_ response: [UInt8]) -> SASLOutcome
    /// Abandons the current exchange (the client sent "*"); the next `start` begins afresh.
    /// Returns `.failure(.cancelled)` so a state machine can feed it to the same reply path.
    @discardableResult
    func cancel() -> SASLOutcome
}

/// One end of a TCP connection, as Cyrus wants it ("ip;port").
public struct SASLEndpoint: Sendable, Hashable {
    /// Numeric address, IPv4 dotted quad or IPv6 without brackets.
    public var ip: String
    public var port: Int

    public init(ip: String, port: Int) {
        self.ip = ip
        self.port = port
    }
}

/// What the SASL backend may know about a connection.
public struct SASLConnectionInfo: Sendable, Hashable {
    /// Registered service name: "smtp" for drac-smtpd, "pop" for drac-pop3d (RFC 4954 §3,
    /// RFC 5034 §3; saslauthd passes it on to PAM as the service).
    public var service: String
    /// This server's host name; Cyrus's default realm when no realm is configured.
    public var serverFQDN: String
    public var local: SASLEndpoint?
    public var remote: SASLEndpoint?
    /// True under TLS. Whether plaintext mechanisms are acceptable without TLS is the protocol
    /// layer's decision; the backend is only told that the channel is protected.
    public var secure: Bool

    public init(service: String, serverFQDN: String, local: SASLEndpoint? = nil,
                remote: SASLEndpoint? = nil, secure: Bool = false) {
        self.service = service
        self.serverFQDN = serverFQDN
        self.local = local
        self.remote = remote
        self.secure = secure
    }
}

/// A source of SASL sessions: one factory per process (or per configuration), one session per
/// client connection.
public protocol SASLServerFactory: Sendable {
    /// Mechanism names to advertise (EHLO AUTH / POP3 CAPA SASL), upper case, in configured order.
    /// PLAIN and LOGIN are listed even when `secure` is false: refusing AUTH outside TLS is the
    /// protocol layer's decision.
    func mechanisms(secure: Bool) -> [String]
    /// A new session for one client connection.
    func makeSession(_ info: SASLConnectionInfo) throws -> SASLSession
    /// Checks a plaintext password (POP3 USER/PASS, RFC 1939 §7). Returns `.success` or `.failure`.
    func checkPassword(user: String, password: String, info: SASLConnectionInfo) -> SASLOutcome
}

/// The error SASLAuth throws (setting up, never during an exchange: exchanges return outcomes).
public struct SASLError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, extensible without breaking `switch`es.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        public let name: String
        /// `sasl_server_init` failed.
        public static let libraryInitialization = Code(name: "library initialization")
        /// The configuration cannot work (no usable mechanism, unreadable sasldb...).
        public static let configuration = Code(name: "configuration")
        /// A connection context could not be created (`sasl_server_new`: bad address, no memory).
        public static let connection = Code(name: "connection")
        public var description: String { name }
    }

    public let code: Code
    public let detail: String
    /// The Cyrus result code, when one is behind the error.
    public let result: Int32?

    public init(_ code: Code, _ detail: String, result: Int32? = nil) {
        self.code = code
        self.detail = detail
        self.result = result
    }

    public var description: String {
        "SASL \(code): \(detail)" + (result.map { " (result \($0))" } ?? "")
    }
}
