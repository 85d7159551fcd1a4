// drac-pop3d: the POP3 server that records authenticated clients in DRAC. Options -> settings ->
// listeners; the work is in POP3Server.
import ArgumentParser
import DRACCore
import DRACLog
import Foundation
import Logging
import MailServerKit
import POP3Server
import ServiceLifecycle

@main
struct DracPop3d: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drac-pop3d",
        abstract: "POP3 server (RFC 1939, STLS, SASL) that adds every authenticated client to rpc.dracd for pop-before-SMTP.",
        discussion: "Runs in the foreground (for systemd or the SysV script). Reads the pop3d_* keys, rpc_servers and rpc_timeout of drac.conf. See drac-pop3d(8) and drac.conf(5).")

    @Option(name: .customShort("c"), help: "Configuration file (default /etc/drac/drac.conf).")
    var configFile: String?

    @Option(name: .customShort("o"), help: ArgumentHelp("Set a drac.conf key (repeatable).", valueName: "key=value"))
    var overrides: [String] = []

    @Flag(name: .customShort("v"), help: "Also log to stderr.")
    var verbose = false

    /// Synchronous on purpose: an async main would end the main thread (dispatch_main calls
    /// pthread_exit), and a dead thread keeps the credentials it died with. Then the process
    /// (whose /proc status and `ps` line are the main thread's) would still show root after
    /// the privilege drop. Here the main thread waits, alive, and setuid reaches it too.
    func run() throws {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var failure: Error?
        let command = self
        Task {
            do { try await command.serve() } catch { failure = error }
            done.signal()
        }
        done.wait()
        if let failure { throw failure }
    }

    func serve() async throws {
        let settings: POP3DaemonSettings
        do {
            settings = try POP3DaemonSettings.load(configFile: configFile, overrides: overrides)
        } catch {
            ServerMain.fail("drac-pop3d", "\(error)")
        }
        // Each session holds its socket and, while reading a message, one file.
        try await ServerMain.serve(name: "drac-pop3d", syslogFacility: settings.dracConfig.syslogFacility, verbose: verbose,
                                   openFiles: settings.pop3d.maxConnections * 2 + 64, openFilesSetting: "pop3d_max_connections") { logger in
            let daemon = try await POP3Daemon.start(settings, logger: logger)
            return (daemon, daemon.listenerDescription)
        }
    }
}
