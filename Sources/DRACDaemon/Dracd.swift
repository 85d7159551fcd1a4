// rpc.dracd as a Service: listeners, rpcbind registration, SIGHUP reload, graceful stop.
import DRACCore
import DRACMap
import DRACRPC
import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The running daemon. `start` does everything that can fail at start-up (so the parent of a
/// daemonizing rpc.dracd can report it); `run` serves until graceful shutdown.
public final class Dracd: Service, @unchecked Sendable {
    public let config: DRACConfig
    let options: DaemonOptions
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    let commits: CommitQueue
    let processor: RequestProcessor
    let udp: UDPTransport
    /// A bound socket. `announced` ones are registered with rpcbind and named in the start-up
    /// line; the per-address UDP sockets beside a wildcard (see `bindAll`) are not.
    struct Listener {
        /// nil for UDP: those sockets belong to `udp`.
        var channel: Channel?
        var transport: DRACConfig.Transport
        var address: IPAddress
        var announced: Bool
    }
    var channels: [Listener] = []
    var registered = false
    /// The port every listener shares (what rpcbind announces).
    public private(set) var port = 0
    private var hupSource: DispatchSourceSignal?

    private init(config: DRACConfig, options: DaemonOptions, logger: Logger, group: MultiThreadedEventLoopGroup,
                 commits: CommitQueue, processor: RequestProcessor) {
        self.config = config
        self.options = options
        self.logger = logger
        self.group = group
        self.commits = commits
        self.processor = processor
        udp = UDPTransport(processor: processor, maxRecord: config.rpcMaxRecord, logger: logger)
    }

    public static func start(options: DaemonOptions, config: DRACConfig, logger: Logger) async throws -> Dracd {
        let (allow, allowSource) = try SettingsLoader.loadAllowList(config.allowFile)
        let writer: MapWriter
        do {
            writer = try MapWriter(path: config.mapFile, format: config.mapFormat, truncate: options.truncate,
                                   announceEveryWrite: false)
        } catch {
            throw StartError("cannot open map: \(error)")
        }
        let commits = CommitQueue(writer: writer, expireSeconds: config.expireSeconds,
                                  sweepIntervalSeconds: config.sweepIntervalSeconds, logger: logger)
        let processor = RequestProcessor(settings: RuntimeSettings(allowList: allow, allowSource: allowSource, expireSeconds: config.expireSeconds),
                                         commits: commits, logger: logger)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, min(2, System.coreCount)))
        let d = Dracd(config: config, options: options, logger: logger, group: group, commits: commits, processor: processor)
        commits.start()
        d.installHangupHandler()
        do {
            try await d.bindAll()
            try d.udp.start()
            if config.useRpcbind { try d.register() }
        } catch {
            await d.shutdown()
            throw error
        }
        let where_ = d.channels.filter(\.announced).map { "\($0.transport.rawValue)/\($0.address)" }.joined(separator: " ")
        logger.info("started: map \(config.mapFile) (\(config.mapFormat.kind)\(options.truncate ? ", emptied" : "")), expire \(config.expireSeconds / 60)m, port \(d.port) on \(where_)\(config.useRpcbind ? ", registered with rpcbind" : ", rpcbind not used"), allow list: \(allowSource)")
        return d
    }

    public func run() async throws {
        try? await gracefulShutdown()
        logger.info("stopping")
        await shutdown()
        logger.info("stopped")
    }

    /// Stops in the order that loses nothing: leave rpcbind (no new clients find us), refuse new
    /// adds, commit and answer every queued add, close the sockets, close the map.
    func shutdown() async {
        if registered { RpcbindRegistration.unregisterAll(); registered = false }
        processor.stopAccepting()
        let commits = self.commits
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            Thread { commits.stop(); c.resume() }.start()
        }
        udp.stop()
        for c in channels {
            guard let channel = c.channel else { continue }
            // Let replies queued by the last commits leave first.
            try? await channel.eventLoop.submit {}.get()
            try? await channel.close()
        }
        channels = []
        hupSource?.cancel()
        try? await group.shutdownGracefully()
    }

    // MARK: listeners

    private var listenAddresses: [IPAddress] {
        config.listen.isEmpty ? [IPAddress("0.0.0.0")!, IPAddress("::")!] : config.listen
    }

    private func bindAll() async throws {
        var lastError: Error? = nil
        // With rpc_port 0 every listener shares the first one's ephemeral port; retry if taken.
        for _ in 0..<10 {
            do {
                try await bindAll(firstPort: config.rpcPort)
                return
            } catch {
                lastError = error
                for c in channels { try? await c.channel?.close() }
                udp.closeAll()
                channels = []
                if config.rpcPort != 0 { break }
            }
        }
        throw StartError("cannot listen: \(lastError.map { "\($0)" } ?? "unknown error")")
    }

    private func bindAll(firstPort: Int) async throws {
        var port = firstPort
        for address in listenAddresses {
            // Wildcard IPv6 must not also take IPv4 (0.0.0.0 has its own socket).
            let v6only = !address.isV4
            for transport in config.transports {
                switch transport {
                case .udp:
                    let bound = try udp.bind(address, port: port, v6only: v6only)
                    if port == 0 { port = bound }
                    channels.append(Listener(channel: nil, transport: transport, address: address, announced: true))
                case .tcp:
                    let ch = try await bindTCP(address, port: port, v6only: v6only)
                    if port == 0 { port = ch.localAddress?.port ?? 0 }
                    channels.append(Listener(channel: ch, transport: transport, address: address, announced: true))
                }
            }
        }
        // A UDP reply from a wildcard socket leaves from whatever source address the kernel
        // picks, and a client that sent to another address of ours drops it (libtirpc answers
        // from the request's address with IP_PKTINFO). As BIND does, we
        // also bind each local address: the kernel delivers to the most specific socket, whose
        // replies carry the right source. The wildcard sockets serve addresses added later.
        if config.listen.isEmpty, config.transports.contains(.udp) {
            for address in SettingsLoader.hostAddresses() where !address.isLinkLocal {
                if channels.contains(where: { $0.transport == .udp && $0.address == address }) { continue }
                do {
                    _ = try udp.bind(address, port: port, v6only: !address.isV4)
                    channels.append(Listener(channel: nil, transport: .udp, address: address, announced: false))
                } catch {
                    logger.warning("cannot bind udp \(address) port \(port): \(error); replies to it come from the wildcard socket")
                }
            }
        }
        self.port = port
    }

    private func bindTCP(_ address: IPAddress, port: Int, v6only: Bool) async throws -> Channel {
        let limiter = ConnectionLimiter(limit: config.maxConnections)
        let processor = self.processor, logger = self.logger
        let idle = TimeAmount.seconds(config.idleTimeoutSeconds)
        let maxRecord = config.rpcMaxRecord
        var b = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { ch in
                guard limiter.tryAcquire() else {
                    logger.warning("refused tcp connection from \(IPAddress(ch.remoteAddress).map { "\($0)" } ?? "?"): \(limiter.limit) connections open (max_connections)")
                    return ch.eventLoop.makeFailedFuture(StartError("connection limit"))
                }
                return ch.eventLoop.makeCompletedFuture {
                    let sync = ch.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(readTimeout: idle))
                    try sync.addHandler(ByteToMessageHandler(RPCRecordDecoder(maxRecord: maxRecord)))
                    try sync.addHandler(TCPHandler(processor: processor, limiter: limiter, logger: logger))
                }
            }
        if v6only { b = b.serverChannelOption(ChannelOptions.Types.SocketOption(level: .ipv6, name: .ipv6_v6only), value: 1) }
        return try await b.bind(host: address.text, port: port).get()
    }

    private func register() throws {
        RpcbindRegistration.unregisterAll()   // stale entries of a previous run
        do {
            for c in channels where c.announced {
                let netid = c.transport.rawValue + (c.address.isV4 ? "" : "6")
                for v in DRACProgram.versions {
                    try RpcbindRegistration.register(version: v, netid: netid, address: c.address, port: port)
                }
            }
            registered = true
        } catch {
            RpcbindRegistration.unregisterAll()
            throw StartError("\(error)")
        }
    }

    // MARK: SIGHUP

    private func installHangupHandler() {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: DispatchQueue(label: "dracd-hup"))
        source.setEventHandler { [weak self] in self?.reload() }
        source.resume()
        hupSource = source
    }

    /// Re-reads drac.conf and the allow file. Requests keep being served throughout; on any
    /// error the old settings stay in force.
    func reload() {
        do {
            let fresh = try SettingsLoader.load(options)
            let (allow, source) = try SettingsLoader.loadAllowList(fresh.allowFile)
            processor.update(RuntimeSettings(allowList: allow, allowSource: source, expireSeconds: fresh.expireSeconds))
            commits.updateSettings(expireSeconds: fresh.expireSeconds, sweepIntervalSeconds: fresh.sweepIntervalSeconds)
            var needRestart: [String] = []
            if fresh.listen != config.listen { needRestart.append("listen") }
            if fresh.rpcPort != config.rpcPort { needRestart.append("rpc_port") }
            if fresh.transports != config.transports { needRestart.append("rpc_transports") }
            if fresh.mapFile != config.mapFile { needRestart.append("map_file") }
            if fresh.mapFormat != config.mapFormat { needRestart.append("map_type/map_nul_terminate/map_cidr_keys") }
            if fresh.useRpcbind != config.useRpcbind { needRestart.append("rpcbind") }
            if fresh.maxConnections != config.maxConnections { needRestart.append("max_connections") }
            if fresh.idleTimeoutSeconds != config.idleTimeoutSeconds { needRestart.append("idle_timeout") }
            if fresh.rpcMaxRecord != config.rpcMaxRecord { needRestart.append("rpc_max_record") }
            if fresh.syslogFacility != config.syslogFacility { needRestart.append("syslog_facility") }
            logger.info("reloaded: expire \(fresh.expireSeconds / 60)m, allow list: \(source)")
            if !needRestart.isEmpty {
                logger.warning("changed settings take effect after a restart: \(needRestart.joined(separator: ", "))")
            }
        } catch {
            logger.error("reload failed, keeping the previous settings: \(error)")
        }
    }
}
