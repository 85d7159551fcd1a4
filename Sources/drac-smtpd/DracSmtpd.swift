// drac-smtpd: the SMTP AUTH gateway. Options -> settings -> listeners; the work is in SMTPGateway.
import ArgumentParser
import DRACCore
import DRACLog
import Foundation
import Logging
import MailServerKit
import SMTPGateway
import ServiceLifecycle

@main
struct DracSmtpd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drac-smtpd",
        abstract: "SMTP AUTH gateway: lets DRAC-authorised, SASL-authenticated or trusted clients relay through a backend MTA.",
        discussion: "Runs in the foreground (for systemd or the SysV script). Reads the smtpd_* keys and map_file of drac.conf. See drac-smtpd(8) and drac.conf(5).")

    @Option(name: .customShort("c"), help: "Configuration file (default /etc/drac/drac.conf).")
    var configFile: String?

    @Option(name: .customShort("o"), help: ArgumentHelp("Set a drac.conf key (repeatable).", valueName: "key=value"))
    var overrides: [String] = []

    @Flag(name: .customShort("v"), help: "Also log to stderr.")
    var verbose = false

    func run() async throws {
        let settings: GatewaySettings
        do {
            settings = try GatewaySettings.load(configFile: configFile, overrides: overrides)
        } catch {
            fail("\(error)")
        }
        let stderrIsJournal = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil
        SyslogLogHandler.bootstrap(ident: "drac-smtpd", facility: settings.dracConfig.syslogFacility,
                                   alsoStderr: verbose && !stderrIsJournal)
        let logger = Logger(label: "drac-smtpd")
        // SIGHUP would end the process (its default action); settings are read at start only,
        // so a reload means a restart (drac-smtpd(8)).
        signal(SIGHUP, SIG_IGN)
        // Each client costs two descriptors (client and backend).
        raiseOpenFileLimit(to: settings.smtpd.maxConnections * 2 + 64, setting: "smtpd_max_connections", logger: logger)
        let gateway: Gateway
        do {
            gateway = try await Gateway.start(settings, logger: logger)
        } catch {
            logger.error("cannot start: \(error)")
            fail("\(error)")
        }
        printStderr("drac-smtpd: ready on \(gateway.listenerDescription)\n")
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: gateway)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
    }

    func fail(_ message: String) -> Never {
        printStderr("drac-smtpd: \(message)\n")
        Foundation.exit(1)
    }
}

