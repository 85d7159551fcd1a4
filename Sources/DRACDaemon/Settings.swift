// Loading rpc.dracd's settings: drac.conf, -o overrides, DRAC 1.12 flags, the allow file.
import DRACConfigFile
import DRACCore
import Foundation
import Glibc

/// The command line as rpc.dracd received it (DRAC 1.12 flags plus ours).
public struct DaemonOptions: Sendable {
    public var configFile: String?
    public var overrides: [String] = []
    public var expireMinutes: Int?
    public var truncate = false
    public var allowFile: String?
    public var mapFile: String?
    public init() {}
}

public struct StartError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

public enum SettingsLoader {
    /// drac.conf (the -c file, or /etc/drac/drac.conf when it exists), then -o, then the DRAC flags.
    public static func load(_ o: DaemonOptions) throws -> DRACConfig {
        let source = try ConfigFile.source(configFile: o.configFile, overrides: o.overrides)
        var config = try DRACConfig(source)
        if let e = o.expireMinutes {
            guard e >= 1, e <= 366 * 24 * 60 else { throw StartError("-e \(e): expiry must be 1 to \(366 * 24 * 60) minutes") }
            config.expireSeconds = Int64(e) * 60
        }
        if let a = o.allowFile { config.allowFile = a }
        if let m = o.mapFile { config.mapFile = m }
        return config
    }

    /// The allow list and a short description of where it came from.
    public static func loadAllowList(_ path: String) throws -> (AllowList, String) {
        guard FileManager.default.fileExists(atPath: path) else {
            let list = AllowList.defaultList(hostAddresses: hostAddresses())
            return (list, "default: loopback and this host's addresses, \(path) does not exist")
        }
        let text = try ConfigFile.readSmallFile(path, what: "allow file")
        switch AllowList.parse(text) {
        case .success(let list): return (list, "\(path), \(list.rules.count) rules")
        case .failure(let e): throw StartError("\(path), \(e)")
        }
    }

    /// This host's interface addresses (for the default allow list, as DRAC).
    public static func hostAddresses() -> [IPAddress] {
        var head: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&head) == 0 else { return [] }
        defer { freeifaddrs(head) }
        var out: [IPAddress] = []
        var p = head
        while let ifa = p {
            if let sa = ifa.pointee.ifa_addr {
                switch Int32(sa.pointee.sa_family) {
                case AF_INET:
                    let a = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt32(bigEndian: $0.pointee.sin_addr.s_addr) }
                    out.append(.v4(a))
                case AF_INET6:
                    let b = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p -> [UInt8] in
                        var a = p.pointee.sin6_addr
                        return withUnsafeBytes(of: &a) { Array($0) }
                    }
                    out.append(.v6(b))
                default: break
                }
            }
            p = ifa.pointee.ifa_next
        }
        return out
    }
}
