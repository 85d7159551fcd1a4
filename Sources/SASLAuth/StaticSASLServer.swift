// A deterministic in-memory SASL backend (PLAIN, LOGIN) for unit tests of the SMTP and POP3 state machines.

/// A `SASLServerFactory` over a fixed user -> password table, with no I/O and no randomness.
///
/// It mirrors the Cyrus backend where the protocol layers can see it (a test in
/// CyrusSASLServerTests runs the same transcripts through both): names are trimmed and, without
/// "@", get "@realm" appended when a realm is given (so the table is keyed by canonical names,
/// e.g. "alice@example.org"); the identity returned is that canonical name; PLAIN without an
/// initial response gets the empty challenge; LOGIN sends "Username:" / "Password:"; a PLAIN
/// message without exactly two NULs, or a blank user name, is `.malformed`; every other
/// credential failure is `.badCredentials`. No CRAM-MD5: its random challenge is not needed to
/// test a state machine.
public struct StaticSASLServer: SASLServerFactory {
    /// Canonical user name -> password.
    public let users: [String: String]
    public let realm: String?
    /// Offered mechanisms, upper case; only PLAIN and LOGIN are implemented.
    public let offered: [String]
    /// When set, every check fails with `.temporary(reason)`, as Cyrus does when saslauthd is down.
    public let unavailable: String?

    public init(users: [String: String], realm: String? = nil, mechanisms: [String] = ["PLAIN", "LOGIN"],
                unavailable: String? = nil) {
        self.users = users
        self.realm = realm
        self.offered = mechanisms.map { $0.uppercased() }.filter { Self.implemented.contains($0) }
        self.unavailable = unavailable
    }

    static let implemented: Set<String> = ["PLAIN", "LOGIN"]

    public func mechanisms(secure: Bool) -> [String] {
        offered
    }

    public func makeSession(_ info: SASLConnectionInfo) throws -> SASLSession {
        StaticSASLSession(server: self)
    }

    public func checkPassword(user: String, password: String, info: SASLConnectionInfo) -> SASLOutcome {
        guard !user.isEmpty, !user.utf8.contains(0), !password.utf8.contains(0) else {
            return .failure(.malformed)
        }
        return verify(authcid: user, password: password)
    }

    /// The name Cyrus would produce: white space trimmed, "@realm" appended to bare names.
    func canonical(_ name: String) -> String {
        let trimmed = name.trimmingWhitespace()
        if let realm, !trimmed.isEmpty, !trimmed.contains("@") {
            return trimmed + "@" + realm
        }
        return trimmed
    }

    func verify(authcid: String, password: String) -> SASLOutcome {
        let identity = canonical(authcid)
        // Cyrus refuses a blank name before any lookup (see cyrusCanonUser).
        guard !identity.isEmpty else { return .failure(.malformed) }
        if let unavailable {
            return .failure(.temporary(unavailable))
        }
        guard let expected = users[identity], expected == password else {
            return .failure(.badCredentials)
        }
        return .success(identity: identity)
    }
}

/// One connection's exchanges against a `StaticSASLServer`.
final class StaticSASLSession: SASLSession, @unchecked Sendable {
    // @unchecked: all mutable state is behind `lock`.
    private enum State: Equatable {
        case idle
        /// PLAIN sent the empty challenge and waits for the whole message.
        case plainWaiting
        case loginWaitingForUsername
        /// `username` is nil when the client's bytes were not UTF-8.
        case loginWaitingForPassword(username: String?)
    }

    private let server: StaticSASLServer
    private let lock = PThreadMutex()
    private var state = State.idle

    init(server: StaticSASLServer) {
        self.server = server
    }

    func start(mechanism: String, initialResponse: [UInt8]?) -> SASLOutcome {
        lock.withLock {
            state = .idle
            switch mechanism.uppercased() {
            case "PLAIN" where server.offered.contains("PLAIN"):
                // RFC 4616 §2: the client sends the message, as initial response or after an empty challenge.
                guard let initialResponse else {
                    state = .plainWaiting
                    return .challenge([])
                }
                return plain(initialResponse)
            case "LOGIN" where server.offered.contains("LOGIN"):
                // draft-murchison-sasl-login: an initial response is the user name; an empty one
                // counts as none (Cyrus's plugins/login.c does the same).
                guard let initialResponse, !initialResponse.isEmpty else {
                    state = .loginWaitingForUsername
                    return .challenge(Array("Username:".utf8))
                }
                return loginUsername(initialResponse)
            default:
                return .failure(.unknownMechanism)
            }
        }
    }

    func step(_ response: [UInt8]) -> SASLOutcome {
        lock.withLock {
            let current = state
            state = .idle
            switch current {
            case .idle:
                return .failure(.malformed)
            case .plainWaiting:
                return plain(response)
            case .loginWaitingForUsername:
                return loginUsername(response)
            case .loginWaitingForPassword(let username):
                // Bytes that are not UTF-8 match nobody (as with Cyrus and a UTF-8 sasldb).
                guard let username, let password = utf8String(response) else {
                    return .failure(.badCredentials)
                }
                return server.verify(authcid: username, password: password)
            }
        }
    }

    @discardableResult
    func cancel() -> SASLOutcome {
        lock.withLock { state = .idle }
        return .failure(.cancelled)
    }

    private func loginUsername(_ bytes: [UInt8]) -> SASLOutcome {
        // Like Cyrus's LOGIN, the name ends at a NUL; a name that is not UTF-8 matches nobody.
        let name = bytes.prefix(while: { $0 != 0 })
        state = .loginWaitingForPassword(username: utf8String(name))
        return .challenge(Array("Password:".utf8))
    }

    /// RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd. As in Cyrus's
    /// plugins/plain.c, anything but exactly two NULs is malformed; an empty password or bytes
    /// that are not UTF-8 just match nobody (RFC 4616 would call both malformed; we answer what
    /// the real backend answers).
    private func plain(_ message: [UInt8]) -> SASLOutcome {
        let parts = message.split(separator: 0, omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            return .failure(.malformed)
        }
        guard let authzid = utf8String(parts[0]), let authcid = utf8String(parts[1]),
              let password = utf8String(parts[2]) else {
            return .failure(.badCredentials)
        }
        let outcome = server.verify(authcid: authcid, password: password)
        // RFC 4616 §2: a server may refuse an authzid other than the authcid; like Cyrus's default
        // proxy policy we only accept the same identity (compared in canonical form).
        if case .success(let identity) = outcome, !authzid.isEmpty, server.canonical(authzid) != identity {
            return .failure(.badCredentials)
        }
        return outcome
    }
}

/// The bytes as a String if they are valid UTF-8. (`String(validating:as:)` needs macOS 15.)
private func utf8String<Bytes: Collection>(_ bytes: Bytes) -> String? where Bytes.Element == UInt8 {
    let s = String(decoding: bytes, as: UTF8.self)
    return s.utf8.elementsEqual(bytes) ? s : nil
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        guard let first = firstIndex(where: { !$0.isWhitespace }),
              let last = lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return String(self[first...last])
    }
}
