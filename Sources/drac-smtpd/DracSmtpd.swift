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
            ServerMain.fail("drac-smtpd", "\(error)")
        }
        // Each client costs two descriptors (client and backend).
        try await ServerMain.serve(name: "drac-smtpd", syslogFacility: settings.dracConfig.syslogFacility, verbose: verbose,
                                   openFiles: settings.smtpd.maxConnections * 2 + 64, openFilesSetting: "smtpd_max_connections") { logger in
            let gateway = try await Gateway.start(settings, logger: logger)
            return (gateway, gateway.listenerDescription)
        }
    }
}
