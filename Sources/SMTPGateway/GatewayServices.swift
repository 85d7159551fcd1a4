// What every drac-smtpd connection shares: settings, SASL, the map, throttles, limits, logs.
import DRACCore
import DRACMap
import Logging
import MailServerKit
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import SASLAuth
import SMTPCore

public final class GatewayServices: @unchecked Sendable {
    public let config: SMTPDConfig
    public let hostname: String
    public let sasl: (any SASLServerFactory)?
    /// nil when smtpd_use_drac = no.
    public let map: WatchedMapReader?
    public let threadPool: NIOThreadPool
    public let tls: NIOSSLContext?
    public let limiter: ClientLimiter
    public let registry = ConnectionRegistry()
    public let logger: Logger
    let throttle: NIOLockedValueBox<AuthThrottle>
    let sessionIDs = SessionIDs()
    /// DSN offered by the backend at its last EHLO (passed through only then).
    let backendDSN = NIOLockedValueBox(false)
    let draining = NIOLockedValueBox(false)
    /// One pool of idle backend connections per event loop (used only on that loop).
    private let pools = NIOLockedValueBox<[ObjectIdentifier: BackendPool]>([:])

    func backendPool(for loop: EventLoop) -> BackendPool {
        pools.withLockedValue { p in
            let key = ObjectIdentifier(loop)
            if let pool = p[key] { return pool }
            let pool = BackendPool(capacity: 64, maxIdle: .seconds(30))
            p[key] = pool
            return pool
        }
    }

    public init(config: SMTPDConfig, hostname: String, sasl: (any SASLServerFactory)?, map: WatchedMapReader?,
                threadPool: NIOThreadPool, tls: NIOSSLContext?, logger: Logger) {
        self.config = config
        self.hostname = hostname
        self.sasl = sasl
        self.map = map
        self.threadPool = threadPool
        self.tls = tls
        self.logger = logger
        self.limiter = ClientLimiter(maxTotal: config.maxConnections, maxPerClient: config.maxConnectionsPerClient)
        self.throttle = NIOLockedValueBox(AuthThrottle(limit: config.authFailureLimit, maxDelay: config.authFailureMaxDelay))
    }

    /// A short unique id per session for log lines and Received: (like a Postfix queue id).
    func nextSessionID() -> String { sessionIDs.next() }

    /// The settings of one session: AUTH outside TLS is allowed for loopback clients only
    /// unless smtpd_auth_requires_tls = no (RFC 4954 §4 asks for a protected channel).
    func sessionSettings(kind: ListenerKind, client: IPAddress) -> SessionSettings {
        let mechs = config.saslMechanisms
        let plain = sasl?.mechanisms(secure: false).filter { mechs.contains($0) } ?? []
        let secure = sasl?.mechanisms(secure: true).filter { mechs.contains($0) } ?? []
        return SessionSettings(
            hostname: hostname, listener: kind, policy: config.policy, limits: config.limits,
            startTLSAvailable: tls != nil && kind != .submissions,
            mechanismsPlain: plain, mechanismsSecure: secure,
            authRequiresTLS: config.authRequiresTLS && !client.isLoopback,
            backendOffersDSN: backendDSN.withLockedValue { $0 })
    }
}
