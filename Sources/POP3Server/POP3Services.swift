// What every drac-pop3d connection shares: settings, SASL, TLS, maildrops, throttles, DRAC.
import DRACCore
import Foundation
import Logging
import MailServerKit
import MaildropStore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import POP3Core
import SASLAuth
import SMTPCore

/// Where a user's maildrop is and as whom it is accessed.
public struct MaildropTarget: Sendable, Equatable {
    public var location: MailLocation
    /// System users: the owner whose filesystem identity every access takes. nil: the
    /// process's own (virtual users, after the process became pop3d_mail_user).
    public var owner: SystemUser?
}

public final class POP3Services: @unchecked Sendable {
    public let config: POP3DConfig
    public let hostname: String
    public let sasl: (any SASLServerFactory)?
    public let tls: NIOSSLContext?
    public let template: MailLocationTemplate
    /// Virtual users: the account that owns every maildrop. nil: system users.
    public let mailUser: SystemUser?
    public let maildropOptions: MaildropOptions
    public let notifier: DRACNotifier?
    /// Blocking work: SASL checks, maildrop opens, message reads, UPDATE.
    public let threadPool: NIOThreadPool
    public let limiter: ClientLimiter
    public let registry = ConnectionRegistry()
    public let logger: Logger
    let throttle: NIOLockedValueBox<AuthThrottle>
    let sessionIDs = SessionIDs()
    let draining = NIOLockedValueBox(false)

    public init(config: POP3DConfig, hostname: String, sasl: (any SASLServerFactory)?, tls: NIOSSLContext?,
                template: MailLocationTemplate, mailUser: SystemUser?, notifier: DRACNotifier?,
                threadPool: NIOThreadPool, logger: Logger) {
        self.config = config
        self.hostname = hostname
        self.sasl = sasl
        self.tls = tls
        self.template = template
        self.mailUser = mailUser
        var o = MaildropOptions()
        o.mboxFromUnquote = config.mboxFromUnquote
        self.maildropOptions = o
        self.notifier = notifier
        self.threadPool = threadPool
        self.logger = logger
        self.limiter = ClientLimiter(maxTotal: config.maxConnections, maxPerClient: config.maxConnectionsPerClient)
        self.throttle = NIOLockedValueBox(AuthThrottle(limit: config.authFailureLimit, maxDelay: config.authFailureMaxDelay))
    }

    func nextSessionID() -> String { sessionIDs.next() }

    /// The session settings for one connection. Passwords in the clear are refused outside
    /// TLS unless the client is on loopback (a local webmail or the admin's own tests) or the
    /// option is off (RFC 2595 §2.1).
    func sessionSettings(kind: POP3ListenerKind, client: IPAddress) -> POP3Settings {
        let mechs = config.saslMechanisms
        let plain = sasl?.mechanisms(secure: false).filter { mechs.contains($0) } ?? []
        let secure = sasl?.mechanisms(secure: true).filter { mechs.contains($0) } ?? []
        return POP3Settings(hostname: hostname, limits: config.limits, mechanismsPlain: plain, mechanismsSecure: secure,
                            plaintextRequiresTLS: config.plaintextRequiresTLS && !client.isLoopback,
                            stlsAvailable: tls != nil && kind == .pop3)
    }

    /// Maps an authenticated user to a maildrop: the template, and for system users their
    /// passwd entry (home for %h, identity for access). Root's maildrop is never served.
    public func target(for user: String) -> Result<MaildropTarget, MaildropError> {
        if mailUser != nil {
            do { return .success(MaildropTarget(location: try template.resolve(user: user, home: nil), owner: nil)) } catch {
                return .failure(error)
            }
        }
        guard let pw = SystemUser.lookup(user) else { return .failure(.invalidUser("no system user \(user)")) }
        guard pw.uid != 0 else { return .failure(.invalidUser("\(user) has uid 0; root's mail is not served")) }
        do { return .success(MaildropTarget(location: try template.resolve(user: user, home: pw.home), owner: pw)) } catch {
            return .failure(error)
        }
    }
}
