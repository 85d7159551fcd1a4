// The listener layer drac-smtpd and drac-pop3d share: bind, limit, TLS, graceful stop.
import DRACCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle

extension IPAddress {
    public init?(socketAddress: NIOCore.SocketAddress?) {
        guard let s = socketAddress, let ip = s.ipAddress, let a = IPAddress(ip) else { return nil }
        self = a.unmapped
    }
}

/// Connections in total and per client address (IPv6 counted per address, as Postfix's
/// anvil does). One instance per server, shared by its event loops.
public final class ClientLimiter: Sendable {
    public enum Refusal: Sendable { case total, perClient }
    private let state = NIOLockedValueBox<(total: Int, perClient: [IPAddress: Int])>((0, [:]))
    public let maxTotal: Int
    public let maxPerClient: Int

    public init(maxTotal: Int, maxPerClient: Int) {
        self.maxTotal = maxTotal
        self.maxPerClient = maxPerClient
    }

    /// Takes a slot, or says which limit refused it.
    public func acquire(_ client: IPAddress) -> Refusal? {
        state.withLockedValue { s in
            if s.total >= maxTotal { return .total }
            let n = s.perClient[client, default: 0]
            if n >= maxPerClient { return .perClient }
            s.total += 1
            s.perClient[client] = n + 1
            return nil
        }
    }

    public func release(_ client: IPAddress) {
        state.withLockedValue { s in
            s.total -= 1
            let n = s.perClient[client, default: 1] - 1
            s.perClient[client] = n > 0 ? n : nil
        }
    }

}

/// One connection the server can ask to finish (graceful shutdown).
public protocol DrainableConnection: AnyObject, Sendable {
    /// Finish the current transaction, then say goodbye; idle connections close at once.
    func drain()
    /// The grace period is over: close now.
    func forceClose()
}

/// Live connections, for graceful shutdown.
public final class ConnectionRegistry: Sendable {
    private let items = NIOLockedValueBox<[ObjectIdentifier: DrainableConnection]>([:])
    public init() {}
    public func add(_ c: DrainableConnection) { items.withLockedValue { $0[ObjectIdentifier(c)] = c } }
    public func remove(_ c: DrainableConnection) { items.withLockedValue { $0[ObjectIdentifier(c)] = nil } }
    public var all: [DrainableConnection] { items.withLockedValue { Array($0.values) } }
    public var count: Int { items.withLockedValue { $0.count } }
}

/// Loads a PEM certificate chain and key into a server TLS context (TLS 1.2 and later).
public enum TLSFiles {
    public static func serverContext(certificate: String, key: String) throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
        var c = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .file(key))
        c.minimumTLSVersion = .tlsv12
        return try NIOSSLContext(configuration: c)
    }
}

/// A bound listening socket and what kind of service it offers.
public struct BoundListener<Kind: Sendable>: Sendable {
    public var kind: Kind
    public var channel: Channel
    public var address: NIOCore.SocketAddress
}

/// A TCP server over several listening sockets, run as a swift-service-lifecycle `Service`:
/// on graceful shutdown it closes the listeners (no new connections), asks every connection
/// to drain, waits up to the grace period, then closes what is left.
public final class MailServer<Kind: Sendable>: Service, Sendable {
    public let listeners: [BoundListener<Kind>]
    public let registry: ConnectionRegistry
    let grace: TimeAmount
    let logger: Logger
    let name: String

    init(listeners: [BoundListener<Kind>], registry: ConnectionRegistry, grace: TimeAmount, logger: Logger, name: String) {
        self.listeners = listeners
        self.registry = registry
        self.grace = grace
        self.logger = logger
        self.name = name
    }

    /// Binds every (kind, address, port); `nil` address means both 0.0.0.0 and :: (v6-only, so
    /// the two do not collide). `initializer` sets up each accepted connection's pipeline.
    public static func bind(_ specs: [(kind: Kind, address: IPAddress?, port: Int)], group: EventLoopGroup,
                            registry: ConnectionRegistry, grace: TimeAmount, logger: Logger, name: String,
                            initializer: @escaping @Sendable (Channel, Kind) -> EventLoopFuture<Void>) async throws -> MailServer {
        var bound: [BoundListener<Kind>] = []
        do {
            for spec in specs {
                let hosts = spec.address.map { [$0.text] } ?? ["0.0.0.0", "::"]
                for host in hosts {
                    let kind = spec.kind
                    var b = ServerBootstrap(group: group)
                        .serverChannelOption(ChannelOptions.backlog, value: 256)
                        .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                        .childChannelOption(ChannelOptions.autoRead, value: false)
                        .childChannelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
                        // Replies are written whole; Nagle would hold the next one back a round trip.
                        .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
                        .childChannelInitializer { channel in initializer(channel, kind) }
                    if host.contains(":") {
                        b = b.serverChannelOption(ChannelOptions.Types.SocketOption(level: .ipv6, name: .ipv6_v6only), value: 1)
                    }
                    // A literal address, not a name: getaddrinfo's default hints would turn
                    // 127.0.0.1 into ::ffff:127.0.0.1 on hosts with global IPv6 addresses.
                    let ch = try await b.bind(to: try SocketAddress(ipAddress: host, port: spec.port)).get()
                    bound.append(BoundListener(kind: kind, channel: ch, address: ch.localAddress!))
                }
            }
        } catch {
            for l in bound { try? await l.channel.close() }
            throw error
        }
        return MailServer(listeners: bound, registry: registry, grace: grace, logger: logger, name: name)
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                for l in listeners { group.addTask { try? await l.channel.closeFuture.get() } }
            }
        } onGracefulShutdown: {
            self.stop()
        }
        // Listeners are closed: wait for connections to finish, at most the grace period.
        let deadline = NIODeadline.now() + grace
        while registry.count > 0 && NIODeadline.now() < deadline {
            try? await Task.sleep(nanoseconds: 50_000_000)
        }
        let left = registry.all
        if !left.isEmpty {
            logger.warning("\(name): grace period over, closing \(left.count) connection(s)")
            for c in left { c.forceClose() }
            try? await Task.sleep(nanoseconds: 200_000_000)
        }
        logger.info("\(name): stopped")
    }

    /// Stops accepting and asks every connection to drain.
    public func stop() {
        logger.info("\(name): shutting down, \(registry.count) connection(s) open")
        for l in listeners { l.channel.close(promise: nil) }
        for c in registry.all { c.drain() }
    }
}
