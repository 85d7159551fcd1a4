// drac.conf: the `key = value` file, `-o key=value` overrides, and the typed settings they produce.

/// A configuration problem, located in its file and line (or in a `-o` override).
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public var source: String
    public var line: Int?
    public var message: String
    public init(source: String, line: Int?, message: String) {
        self.source = source; self.line = line; self.message = message
    }
    public var description: String {
        if let line { return "\(source), line \(line): \(message)" }
        return "\(source): \(message)"
    }
}

/// Raw `key = value` pairs with where each came from. Later sources override earlier ones.
public struct ConfigSource: Sendable {
    public struct Entry: Sendable, Equatable { public var value: String; public var source: String; public var line: Int? }
    public private(set) var entries: [String: Entry] = [:]

    public init() {}

    static let maxLineLength = 4096
    static let maxLines = 10_000

    /// Parses drac.conf text. `#` comments (at line start or after whitespace), blank lines,
    /// `key = value`. Unknown keys are errors, so a typo is never silently ignored.
    public mutating func parseFile(_ text: String, name: String) throws(ConfigError) {
        var lineNumber = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            guard lineNumber <= ConfigSource.maxLines else { throw ConfigError(source: name, line: lineNumber, message: "too many lines") }
            guard raw.utf8.count <= ConfigSource.maxLineLength else { throw ConfigError(source: name, line: lineNumber, message: "line longer than \(ConfigSource.maxLineLength) bytes") }
            let line = ConfigSource.stripComment(raw).trimmingASCIIWhitespace()
            if line.isEmpty { continue }
            try set(line, source: name, line: lineNumber)
        }
    }

    /// Applies one `-o key=value`.
    public mutating func parseOverride(_ text: String) throws(ConfigError) {
        try set(text, source: "-o \(text)", line: nil)
    }

    private mutating func set(_ assignment: String, source: String, line: Int?) throws(ConfigError) {
        guard let eq = assignment.firstIndex(of: "=") else {
            throw ConfigError(source: source, line: line, message: "expected 'key = value'")
        }
        let key = assignment[..<eq].trimmingASCIIWhitespace()
        let value = assignment[assignment.index(after: eq)...].trimmingASCIIWhitespace()
        guard ConfigKey(rawValue: key) != nil else {
            throw ConfigError(source: source, line: line, message: "unknown key '\(key)'")
        }
        entries[key] = Entry(value: value, source: source, line: line)
    }

    static func stripComment(_ line: Substring) -> Substring {
        var previousWasSpace = true
        for i in line.indices {
            let c = line[i]
            if c == "#" && previousWasSpace { return line[..<i] }
            previousWasSpace = c == " " || c == "\t"
        }
        return line
    }
}

/// Every key drac.conf knows. drac.conf(5) documents each.
public enum ConfigKey: String, CaseIterable, Sendable {
    case mapFile = "map_file"
    case mapType = "map_type"
    case mapNulTerminate = "map_nul_terminate"
    case mapCidrKeys = "map_cidr_keys"
    case expire
    case sweepInterval = "sweep_interval"
    case allowFile = "allow_file"
    case rpcbind
    case listen
    case rpcPort = "rpc_port"
    case rpcTransports = "rpc_transports"
    case maxConnections = "max_connections"
    case idleTimeout = "idle_timeout"
    case rpcMaxRecord = "rpc_max_record"
    case syslogFacility = "syslog_facility"
    case pidFile = "pid_file"
    case rpcServers = "rpc_servers"
    case rpcTimeout = "rpc_timeout"

    // drac-smtpd (SMTPDConfig)
    case smtpdListen = "smtpd_listen"
    case smtpdHostname = "smtpd_hostname"
    case smtpdBackend = "smtpd_backend"
    case smtpdBackendTimeout = "smtpd_backend_timeout"
    case smtpdBackendDataTimeout = "smtpd_backend_data_timeout"
    case smtpdLocalDomains = "smtpd_local_domains"
    case smtpdRelayDomains = "smtpd_relay_domains"
    case smtpdTrustedNetworks = "smtpd_trusted_networks"
    case smtpdUseDrac = "smtpd_use_drac"
    case smtpdTLSCertFile = "smtpd_tls_cert_file"
    case smtpdTLSKeyFile = "smtpd_tls_key_file"
    case smtpdAuthRequiresTLS = "smtpd_auth_requires_tls"
    case smtpdSASLMechanisms = "smtpd_sasl_mechanisms"
    case smtpdSASLPwcheckMethod = "smtpd_sasl_pwcheck_method"
    case smtpdSASLDBPath = "smtpd_sasldb_path"
    case smtpdSaslauthdPath = "smtpd_saslauthd_path"
    case smtpdSASLRealm = "smtpd_sasl_realm"
    case smtpdMessageSizeLimit = "smtpd_message_size_limit"
    case smtpdRecipientLimit = "smtpd_recipient_limit"
    case smtpdErrorLimit = "smtpd_error_limit"
    case smtpdTimeout = "smtpd_timeout"
    case smtpdDataTimeout = "smtpd_data_timeout"
    case smtpdMaxConnections = "smtpd_max_connections"
    case smtpdMaxConnectionsPerClient = "smtpd_max_connections_per_client"
    case smtpdAuthFailureLimit = "smtpd_auth_failure_limit"
    case smtpdAuthFailureMaxDelay = "smtpd_auth_failure_max_delay"
    case smtpdShutdownGrace = "smtpd_shutdown_grace"

    // drac-pop3d (POP3DConfig)
    case pop3dListen = "pop3d_listen"
    case pop3dHostname = "pop3d_hostname"
    case pop3dMailLocation = "pop3d_mail_location"
    case pop3dMailUser = "pop3d_mail_user"
    case pop3dMboxFromUnquote = "pop3d_mbox_from_unquote"
    case pop3dTLSCertFile = "pop3d_tls_cert_file"
    case pop3dTLSKeyFile = "pop3d_tls_key_file"
    case pop3dPlaintextRequiresTLS = "pop3d_plaintext_requires_tls"
    case pop3dSASLMechanisms = "pop3d_sasl_mechanisms"
    case pop3dSASLPwcheckMethod = "pop3d_sasl_pwcheck_method"
    case pop3dSASLDBPath = "pop3d_sasldb_path"
    case pop3dSaslauthdPath = "pop3d_saslauthd_path"
    case pop3dSASLRealm = "pop3d_sasl_realm"
    case pop3dUseDrac = "pop3d_use_drac"
    case pop3dDracRefresh = "pop3d_drac_refresh"
    case pop3dTimeout = "pop3d_timeout"
    case pop3dCommandsBeforeLogin = "pop3d_commands_before_login"
    case pop3dFailedLogins = "pop3d_failed_logins"
    case pop3dAuthFailureLimit = "pop3d_auth_failure_limit"
    case pop3dAuthFailureMaxDelay = "pop3d_auth_failure_max_delay"
    case pop3dMaxConnections = "pop3d_max_connections"
    case pop3dMaxConnectionsPerClient = "pop3d_max_connections_per_client"
    case pop3dShutdownGrace = "pop3d_shutdown_grace"
}

extension ConfigSource.Entry {
    /// Value checkers shared by every program's settings; errors name the file, line and key.
    public func error(_ key: String, _ message: String) -> ConfigError {
        ConfigError(source: source, line: line, message: "\(key): \(message)")
    }
    public func bool(_ key: String) throws(ConfigError) -> Bool {
        switch value.lowercased() {
        case "yes", "true", "on", "1": return true
        case "no", "false", "off", "0": return false
        default: throw error(key, "expected yes or no, got '\(value)'")
        }
    }
    public func duration(_ key: String, _ unit: DurationParser.Unit, min: Int64, max: Int64) throws(ConfigError) -> Int64 {
        guard let s = DurationParser.seconds(value, defaultUnit: unit), s >= min, s <= max else {
            throw error(key, "expected a duration between \(min)s and \(max)s such as 30m, 90s, 2h; got '\(value)'")
        }
        return s
    }
    public func integer(_ key: String, min: Int, max: Int) throws(ConfigError) -> Int {
        guard let n = Int(value), n >= min, n <= max else { throw error(key, "expected a number from \(min) to \(max), got '\(value)'") }
        return n
    }
    public func path(_ key: String) throws(ConfigError) -> String {
        guard !value.isEmpty, value.utf8.count < 4096, !value.utf8.contains(0) else { throw error(key, "expected a file name") }
        return value
    }
    /// Items separated by commas and/or white space.
    public var list: [String] {
        value.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }).map(String.init)
    }
}

/// The typed settings shared by rpc.dracd, dracctl and the client library.
public struct DRACConfig: Equatable, Sendable {
    public enum Transport: String, Sendable, CaseIterable { case udp, tcp }

    public var mapFile = "/etc/drac/dracd.db"
    public var mapFormat = MapFormat()
    public var expireSeconds: Int64 = 30 * 60
    public var sweepIntervalSeconds: Int64 = 1
    public var allowFile = "/etc/drac/dracd.allow"
    public var useRpcbind = true
    /// Empty means every address (`*`): 0.0.0.0 and ::.
    public var listen: [IPAddress] = []
    public var rpcPort: Int = 0
    public var transports: [Transport] = [.udp, .tcp]
    public var maxConnections = 256
    public var idleTimeoutSeconds: Int64 = 30
    public var rpcMaxRecord = 8192
    public var syslogFacility = "mail"
    public var pidFile = "/run/rpc.dracd.pid"
    public var rpcServers: [String] = ["localhost"]
    public var rpcTimeoutSeconds: Int64 = 5

    public init() {}

    public static let defaultPath = "/etc/drac/drac.conf"
    public static let syslogFacilities = ["mail", "daemon", "auth", "authpriv", "user",
                                          "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"]

    /// Builds settings from parsed sources over the defaults; every value is checked.
    public init(_ source: ConfigSource) throws(ConfigError) {
        self.init()
        for (key, entry) in source.entries.sorted(by: { $0.key < $1.key }) {
            try apply(ConfigKey(rawValue: key)!, entry)
        }
    }

    private mutating func apply(_ key: ConfigKey, _ e: ConfigSource.Entry) throws(ConfigError) {
        func fail(_ message: String) -> ConfigError { e.error(key.rawValue, message) }
        func bool() throws(ConfigError) -> Bool { try e.bool(key.rawValue) }
        func duration(_ unit: DurationParser.Unit, min: Int64, max: Int64) throws(ConfigError) -> Int64 {
            try e.duration(key.rawValue, unit, min: min, max: max)
        }
        func integer(min: Int, max: Int) throws(ConfigError) -> Int { try e.integer(key.rawValue, min: min, max: max) }
        func path() throws(ConfigError) -> String { try e.path(key.rawValue) }
        let list = e.list

        switch key {
        case .mapFile: mapFile = try path()
        case .mapType:
            guard let k = MapFormat.Kind(rawValue: e.value.lowercased()) else { throw fail("expected btree or hash, got '\(e.value)'") }
            mapFormat.kind = k
        case .mapNulTerminate: mapFormat.nulTerminated = try bool()
        case .mapCidrKeys: mapFormat.cidrKeys = try bool()
        case .expire: expireSeconds = try duration(.minutes, min: 1, max: 366 * 86_400)
        case .sweepInterval: sweepIntervalSeconds = try duration(.seconds, min: 1, max: 3600)
        case .allowFile: allowFile = try path()
        case .rpcbind: useRpcbind = try bool()
        case .listen:
            if list == ["*"] || list.isEmpty { listen = []; break }
            var out: [IPAddress] = []
            for item in list {
                guard let a = IPAddress(item) else { throw fail("not an IP address: '\(item)'") }
                out.append(a)
            }
            listen = out
        case .rpcPort: rpcPort = try integer(min: 0, max: 65535)
        case .rpcTransports:
            var out: [Transport] = []
            for item in list {
                guard let t = Transport(rawValue: item.lowercased()) else { throw fail("expected udp and/or tcp, got '\(item)'") }
                if !out.contains(t) { out.append(t) }
            }
            guard !out.isEmpty else { throw fail("at least one of udp, tcp") }
            transports = out
        case .maxConnections: maxConnections = try integer(min: 1, max: 100_000)
        case .idleTimeout: idleTimeoutSeconds = try duration(.seconds, min: 1, max: 3600)
        case .rpcMaxRecord: rpcMaxRecord = try integer(min: 1024, max: 1 << 20)
        case .syslogFacility:
            guard DRACConfig.syslogFacilities.contains(e.value.lowercased()) else { throw fail("unknown facility '\(e.value)'") }
            syslogFacility = e.value.lowercased()
        case .pidFile: pidFile = e.value
        case .rpcServers:
            guard !list.isEmpty, list.count <= 32, list.allSatisfy({ $0.utf8.count <= 255 }) else { throw fail("expected 1 to 32 host names or addresses") }
            rpcServers = list
        case .rpcTimeout: rpcTimeoutSeconds = try duration(.seconds, min: 1, max: 300)
        default:
            break   // drac-smtpd's and drac-pop3d's keys: read by their own settings types
        }
    }
}
