// Reading drac.conf for the mail servers: the -c file (or /etc/drac/drac.conf if present), then -o.
import DRACCore
import Foundation

public struct ConfigFileError: Error, CustomStringConvertible {
    public var description: String
}

public enum ConfigFile {
    /// The parsed sources: `configFile` (which must be readable; /dev/null is an empty file), or
    /// the default path when it exists, then every `-o key=value` in order.
    public static func source(configFile: String?, overrides: [String]) throws -> ConfigSource {
        var source = ConfigSource()
        let path = configFile ?? DRACConfig.defaultPath
        if configFile != nil || FileManager.default.fileExists(atPath: path) {
            guard let h = FileHandle(forReadingAtPath: path) else {
                throw ConfigFileError(description: "cannot read configuration file \(path): \(String(cString: strerror(errno)))")
            }
            defer { try? h.close() }
            let data = (try? h.read(upToCount: (1 << 20) + 1)) ?? Data()
            guard data.count <= 1 << 20 else { throw ConfigFileError(description: "configuration file \(path) is over 1 MiB") }
            try source.parseFile(String(decoding: data, as: UTF8.self), name: path)
        }
        for o in overrides { try source.parseOverride(o) }
        return source
    }
}
