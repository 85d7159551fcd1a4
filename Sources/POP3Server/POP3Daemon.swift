// drac-pop3d as a Service: settings, SASL, TLS, listeners, then the privilege drop.
import DRACConfigFile
import DRACCore
import Foundation
import Logging
import MailServerKit
import MaildropStore
import NIOCore
import NIOPosix
import NIOSSL
import POP3Core
import SASLAuth
import ServiceLifecycle

public struct POP3StartError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Everything drac-pop3d reads from drac.conf: the shared keys (syslog, rpc_servers,
/// rpc_timeout) and its own pop3d_* keys.
public struct POP3DaemonSettings: Sendable {
    public var dracConfig: DRACConfig
    public var pop3d: POP3DConfig

    public static func load(configFile: String?, overrides: [String]) throws -> POP3DaemonSettings {
        let source = try ConfigFile.source(configFile: configFile, overrides: overrides)
        return POP3DaemonSettings(dracConfig: try DRACConfig(source), pop3d: try POP3DConfig(source))
    }
}

public final class POP3Daemon: Service, Sendable {
    public let services: POP3Services
    let server: MailServer<POP3ListenerKind>
    let threads: ServerThreads

    init(services: POP3Services, server: MailServer<POP3ListenerKind>, threads: ServerThreads) {
        self.services = services
        self.server = server
        self.threads = threads
    }

    /// Where we listen, as `pop3 127.0.0.1:110, pop3s [::]:995`.
    public var listenerDescription: String { server.listenerDescription }

    public static func start(_ settings: POP3DaemonSettings, logger: Logger) async throws -> POP3Daemon {
        let c = settings.pop3d
        let hostname = ServerName.resolve(c.hostname)
        let template: MailLocationTemplate
        do { template = try MailLocationTemplate(c.mailLocation) } catch {
            throw POP3StartError("pop3d_mail_location: \(error)")
        }
        var mailUser: SystemUser? = nil
        if !c.mailUser.isEmpty {
            guard let u = SystemUser.lookup(c.mailUser) else { throw POP3StartError("pop3d_mail_user: no such user \(c.mailUser)") }
            guard u.uid != 0 else { throw POP3StartError("pop3d_mail_user must not be root") }
            if template.usesHome {
                throw POP3StartError("pop3d_mail_location uses the home directory (%h or ~), which virtual users (pop3d_mail_user) do not have; use a path such as maildir:/var/mail/%d/%n")
            }
            mailUser = u
        }
        let tls = try TLSFiles.optionalServerContext(certificate: c.tlsCertFile, key: c.tlsKeyFile)
        var sasl: (any SASLServerFactory)? = nil
        do {
            // USER/PASS goes through sasl_checkpass, which needs no mechanism; with none
            // configured AUTH is simply not offered.
            let sc = CyrusSASLConfig(pwcheckMethod: c.saslPwcheckMethod, sasldbPath: c.sasldbPath, saslauthdPath: c.saslauthdPath,
                                     mechanisms: c.saslMechanisms.isEmpty ? ["PLAIN"] : c.saslMechanisms, realm: c.saslRealm)
            sasl = try CyrusSASLServer(config: sc)
        } catch {
            throw POP3StartError("Cyrus SASL: \(error)")
        }
        let notifier = c.useDrac
            ? DRACNotifier(servers: settings.dracConfig.rpcServers, timeout: Double(settings.dracConfig.rpcTimeoutSeconds), logger: logger)
            : nil
        let threads = ServerThreads(poolThreads: max(4, System.coreCount * 2))
        let services = POP3Services(config: c, hostname: hostname, sasl: sasl, tls: tls, template: template,
                                    mailUser: mailUser, notifier: notifier, threadPool: threads.pool, logger: logger)
        let server = try await threads.bind(
            c.listeners.map { ($0.kind, $0.address, $0.port) }, registry: services.registry,
            grace: .seconds(c.shutdownGraceSeconds), logger: logger, name: "drac-pop3d", tls: tls,
            implicitTLS: { $0 == .pop3s }, handler: { POP3ConnectionHandler(services: services, kind: $0) })
        // Listening sockets are open: from here on we need root no more (virtual users).
        if let u = mailUser {
            do { try Privileges.become(u) } catch {
                await threads.shutdown()
                throw POP3StartError("\(error)")
            }
        }
        let d = POP3Daemon(services: services, server: server, threads: threads)
        let who = mailUser.map { "serving as \($0.name) (uid \($0.uid))" } ?? "system users (each maildrop as its owner)"
        logger.info("started: \(d.listenerDescription); maildrops \(c.mailLocation), \(who); SASL \(c.saslPwcheckMethod), AUTH \(c.saslMechanisms.joined(separator: " "))\(tls != nil ? ", TLS" : ", no TLS"); DRAC \(c.useDrac ? settings.dracConfig.rpcServers.joined(separator: " ") : "off")")
        return d
    }

    public func run() async throws {
        try await threads.run(server, draining: services.draining)
    }
}
