// drac-smtpd as a Service: settings, SASL, TLS, the map reader and the listeners.
import DRACConfigFile
import DRACCore
import DRACMap
import Foundation
import Logging
import MailServerKit
import NIOCore
import NIOPosix
import NIOSSL
import SASLAuth
import SMTPCore
import ServiceLifecycle

public struct GatewayStartError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Everything drac-smtpd reads from drac.conf: the shared keys (map file and format, syslog)
/// and its own smtpd_* keys.
public struct GatewaySettings: Sendable {
    public var dracConfig: DRACConfig
    public var smtpd: SMTPDConfig

    public static func load(configFile: String?, overrides: [String]) throws -> GatewaySettings {
        let source = try ConfigFile.source(configFile: configFile, overrides: overrides)
        return GatewaySettings(dracConfig: try DRACConfig(source), smtpd: try SMTPDConfig(source))
    }
}

public final class Gateway: Service, Sendable {
    public let services: GatewayServices
    let server: MailServer<ListenerKind>
    let threads: ServerThreads

    init(services: GatewayServices, server: MailServer<ListenerKind>, threads: ServerThreads) {
        self.services = services
        self.server = server
        self.threads = threads
    }

    /// Where we listen, as `smtp 127.0.0.1:25, submission [::1]:587`.
    public var listenerDescription: String { server.listenerDescription }

    public static func start(_ settings: GatewaySettings, logger: Logger) async throws -> Gateway {
        let c = settings.smtpd
        let hostname = ServerName.resolve(c.hostname)
        let tls = try TLSFiles.optionalServerContext(certificate: c.tlsCertFile, key: c.tlsKeyFile)
        var sasl: (any SASLServerFactory)? = nil
        if !c.saslMechanisms.isEmpty {
            let sc = CyrusSASLConfig(pwcheckMethod: c.saslPwcheckMethod, sasldbPath: c.sasldbPath, saslauthdPath: c.saslauthdPath,
                                     mechanisms: c.saslMechanisms, realm: c.saslRealm)
            do { sasl = try CyrusSASLServer(config: sc) } catch { throw GatewayStartError("Cyrus SASL: \(error)") }
        }
        let map = c.useDrac ? WatchedMapReader(path: settings.dracConfig.mapFile, format: settings.dracConfig.mapFormat) : nil
        let threads = ServerThreads(poolThreads: 4)
        let services = GatewayServices(config: c, hostname: hostname, sasl: sasl, map: map,
                                       threadPool: threads.pool, tls: tls, logger: logger)
        let server = try await threads.bind(
            c.listeners.map { ($0.kind, $0.address, $0.port) }, registry: services.registry,
            grace: .seconds(c.shutdownGraceSeconds), logger: logger, name: "drac-smtpd", tls: tls,
            implicitTLS: { $0 == .submissions }, handler: { SMTPConnectionHandler(services: services, kind: $0) })
        // Learn what the backend offers (DSN is passed through only if it does) before the
        // first client asks; a backend that is down now is not fatal: clients get 451 until it
        // is back, and the next connection learns its extensions.
        do {
            // Opened, read and closed on the loop itself (the connection is loop-confined);
            // only its extensions come back.
            let loop = threads.group.next()
            let capabilities = try await loop.flatSubmit {
                BackendConnection.open(host: c.backendHost, port: c.backendPort, on: loop,
                                       timeout: .seconds(min(c.backendTimeoutSeconds, 10)), heloName: hostname)
                    .map { b in
                        b.quit()
                        return b.capabilities
                    }
            }.get()
            services.backendDSN.withLockedValue { $0 = capabilities["DSN"] != nil }
            logger.info("backend \(c.backendHost):\(c.backendPort) offers: \(capabilities.keys.sorted().joined(separator: " "))")
        } catch {
            logger.warning("backend \(c.backendHost):\(c.backendPort) not reachable at start: \(error); clients get 451 until it is")
        }
        let g = Gateway(services: services, server: server, threads: threads)
        let mechs = sasl.map { "AUTH " + $0.mechanisms(secure: true).joined(separator: " ") } ?? "no AUTH"
        logger.info("started: \(g.listenerDescription); backend \(c.backendHost):\(c.backendPort); DRAC map \(c.useDrac ? settings.dracConfig.mapFile : "not used"); \(mechs)\(tls != nil ? ", TLS" : ", no TLS"); local domains: \(c.localDomains.sorted().joined(separator: " ")); trusted networks: \(c.trustedNetworks.rules.map(\.description).joined(separator: " "))")
        return g
    }

    public func run() async throws {
        try await threads.run(server, draining: services.draining)
    }
}
