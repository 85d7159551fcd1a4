// drac-pop3d's settings: the pop3d_* keys of drac.conf over built-in defaults (drac.conf(5)).
import DRACCore

/// The two kinds of POP3 listener: plain POP3 with STLS (RFC 1939, RFC 2595 §4) and POP3 over
/// implicit TLS (RFC 8314 §3.3, port 995).
public enum POP3ListenerKind: String, Sendable, Equatable, CaseIterable {
    case pop3
    case pop3s
}

/// One listening socket: `kind:address:port`, e.g. `pop3:*:110`, `pop3s:[::1]:995`.
public struct POP3ListenerSpec: Sendable, Equatable, CustomStringConvertible {
    public var kind: POP3ListenerKind
    /// nil = every address (0.0.0.0 and ::).
    public var address: IPAddress?
    public var port: Int

    public init(kind: POP3ListenerKind, address: IPAddress?, port: Int) {
        self.kind = kind
        self.address = address
        self.port = port
    }

    public init?(_ text: String) {
        guard let c1 = text.firstIndex(of: ":"), let kind = POP3ListenerKind(rawValue: String(text[..<c1]).lowercased()) else { return nil }
        guard let (address, port) = ListenAddress.parse(text[text.index(after: c1)...]) else { return nil }
        self.kind = kind
        self.address = address
        self.port = port
    }

    public var description: String { "\(kind.rawValue):\(ListenAddress.text(address)):\(port)" }
}

public struct POP3DConfig: Sendable, Equatable {
    public var listeners = [POP3ListenerSpec(kind: .pop3, address: nil, port: 110)]
    /// Empty: the host's name (gethostname), filled in by the program.
    public var hostname = ""
    /// `maildir:PATH` or `mbox:PATH` with %u %n %d %h (checked by MaildropStore at start).
    public var mailLocation = "maildir:~/Maildir"
    /// Virtual users: the one account every maildrop belongs to; the process becomes it after
    /// binding. Empty: system users, each maildrop accessed as its owner.
    public var mailUser = ""
    public var mboxFromUnquote = false
    public var tlsCertFile: String?
    public var tlsKeyFile: String?
    /// RFC 2595 §2.1, RFC 5034 §7: no passwords in the clear outside TLS (loopback excepted).
    public var plaintextRequiresTLS = true
    public var saslMechanisms = ["PLAIN", "LOGIN", "CRAM-MD5"]
    public var saslPwcheckMethod = "auxprop"
    public var sasldbPath = "/etc/sasldb2"
    public var saslauthdPath: String?
    public var saslRealm: String?
    public var useDrac = true
    /// How often an open session re-adds its client (below rpc.dracd's expire).
    public var dracRefreshSeconds: Int64 = 20 * 60
    public var limits = POP3Limits()
    public var authFailureLimit = 5
    public var authFailureMaxDelay: Double = 30
    public var maxConnections = 1000
    public var maxConnectionsPerClient = 50
    public var shutdownGraceSeconds: Int64 = 30

    public init() {}

    public init(_ source: ConfigSource) throws(ConfigError) {
        self.init()
        for (key, e) in source.entries.sorted(by: { $0.key < $1.key }) {
            guard let k = ConfigKey(rawValue: key), key.hasPrefix("pop3d_") else { continue }
            try apply(k, e)
        }
        func at(_ key: ConfigKey, _ message: String) -> ConfigError {
            let e = source.entries[key.rawValue]
            return ConfigError(source: e?.source ?? "drac.conf", line: e?.line, message: message)
        }
        if (tlsCertFile == nil) != (tlsKeyFile == nil) {
            throw at(tlsCertFile != nil ? .pop3dTLSCertFile : .pop3dTLSKeyFile,
                     "pop3d_tls_cert_file and pop3d_tls_key_file go together")
        }
        if listeners.contains(where: { $0.kind == .pop3s }) && tlsCertFile == nil {
            throw at(.pop3dListen, "a pop3s (implicit TLS) listener needs pop3d_tls_cert_file and pop3d_tls_key_file")
        }
    }

    private mutating func apply(_ key: ConfigKey, _ e: ConfigSource.Entry) throws(ConfigError) {
        let k = key.rawValue
        switch key {
        case .pop3dListen:
            var out: [POP3ListenerSpec] = []
            for item in e.list {
                guard let l = POP3ListenerSpec(item) else {
                    throw e.error(k, "expected kind:address:port with kind pop3 or pop3s (e.g. pop3:*:110, pop3s:[::1]:995), got '\(item)'")
                }
                out.append(l)
            }
            guard !out.isEmpty, out.count <= 64 else { throw e.error(k, "expected 1 to 64 listeners") }
            listeners = out
        case .pop3dHostname:
            guard !e.value.isEmpty, e.value.utf8.count <= 255, e.value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") }) else {
                throw e.error(k, "expected a host name")
            }
            hostname = e.value
        case .pop3dMailLocation:
            guard e.value.hasPrefix("maildir:") || e.value.hasPrefix("mbox:"), e.value.utf8.count < 4096 else {
                throw e.error(k, "expected maildir:PATH or mbox:PATH, e.g. maildir:/var/mail/%d/%n")
            }
            mailLocation = e.value
        case .pop3dMailUser:
            guard e.value.utf8.count <= 32, e.value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else {
                throw e.error(k, "expected a user name")
            }
            mailUser = e.value
        case .pop3dMboxFromUnquote: mboxFromUnquote = try e.bool(k)
        case .pop3dTLSCertFile: tlsCertFile = e.value.isEmpty ? nil : try e.path(k)
        case .pop3dTLSKeyFile: tlsKeyFile = e.value.isEmpty ? nil : try e.path(k)
        case .pop3dPlaintextRequiresTLS: plaintextRequiresTLS = try e.bool(k)
        case .pop3dSASLMechanisms:
            let m = e.list.map { $0.uppercased() }
            guard m.allSatisfy({ ["PLAIN", "LOGIN", "CRAM-MD5"].contains($0) }) else {
                throw e.error(k, "supported mechanisms are PLAIN, LOGIN and CRAM-MD5 (empty: USER/PASS only)")
            }
            saslMechanisms = m
        case .pop3dSASLPwcheckMethod:
            guard ["auxprop", "saslauthd"].contains(e.value) else { throw e.error(k, "expected auxprop (sasldb) or saslauthd") }
            saslPwcheckMethod = e.value
        case .pop3dSASLDBPath: sasldbPath = try e.path(k)
        case .pop3dSaslauthdPath: saslauthdPath = e.value.isEmpty ? nil : try e.path(k)
        case .pop3dSASLRealm: saslRealm = e.value.isEmpty ? nil : e.value
        case .pop3dUseDrac: useDrac = try e.bool(k)
        case .pop3dDracRefresh: dracRefreshSeconds = try e.duration(k, .minutes, min: 10, max: 86_400)
        case .pop3dTimeout:
            limits.autologoutSeconds = try e.duration(k, .minutes, min: 1, max: 86_400)
        case .pop3dCommandsBeforeLogin: limits.commandsBeforeLogin = try e.integer(k, min: 1, max: 1000)
        case .pop3dFailedLogins: limits.failedLogins = try e.integer(k, min: 1, max: 100)
        case .pop3dAuthFailureLimit: authFailureLimit = try e.integer(k, min: 1, max: 1000)
        case .pop3dAuthFailureMaxDelay: authFailureMaxDelay = Double(try e.duration(k, .seconds, min: 0, max: 300))
        case .pop3dMaxConnections: maxConnections = try e.integer(k, min: 1, max: 100_000)
        case .pop3dMaxConnectionsPerClient: maxConnectionsPerClient = try e.integer(k, min: 1, max: 100_000)
        case .pop3dShutdownGrace: shutdownGraceSeconds = try e.duration(k, .seconds, min: 0, max: 3600)
        default: break
        }
    }
}
