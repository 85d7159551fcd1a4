// The POP3 session as a pure state machine: lines and results in, actions out (no I/O).
import DRACCore
import SMTPCore

/// What the session needs to know about its listener, set once per connection.
public struct POP3Settings: Sendable {
    /// This server's name, shown in the greeting.
    public var hostname: String
    public var limits: POP3Limits
    /// SASL mechanisms offered outside TLS and under TLS (the SASL backend's lists); the
    /// plaintext ones are taken out of the first when `plaintextRequiresTLS` holds.
    public var mechanismsPlain: [String]
    public var mechanismsSecure: [String]
    /// Refuse passwords in the clear (USER/PASS, AUTH PLAIN and LOGIN) outside TLS (RFC 2595 §2.1,
    /// RFC 5034 §7; Dovecot's `auth_allow_cleartext = no`). The caller computes it: drac.conf's
    /// option, off on loopback listeners.
    public var plaintextRequiresTLS: Bool
    /// STLS can be offered: a certificate is configured (the session knows whether it is under
    /// TLS already).
    public var stlsAvailable: Bool
    /// The mechanisms that carry the password as such (RFC 4616 PLAIN, the LOGIN draft).
    public var plaintextMechanisms: Set<String>

    public init(hostname: String, limits: POP3Limits = POP3Limits(), mechanismsPlain: [String] = [],
                mechanismsSecure: [String] = [], plaintextRequiresTLS: Bool = true, stlsAvailable: Bool = false,
                plaintextMechanisms: Set<String> = ["PLAIN", "LOGIN"]) {
        self.hostname = hostname
        self.limits = limits
        self.mechanismsPlain = mechanismsPlain
        self.mechanismsSecure = mechanismsSecure
        self.plaintextRequiresTLS = plaintextRequiresTLS
        self.stlsAvailable = stlsAvailable
        self.plaintextMechanisms = plaintextMechanisms
    }
}

/// The handler's answer to `.openMaildrop`.
public enum MaildropOpenResult: Sendable, Equatable {
    /// The maildrop is locked for this session; its messages in POP3 order (message 1 first).
    case ok([MessageInfo])
    /// Another session holds the lock (RFC 2449 §8.1.2 `[IN-USE]`).
    case inUse
    /// Anything else (unreadable, wrong owner, I/O error); the text is for the log only.
    case failed(String)
}

/// RFC 1939 §3's states, and the end.
public enum POP3State: Sendable, Equatable {
    case authorization
    case transaction
    case update
    case closed
}

/// What the connection handler must do. It runs the actions in order. Actions that ask for
/// something (`checkPassword`, `authStart`, `authStep`, `openMaildrop`, `sendMessage`,
/// `commitDeletions`) leave the session waiting: the handler feeds it nothing else until it
/// reports the result, so pipelined commands (RFC 2449 §6.6) wait in the input buffer.
public enum POP3Action: Sendable, Equatable, CustomStringConvertible {
    case reply(POP3Response)
    /// Send the response (if any), then close the connection. No response: RFC 1939 §3's
    /// autologout, or a connection whose output can no longer be framed.
    case close(POP3Response?)
    /// Send the response, discard every octet already received after the STLS line (RFC 2595
    /// §4, the plaintext-injection attack), then start the TLS handshake; `tlsEstablished()`
    /// when it is done.
    case startTLS(POP3Response)
    /// USER/PASS (RFC 1939 §7): check the password through SASL (off the event loop), then call
    /// `passwordChecked`. Never log this action's password.
    case checkPassword(user: String, password: String)
    /// Run the SASL server (off the event loop) and call `authResult`. The octets may hold a
    /// password (PLAIN): never log them.
    case authStart(mechanism: String, initial: [UInt8]?)
    case authStep([UInt8])
    /// Authenticated: find and lock this user's maildrop, read sizes and unique-ids, and call
    /// `maildropOpened`. The lock must be released when the connection ends, whatever happens.
    case openMaildrop(user: String)
    /// RETR / TOP: open message `number` (1-based). If that fails, call `messageUnavailable`
    /// without sending anything. Otherwise send `response`, then the message through a
    /// `DotStuffer(topLines:)` including its terminating line, and call `messageSent`; if the
    /// output fails halfway, close the connection and call `connectionClosed`.
    case sendMessage(number: Int, topLines: Int?, response: POP3Response)
    /// The UPDATE state (RFC 1939 §6): remove these messages (1-based, ascending) from the
    /// maildrop and call `deletionsCommitted`. Emitted only after QUIT in TRANSACTION.
    case commitDeletions([Int])
    /// A user logged in: authenticated *and* the maildrop opened. Tell DRAC about the client's
    /// address (pop-before-SMTP), without delaying the session; clear the address in the
    /// handler's `AuthThrottle`.
    case recordLogin(user: String, mechanism: String)
    /// A failed login from this client (bad credentials, malformed exchange): the handler
    /// applies the per-address throttle before the reply that follows.
    case authFailed(user: String?)
    case log(String)

    /// For debugging output: secrets are never shown.
    public var description: String {
        switch self {
        case .reply(let r): "reply(\(r))"
        case .close(let r): "close(\(r.map { "\($0)" } ?? "no response"))"
        case .startTLS(let r): "startTLS(\(r))"
        case .checkPassword(let user, _): "checkPassword(user: \(user), password: <hidden>)"
        case .authStart(let mech, let initial): "authStart(\(mech), initial: \(initial.map { "<\($0.count) octets>" } ?? "none"))"
        case .authStep(let bytes): "authStep(<\(bytes.count) octets>)"
        case .openMaildrop(let user): "openMaildrop(\(user))"
        case .sendMessage(let n, let top, let r): "sendMessage(\(n), top: \(top.map(String.init) ?? "nil"), \(r))"
        case .commitDeletions(let ns): "commitDeletions(\(ns))"
        case .recordLogin(let user, let mech): "recordLogin(\(user), \(mech))"
        case .authFailed(let user): "authFailed(\(user ?? "-"))"
        case .log(let t): "log(\(t))"
        }
    }
}

/// One POP3 session (RFC 1939, RFC 2449, RFC 5034, RFC 2595). Feed it lines with
/// `received(line:)` and the results of the actions it asked for; it returns the next actions.
///
/// AUTHORIZATION: greeting, CAPA, USER/PASS, AUTH (with its continuation lines), STLS, QUIT.
/// A successful authentication asks for the maildrop; only once it is open does the session
/// answer `+OK`, enter TRANSACTION and emit `.recordLogin` (so a client that authenticates but
/// cannot get its maildrop is not recorded in DRAC). TRANSACTION: STAT, LIST, RETR, DELE, NOOP,
/// RSET, TOP, UIDL, CAPA, QUIT. UPDATE: after QUIT in TRANSACTION, the deletions are committed,
/// then the session closes. A session that ends any other way (a dropped connection, the
/// autologout timer) deletes nothing.
public struct POP3Session: Sendable {
    enum Waiting: Sendable, Equatable {
        case password(user: String)
        case sasl
        case maildrop(user: String, mechanism: String)
        case message(number: Int, top: Bool)
        case commit([Int])
    }

    enum Phase: Sendable, Equatable {
        case authorization
        case authContinuation           // AUTH: waiting for the client's next response line
        case transaction
        case update
        case closed
    }

    public let settings: POP3Settings
    public let client: IPAddress
    public let local: IPAddress?
    public private(set) var secure: Bool
    var phase = Phase.authorization
    var waiting: Waiting?

    /// The name from USER, until PASS (or STLS, which forgets it: RFC 2595 §4).
    var pendingUser: String?
    /// The exchange under way or just ended, for logs: its mechanism and (USER/PASS) user.
    var attemptMechanism: String?
    var attemptUser: String?
    /// The connection went away while the deletions were being committed: log only.
    var peerGone = false
    /// Authentication succeeded (the maildrop may still fail to open): for the disconnect log.
    var authenticated: (user: String, method: String)?

    /// After login: who, how, and the maildrop view.
    public private(set) var user: String?
    public private(set) var mechanism: String?
    public private(set) var maildrop: Maildrop?

    public private(set) var failedLogins = 0
    public private(set) var commandsBeforeLogin = 0
    public private(set) var badCommandsInARow = 0
    var triedPlaintext = false

    /// Dovecot's logout counters.
    public private(set) var topCount = 0
    public private(set) var topBytes = 0
    public private(set) var retrCount = 0
    public private(set) var retrBytes = 0
    public private(set) var deletedCount = 0

    public init(settings: POP3Settings, client: IPAddress, local: IPAddress? = nil, secure: Bool) {
        self.settings = settings
        self.client = client.unmapped
        self.local = local?.unmapped
        self.secure = secure
    }

    public var state: POP3State {
        switch phase {
        case .authorization, .authContinuation: .authorization
        case .transaction: .transaction
        case .update: .update
        case .closed: .closed
        }
    }

    public var isWaiting: Bool { waiting != nil }
    public var isClosed: Bool { phase == .closed }

    /// The longest line the handler should buffer: an AUTH line or a SASL response may be
    /// long (RFC 5034 §4); other commands are checked against RFC 2449's 255 octets here.
    public var lineLimit: Int { settings.limits.authLine }

    /// RFC 1939 §3: the autologout timer, re-armed after every line from the client. When it
    /// expires, call `timedOut()`.
    public var timeoutSeconds: Int64 { settings.limits.autologout }

    /// The greeting (RFC 1939 §4). No APOP timestamp: APOP is not offered.
    public func greeting() -> POP3Action {
        .reply(.ok("\(settings.hostname) drac-pop3d ready."))
    }

    /// The TLS handshake finished (after STLS, or at once for implicit TLS on port 995).
    public mutating func tlsEstablished() { secure = true }

    /// Passwords may travel on this connection (USER/PASS, AUTH PLAIN/LOGIN).
    public var plaintextAllowed: Bool { secure || !settings.plaintextRequiresTLS }

    /// The SASL mechanisms offered now (CAPA SASL, AUTH): the secure or plain list, without the
    /// plaintext mechanisms where passwords may not travel (Dovecot hides them too).
    public var offeredMechanisms: [String] {
        let base = secure ? settings.mechanismsSecure : settings.mechanismsPlain
        return plaintextAllowed ? base : base.filter { !settings.plaintextMechanisms.contains($0) }
    }

    // MARK: - Input

    /// A complete line from the client (CRLF removed). `tooLong`: the line was over
    /// `lineLimit` and has been dropped.
    public mutating func received(line: Substring, tooLong: Bool = false) -> [POP3Action] {
        if phase == .closed { return [] }
        precondition(waiting == nil, "line fed while waiting")
        if tooLong {
            if phase == .authContinuation {
                phase = .authorization
                return [.log(loginLog("Login failed (SASL response too long)", user: attemptUser, method: attemptMechanism))] +
                    bad(.err("Input line too long."))
            }
            return bad(.err("Input line too long."))
        }
        if phase == .authContinuation { return authContinuation(line) }
        if line.utf8.count > settings.limits.commandLine - 2 && !Self.isAuthCommand(line) {
            return countBeforeLogin() ?? bad(.err("Input line too long."))
        }
        let command = POP3CommandParser.parse(line, limits: settings.limits)
        if let closing = countBeforeLogin() { return closing }
        switch phase {
        case .authorization: return authorization(command)
        case .transaction: return transaction(command)
        case .authContinuation, .update, .closed: preconditionFailure("command in \(phase)")
        }
    }

    /// The result of `.checkPassword` (USER/PASS): `.success` or a failure.
    public mutating func passwordChecked(_ result: AuthResult) -> [POP3Action] {
        if phase == .closed { return [] }
        guard case .password? = waiting else { preconditionFailure("password result while not checking one") }
        waiting = nil
        if case .challenge = result { return authOutcome(.temporary("SASL asked for more in a password check")) }
        return authOutcome(result)
    }

    /// The result of `.authStart` / `.authStep`.
    public mutating func authResult(_ result: AuthResult) -> [POP3Action] {
        if phase == .closed { return [] }
        guard case .sasl? = waiting else { preconditionFailure("SASL result while not authenticating") }
        waiting = nil
        if case .challenge(let bytes) = result {
            phase = .authContinuation
            return [.reply(.continuation(Base64.encode(bytes)))]
        }
        return authOutcome(result)
    }

    /// The result of `.openMaildrop`.
    public mutating func maildropOpened(_ result: MaildropOpenResult) -> [POP3Action] {
        if phase == .closed { return [] }
        guard case .maildrop(let user, let mech)? = waiting else { preconditionFailure("maildrop result while not opening one") }
        waiting = nil
        switch result {
        case .ok(var messages):
            if let why = Self.invalidView(messages) {
                return [.log(loginLog("Login failed (maildrop view invalid: \(why))", user: user, method: mech))] +
                    closeSession(reason: "Internal error", response: .err(.sysTemp, Self.internalError))
            }
            var out: [POP3Action] = []
            if messages.count > settings.limits.maildropMessages {
                out.append(.log("warning: user=<\(Self.logSafe(user))>: maildrop has \(messages.count) messages; this session shows the first \(settings.limits.maildropMessages)"))
                messages = Array(messages.prefix(settings.limits.maildropMessages))
            }
            maildrop = Maildrop(messages)
            self.user = user
            mechanism = mech
            phase = .transaction
            badCommandsInARow = 0
            return out + [.recordLogin(user: user, mechanism: mech),
                          .log(loginLog("Login", user: user, method: mech)),
                          .reply(.ok("Logged in."))]
        case .inUse:
            // RFC 1939 §4 lets the server close or stay in AUTHORIZATION after a failed lock;
            // Dovecot (pop3_lock_session) answers [IN-USE] and disconnects. So do we: the
            // client will retry later, and a loop of AUTH attempts against a locked maildrop
            // gains nothing.
            return [.log(loginLog("Login failed (maildrop in use)", user: user, method: mech))] +
                closeSession(reason: "Maildrop in use", response: .err(.inUse, "Mailbox is locked by another POP3 session."))
        case .failed(let why):
            return [.log(loginLog("Login failed (maildrop could not be opened: \(Self.logSafe(why, max: 300)))", user: user, method: mech))] +
                closeSession(reason: "Internal error", response: .err(.sysTemp, Self.internalError))
        }
    }

    /// `.sendMessage` is done: `octets` went out after the `+OK` line (DotStuffer's `octetsOut`).
    public mutating func messageSent(octets: Int) -> [POP3Action] {
        if phase == .closed { return [] }
        guard case .message(_, let top)? = waiting else { preconditionFailure("message sent while not sending one") }
        waiting = nil
        if top { topCount += 1; topBytes += octets } else { retrCount += 1; retrBytes += octets }
        return []
    }

    /// `.sendMessage` could not open the message (nothing was sent): removed behind our back
    /// (a Maildir file deleted by another program), unreadable.
    public mutating func messageUnavailable(reason: String) -> [POP3Action] {
        if phase == .closed { return [] }
        guard case .message(let n, _)? = waiting else { preconditionFailure("message result while not sending one") }
        waiting = nil
        return [.log("error: user=<\(Self.logSafe(user ?? ""))>: message \(n) unavailable: \(Self.logSafe(reason, max: 300))")] +
            bad(.err("Message \(n) expunged."))
    }

    /// The result of `.commitDeletions`.
    public mutating func deletionsCommitted(ok: Bool) -> [POP3Action] {
        guard case .commit(let numbers)? = waiting else {
            if phase == .closed { return [] }
            preconditionFailure("deletions committed while not in UPDATE")
        }
        waiting = nil
        let left = (maildrop?.messages.count ?? 0) - (ok ? numbers.count : 0)
        var out: [POP3Action] = []
        let response: POP3Response
        if ok {
            deletedCount = numbers.count
            response = .ok("Logging out, \(numbers.count) message\(numbers.count == 1 ? "" : "s") deleted (\(left) left).")
        } else {
            // RFC 1939 §6: "-ERR some deleted messages not removed".
            out.append(.log("error: user=<\(Self.logSafe(user ?? ""))>: deleting \(numbers.count) messages failed"))
            response = .err(.sysTemp, "Some deleted messages were not removed.")
        }
        if peerGone {
            phase = .closed
            return out + [.log(disconnectLog(reason: "Connection closed after QUIT"))]
        }
        return out + closeSession(reason: ok ? "Logged out" : "Logged out, deletions failed", response: response)
    }

    /// The autologout timer expired. RFC 1939 §3: close without a response, and without the
    /// UPDATE state (nothing is deleted).
    public mutating func timedOut() -> [POP3Action] {
        if phase == .closed { return [] }
        waiting = nil
        return closeSession(reason: "Inactivity", response: nil)
    }

    /// The server is stopping: `-ERR [SYS/TEMP]` and close; nothing is deleted.
    public mutating func shuttingDown() -> [POP3Action] {
        if phase == .closed { return [] }
        if case .commit? = waiting { return [] }     // let UPDATE finish: the client did QUIT
        waiting = nil
        return closeSession(reason: "Server shutting down", response: .err(.sysTemp, "Server shutting down."))
    }

    /// The handler ends the session for a reason of its own (the per-address failed-login
    /// limit): the disconnect log line, then `response` and close. Nothing is deleted.
    public mutating func disconnect(reason: String, response: POP3Response?) -> [POP3Action] {
        if phase == .closed { return [] }
        waiting = nil
        return closeSession(reason: reason, response: response)
    }

    /// The connection is gone (the peer closed it, a write failed). Returns the disconnect log
    /// line. Nothing is deleted, unless QUIT's deletions are already being committed: that
    /// UPDATE completes (RFC 1939 §6 only needs the QUIT), and `deletionsCommitted` logs.
    public mutating func connectionClosed(reason: String = "Connection closed") -> [POP3Action] {
        if phase == .closed { return [] }
        if case .commit? = waiting { peerGone = true; return [] }
        waiting = nil
        phase = .closed
        return [.log(disconnectLog(reason: reason))]
    }

    // MARK: - AUTHORIZATION

    private mutating func authorization(_ command: POP3Command) -> [POP3Action] {
        switch command {
        case .user(let name):
            guard plaintextAllowed else { return plaintextRefused(user: name, method: "PLAIN") }
            pendingUser = name
            badCommandsInARow = 0
            return [.reply(.ok())]
        case .pass(let password):
            guard let name = pendingUser else {
                // Dovecot: a client may ignore USER's reply and show only PASS's.
                if !plaintextAllowed { return plaintextRefused(user: nil, method: "PLAIN") }
                return bad(.err("No username given."))
            }
            pendingUser = nil
            guard plaintextAllowed else { return plaintextRefused(user: name, method: "PLAIN") }
            badCommandsInARow = 0
            // USER/PASS runs as SASL PLAIN in the backend; Dovecot logs it as method=PLAIN too.
            attemptMechanism = "PLAIN"
            attemptUser = name
            waiting = .password(user: name)
            return [.checkPassword(user: name, password: password)]
        case .auth(nil, _):
            // The pre-RFC 5034 mechanism listing (Outlook): +OK, one mechanism a line.
            badCommandsInARow = 0
            return [.reply(.multiline("", offeredMechanisms))]
        case .auth(let mech?, let initial):
            return auth(mech, initial)
        case .apop:
            badCommandsInARow = 0
            return [.reply(.err("APOP not enabled."))]
        case .stls:
            if secure { return bad(.err("TLS is already active.")) }
            guard settings.stlsAvailable else { return bad(.err("TLS support isn't enabled.")) }
            // RFC 2595 §4: forget what the client said before TLS (the USER name). The failure
            // and command counters stay: STLS must not reset them.
            pendingUser = nil
            badCommandsInARow = 0
            return [.startTLS(.ok("Begin TLS negotiation now."))]
        case .capa:
            badCommandsInARow = 0
            return [.reply(capabilities())]
        case .quit:
            return closeSession(reason: "Logged out", response: .ok("Logging out."))
        case .stat, .list, .retr, .dele, .noop, .rset, .top, .uidl:
            return bad(.err("\(command.verb) not allowed before login."))
        case .syntaxError(_, let text):
            return bad(.err(text))
        case .unknown(let verb):
            return bad(.err("Unknown command: \(verb)"))
        }
    }

    private mutating func auth(_ mech: String, _ initial: String?) -> [POP3Action] {
        if settings.mechanismsPlain.isEmpty && settings.mechanismsSecure.isEmpty {
            return bad(.err(.auth, "Authentication not enabled."))
        }
        if !plaintextAllowed && settings.plaintextMechanisms.contains(mech) {
            return plaintextRefused(user: nil, method: mech)
        }
        guard offeredMechanisms.contains(mech) else {
            return bad(.err(.auth, "Unsupported authentication mechanism."))
        }
        var bytes: [UInt8]? = nil
        if let initial {
            // RFC 5034 §4: "=" is an empty initial response. "*" cancels, as in a continuation.
            if initial == "*" { return bad(.err("Authentication aborted by client.")) }
            if initial == "=" { bytes = [] } else {
                guard let b = Base64.decode(initial) else { return bad(.err(.auth, "Invalid base64 data in initial response.")) }
                bytes = b
            }
        }
        badCommandsInARow = 0
        attemptMechanism = mech
        attemptUser = nil
        waiting = .sasl
        return [.authStart(mechanism: mech, initial: bytes)]
    }

    private mutating func authContinuation(_ line: Substring) -> [POP3Action] {
        phase = .authorization
        if line == "*" {
            // RFC 5034 §4: the client cancels; not a failed login.
            return [.log(loginLog("Login aborted by client", user: nil, method: attemptMechanism)),
                    .reply(.err("Authentication aborted by client."))]
        }
        guard let bytes = Base64.decode(line) else {
            return loginFailure(.err(.auth, "Invalid base64 data in response."), reason: "invalid base64 in response", counts: true)
        }
        waiting = .sasl
        return [.authStep(bytes)]
    }

    /// A finished exchange (USER/PASS or AUTH) that did not ask for more.
    private mutating func authOutcome(_ result: AuthResult) -> [POP3Action] {
        let mech = attemptMechanism ?? "?"
        switch result {
        case .success(let identity):
            authenticated = (identity, mech)
            waiting = .maildrop(user: identity, mechanism: mech)
            return [.openMaildrop(user: identity)]
        case .badCredentials:
            return loginFailure(.err(.auth, "Authentication failed."), reason: "authentication failed", counts: true)
        case .malformed:
            return loginFailure(.err(.auth, "Malformed authentication response."), reason: "malformed response", counts: true)
        case .unknownMechanism:
            return loginFailure(.err(.auth, "Unsupported authentication mechanism."), reason: "unknown mechanism", counts: false)
        case .tooWeak:
            return loginFailure(.err(.auth, "Authentication mechanism too weak for this connection."), reason: "mechanism too weak", counts: false)
        case .temporary(let why):
            // RFC 3206 §5: [SYS/TEMP]; the reason is for the log only.
            return loginFailure(.err(.sysTemp, "Temporary authentication failure."),
                                reason: "temporary failure: \(Self.logSafe(why, max: 300))", counts: false)
        case .challenge:
            preconditionFailure("challenge handled by the caller")
        }
    }

    private mutating func loginFailure(_ response: POP3Response, reason: String, counts: Bool) -> [POP3Action] {
        phase = .authorization
        var out: [POP3Action] = [.log(loginLog("Login failed (\(reason))", user: attemptUser, method: attemptMechanism))]
        if counts {
            failedLogins += 1
            out.append(.authFailed(user: attemptUser))
            if failedLogins >= settings.limits.failedLogins {
                return out + closeSession(reason: "Too many failed logins", response: response)
            }
        }
        return out + [.reply(response)]
    }

    /// Dovecot's answer when a password would travel in the clear (RFC 2595 §2.1). Counts as a
    /// failed login (the password may be exposed already), but not for the address throttle.
    private mutating func plaintextRefused(user: String?, method: String) -> [POP3Action] {
        triedPlaintext = true
        failedLogins += 1
        attemptUser = user
        attemptMechanism = method
        let response = POP3Response.err(.auth, Self.plaintextDisallowed)
        let log = POP3Action.log(loginLog("Login failed (plaintext authentication disallowed on non-secure connection)", user: user, method: method))
        if failedLogins >= settings.limits.failedLogins {
            return [log] + closeSession(reason: "Too many failed logins", response: response)
        }
        return [log, .reply(response)]
    }

    /// Dovecot's text, word for word.
    public static let plaintextDisallowed = "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
    /// Dovecot's MAIL_ERRSTR_CRITICAL_MSG.
    public static let internalError = "Internal error occurred. Refer to server log for more information."

    /// RFC 2449 §5: the capabilities of this state. USER, SASL and STLS only before login; USER
    /// and the plaintext mechanisms only where passwords may travel; STLS only when not yet
    /// under TLS. No EXPIRE and no LOGIN-DELAY: we impose neither.
    func capabilities() -> POP3Response {
        var caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if state == .authorization {
            if settings.stlsAvailable && !secure { caps.append("STLS") }
            if plaintextAllowed { caps.append("USER") }
            let mechs = offeredMechanisms
            if !mechs.isEmpty { caps.append("SASL " + mechs.joined(separator: " ")) }
        }
        caps.append("IMPLEMENTATION drac-pop3d")
        return .multiline("Capability list follows", caps)
    }

    // MARK: - TRANSACTION

    private mutating func transaction(_ command: POP3Command) -> [POP3Action] {
        guard var drop = maildrop else { preconditionFailure("TRANSACTION without a maildrop") }
        switch command {
        case .stat:
            badCommandsInARow = 0
            return [.reply(.ok("\(drop.count) \(drop.size)"))]
        case .list(nil):
            badCommandsInARow = 0
            return [.reply(.multiline("\(drop.count) messages (\(drop.size) octets)", drop.live.map { "\($0.number) \($0.info.size)" }))]
        case .list(let n?):
            if let e = lookupError(n, drop, verb: "LIST") { return bad(e) }
            badCommandsInARow = 0
            return [.reply(.ok("\(n) \(drop.messages[n - 1].size)"))]
        case .uidl(nil):
            badCommandsInARow = 0
            return [.reply(.multiline("", drop.live.map { "\($0.number) \($0.info.uid)" }))]
        case .uidl(let n?):
            if let e = lookupError(n, drop, verb: "UIDL") { return bad(e) }
            badCommandsInARow = 0
            return [.reply(.ok("\(n) \(drop.messages[n - 1].uid)"))]
        case .retr(let n):
            if let e = lookupError(n, drop, verb: "RETR") { return bad(e) }
            badCommandsInARow = 0
            waiting = .message(number: n, top: false)
            return [.sendMessage(number: n, topLines: nil, response: .ok("\(drop.messages[n - 1].size) octets"))]
        case .top(let n, let lines):
            if let e = lookupError(n, drop, verb: "TOP") { return bad(e) }
            badCommandsInARow = 0
            waiting = .message(number: n, top: true)
            return [.sendMessage(number: n, topLines: lines, response: .ok())]
        case .dele(let n):
            if let e = lookupError(n, drop, verb: "DELE") { return bad(e) }
            badCommandsInARow = 0
            drop.markDeleted(n)
            maildrop = drop
            return [.reply(.ok("message \(n) deleted"))]
        case .noop:
            badCommandsInARow = 0
            return [.reply(.ok())]
        case .rset:
            badCommandsInARow = 0
            drop.unmarkAll()
            maildrop = drop
            return [.reply(.ok("maildrop has \(drop.count) messages (\(drop.size) octets)"))]
        case .capa:
            badCommandsInARow = 0
            return [.reply(capabilities())]
        case .quit:
            return enterUpdate(drop)
        case .user, .pass, .auth, .apop, .stls:
            return bad(.err("\(command.verb) not allowed after login."))
        case .syntaxError(_, let text):
            return bad(.err(text))
        case .unknown(let verb):
            return bad(.err("Unknown command: \(verb)"))
        }
    }

    /// RFC 1939's replies for a number out of range or a message marked deleted, nil for a live
    /// message. These count as bad commands, so that a client cannot loop on them.
    private func lookupError(_ n: Int, _ drop: Maildrop, verb: String) -> POP3Response? {
        switch drop.lookup(n) {
        case .message: return nil
        case .deleted: return .err(verb == "DELE" ? "message \(n) already deleted" : "message \(n) is deleted")
        case .noSuchMessage:
            let total = drop.messages.count
            return .err("no such message, only \(total) message\(total == 1 ? "" : "s") in maildrop")
        }
    }

    /// QUIT in TRANSACTION: the UPDATE state (RFC 1939 §6).
    private mutating func enterUpdate(_ drop: Maildrop) -> [POP3Action] {
        phase = .update
        let numbers = drop.deletedNumbers
        if numbers.isEmpty {
            return closeSession(reason: "Logged out", response: .ok("Logging out, \(drop.messages.count) message\(drop.messages.count == 1 ? "" : "s") left."))
        }
        waiting = .commit(numbers)
        return [.commitDeletions(numbers)]
    }

    // MARK: - Errors, limits, logs

    /// Counts a command in AUTHORIZATION; past the limit, the session closes.
    private mutating func countBeforeLogin() -> [POP3Action]? {
        guard phase == .authorization else { return nil }
        commandsBeforeLogin += 1
        guard commandsBeforeLogin > settings.limits.commandsBeforeLogin else { return nil }
        return closeSession(reason: "Too many commands before login", response: .err("Too many commands before login."))
    }

    /// An error response to a bad command; at the limit of bad commands in a row, the session
    /// also closes (Dovecot: "Too many bad commands.").
    private mutating func bad(_ response: POP3Response) -> [POP3Action] {
        badCommandsInARow += 1
        if badCommandsInARow >= settings.limits.badCommands {
            return [.reply(response)] + closeSession(reason: "Too many bad commands", response: .err("Too many bad commands."))
        }
        return [.reply(response)]
    }

    /// Ends the session: the disconnect log line, then the closing response.
    private mutating func closeSession(reason: String, response: POP3Response?) -> [POP3Action] {
        let log = disconnectLog(reason: reason)
        phase = .closed
        waiting = nil
        return [.log(log), .close(response)]
    }

    /// Dovecot's disconnect lines. Before login: `Disconnected: Logged out (auth failed, 2
    /// attempts): user=<u>, method=PLAIN, rip=..., lip=...`. After login: `Disconnected:
    /// Logged out top=0/0, retr=1/1234, del=0/2, size=5678: user=<u>, rip=..., lip=..., TLS`
    /// (top and retr: commands/octets sent; del: deleted/messages; size: octets of the maildrop).
    func disconnectLog(reason: String) -> String {
        if let drop = maildrop, let u = user {
            return "Disconnected: \(reason) top=\(topCount)/\(topBytes), retr=\(retrCount)/\(retrBytes), " +
                "del=\(deletedCount)/\(drop.messages.count), size=\(drop.totalSize): " + fields(user: u, method: nil)
        }
        if let (u, m) = authenticated {
            return "Disconnected: \(reason) (auth succeeded): " + fields(user: u, method: m)
        }
        let summary: String
        if failedLogins == 0 {
            summary = "no auth attempts"
        } else if triedPlaintext && failedLogins == 1 {
            summary = "tried to use disallowed plaintext auth"
        } else {
            summary = "auth failed, \(failedLogins) attempt\(failedLogins == 1 ? "" : "s")"
        }
        return "Disconnected: \(reason) (\(summary)): " + fields(user: attemptUser, method: attemptMechanism)
    }

    func loginLog(_ event: String, user: String?, method: String?) -> String {
        "\(event): " + fields(user: user, method: method)
    }

    /// `user=<u>, method=M, rip=R, lip=L, TLS`, each part only when known.
    func fields(user: String?, method: String?) -> String {
        var parts: [String] = []
        if let user { parts.append("user=<\(Self.logSafe(user))>") }
        if let method { parts.append("method=\(method)") }
        parts.append("rip=\(client)")
        if let local { parts.append("lip=\(local)") }
        if secure { parts.append("TLS") }
        return parts.joined(separator: ", ")
    }

    /// Text from a peer or a backend as a log line may show it: no control characters, bounded.
    public static func logSafe(_ s: String, max: Int = 128) -> String {
        var out = ""
        for ch in s.unicodeScalars.prefix(max) {
            out.unicodeScalars.append(ch.value < 0x20 || ch.value == 0x7F ? "?" : ch)
        }
        return out
    }

    /// A maildrop view the protocol can serve: sizes not negative, unique-ids valid and unique
    /// (RFC 1939 §7). Nil when fine, or what is wrong.
    static func invalidView(_ messages: [MessageInfo]) -> String? {
        var seen = Set<String>()
        seen.reserveCapacity(messages.count)
        for (i, m) in messages.enumerated() {
            if m.size < 0 { return "message \(i + 1): negative size" }
            if !MessageInfo.isValidUID(m.uid) { return "message \(i + 1): invalid unique-id" }
            if !seen.insert(m.uid).inserted { return "message \(i + 1): duplicate unique-id" }
        }
        return nil
    }

    static func isAuthCommand(_ line: Substring) -> Bool {
        line.utf8.count >= 5 && line.prefix(5).uppercased() == "AUTH "
    }
}
