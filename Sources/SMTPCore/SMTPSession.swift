// The SMTP session as a pure state machine: commands and results in, actions out (no I/O).
import DRACCore

/// What the session needs to know about its listener, set once per connection.
public struct SessionSettings: Sendable {
    public var hostname: String
    public var listener: ListenerKind
    public var policy: RelayPolicy
    public var limits: SMTPLimits
    /// STARTTLS can be offered (a certificate is configured and the session is not under TLS).
    public var startTLSAvailable: Bool
    /// SASL mechanisms offered outside TLS and under TLS; empty lists mean no AUTH.
    public var mechanismsPlain: [String]
    public var mechanismsSecure: [String]
    /// RFC 4954 §4 / RFC 3207 §7: AUTH only under TLS (drac.conf `smtpd_auth_requires_tls`).
    public var authRequiresTLS: Bool
    /// DSN (RFC 3461) parameters are passed on only when the backend offers DSN.
    public var backendOffersDSN: Bool

    public init(hostname: String, listener: ListenerKind, policy: RelayPolicy, limits: SMTPLimits = SMTPLimits(),
                startTLSAvailable: Bool = false, mechanismsPlain: [String] = [], mechanismsSecure: [String] = [],
                authRequiresTLS: Bool = true, backendOffersDSN: Bool = false) {
        self.hostname = hostname
        self.listener = listener
        self.policy = policy
        self.limits = limits
        self.startTLSAvailable = startTLSAvailable
        self.mechanismsPlain = mechanismsPlain
        self.mechanismsSecure = mechanismsSecure
        self.authRequiresTLS = authRequiresTLS
        self.backendOffersDSN = backendOffersDSN
    }
}

/// The result of a SASL exchange step, as the protocol layer needs it (mirrors SASLAuth's
/// `SASLOutcome`, so that this module stays free of C).
public enum AuthResult: Sendable, Equatable {
    case challenge([UInt8])
    case success(identity: String)
    case badCredentials
    case malformed
    case unknownMechanism
    case tooWeak
    case temporary(String)
}

/// What the connection handler must do. It runs the actions in order.
public enum SMTPAction: Sendable, Equatable {
    case reply(SMTPReply)
    /// Send the reply, then close the connection.
    case close(SMTPReply)
    /// Send the reply (220), discard every octet already received after the STARTTLS line
    /// (RFC 3207 §5, the plaintext-injection attack), then start the TLS handshake.
    case startTLS(SMTPReply)
    /// Run the SASL server (off the event loop) and call `authResult`.
    case authStart(mechanism: String, initial: [UInt8]?)
    case authStep([UInt8])
    /// Look up the client's DRAC map entry (off the event loop) and call `dracLookedUp`.
    case lookupDRAC
    /// Backend commands; each answers through `backendReplied`. `mail` connects first if needed.
    case backendMail(ReversePath, [MailParameter])
    case backendRcpt(ForwardPath, [MailParameter])
    case backendData
    /// The backend said 354: stream the client's message text (after our Received: header).
    case beginData(SMTPReply)
    /// Reset the backend's transaction (no reply expected by the session).
    case backendRset
    /// Drop the backend connection so that it discards a half-sent message.
    case backendAbort
    case log(String)
    /// An AUTH failure from this client: the handler applies the per-address throttle.
    case authFailed(user: String?)
    case authSucceeded
}

/// One SMTP session (RFC 5321). Feed it lines with `received(line:)` and the results of the
/// actions it asked for; it returns the next actions. While it waits for a result
/// (`isWaiting`), the handler feeds it nothing else: pipelined commands wait in the buffer.
public struct SMTPSession: Sendable {
    /// A transaction after MAIL was accepted.
    public struct Transaction: Sendable {
        public var sender: ReversePath
        public var parameters: [MailParameter]
        public var recipients: [String] = []
        public var reasons: [String] = []
        public var rejected = 0
    }

    enum Waiting: Sendable {
        case mail(ReversePath, [MailParameter])
        case relayCheck(ForwardPath, [MailParameter])
        case rcpt(ForwardPath, RelayDecision)
        case data
        case endOfData(size: Int)
        case sasl
    }

    enum Phase: Sendable {
        case fresh                      // no HELO/EHLO yet (also after STARTTLS)
        case ready                      // HELO/EHLO done, no transaction
        case authContinuation           // AUTH: waiting for the client's next line
        case transaction(Transaction)
        case data(Transaction)
        case closed
    }

    public let settings: SessionSettings
    public let client: IPAddress
    public private(set) var secure: Bool
    public private(set) var helo: String?
    public private(set) var esmtp = false
    public private(set) var identity: String?
    var phase = Phase.fresh
    var waiting: Waiting?
    /// The transaction while a backend reply or a lookup is pending.
    var pending: Transaction?
    var authMechanism: String?
    var authUser: String?
    public private(set) var errors = 0
    /// Counts per verb for the disconnect log line (Postfix style: `ehlo=1 mail=1 ...`).
    public private(set) var counts: [(String, Int)] = []

    public init(settings: SessionSettings, client: IPAddress, secure: Bool) {
        self.settings = settings
        self.client = client.unmapped
        self.secure = secure
    }

    public var isWaiting: Bool { waiting != nil }
    public var isClosed: Bool { if case .closed = phase { return true } else { return false } }
    public var inData: Bool { if case .data = phase { return true } else { return false } }
    public var inTransaction: Bool {
        switch phase { case .transaction, .data: return true; default: return pending != nil }
    }

    /// The longest line the framer accepts: RFC 4954 §4 allows AUTH lines (continuations and
    /// AUTH with an initial response) of 12288 octets; other commands are held to 512 in
    /// `received(line:)`.
    public var lineLimit: Int { settings.limits.authLine }

    /// The protocol name for Received: (RFC 3848).
    public var protocolName: String {
        (esmtp ? "ESMTP" : "SMTP") + (secure ? "S" : "") + (identity != nil ? "A" : "")
    }

    /// The greeting (RFC 5321 §4.3.1).
    public func greeting() -> SMTPAction {
        .reply(SMTPReply(220, nil, "\(settings.hostname) ESMTP drac-smtpd"))
    }

    /// The TLS handshake finished (after STARTTLS, or at once for implicit TLS).
    public mutating func tlsEstablished() { secure = true }

    // MARK: - Input

    /// A complete line from the client (CRLF removed), outside DATA.
    public mutating func received(line: Substring, tooLong: Bool = false) -> [SMTPAction] {
        precondition(waiting == nil, "line fed while waiting")
        if tooLong {
            if case .authContinuation = phase { phase = .ready; authMechanism = nil }
            return error(.lineTooLong)
        }
        if case .authContinuation = phase { return authContinuation(line) }
        if line.utf8.count > settings.limits.commandLine - 2 && !line.uppercased().hasPrefix("AUTH ") {
            return error(.lineTooLong)
        }
        let command = SMTPCommandParser.parse(line)
        count(command.verb)
        return handle(command)
    }

    /// The end of DATA, as found by `DataScanner`.
    public mutating func dataEnded(size: Int, problem: DataScanner.Problem?) -> [SMTPAction] {
        guard case .data(let tx) = phase else { preconditionFailure("dataEnded outside DATA") }
        if let problem {
            phase = .ready
            let r = problem.reply
            return [.backendAbort, .log(transactionLog(tx, outcome: "reject: \(problem.logText), size=\(size)", reply: r))] + error(r)
        }
        pending = tx
        waiting = .endOfData(size: size)
        return []
    }

    /// The backend's reply to the command we asked for. Replies that make no sense for the
    /// command (a 354 to MAIL, an unparseable line) come here already turned into a 451 by the
    /// backend client.
    public mutating func backendReplied(_ reply: SMTPReply) -> [SMTPAction] {
        guard let w = waiting else { preconditionFailure("backend reply while not waiting") }
        waiting = nil
        switch w {
        case .mail(let sender, let params):
            if reply.code / 100 == 2 {
                phase = .transaction(Transaction(sender: sender, parameters: params))
                return [.reply(reply)]
            }
            return [.log("reject: MAIL from \(clientText): \(reply); from=<\(sender.logText)>\(heloLog)")] + error(reply)
        case .rcpt(let path, let decision):
            guard var tx = pending else { preconditionFailure("no transaction") }
            pending = nil
            if reply.code / 100 == 2 {
                tx.recipients.append(path.logText)
                if case .accept(let why) = decision, !tx.reasons.contains(why.logText) { tx.reasons.append(why.logText) }
                phase = .transaction(tx)
                return [.reply(reply)]
            }
            tx.rejected += 1
            phase = .transaction(tx)
            return [.log("reject: RCPT from \(clientText): \(reply) (backend); from=<\(tx.sender.logText)> to=<\(path.logText)>\(heloLog)")] + error(reply)
        case .data:
            guard let tx = pending else { preconditionFailure("no transaction") }
            pending = nil
            if reply.code == 354 {
                phase = .data(tx)
                return [.beginData(reply)]
            }
            phase = .transaction(tx)
            // Any positive reply but 354 (a 250 too) is a backend out of step: never pass it on.
            return error(reply.isPositive ? .backendUnavailable : reply)
        case .endOfData(let size):
            guard let tx = pending else { preconditionFailure("no transaction") }
            pending = nil
            phase = .ready
            let outcome = reply.code / 100 == 2 ? "accepted" : "refused by backend"
            let log = SMTPAction.log(transactionLog(tx, outcome: "\(outcome), size=\(size)", reply: reply))
            if reply.code / 100 == 2 { return [log, .reply(reply)] }
            return [log] + error(reply.code / 100 == 3 ? .backendUnavailable : reply)
        case .relayCheck, .sasl:
            preconditionFailure("backend reply while waiting for \(w)")
        }
    }

    /// The client's DRAC map entry (its stored expiry), or nil when it has none or the map
    /// could not be read (which grants nothing).
    public mutating func dracLookedUp(expiry: Int64?, now: Int64) -> [SMTPAction] {
        guard case .relayCheck(let path, let params)? = waiting, let tx = pending else {
            preconditionFailure("DRAC lookup result while not checking a recipient")
        }
        waiting = nil
        pending = nil
        phase = .transaction(tx)
        return decideRecipient(path, params, tx, dracExpiry: expiry, now: now, lookedUp: true)
    }

    public mutating func authResult(_ result: AuthResult) -> [SMTPAction] {
        guard case .sasl? = waiting else { preconditionFailure("SASL result while not authenticating") }
        waiting = nil
        switch result {
        case .challenge(let bytes):
            phase = .authContinuation
            return [.reply(SMTPReply(334, nil, Base64.encode(bytes)))]
        case .success(let id):
            phase = .ready
            identity = id
            let mech = authMechanism ?? "?"
            authMechanism = nil
            return [.authSucceeded, .log("\(clientText): sasl_method=\(mech), sasl_username=\(id)"),
                    .reply(SMTPReply(235, "2.7.0", "Authentication successful"))]
        case .badCredentials:
            return authFailure(SMTPReply(535, "5.7.8", "Error: authentication failed"), reason: "authentication failed", counts: true)
        case .malformed:
            return authFailure(SMTPReply(501, "5.5.2", "Error: malformed authentication response"), reason: "malformed response", counts: true)
        case .unknownMechanism:
            return authFailure(SMTPReply(504, "5.5.4", "Error: unsupported authentication mechanism"), reason: "unknown mechanism", counts: false)
        case .tooWeak:
            return authFailure(SMTPReply(534, "5.7.9", "Error: authentication mechanism is too weak"), reason: "mechanism too weak", counts: false)
        case .temporary(let why):
            return authFailure(SMTPReply(454, "4.7.0", "Temporary authentication failure"), reason: "temporary failure: \(why)", counts: false)
        }
    }

    // MARK: - Commands (check, then proceed: OpenSMTPD's table, one case per verb)

    private mutating func handle(_ command: SMTPCommand) -> [SMTPAction] {
        switch command {
        case .ehlo(let name), .helo(let name):
            let isEHLO: Bool
            if case .ehlo = command { isEHLO = true } else { isEHLO = false }
            if case .transaction = phase { return abortTransaction() + greetHello(name, isEHLO) }
            return greetHello(name, isEHLO)
        case .mail(let arg): return mail(arg)
        case .rcpt(let arg): return rcpt(arg)
        case .data: return data()
        case .rset:
            // RFC 5321 §4.1.1.5: RSET keeps the HELO; it ends any transaction.
            var out = abortTransaction()
            out.append(.reply(.ok()))
            return out
        case .noop: return [.reply(.ok())]
        case .quit:
            let out = abortTransaction()    // before .closed, or it finds no transaction to end
            phase = .closed
            return out + [.close(SMTPReply(221, "2.0.0", "Bye"))]
        case .vrfy:
            // RFC 5321 §3.5.3: 252 when we do not verify; no address enumeration.
            return [.reply(SMTPReply(252, "2.0.0", "Cannot VRFY user; try RCPT to attempt delivery"))]
        case .expn: return error(SMTPReply(502, "5.5.1", "Error: command not implemented"))
        case .help: return [.reply(SMTPReply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP AUTH STARTTLS; see drac-smtpd(8)"))]
        case .auth(let mech, let initial): return auth(mech, initial)
        case .starttls: return startTLS()
        case .xclient, .xforward:
            // Postfix XCLIENT/XFORWARD let a trusted proxy claim another client address. We are
            // that proxy, never a backend: from a client they are an attempt to forge an origin.
            return [.log("reject: \(command.verb) from \(clientText): not allowed")] +
                error(SMTPReply(550, "5.7.0", "Error: insufficient authorization"))
        case .bdat: return error(SMTPReply(502, "5.5.1", "Error: command not implemented"))
        case .syntaxError(let text): return error(SMTPReply(501, "5.5.4", text))
        case .unknown: return error(.notRecognized)
        }
    }

    private mutating func greetHello(_ name: String, _ isEHLO: Bool) -> [SMTPAction] {
        helo = name
        esmtp = isEHLO
        if case .fresh = phase { phase = .ready }
        if !isEHLO { return [.reply(SMTPReply(250, nil, settings.hostname))] }
        var lines = [settings.hostname, "PIPELINING", "SIZE \(settings.limits.messageSize)"]
        if !secure && settings.startTLSAvailable { lines.append("STARTTLS") }
        let mechs = offeredMechanisms
        if !mechs.isEmpty && identity == nil { lines.append("AUTH " + mechs.joined(separator: " ")) }
        lines += ["ENHANCEDSTATUSCODES", "8BITMIME"]
        if settings.backendOffersDSN { lines.append("DSN") }
        return [.reply(SMTPReply(code: 250, enhanced: nil, lines: lines))]
    }

    /// AUTH is hidden outside TLS when TLS is required for it (Postfix smtpd_tls_auth_only).
    var offeredMechanisms: [String] {
        if secure { return settings.mechanismsSecure }
        return settings.authRequiresTLS ? [] : settings.mechanismsPlain
    }

    private mutating func auth(_ mech: String, _ initial: String?) -> [SMTPAction] {
        guard case .ready = phase, helo != nil else {
            if case .transaction = phase { return error(SMTPReply(503, "5.5.1", "Error: MAIL transaction in progress")) }
            return error(SMTPReply(503, "5.5.1", "Error: send EHLO first"))
        }
        guard esmtp else { return error(SMTPReply(503, "5.5.1", "Error: send EHLO first")) }
        if identity != nil { return error(SMTPReply(503, "5.5.1", "Error: already authenticated")) }
        if settings.mechanismsPlain.isEmpty && settings.mechanismsSecure.isEmpty {
            return error(SMTPReply(503, "5.5.1", "Error: authentication not enabled"))
        }
        if !secure && settings.authRequiresTLS {
            // RFC 4954 §6: 538 when the mechanism needs an encrypted session.
            return error(SMTPReply(538, "5.7.11", "Encryption required for requested authentication mechanism"))
        }
        guard offeredMechanisms.contains(mech) else {
            return error(SMTPReply(504, "5.5.4", "Error: unsupported authentication mechanism"))
        }
        var bytes: [UInt8]? = nil
        if let initial {
            // RFC 4954 §4: "=" is an empty initial response; "*" cancels.
            if initial == "*" { return error(SMTPReply(501, "5.7.0", "Authentication cancelled")) }
            if initial == "=" { bytes = [] } else {
                guard let b = Base64.decode(initial) else {
                    return error(SMTPReply(501, "5.5.2", "Error: malformed initial response (not base64)"))
                }
                bytes = b
            }
        }
        authMechanism = mech
        waiting = .sasl
        return [.authStart(mechanism: mech, initial: bytes)]
    }

    private mutating func authContinuation(_ line: Substring) -> [SMTPAction] {
        if line == "*" {
            phase = .ready
            authMechanism = nil
            return error(SMTPReply(501, "5.7.0", "Authentication cancelled"))
        }
        guard let bytes = Base64.decode(line) else {
            phase = .ready
            authMechanism = nil
            return error(SMTPReply(501, "5.5.2", "Error: malformed authentication response (not base64)"))
        }
        phase = .ready
        waiting = .sasl
        return [.authStep(bytes)]
    }

    private mutating func authFailure(_ reply: SMTPReply, reason: String, counts: Bool) -> [SMTPAction] {
        phase = .ready
        let mech = authMechanism ?? "?"
        authMechanism = nil
        var out: [SMTPAction] = [.log("warning: \(clientText): SASL \(mech) authentication failed: \(reason)")]
        if counts { out.append(.authFailed(user: nil)) }
        return out + error(reply)
    }

    private mutating func startTLS() -> [SMTPAction] {
        if secure { return error(SMTPReply(554, "5.5.1", "Error: TLS already active")) }
        guard settings.startTLSAvailable else { return error(SMTPReply(502, "5.5.1", "Error: command not implemented")) }
        if case .transaction = phase { return error(SMTPReply(503, "5.5.1", "Error: MAIL transaction in progress")) }
        // RFC 3207 §4.2: forget everything learnt from the client before TLS, EHLO included.
        phase = .fresh
        helo = nil
        esmtp = false
        identity = nil
        return [.startTLS(SMTPReply(220, "2.0.0", "Ready to start TLS"))]
    }

    private mutating func mail(_ arg: Substring) -> [SMTPAction] {
        switch phase {
        case .fresh: return error(SMTPReply(503, "5.5.1", "Error: send HELO/EHLO first"))
        case .transaction: return error(SMTPReply(503, "5.5.1", "Error: nested MAIL command"))
        default: break
        }
        if settings.listener != .smtp && identity == nil {
            let r = SMTPReply(530, "5.7.0", "Authentication required")
            return [.log("NOQUEUE: reject: MAIL from \(clientText): \(r) (\(settings.listener.rawValue) listener);\(heloLog)")] + error(r)
        }
        let sender: ReversePath, params: [MailParameter]
        switch SMTPPath.parseReverse(arg) {
        case .success(let p): (sender, params) = p
        case .failure(let e):
            return [.log("reject: MAIL from \(clientText): bad sender address: \(e)\(heloLog)")] +
                error(SMTPReply(501, "5.1.7", "Bad sender address syntax"))
        }
        var forward: [MailParameter] = []
        for p in params {
            switch p.keyword {
            case "SIZE":
                // RFC 1870 §6: refuse at once when the declared size is over our limit.
                guard let v = p.value, !v.isEmpty, v.count <= 20, v.allSatisfy(\.isASCIIDigit), let n = Int(v) else {
                    return error(SMTPReply(501, "5.5.4", "Bad SIZE parameter"))
                }
                if n > settings.limits.messageSize { return error(SMTPReply(552, "5.3.4", "Message size exceeds fixed limit")) }
                forward.append(p)
            case "BODY":
                guard let v = p.value?.uppercased(), v == "7BIT" || v == "8BITMIME" else {
                    return error(SMTPReply(501, "5.5.4", "Bad BODY parameter"))
                }
                forward.append(MailParameter(keyword: "BODY", value: v))
            case "AUTH":
                // RFC 4954 §5: the client's claim about the original submitter. We pass nothing
                // on: the backend trusts us, and a client must not choose what it sees.
                continue
            case "RET" where settings.backendOffersDSN, "ENVID" where settings.backendOffersDSN:
                forward.append(p)
            default:
                return error(SMTPReply(555, "5.5.4", "Unsupported option: \(p.keyword)"))
            }
        }
        waiting = .mail(sender, forward)
        return [.backendMail(sender, forward)]
    }

    private mutating func rcpt(_ arg: Substring) -> [SMTPAction] {
        guard case .transaction(let tx) = phase else { return error(SMTPReply(503, "5.5.1", "Error: need MAIL command")) }
        if tx.recipients.count >= settings.limits.recipients {
            // RFC 5321 §4.5.3.1.10: 452 for too many recipients; the client sends the rest later.
            return error(SMTPReply(452, "4.5.3", "Error: too many recipients"))
        }
        let path: ForwardPath, params: [MailParameter]
        switch SMTPPath.parseForward(arg) {
        case .success(let p): (path, params) = p
        case .failure(.routingTrick(let why)):
            return [.log("reject: RCPT from \(clientText): 550 5.7.1 routing trick (\(why)): \(String(arg.prefix(100))); from=<\(tx.sender.logText)>\(heloLog)")] +
                error(SMTPReply(550, "5.7.1", "Error: \(why); routing through this server is not allowed"))
        case .failure(let e):
            return [.log("reject: RCPT from \(clientText): bad recipient address: \(e)\(heloLog)")] +
                error(SMTPReply(501, "5.1.3", "Bad recipient address syntax"))
        }
        var forward: [MailParameter] = []
        for p in params {
            switch p.keyword {
            case "NOTIFY" where settings.backendOffersDSN, "ORCPT" where settings.backendOffersDSN: forward.append(p)
            default: return error(SMTPReply(555, "5.5.4", "Unsupported option: \(p.keyword)"))
            }
        }
        return decideRecipient(path, forward, tx, dracExpiry: nil, now: 0, lookedUp: false)
    }

    /// Decides without the DRAC map when that suffices (SASL, trusted network, local domain);
    /// otherwise asks for a lookup and decides again with the entry.
    private mutating func decideRecipient(_ path: ForwardPath, _ params: [MailParameter], _ tx: Transaction,
                                          dracExpiry: Int64?, now: Int64, lookedUp: Bool) -> [SMTPAction] {
        let request = RelayRequest(client: client, saslIdentity: identity, listener: settings.listener,
                                   sender: tx.sender, recipient: path, dracExpiry: dracExpiry, now: now)
        let decision = settings.policy.decide(request)
        switch decision {
        case .accept:
            pending = tx
            waiting = .rcpt(path, decision)
            return [.backendRcpt(path, params)]
        case .reject(let why):
            if !lookedUp && settings.listener == .smtp && settings.policy.dracEnabled && identity == nil {
                pending = tx
                waiting = .relayCheck(path, params)
                return [.lookupDRAC]
            }
            var t = tx
            t.rejected += 1
            phase = .transaction(t)
            let reply = why == .authRequired
                ? SMTPReply(530, "5.7.0", "Authentication required")
                : SMTPReply(554, "5.7.1", "<\(path.logText)>: Relay access denied")
            return [.log("NOQUEUE: \(decision.logText): RCPT from \(clientText): \(reply); from=<\(tx.sender.logText)> to=<\(path.logText)>\(heloLog)")] + error(reply)
        }
    }

    private mutating func data() -> [SMTPAction] {
        guard case .transaction(let tx) = phase else { return error(SMTPReply(503, "5.5.1", "Error: need MAIL command")) }
        guard !tx.recipients.isEmpty else { return error(SMTPReply(554, "5.5.1", "Error: no valid recipients")) }
        pending = tx
        waiting = .data
        return [.backendData]
    }

    /// Ends a transaction without delivery (RSET, EHLO, QUIT): the backend must forget it too.
    private mutating func abortTransaction() -> [SMTPAction] {
        if case .transaction(let tx) = phase {
            phase = .ready
            if tx.recipients.isEmpty && tx.rejected == 0 { return [.backendRset] }
            return [.backendRset, .log(transactionLog(tx, outcome: "abandoned", reply: nil))]
        }
        return []
    }

    // MARK: - Replies, errors, logs

    /// Sends an error reply and counts it; at the limit the session ends with 421.
    private mutating func error(_ reply: SMTPReply) -> [SMTPAction] {
        errors += 1
        if errors >= settings.limits.errors {
            phase = .closed
            return [.log("too many errors from \(clientText) (\(errors)); disconnecting"), .reply(reply), .close(.tooManyErrors)]
        }
        return [.reply(reply)]
    }

    private static let countedVerbs: Set<String> = ["ehlo", "helo", "mail", "rcpt", "data", "rset", "noop", "quit", "vrfy", "expn", "help", "auth", "starttls"]

    private mutating func count(_ verb: String) {
        let v = verb.lowercased()
        let key = SMTPSession.countedVerbs.contains(v) ? v : "unknown"
        if let i = counts.firstIndex(where: { $0.0 == key }) { counts[i].1 += 1 } else { counts.append((key, 1)) }
    }

    /// Postfix's disconnect line: `ehlo=1 mail=1 rcpt=0/1 data=1 quit=1 commands=4`.
    public var countsText: String {
        let total = counts.reduce(0) { $0 + $1.1 }
        return (counts.map { "\($0.0)=\($0.1)" } + ["commands=\(total)"]).joined(separator: " ")
    }

    var clientText: String { "[\(client)]" }
    var heloLog: String { " helo=<\(helo ?? "")>" }

    private func transactionLog(_ tx: Transaction, outcome: String, reply: SMTPReply?) -> String {
        var parts = ["\(clientText):"]
        if let identity { parts.append("sasl_username=\(identity),") }
        parts.append("from=<\(tx.sender.logText)>,")
        parts.append("to=<\(tx.recipients.joined(separator: ">,<"))>,")
        if !tx.reasons.isEmpty { parts.append(tx.reasons.joined(separator: "/") + ",") }
        parts.append(outcome)
        if let reply {
            parts[parts.count - 1] += ","
            parts.append("reply=\"\(reply)\"")
            if let id = SMTPSession.queueID(in: reply) { parts.append("queue_id=\(id)") }
        }
        return parts.joined(separator: " ")
    }

    /// The backend's queue id from a reply such as Postfix's `250 2.0.0 Ok: queued as 4XyZ1`.
    public static func queueID(in reply: SMTPReply) -> String? {
        let text = Substring(reply.lines.joined(separator: " "))
        let marker = "queued as "
        var rest = text
        while !rest.isEmpty && !rest.hasPrefix(marker) { rest = rest.dropFirst() }
        guard !rest.isEmpty else { return nil }
        let id = rest.dropFirst(marker.count).prefix { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }
        return id.isEmpty ? nil : String(id.prefix(64))
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}

extension ReversePath {
    /// The address as logs show it between angle brackets (empty for the null sender).
    public var logText: String {
        switch self {
        case .null: ""
        case .mailbox(let m): m.text
        }
    }
}

extension ForwardPath {
    public var logText: String {
        switch self {
        case .postmaster: "postmaster"
        case .mailbox(let m): m.text
        }
    }
}
