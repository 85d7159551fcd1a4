// dracctl: administer the DRAC map (list, expire, add, del, check) safely while rpc.dracd runs.
import ArgumentParser
import DRACConfigFile
import DRACCore
import DRACMap
import DRACRPC
import Foundation
import Glibc

/// Exit status 1: the answer is "no" or the operation failed (check: may not relay).
struct Negative: Error {}

/// Exit status 2: usage, configuration or file errors. The message is printed once.
struct AdminError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

public struct GlobalOptions: ParsableArguments {
    @Option(name: .customShort("c"), help: "Configuration file (default /etc/drac/drac.conf).")
    var config: String?

    @Option(name: .customShort("o"), help: ArgumentHelp("Set a drac.conf key (repeatable).", valueName: "key=value"))
    var overrides: [String] = []

    @Option(name: .customLong("db"), help: "Map file (default: map_file from drac.conf, /etc/drac/dracd.db).")
    var db: String?

    public init() {}

    func settings() throws -> DRACConfig {
        do {
            var c = try DRACConfig(ConfigFile.source(configFile: config, overrides: overrides))
            if let db { c.mapFile = db }
            return c
        } catch {
            throw AdminError("\(error)")
        }
    }
}

func parseAddress(_ text: String) throws -> IPAddress {
    guard let a = IPAddress(text) else { throw AdminError("'\(text)' is not an IPv4 or IPv6 address") }
    return a.unmapped
}

/// Writes one message to standard error (not buffered, safe from any thread).
func printStderr(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }

func now() -> Int64 { Int64(Date().timeIntervalSince1970) }

/// `2026-11-23 23:40:00 +0000` in local time.
func localTime(_ epoch: Int64) -> String {
    var t = time_t(epoch)
    var tmv = tm()
    localtime_r(&t, &tmv)
    var buf = [CChar](repeating: 0, count: 64)
    strftime(&buf, buf.count, "%Y-%m-%d %H:%M:%S %z", &tmv)
    return String(cString: buf)
}

/// One locked, synced batch on the configured map (which must exist: dracctl never creates it).
@discardableResult
func commit(_ c: DRACConfig, _ operations: [MapOperation]) throws -> CommitResult {
    do {
        let w = try MapWriter(path: c.mapFile, format: c.mapFormat, create: false)
        defer { w.close() }
        return try w.commit(operations)
    } catch { throw mapFailure(error) }
}

func mapFailure(_ error: MapError) -> AdminError {
    switch error.code {
    case .notFound: return AdminError("\(error.path): map file does not exist (is rpc.dracd configured with this map_file?)")
    case .permission: return AdminError("\(error.path): permission denied")
    default: return AdminError("\(error)")
    }
}

public struct DracCtl: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "dracctl",
        abstract: "Administer the DRAC relay map (see dracctl(8)).",
        subcommands: [List.self, Expire.self, Add.self, Del.self, Check.self])

    public init() {}

    /// Runs dracctl with its exit statuses: 0 yes/done, 1 no/failed, 2 usage or file errors.
    public static func runMain(_ arguments: [String]? = nil) -> Never {
        do {
            var command = try parseAsRoot(globalOptionsAfterSubcommand(arguments ?? Array(CommandLine.arguments.dropFirst())))
            try command.run()
            Foundation.exit(0)
        } catch is Negative {
            Foundation.exit(1)
        } catch let e as AdminError {
            printStderr("dracctl: \(e)\n")
            Foundation.exit(2)
        } catch let e as ExitCode {
            Foundation.exit(e.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }   // --help, --version
            printStderr("dracctl: \(message(for: error))\n")
            printStderr(usageString().split(separator: "\n").map { "  " + $0 }.joined(separator: "\n") + "\n")
            Foundation.exit(2)
        }
    }

    /// `dracctl -c FILE list` as well as `dracctl list -c FILE`: the options every command
    /// shares may come before the command name; they are moved after it for the parser.
    static func globalOptionsAfterSubcommand(_ args: [String]) -> [String] {
        let takesValue: Set<String> = ["-c", "-o", "--db"]
        var leading: [String] = []
        var i = 0
        while i < args.count {
            let a = args[i]
            if takesValue.contains(a), i + 1 < args.count {
                leading += [a, args[i + 1]]
                i += 2
            } else if a.hasPrefix("--db=") {
                leading.append(a)
                i += 1
            } else {
                break
            }
        }
        guard !leading.isEmpty, i < args.count else { return args }
        return [args[i]] + leading + Array(args[(i + 1)...])
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List every entry: address, expiry, time left.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "JSON output.") var json = false

        func run() throws {
            let c = try global.settings()
            let entries: [MapEntry]
            do { entries = try MapReader(path: c.mapFile, format: c.mapFormat).entries() } catch { throw mapFailure(error) }
            let t = now()
            if json {
                struct Row: Encodable {
                    var address: String; var expires: Int64; var expires_at: String; var seconds_left: Int64; var live: Bool
                }
                let rows = entries.compactMap { e -> Row? in
                    guard let a = e.address, let x = e.expiry else { return nil }
                    return Row(address: a.text, expires: x, expires_at: TimeFormat.iso8601UTC(x), seconds_left: max(0, x - t), live: e.isLive(now: t))
                }
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(data: try encoder.encode(rows), encoding: .utf8)!)
                return
            }
            let width = max(7, entries.map { $0.address?.text.count ?? $0.key.count }.max() ?? 7)
            func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }
            print("\(pad("ADDRESS", width))  \(pad("EXPIRES", 25))  LEFT")
            for e in entries {
                guard let a = e.address, let x = e.expiry else {
                    print("\(pad(String(decoding: e.key, as: UTF8.self), width))  (not a DRAC entry)")
                    continue
                }
                print("\(pad(a.text, width))  \(pad(localTime(x), 25))  \(Expiry.formatRemaining(x - t))")
            }
        }
    }

    struct Expire: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete expired entries now.")
        @OptionGroup var global: GlobalOptions

        func run() throws {
            let c = try global.settings()
            do {
                let w = try MapWriter(path: c.mapFile, format: c.mapFormat, create: false)
                defer { w.close() }
                var after: [UInt8]? = nil
                var total = SweepChunk()
                let t = now()
                repeat {
                    let chunk = try w.sweepChunk(after: after, now: t)
                    total.scanned += chunk.scanned
                    total.deleted += chunk.deleted
                    total.lockHeldNanoseconds = max(total.lockHeldNanoseconds, chunk.lockHeldNanoseconds)
                    after = chunk.resumeAfter
                } while after != nil
                print("deleted \(total.deleted) expired entries (\(total.scanned) scanned, longest lock hold \(String(format: "%.1f", Double(total.lockHeldNanoseconds) / 1e6)) ms)")
            } catch { throw mapFailure(error) }
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add an address: directly to the map, or through rpc.dracd with --server.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "IPv4 or IPv6 address.") var address: String
        @Option(help: "How long it may relay (30m, 2h...; default: expire from drac.conf).") var ttl: String?
        @Option(help: "Send the add by RPC to these servers (comma separated; host, host:port, [v6]:port).") var server: String?
        @Flag(help: "Send the add by RPC to the servers in rpc_servers (drac.conf).") var rpc = false
        @Flag(help: "With --server or --rpc: use TCP instead of UDP.") var tcp = false
        @Option(help: "With --server or --rpc: give up after this long (default rpc_timeout).") var timeout: String?
        @Option(help: "With --server or --rpc: send from this local address.") var source: String?

        func run() throws {
            let c = try global.settings()
            let a = try parseAddress(address)
            guard a.isUsableClient else { throw AdminError("\(a) cannot be a client address") }
            if server != nil || rpc {
                guard ttl == nil else { throw AdminError("--ttl cannot be used with --server or --rpc (rpc.dracd sets the expiry)") }
                let servers = server.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } } ?? c.rpcServers
                guard !servers.isEmpty else { throw AdminError("--server needs at least one host") }
                var seconds = Double(c.rpcTimeoutSeconds)
                if let timeout {
                    guard let s = DurationParser.seconds(timeout, defaultUnit: .seconds), s > 0 else { throw AdminError("bad --timeout '\(timeout)'") }
                    seconds = Double(s)
                }
                var src: IPAddress? = nil
                if let source { src = try parseAddress(source) }
                let outcomes = DRACClient.addBlocking(a, servers: servers, transport: tcp ? .tcp : .udp, timeout: seconds, sourceAddress: src)
                for o in outcomes {
                    switch o.result {
                    case .success(let status): print("\(o.server): \(status)")
                    case .failure(let e): print("\(o.server): failed: \(e)")
                    }
                }
                if !outcomes.allSatisfy(\.succeeded) { throw Negative() }
                return
            }
            var seconds = c.expireSeconds
            if let ttl {
                guard let s = DurationParser.seconds(ttl, defaultUnit: .minutes), s > 0 else { throw AdminError("bad --ttl '\(ttl)' (use 30m, 2h, 90s)") }
                seconds = s
            }
            let expiry = Expiry.expiry(now: now(), ttlSeconds: seconds)
            try commit(c, [.put(a, expiry: expiry)])
            print("added \(a), may relay until \(localTime(expiry))")
        }
    }

    struct Del: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete an address.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "IPv4 or IPv6 address.") var address: String

        func run() throws {
            let c = try global.settings()
            let a = try parseAddress(address)
            let r = try commit(c, [.delete(a)])
            guard r.deleted == 1 else {
                printStderr("dracctl: \(a) has no entry\n")
                throw Negative()
            }
            print("deleted \(a)")
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Exit 0 only if the address may relay now.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "IPv4 or IPv6 address.") var address: String

        func run() throws {
            let c = try global.settings()
            let a = try parseAddress(address)
            let expiry: Int64?
            do { expiry = try MapReader(path: c.mapFile, format: c.mapFormat).expiry(of: a) } catch { throw mapFailure(error) }
            let t = now()
            guard let x = expiry else {
                print("\(a) may not relay: no entry")
                throw Negative()
            }
            guard Expiry.isLive(expiry: x, now: t) else {
                print("\(a) may not relay: entry expired at \(localTime(x))")
                throw Negative()
            }
            print("\(a) may relay until \(localTime(x)) (\(Expiry.formatRemaining(x - t)) left)")
        }
    }
}
