// The Cyrus libsasl2 implementation of SASLServerFactory: users in sasldb (auxprop) or via saslauthd.
//
// Facts about libsasl2 2.1.28 this file relies on (lib/common.c, lib/server.c, lib/canonusr.c):
// - Options come from SASL_CB_GETOPT. For a connection, Cyrus asks the callbacks given to
//   sasl_server_new first, then the global ones given to sasl_server_init, then the config file
//   /etc/sasl2/<appname>.conf (`_sasl_conn_getopt`). So each CyrusSASLServer hands its own options
//   to every sasl_server_new, and two servers with different configurations coexist in one process.
//   pwcheck_method, sasldb_path, auxprop_plugin, saslauthd_path and mech_list are all read per
//   connection (mech_list in sasl_server_new, the others at each lookup).
// - sasl_server_init runs once per process; it stores the appname pointer without copying it.
// - The default mutex functions are no-ops: real ones must be installed with sasl_set_mutex before
//   sasl_server_init (later calls are ignored).
// - A sasl_conn_t is not thread-safe, and sasl_server_step after a failed step, or before any
//   start, dereferences a disposed mechanism context. Sessions therefore track their state and
//   take a fresh sasl_conn_t for every exchange.
import CSASL
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How a `CyrusSASLServer` checks credentials. See the Cyrus SASL "Options" documentation
/// (https://www.cyrusimap.org/sasl/sasl/options.html) for the options these become.
public struct CyrusSASLConfig: Sendable, Hashable {
    /// Cyrus `pwcheck_method`: "auxprop" (sasldb), "saslauthd" (PAM, shadow, LDAP... through the
    /// saslauthd daemon), or both separated by a space, tried in order.
    public var pwcheckMethod: String
    /// Cyrus `sasldb_path`, the Berkeley DB file written by saslpasswd2. Used with auxprop.
    public var sasldbPath: String
    /// Cyrus `saslauthd_path`: saslauthd's socket (Debian: /var/run/saslauthd/mux). nil: the
    /// library default.
    public var saslauthdPath: String?
    /// Mechanisms to offer, in order. Shared-secret mechanisms (CRAM-MD5...) need the plaintext
    /// password from sasldb; without auxprop in `pwcheckMethod` only PLAIN and LOGIN are kept.
    public var mechanisms: [String]
    /// The realm appended to user names typed without "@" (Cyrus `user_realm`). nil: no realm is
    /// appended, and sasldb looks such names up under the connection's serverFQDN.
    public var realm: String?

    public init(pwcheckMethod: String = "auxprop", sasldbPath: String = "/etc/sasldb2",
                saslauthdPath: String? = nil, mechanisms: [String] = ["PLAIN", "LOGIN", "CRAM-MD5"],
                realm: String? = nil) {
        self.pwcheckMethod = pwcheckMethod
        self.sasldbPath = sasldbPath
        self.saslauthdPath = saslauthdPath
        self.mechanisms = mechanisms
        self.realm = realm
    }
}

/// SASL through Cyrus libsasl2.
///
/// Identities returned in `.success` are Cyrus's `SASL_USERNAME`, the canonical authorization
/// identity. For a sasldb user made with `saslpasswd2 -u example.org alice`:
///
/// | client sends          | `realm` configured | identity              |
/// |-----------------------|--------------------|-----------------------|
/// | `alice@example.org`   | none or any        | `alice@example.org`   |
/// | `alice`               | `example.org`      | `alice@example.org`   |
/// | `alice`               | none               | fails: looked up as alice in realm serverFQDN |
///
/// With no realm configured, a user made with `-u <serverFQDN> bob` authenticates as plain `bob`
/// (Cyrus appends only a configured realm, lib/canonusr.c). Configure `realm` so every identity
/// carries one. Cyrus trims surrounding white space and keeps case.
public final class CyrusSASLServer: SASLServerFactory, @unchecked Sendable {
    // @unchecked: every stored property is immutable after init; `options` is read by libsasl2
    // from any thread and never written.

    public let config: CyrusSASLConfig
    private let options: CyrusOptions
    /// What `mechanisms(secure:)` answers, asked of the library once.
    private let advertised: [Bool: [String]]

    /// Mechanisms that only need the password the client sends, so saslauthd can check them.
    static let plaintextMechanisms: Set<String> = ["PLAIN", "LOGIN"]

    public init(config: CyrusSASLConfig) throws {
        let initResult = cyrusLibraryInitialization
        guard initResult == SASL_OK else {
            throw SASLError(.libraryInitialization, "sasl_server_init: \(CyrusSASL.describe(initResult))",
                            result: initResult)
        }
        self.config = config

        var configured: [String] = []
        for mech in config.mechanisms.map({ $0.uppercased() }) where !configured.contains(mech) {
            configured.append(mech)
        }
        let methods = config.pwcheckMethod.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard !methods.isEmpty else {
            throw SASLError(.configuration, "empty pwcheck_method")
        }
        let usesAuxprop = methods.contains("auxprop")
        // Configured mechanisms this backend can serve, upper case, in configured order.
        let usable = usesAuxprop ? configured : configured.filter { Self.plaintextMechanisms.contains($0) }
        guard !usable.isEmpty else {
            throw SASLError(.configuration, "no usable mechanism in \(config.mechanisms) with pwcheck_method "
                                + "\(config.pwcheckMethod) (shared-secret mechanisms need auxprop)")
        }
        // Fail at startup, not at every login: an unreadable sasldb makes each lookup fail
        // inside the library, which a client would only see as refused credentials.
        if usesAuxprop && access(config.sasldbPath, R_OK) != 0 {
            throw SASLError(.configuration,
                            "sasldb \(config.sasldbPath) is not readable: \(String(cString: strerror(errno)))")
        }

        var pairs: [(String, String)] = [
            ("pwcheck_method", config.pwcheckMethod),
            // Also stops Cyrus from offering mechanisms we did not configure: it builds each
            // connection's list from this option (sasl_server_new).
            ("mech_list", usable.joined(separator: " ")),
            // Answered even for saslauthd: canonicalization still runs an auxprop lookup.
            ("sasldb_path", config.sasldbPath),
        ]
        if usesAuxprop {
            pairs.append(("auxprop_plugin", "sasldb"))
        }
        if let path = config.saslauthdPath {
            pairs.append(("saslauthd_path", path))
        }
        options = CyrusOptions(pairs)

        // Ask the library which of our mechanisms it has (plugins in /usr/lib/.../sasl2).
        var lists: [Bool: [String]] = [:]
        for secure in [false, true] {
            let probe = SASLConnectionInfo(service: "smtp", serverFQDN: "localhost", secure: secure)
            let conn = try CyrusConnection(options: options, info: probe, realm: config.realm)
            let available = Set(conn.listMechanisms().map { $0.uppercased() })
            lists[secure] = usable.filter { available.contains($0) }
        }
        advertised = lists
        guard !(lists[true] ?? []).isEmpty else {
            throw SASLError(.configuration, "libsasl2 offers none of \(usable) (libsasl2-modules installed?)")
        }
    }

    public func mechanisms(secure: Bool) -> [String] {
        advertised[secure] ?? []
    }

    public func makeSession(_ info: SASLConnectionInfo) throws -> SASLSession {
        try CyrusSASLSession(options: options, info: info, realm: config.realm,
                             mechanisms: mechanisms(secure: info.secure))
    }

    public func checkPassword(user: String, password: String, info: SASLConnectionInfo) -> SASLOutcome {
        // A NUL would silently cut the C string: refuse rather than check a different name.
        guard !user.isEmpty, !user.utf8.contains(0), !password.utf8.contains(0) else {
            return .failure(.malformed)
        }
        let conn: CyrusConnection
        do {
            conn = try CyrusConnection(options: options, info: info, realm: config.realm)
        } catch {
            return .failure(.temporary("\(error)"))
        }
        // Lengths 0 = strlen. Not the real length: sasl_checkpass canonicalizes the name
        // (possibly appending @realm) and then passes the *original* length on with the new
        // string (lib/server.c); only 0 keeps the verifier reading the whole canonical name.
        conn.resetLog()
        let rc = sasl_checkpass(conn.handle, user, 0, password, 0)
        return conn.outcome(rc, out: nil, outlen: 0)
    }

    /// The failure a Cyrus result code stands for. Anything unexpected is temporary: a backend
    /// we do not understand must give 4xx, never 5xx or success.
    static func failure(for result: Int32) -> SASLFailure {
        switch result {
        case SASL_BADAUTH, SASL_NOUSER, SASL_NOAUTHZ, SASL_BADVERS, SASL_EXPIRED, SASL_DISABLED,
             SASL_NOVERIFY, SASL_PWLOCK, SASL_TRANS, SASL_NOUSERPASS:
            return .badCredentials
        case SASL_BADPROT, SASL_BUFOVER, SASL_BADMAC, SASL_BADBINDING:
            return .malformed
        case SASL_NOMECH, SASL_WRONGMECH:
            return .unknownMechanism
        case SASL_TOOWEAK, SASL_ENCRYPT:
            return .tooWeak
        default:
            // SASL_TRYAGAIN, SASL_UNAVAIL, and SASL_FAIL, which is what saslauthd_verify_password
            // returns when it cannot reach saslauthd (lib/checkpw.c).
            return .temporary(CyrusSASL.describe(result))
        }
    }
}

// MARK: - Sessions

/// One client connection. Each exchange (each `start`) gets its own `sasl_conn_t`: libsasl2 does
/// not reset a connection between exchanges (server.c keeps `sent_last`, the old oparams), and a
/// step after a failure would reach a disposed mechanism context.
final class CyrusSASLSession: SASLSession, @unchecked Sendable {
    // @unchecked: all mutable state is behind `lock`.
    enum State {
        /// `conn` is unused.
        case fresh
        /// A mechanism is waiting for `step`.
        case exchanging
        /// The exchange ended; the next `start` needs a new connection.
        case ended
    }

    private let lock = PThreadMutex()
    private let options: CyrusOptions
    private let info: SASLConnectionInfo
    private let realm: String?
    private let allowed: [String]
    private var conn: CyrusConnection?
    private var state = State.fresh

    init(options: CyrusOptions, info: SASLConnectionInfo, realm: String?, mechanisms: [String]) throws {
        self.options = options
        self.info = info
        self.realm = realm
        self.allowed = mechanisms
        // Created now so that a bad address shows as a `makeSession` error.
        self.conn = try CyrusConnection(options: options, info: info, realm: realm)
    }

    func start(mechanism: String, initialResponse: [UInt8]?) -> SASLOutcome {
        lock.withLock {
            // A new AUTH abandons any exchange in progress.
            if state == .exchanging { state = .ended }
            let mech = mechanism.uppercased()
            // Cyrus would refuse unlisted mechanisms too (mech_list); checking here keeps ANONYMOUS
            // and friends out even if a config file widened the list.
            guard allowed.contains(mech) else { return .failure(.unknownMechanism) }
            let c: CyrusConnection
            if let existing = conn, state == .fresh {
                c = existing
            } else {
                conn = nil
                do {
                    c = try CyrusConnection(options: options, info: info, realm: realm)
                } catch {
                    return .failure(.temporary("\(error)"))
                }
                conn = c
            }
            return c.run(initialResponse) { data, length, out, outlen in
                sasl_server_start(c.handle, mech, data, length, out, outlen)
            } update: { state = $0 }
        }
    }

    func step(_ response: [UInt8]) -> SASLOutcome {
        lock.withLock {
            guard state == .exchanging, let c = conn else { return .failure(.malformed) }
            return c.run(response) { data, length, out, outlen in
                sasl_server_step(c.handle, data, length, out, outlen)
            } update: { state = $0 }
        }
    }

    @discardableResult
    func cancel() -> SASLOutcome {
        lock.withLock { state = .ended }
        return .failure(.cancelled)
    }

    fileprivate static func state(after outcome: SASLOutcome) -> State {
        if case .challenge = outcome { return .exchanging }
        return .ended
    }
}

extension CyrusConnection {
    /// Runs one start/step call with the client's bytes and turns the result into an outcome.
    fileprivate func run(_ input: [UInt8]?,
                         _ call: (UnsafePointer<CChar>?, UInt32, UnsafeMutablePointer<UnsafePointer<CChar>?>,
                                  UnsafeMutablePointer<UInt32>) -> Int32,
                         update: (CyrusSASLSession.State) -> Void) -> SASLOutcome {
        var out: UnsafePointer<CChar>? = nil
        var outlen: UInt32 = 0
        let outcome: SASLOutcome
        if let input, input.count > UInt32.max {
            outcome = .failure(.malformed)
        } else {
            resetLog()
            let rc = withClientData(input) { data, length in call(data, length, &out, &outlen) }
            outcome = self.outcome(rc, out: out, outlen: outlen)
        }
        update(CyrusSASLSession.state(after: outcome))
        return outcome
    }
}

/// Passes client bytes as Cyrus wants them: NULL for "no initial response", and a non-NULL
/// pointer with length 0 for the empty response ("=" in RFC 4954 §4). An empty Swift array has
/// no base address, so it needs a real empty string.
private func withClientData<R>(_ bytes: [UInt8]?, _ body: (UnsafePointer<CChar>?, UInt32) -> R) -> R {
    guard let bytes else { return body(nil, 0) }
    if bytes.isEmpty {
        return "".withCString { body($0, 0) }
    }
    return bytes.withUnsafeBufferPointer { buffer in
        buffer.withMemoryRebound(to: CChar.self) { body($0.baseAddress, UInt32(buffer.count)) }
    }
}

// MARK: - The sasl_conn_t owner

/// Owns one `sasl_conn_t`, disposed in deinit, and the per-connection callback list it points to
/// (options from the server's `CyrusOptions`, plus a log callback that keeps this connection's
/// messages). Used by one thread at a time.
final class CyrusConnection {
    let handle: OpaquePointer
    private let options: CyrusOptions
    private let log: CyrusLog
    private let callbacks: UnsafeMutablePointer<sasl_callback_t>

    init(options: CyrusOptions, info: SASLConnectionInfo, realm: String?) throws {
        let log = CyrusLog()
        let logFunction: LogFunction = cyrusLog
        let canonFunction: CanonUserFunction = cyrusCanonUser
        let callbacks = UnsafeMutablePointer<sasl_callback_t>.allocate(capacity: Self.callbackCount)
        callbacks.initialize(to: options.getoptCallback)
        (callbacks + 1).initialize(to: sasl_callback_t(
            id: UInt(SASL_CB_LOG), proc: unsafeBitCast(logFunction, to: (@convention(c) () -> Int32).self),
            context: Unmanaged.passUnretained(log).toOpaque()))
        (callbacks + 2).initialize(to: sasl_callback_t(
            id: UInt(SASL_CB_CANON_USER), proc: unsafeBitCast(canonFunction, to: (@convention(c) () -> Int32).self),
            context: nil))
        (callbacks + 3).initialize(to: sasl_callback_t(id: UInt(SASL_CB_LIST_END), proc: nil, context: nil))
        do {
            handle = try Self.open(callbacks: callbacks, info: info, realm: realm)
        } catch {
            callbacks.deinitialize(count: Self.callbackCount)
            callbacks.deallocate()
            throw error
        }
        self.options = options
        self.log = log
        self.callbacks = callbacks
    }

    deinit {
        var h: OpaquePointer? = handle
        sasl_dispose(&h)
        // Only now: the connection pointed to the list until sasl_dispose.
        callbacks.deinitialize(count: Self.callbackCount)
        callbacks.deallocate()
    }

    /// GETOPT, LOG, CANON_USER, LIST_END.
    private static let callbackCount = 4

    private static func open(callbacks: UnsafePointer<sasl_callback_t>, info: SASLConnectionInfo,
                             realm: String?) throws -> OpaquePointer {
        // "a.b.c.d;port" / "::1;port", the form sasl_server_new documents (sasl.h); Cyrus parses
        // and copies them.
        let local = info.local.map { "\($0.ip);\($0.port)" }
        let remote = info.remote.map { "\($0.ip);\($0.port)" }
        var conn: OpaquePointer? = nil
        let rc = withOptionalCString(info.serverFQDN.isEmpty ? nil : info.serverFQDN) { fqdn in
            withOptionalCString(realm) { realm in
                withOptionalCString(local) { local in
                    withOptionalCString(remote) { remote in
                        // flags 0: no SASL_SUCCESS_DATA. SMTP (RFC 4954 §4) and POP3 (RFC 5034 §4)
                        // success replies carry no data, so Cyrus turns a mechanism's final data
                        // into one more challenge whose (empty) answer returns SASL_OK.
                        sasl_server_new(info.service, fqdn, realm, local, remote, callbacks, 0, &conn)
                    }
                }
            }
        }
        guard rc == SASL_OK, let handle = conn else {
            if conn != nil { sasl_dispose(&conn) }
            throw SASLError(.connection, "sasl_server_new(\(info.service), local \(local ?? "-"), "
                                + "remote \(remote ?? "-")): \(CyrusSASL.describe(rc))", result: rc)
        }

        // max_ssf 0: no SASL security layer (DIGEST-MD5 integrity/privacy); the servers have no
        // code to wrap traffic after AUTH, so one must never be negotiated (Postfix does the same).
        // NOANONYMOUS keeps the ANONYMOUS mechanism out. NOPLAINTEXT is deliberately not set:
        // whether PLAIN/LOGIN may run without TLS is the protocol layer's decision.
        var props = sasl_security_properties_t()
        props.min_ssf = 0
        props.max_ssf = 0
        props.maxbufsize = 0
        props.security_flags = UInt32(SASL_SEC_NOANONYMOUS)
        var rcProps = sasl_setprop(handle, SASL_SEC_PROPS, &props)
        if rcProps == SASL_OK && info.secure {
            // Under TLS: tell Cyrus the channel is protected. The cipher strength is not known
            // here; any value above 1 counts as "not plaintext" in mech_permitted (server.c).
            var ssf: sasl_ssf_t = 256
            rcProps = sasl_setprop(handle, SASL_SSF_EXTERNAL, &ssf)
        }
        guard rcProps == SASL_OK else {
            sasl_dispose(&conn)
            throw SASLError(.connection, "sasl_setprop: \(CyrusSASL.describe(rcProps))", result: rcProps)
        }
        return handle
    }

    /// Forgets what was logged by earlier calls; call before each start/step/checkpass.
    func resetLog() {
        log.messages.removeAll()
    }

    /// The mechanisms this connection may use (sasl_listmech applies mech_list and the security
    /// properties).
    func listMechanisms() -> [String] {
        var result: UnsafePointer<CChar>? = nil
        var length: UInt32 = 0
        var count: Int32 = 0
        guard sasl_listmech(handle, nil, "", " ", "", &result, &length, &count) == SASL_OK,
              let result else { return [] }
        return String(cString: result).split(separator: " ").map(String.init)
    }

    /// Turns a start/step/checkpass result into an outcome. Must run before the next call on the
    /// connection: `out` points into the library's buffer.
    func outcome(_ rc: Int32, out: UnsafePointer<CChar>?, outlen: UInt32) -> SASLOutcome {
        switch rc {
        case SASL_CONTINUE:
            guard let out, outlen > 0 else { return .challenge([]) }
            return .challenge(out.withMemoryRebound(to: UInt8.self, capacity: Int(outlen)) {
                Array(UnsafeBufferPointer(start: $0, count: Int(outlen)))
            })
        case SASL_OK:
            var value: UnsafeRawPointer? = nil
            guard sasl_getprop(handle, SASL_USERNAME, &value) == SASL_OK, let value else {
                return .failure(.temporary("authenticated, but no SASL_USERNAME"))
            }
            return .success(identity: String(cString: value.assumingMemoryBound(to: CChar.self)))
        default:
            let failure = CyrusSASLServer.failure(for: rc)
            if case .temporary = failure {
                // For the log. sasl_errdetail alone is often just "generic failure: checkpass
                // failed"; the cause ("cannot connect to saslauthd server: ...") was logged.
                let detail = String(cString: sasl_errdetail(handle))
                return .failure(.temporary(([detail] + log.messages.filter { !detail.contains($0) })
                    .joined(separator: "; ")))
            }
            return .failure(failure)
        }
    }
}

private func withOptionalCString<R>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let s else { return body(nil) }
    return s.withCString { body($0) }
}

// MARK: - Options through SASL_CB_GETOPT

/// The options one `CyrusSASLServer` answers through SASL_CB_GETOPT. libsasl2 uses the answered
/// strings without copying them, so they live here, for as long as any connection holds this.
final class CyrusOptions: @unchecked Sendable {
    // @unchecked: immutable after init; read from any thread through cyrusGetopt.
    private let names: [UnsafeMutablePointer<CChar>]
    private let values: [UnsafeMutablePointer<CChar>]

    init(_ pairs: [(String, String)]) {
        names = pairs.map { strdup($0.0)! }
        values = pairs.map { strdup($0.1)! }
    }

    deinit {
        names.forEach { free($0) }
        values.forEach { free($0) }
    }

    /// The SASL_CB_GETOPT entry for a connection's callback list. The connection must keep this
    /// object alive (the entry holds an unretained pointer to it).
    var getoptCallback: sasl_callback_t {
        let getopt: GetoptFunction = cyrusGetopt
        return sasl_callback_t(
            id: UInt(SASL_CB_GETOPT),
            // sasl_callback_t.proc is `int (*)(void)`; Cyrus casts it back by id.
            proc: unsafeBitCast(getopt, to: (@convention(c) () -> Int32).self),
            context: Unmanaged.passUnretained(self).toOpaque())
    }

    func value(for option: UnsafePointer<CChar>) -> UnsafePointer<CChar>? {
        for (i, name) in names.enumerated() where strcmp(name, option) == 0 {
            return UnsafePointer(values[i])
        }
        return nil
    }
}

/// `sasl_getopt_t` as a C function pointer type (the header's typedef is a plain function type).
typealias GetoptFunction = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, UnsafePointer<CChar>?,
                                           UnsafeMutablePointer<UnsafePointer<CChar>?>?,
                                           UnsafeMutablePointer<UInt32>?) -> Int32

/// SASL_CB_GETOPT. Unanswered options return SASL_FAIL, so Cyrus falls back to the global
/// callbacks and then to /etc/sasl2/drac.conf (lib/common.c `_sasl_conn_getopt`).
/// A top-level function, not a closure, so that it carries no actor isolation: libsasl2 calls it
/// on whatever thread runs the exchange.
private func cyrusGetopt(_ context: UnsafeMutableRawPointer?, _ pluginName: UnsafePointer<CChar>?,
                         _ option: UnsafePointer<CChar>?,
                         _ result: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
                         _ length: UnsafeMutablePointer<UInt32>?) -> Int32 {
    guard let context, let option, let result else { return SASL_BADPARAM }
    let options = Unmanaged<CyrusOptions>.fromOpaque(context).takeUnretainedValue()
    guard let value = options.value(for: option) else { return SASL_FAIL }
    result.pointee = value
    length?.pointee = UInt32(strlen(value))
    return SASL_OK
}

// MARK: - User names through SASL_CB_CANON_USER

/// `sasl_canon_user_t` as a C function pointer type.
typealias CanonUserFunction = @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, UnsafePointer<CChar>?, UInt32,
                                              UInt32, UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, UInt32,
                                              UnsafeMutablePointer<UInt32>?) -> Int32

/// Runs before Cyrus's own canonicalization (lib/canonusr.c) and passes names through unchanged,
/// except that an empty or all-white-space name is a protocol error (SASL_BADPROT). Cyrus itself
/// answers SASL_FAIL ("All-whitespace username"), which is indistinguishable from a backend
/// failure and would give a client that sends an empty PLAIN authcid or LOGIN user name a
/// "454 try again later" instead of a 501.
private func cyrusCanonUser(_ conn: OpaquePointer?, _ context: UnsafeMutableRawPointer?, _ input: UnsafePointer<CChar>?,
                            _ inputLength: UInt32, _ flags: UInt32, _ userRealm: UnsafePointer<CChar>?,
                            _ output: UnsafeMutablePointer<CChar>?, _ outputMax: UInt32,
                            _ outputLength: UnsafeMutablePointer<UInt32>?) -> Int32 {
    guard let input, let output, let outputLength else { return SASL_BADPARAM }
    let length = Int(inputLength)
    let bytes = UnsafeBufferPointer(start: input, count: length)
    guard bytes.contains(where: { isspace(Int32(UInt8(bitPattern: $0))) == 0 }) else { return SASL_BADPROT }
    // Cyrus NUL-terminates at out[len] and needs the room (canonusr.c: out_user[...] = '\0').
    guard length < Int(outputMax) else { return SASL_BUFOVER }
    memmove(output, input, length)  // the input may be a buffer Cyrus also writes to
    output[length] = 0
    outputLength.pointee = inputLength
    return SASL_OK
}

// MARK: - Logging through SASL_CB_LOG

/// What libsasl2 logged for one connection during the current call (ERR, FAIL and WARN levels;
/// auth failures arrive as FAIL through sasl_seterror). Only touched from the thread running that
/// connection's call.
final class CyrusLog {
    var messages: [String] = []
}

/// `sasl_log_t` as a C function pointer type.
typealias LogFunction = @convention(c) (UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?) -> Int32

/// SASL_CB_LOG. Installing a log callback replaces libsasl2's own syslog output, so ERR-level
/// messages (broken sasldb, missing plugins) still go to syslog as the default callback sends them
/// with the default log_level (lib/common.c `_sasl_syslog`): LOG_AUTH | LOG_ERR.
private func cyrusLog(_ context: UnsafeMutableRawPointer?, _ level: Int32, _ message: UnsafePointer<CChar>?) -> Int32 {
    guard let message, level != SASL_LOG_NONE else { return SASL_OK }
    if level == SASL_LOG_ERR {
        withVaList([message]) { vsyslog(LOG_AUTH | LOG_ERR, "%s", $0) }
    }
    if let context, level <= SASL_LOG_WARN {
        let log = Unmanaged<CyrusLog>.fromOpaque(context).takeUnretainedValue()
        if log.messages.count < 8 {
            log.messages.append(String(cString: message))
        }
    }
    return SASL_OK
}

// MARK: - Process-wide initialization

/// Cyrus's application name: it reads /etc/sasl2/drac.conf if present, for options no server
/// answers itself. A static string: sasl_server_init keeps the pointer, not a copy (server.c).
private let cyrusAppName: StaticString = "drac"

/// sasl_set_mutex then sasl_server_init, once per process (a global's initializer runs exactly
/// once, thread-safely). No global callbacks: every option is answered per connection.
private let cyrusLibraryInitialization: Int32 = {
    sasl_set_mutex(cyrusMutexAlloc, cyrusMutexLock, cyrusMutexUnlock, cyrusMutexFree)
    return sasl_server_init(nil, UnsafeRawPointer(cyrusAppName.utf8Start).assumingMemoryBound(to: CChar.self))
}()

// libsasl2's built-in mutex functions are no-ops (lib/common.c): without these, threads
// authenticating at once race on the library's shared state. Top-level functions, not closures,
// so no actor isolation is inferred for them.

private func cyrusMutexAlloc() -> UnsafeMutableRawPointer? {
    let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    m.initialize(to: pthread_mutex_t())
    guard pthread_mutex_init(m, nil) == 0 else {
        m.deallocate()
        return nil
    }
    return UnsafeMutableRawPointer(m)
}

private func cyrusMutexLock(_ p: UnsafeMutableRawPointer?) -> Int32 {
    guard let p else { return SASL_BADPARAM }
    return pthread_mutex_lock(p.assumingMemoryBound(to: pthread_mutex_t.self)) == 0 ? SASL_OK : SASL_FAIL
}

private func cyrusMutexUnlock(_ p: UnsafeMutableRawPointer?) -> Int32 {
    guard let p else { return SASL_BADPARAM }
    return pthread_mutex_unlock(p.assumingMemoryBound(to: pthread_mutex_t.self)) == 0 ? SASL_OK : SASL_FAIL
}

private func cyrusMutexFree(_ p: UnsafeMutableRawPointer?) {
    guard let p else { return }
    let m = p.assumingMemoryBound(to: pthread_mutex_t.self)
    pthread_mutex_destroy(m)
    m.deinitialize(count: 1)
    m.deallocate()
}
