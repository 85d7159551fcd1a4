// rpc.dracd: the DRAC daemon. Options -> settings -> Dracd service; the work is in DRACDaemon.
import ArgumentParser
import DRACCore
import DRACDaemon
import DRACLog
import Foundation
import Logging
import ServiceLifecycle

@main
struct RpcDracd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rpc.dracd",
        abstract: "Dynamic Relay Authorization Control daemon (DRAC 1.12 compatible).",
        discussion: "Records client addresses sent by POP/IMAP servers over ONC RPC (program 900101) in a Berkeley DB map read by sendmail, Postfix and drac-smtpd. See rpc.dracd(8) and drac.conf(5).")

    @Flag(name: .customShort("i"), help: "Start with an empty map.")
    var initialize = false

    @Option(name: .customShort("e"), help: "Minutes an address may relay after its last add (default 30).")
    var expire: Int?

    @Flag(name: .customShort("f"), help: "Stay in the foreground and also log to stderr (for systemd).")
    var foreground = false

    @Option(name: .customShort("a"), help: "Allow file (default /etc/drac/dracd.allow).")
    var allowFile: String?

    @Option(name: .customShort("c"), help: "Configuration file (default /etc/drac/drac.conf).")
    var configFile: String?

    @Option(name: .customShort("o"), help: ArgumentHelp("Set a drac.conf key (repeatable).", valueName: "key=value"))
    var overrides: [String] = []

    @Option(name: .customLong("daemon-child-fd"), help: .hidden)
    var daemonChildFD: Int32?

    @Argument(help: "Map file (default /etc/drac/dracd.db).")
    var dbfile: String?

    func run() async throws {
        var options = DaemonOptions()
        options.configFile = configFile
        options.overrides = overrides
        options.expireMinutes = expire
        options.truncate = initialize
        options.allowFile = allowFile
        options.mapFile = dbfile

        let config: DRACConfig
        do {
            config = try SettingsLoader.load(options)
        } catch {
            fail("\(error)")
        }

        if !foreground && daemonChildFD == nil {
            // Parent of a daemonizing start: re-run ourselves detached and wait for readiness.
            var args = CommandLine.arguments.dropFirst().map { $0 }
            args.removeAll { $0 == "-f" }
            throw ExitCode(Daemonizer.spawnChildAndWait(arguments: args))
        }
        if daemonChildFD != nil { Daemonizer.becomeSessionLeader() }

        // Under systemd stderr already goes to the journal, which also receives syslog: logging
        // both would show every line twice (systemd sets JOURNAL_STREAM in that case).
        let stderrIsJournal = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil
        SyslogLogHandler.bootstrap(ident: "rpc.dracd", facility: config.syslogFacility,
                                   alsoStderr: foreground && !stderrIsJournal)
        let logger = Logger(label: "rpc.dracd")
        let daemon: Dracd
        do {
            daemon = try await Dracd.start(options: options, config: config, logger: logger)
            if daemonChildFD != nil { try Daemonizer.writePidFile(config.pidFile) }
        } catch {
            logger.error("cannot start: \(error)")
            if let fd = daemonChildFD { Daemonizer.report(fd: fd, "\(error)\n") }
            fail("\(error)")
        }
        if let fd = daemonChildFD { Daemonizer.report(fd: fd, "ready\n") }
        if foreground { printStderr("rpc.dracd: ready on port \(daemon.port)\n") }

        let group = ServiceGroup(configuration: .init(
            services: [.init(service: daemon)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        if daemonChildFD != nil, !config.pidFile.isEmpty { unlink(config.pidFile) }
    }

    func fail(_ message: String) -> Never {
        printStderr("rpc.dracd: \(message)\n")
        Foundation.exit(1)
    }
}

