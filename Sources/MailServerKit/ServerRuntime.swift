// What drac-smtpd and drac-pop3d share from start to stop: the TLS files, the event loops and
// the thread pool, binding with the implicit-TLS handler first, the graceful run, and the
// program's main after the settings are read.
import DRACCore
import DRACLog
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle

public struct ServerStartError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension TLSFiles {
    /// The server context when both files are configured, nil when either is not; a failure
    /// names both files.
    public static func optionalServerContext(certificate: String?, key: String?) throws -> NIOSSLContext? {
        guard let certificate, let key else { return nil }
        do { return try serverContext(certificate: certificate, key: key) } catch {
            throw ServerStartError("TLS certificate \(certificate) / key \(key): \(error)")
        }
    }
}

/// A server's event loops (one per core) and its thread pool for blocking work.
public struct ServerThreads: Sendable {
    public let group: MultiThreadedEventLoopGroup
    public let pool: NIOThreadPool

    public init(poolThreads: Int) {
        pool = NIOThreadPool(numberOfThreads: poolThreads)
        pool.start()
        group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
    }

    public func shutdown() async {
        try? await group.shutdownGracefully()
        try? await pool.shutdownGracefully()
    }

    /// Binds every listener; a connection of a kind for which `implicitTLS` holds gets the TLS
    /// handler before its own. If binding fails, the loops and the pool are shut down and the
    /// error is `cannot listen: ...`.
    public func bind<Kind: Sendable>(_ specs: [(kind: Kind, address: IPAddress?, port: Int)], registry: ConnectionRegistry,
                                     grace: TimeAmount, logger: Logger, name: String, tls: NIOSSLContext?,
                                     implicitTLS: @escaping @Sendable (Kind) -> Bool,
                                     handler: @escaping @Sendable (Kind) -> any ChannelHandler) async throws -> MailServer<Kind> {
        do {
            return try await MailServer<Kind>.bind(specs, group: group, registry: registry, grace: grace, logger: logger, name: name) { channel, kind in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    if implicitTLS(kind), let tls { try ops.addHandler(NIOSSLServerHandler(context: tls)) }
                    try ops.addHandler(handler(kind))
                }
            }
        } catch {
            await shutdown()
            throw ServerStartError("cannot listen: \(error)")
        }
    }

    /// Serves until a graceful shutdown begins (then `draining` is set, so new connections
    /// get the goodbye), waits for the server to finish, and stops the loops and the pool.
    public func run<Kind: Sendable>(_ server: MailServer<Kind>, draining: NIOLockedValueBox<Bool>) async throws {
        try await withGracefulShutdownHandler {
            try await server.run()
        } onGracefulShutdown: {
            draining.withLockedValue { $0 = true }
        }
        await shutdown()
    }
}

public enum ServerMain {
    /// A server program's main once its settings are read: syslog (and stderr with -v, unless
    /// stderr is the systemd journal already), SIGHUP ignored (settings are read at start only:
    /// a reload is a restart), the open-file limit, `start`, the `NAME: ready on ...` line, then
    /// serving until SIGTERM or SIGINT. A failed start is logged and printed; exit status 1.
    public static func serve(name: String, syslogFacility: String, verbose: Bool, openFiles: Int, openFilesSetting: String,
                             start: (Logger) async throws -> (service: any Service, listeners: String)) async throws {
        let stderrIsJournal = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil
        SyslogLogHandler.bootstrap(ident: name, facility: syslogFacility, alsoStderr: verbose && !stderrIsJournal)
        let logger = Logger(label: name)
        signal(SIGHUP, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        raiseOpenFileLimit(to: openFiles, setting: openFilesSetting, logger: logger)
        let started: (service: any Service, listeners: String)
        do {
            started = try await start(logger)
        } catch {
            logger.error("cannot start: \(error)")
            fail(name, "\(error)")
        }
        printStderr("\(name): ready on \(started.listeners)\n")
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: started.service)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
    }

    /// `NAME: message` on stderr, exit status 1.
    public static func fail(_ name: String, _ message: String) -> Never {
        printStderr("\(name): \(message)\n")
        exit(1)
    }
}
