// The relay decision for drac-smtpd: one pure function of what the admin configured and what we
// know about the client and the recipient. Everything that decides whether we are an open relay
// is in this file; the recipient reaching it has already passed SMTPPath's strict parsing.

/// Which kind of listener accepted the connection.
public enum ListenerKind: String, Sendable, CaseIterable {
    /// Port 25: MX traffic from the world, plus clients we recognise by address (mynetworks, DRAC).
    case smtp
    /// Port 587, RFC 6409: message submission, authentication required (RFC 6409 §4.3).
    case submission
    /// Port 465, RFC 8314: submission over implicit TLS, same rules as `submission`.
    case submissions
}

/// What the admin configured.
public struct RelayPolicy: Sendable, Equatable {
    /// Clients that may relay without authenticating (Postfix `mynetworks`).
    public var trustedNetworks: AllowList
    /// Domains we deliver for, lowercased, no trailing dot. Exact match: no subdomain wildcard.
    public var localDomains: Set<String>
    /// Domains we accept for and pass on (we are their backup MX), lowercased, no trailing dot.
    public var relayDomains: Set<String>
    /// Whether a live entry in the DRAC map (a recent POP/IMAP login from the client's address)
    /// lets the client relay.
    public var dracEnabled: Bool

    /// Domain names are lowercased and lose one trailing dot here, so that `Example.ORG.` in a
    /// configuration file matches what SMTPPath produces. Values assigned later to the properties
    /// are used as they are: an entry that is not lowercase simply never matches (fails closed).
    public init(trustedNetworks: AllowList = AllowList(rules: []), localDomains: Set<String> = [],
                relayDomains: Set<String> = [], dracEnabled: Bool = true) {
        self.trustedNetworks = trustedNetworks
        self.localDomains = Set(localDomains.map(RelayPolicy.normalized))
        self.relayDomains = Set(relayDomains.map(RelayPolicy.normalized))
        self.dracEnabled = dracEnabled
    }

    static func normalized(_ domain: String) -> String {
        let lower = domain.lowercased()
        return lower.hasSuffix(".") ? String(lower.dropLast()) : lower
    }
}

/// One RCPT TO, with everything the decision may use.
public struct RelayRequest: Sendable {
    /// The peer address as the socket reported it (IPv4-mapped IPv6 is fine).
    public var client: IPAddress
    /// The SASL authorization identity of the session, nil (or empty) when not authenticated.
    public var saslIdentity: String?
    public var listener: ListenerKind
    /// The MAIL FROM path. Never consulted by the decision: see `RelayPolicy.decide`.
    public var sender: ReversePath
    public var recipient: ForwardPath
    /// Expiry (epoch seconds) of the client's entry in the DRAC map; nil when there is none.
    public var dracExpiry: Int64?
    /// The current time, epoch seconds.
    public var now: Int64

    public init(client: IPAddress, saslIdentity: String?, listener: ListenerKind, sender: ReversePath,
                recipient: ForwardPath, dracExpiry: Int64?, now: Int64) {
        self.client = client
        self.saslIdentity = saslIdentity
        self.listener = listener
        self.sender = sender
        self.recipient = recipient
        self.dracExpiry = dracExpiry
        self.now = now
    }
}

/// Why a recipient was accepted.
public enum AcceptReason: String, Sendable, Equatable, CaseIterable {
    case sasl, drac, trustedNetwork, localDomain, relayDomain, postmaster

    public var logText: String {
        switch self {
        case .sasl: return "relay via sasl"
        case .drac: return "relay via drac"
        case .trustedNetwork: return "relay via mynetworks"
        case .localDomain: return "local domain"
        case .relayDomain: return "relay domain"
        case .postmaster: return "postmaster"
        }
    }
}

/// Why a recipient was refused.
public enum RejectReason: String, Sendable, Equatable, CaseIterable {
    /// Port 25, an unrecognised client, a recipient that is not ours (Postfix: 554 5.7.1 Relay access denied).
    case relayDenied
    /// A submission port without authentication (RFC 4954 §6: 530 5.7.0 Authentication required).
    case authRequired

    public var logText: String {
        switch self {
        case .relayDenied: return "reject: relay denied"
        case .authRequired: return "reject: authentication required"
        }
    }
}

public enum RelayDecision: Sendable, Equatable {
    case accept(AcceptReason)
    case reject(RejectReason)

    public var isAccepted: Bool { if case .accept = self { return true } else { return false } }

    public var logText: String {
        switch self {
        case .accept(let reason): return reason.logText
        case .reject(let reason): return reason.logText
        }
    }
}

extension RelayPolicy {
    /// Decides whether the recipient in `r` is accepted.
    ///
    /// On `submission` and `submissions` only an authenticated session may send anything, even
    /// to a local domain: those ports promise that every message has an accountable sender
    /// (RFC 6409 §4.3), and MX traffic has port 25 for itself. RFC 6409 §4.3 would also let a
    /// "protected subnetwork" submit; we do not, so that these ports never depend on addresses.
    ///
    /// On `smtp`, in order: an authenticated session; a client in `trustedNetworks` (compared
    /// as IPv4 when the socket reports an IPv4-mapped IPv6 address); a live DRAC entry (one
    /// whose expiry is still in the future; an expired entry the sweeper has not deleted yet
    /// counts for nothing); then anyone may send to a local or relay domain (exact name,
    /// case-insensitive, no subdomains; an address literal is never local, since `[127.0.0.1]`
    /// is whatever the next hop makes of it) or to the bare `<Postmaster>`. Everything else is
    /// `relayDenied`.
    ///
    /// The sender is deliberately never consulted. MAIL FROM is whatever the client typed:
    /// anyone can claim a local-domain sender, the null sender (a "bounce" to a remote
    /// recipient is exactly how open relays were abused for backscatter), or a sender equal to
    /// the recipient. Granting relay on any of them (sendmail's old `relay_local_from`) makes
    /// an open relay.
    public func decide(_ r: RelayRequest) -> RelayDecision {
        let authenticated = !(r.saslIdentity ?? "").isEmpty
        switch r.listener {
        case .submission, .submissions:
            return authenticated ? .accept(.sasl) : .reject(.authRequired)
        case .smtp:
            break
        }
        if authenticated { return .accept(.sasl) }
        if trustedNetworks.allows(r.client.unmapped) { return .accept(.trustedNetwork) }
        if dracEnabled, let expiry = r.dracExpiry, Expiry.isLive(expiry: expiry, now: r.now) {
            return .accept(.drac)
        }
        switch r.recipient {
        case .postmaster:
            return .accept(.postmaster)
        case .mailbox(let box):
            // Lowercase again: a Mailbox may have been built by hand rather than by SMTPPath.
            guard case .name(let name) = box.domain else { return .reject(.relayDenied) }
            let domain = name.lowercased()
            if localDomains.contains(domain) { return .accept(.localDomain) }
            if relayDomains.contains(domain) { return .accept(.relayDomain) }
            return .reject(.relayDenied)
        }
    }
}
