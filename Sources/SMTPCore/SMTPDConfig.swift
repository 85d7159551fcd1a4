// drac-smtpd's settings: the smtpd_* keys of drac.conf over built-in defaults (drac.conf(5)).
import DRACCore

/// One listening socket: `kind:address:port`, e.g. `smtp:*:25`, `submission:[::1]:587`.
public struct ListenerSpec: Sendable, Equatable, CustomStringConvertible {
    public var kind: ListenerKind
    /// nil = every address (0.0.0.0 and ::).
    public var address: IPAddress?
    public var port: Int

    public init(kind: ListenerKind, address: IPAddress?, port: Int) {
        self.kind = kind
        self.address = address
        self.port = port
    }

    public init?(_ text: String) {
        guard let c1 = text.firstIndex(of: ":"), let kind = ListenerKind(rawValue: String(text[..<c1]).lowercased()) else { return nil }
        guard let (address, port) = ListenAddress.parse(text[text.index(after: c1)...]) else { return nil }
        self.kind = kind
        self.address = address
        self.port = port
    }

    public var description: String { "\(kind.rawValue):\(ListenAddress.text(address)):\(port)" }
}

public struct SMTPDConfig: Sendable, Equatable {
    public var listeners = [ListenerSpec(kind: .smtp, address: nil, port: 25), ListenerSpec(kind: .submission, address: nil, port: 587)]
    /// Empty: the host's name (gethostname), filled in by the program.
    public var hostname = ""
    public var backendHost = "127.0.0.1"
    public var backendPort = 10025
    public var backendTimeoutSeconds: Int64 = 60
    /// RFC 5321 §4.5.3.2.6 gives the client 10 minutes for the reply to the final dot; the
    /// backend must answer us well within that.
    public var backendDataTimeoutSeconds: Int64 = 300
    public var localDomains: Set<String> = []
    public var relayDomains: Set<String> = []
    public var trustedNetworks = AllowList(rules: [])
    public var useDrac = true
    public var tlsCertFile: String?
    public var tlsKeyFile: String?
    public var authRequiresTLS = true
    public var saslMechanisms = ["PLAIN", "LOGIN", "CRAM-MD5"]
    public var saslPwcheckMethod = "auxprop"
    public var sasldbPath = "/etc/sasldb2"
    public var saslauthdPath: String?
    public var saslRealm: String?
    public var limits = SMTPLimits()
    public var maxConnections = 1000
    public var maxConnectionsPerClient = 50
    public var authFailureLimit = 5
    public var authFailureMaxDelay: Double = 30
    public var shutdownGraceSeconds: Int64 = 60

    public init() {}

    public var policy: RelayPolicy {
        RelayPolicy(trustedNetworks: trustedNetworks, localDomains: localDomains, relayDomains: relayDomains, dracEnabled: useDrac)
    }

    public init(_ source: ConfigSource) throws(ConfigError) {
        self.init()
        for (key, e) in source.entries.sorted(by: { $0.key < $1.key }) {
            guard let k = ConfigKey(rawValue: key), key.hasPrefix("smtpd_") else { continue }
            try apply(k, e)
        }
        // Errors that involve two keys point at the one that was set.
        func at(_ key: ConfigKey, _ message: String) -> ConfigError {
            let e = source.entries[key.rawValue]
            return ConfigError(source: e?.source ?? "drac.conf", line: e?.line, message: message)
        }
        if (tlsCertFile == nil) != (tlsKeyFile == nil) {
            throw at(tlsCertFile != nil ? .smtpdTLSCertFile : .smtpdTLSKeyFile,
                     "smtpd_tls_cert_file and smtpd_tls_key_file go together")
        }
        if listeners.contains(where: { $0.kind == .submissions }) && tlsCertFile == nil {
            throw at(.smtpdListen, "a submissions (implicit TLS) listener needs smtpd_tls_cert_file and smtpd_tls_key_file")
        }
    }

    private mutating func apply(_ key: ConfigKey, _ e: ConfigSource.Entry) throws(ConfigError) {
        let k = key.rawValue
        func domains() throws(ConfigError) -> Set<String> {
            var out = Set<String>()
            for d in e.list {
                let name = d.lowercased()
                guard case .success((.mailbox(let m), _)) = SMTPPath.parseForward(Substring("<x@\(name)>")), case .name(let n) = m.domain else {
                    throw e.error(k, "not a domain name: '\(d)'")
                }
                out.insert(n)
            }
            return out
        }
        switch key {
        case .smtpdListen:
            var out: [ListenerSpec] = []
            for item in e.list {
                guard let l = ListenerSpec(item) else {
                    throw e.error(k, "expected kind:address:port with kind smtp, submission or submissions (e.g. smtp:*:25, submission:[::1]:587), got '\(item)'")
                }
                out.append(l)
            }
            guard !out.isEmpty, out.count <= 64 else { throw e.error(k, "expected 1 to 64 listeners") }
            listeners = out
        case .smtpdHostname:
            guard !e.value.isEmpty, e.value.utf8.count <= 255, e.value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") }) else {
                throw e.error(k, "expected a host name")
            }
            hostname = e.value
        case .smtpdBackend:
            var v = Substring(e.value)
            guard let c = v.lastIndex(of: ":"), let port = Int(v[v.index(after: c)...]), (1...65535).contains(port) else {
                throw e.error(k, "expected host:port, e.g. 127.0.0.1:10025 or [::1]:10025")
            }
            v = v[..<c]
            if v.first == "[" && v.last == "]" { v = v.dropFirst().dropLast() }
            guard !v.isEmpty, v.utf8.count <= 255 else { throw e.error(k, "expected host:port") }
            backendHost = String(v)
            backendPort = port
        case .smtpdBackendTimeout: backendTimeoutSeconds = try e.duration(k, .seconds, min: 1, max: 3600)
        case .smtpdBackendDataTimeout: backendDataTimeoutSeconds = try e.duration(k, .seconds, min: 1, max: 3600)
        case .smtpdLocalDomains: localDomains = try domains()
        case .smtpdRelayDomains: relayDomains = try domains()
        case .smtpdTrustedNetworks:
            var rules: [AllowRule] = []
            for item in e.list {
                guard let r = AllowRule(cidr: item) else { throw e.error(k, "not an address or network: '\(item)'") }
                rules.append(r)
            }
            trustedNetworks = AllowList(rules: rules)
        case .smtpdUseDrac: useDrac = try e.bool(k)
        case .smtpdTLSCertFile: tlsCertFile = e.value.isEmpty ? nil : try e.path(k)
        case .smtpdTLSKeyFile: tlsKeyFile = e.value.isEmpty ? nil : try e.path(k)
        case .smtpdAuthRequiresTLS: authRequiresTLS = try e.bool(k)
        case .smtpdSASLMechanisms:
            let m = e.list.map { $0.uppercased() }
            guard m.allSatisfy({ ["PLAIN", "LOGIN", "CRAM-MD5"].contains($0) }) else {
                throw e.error(k, "supported mechanisms are PLAIN, LOGIN and CRAM-MD5 (empty: no AUTH)")
            }
            saslMechanisms = m
        case .smtpdSASLPwcheckMethod:
            guard ["auxprop", "saslauthd"].contains(e.value) else { throw e.error(k, "expected auxprop (sasldb) or saslauthd") }
            saslPwcheckMethod = e.value
        case .smtpdSASLDBPath: sasldbPath = try e.path(k)
        case .smtpdSaslauthdPath: saslauthdPath = try e.path(k)
        case .smtpdSASLRealm: saslRealm = e.value.isEmpty ? nil : e.value
        case .smtpdMessageSizeLimit: limits.messageSize = try e.integer(k, min: 65_536, max: 2_000_000_000)
        case .smtpdRecipientLimit: limits.recipients = try e.integer(k, min: 100, max: 100_000)
        case .smtpdErrorLimit: limits.errors = try e.integer(k, min: 1, max: 1000)
        case .smtpdTimeout: limits.commandTimeoutSeconds = try e.duration(k, .seconds, min: 1, max: 3600)
        case .smtpdDataTimeout: limits.dataTimeoutSeconds = try e.duration(k, .seconds, min: 1, max: 3600)
        case .smtpdMaxConnections: maxConnections = try e.integer(k, min: 1, max: 100_000)
        case .smtpdMaxConnectionsPerClient: maxConnectionsPerClient = try e.integer(k, min: 1, max: 100_000)
        case .smtpdAuthFailureLimit: authFailureLimit = try e.integer(k, min: 1, max: 1000)
        case .smtpdAuthFailureMaxDelay: authFailureMaxDelay = Double(try e.duration(k, .seconds, min: 0, max: 300))
        case .smtpdShutdownGrace: shutdownGraceSeconds = try e.duration(k, .seconds, min: 0, max: 3600)
        default: break
        }
    }
}
