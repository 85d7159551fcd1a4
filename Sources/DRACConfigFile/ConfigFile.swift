// Reading drac.conf for every program: the -c file (or /etc/drac/drac.conf if present), then -o.
import DRACCore
import Glibc

public struct ConfigFileError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public enum ConfigFile {
    /// The parsed sources: `configFile` (which must be readable; /dev/null is an empty file), or
    /// the default path when it exists, then every `-o key=value` in order.
    public static func source(configFile: String?, overrides: [String]) throws -> ConfigSource {
        var source = ConfigSource()
        let path = configFile ?? DRACConfig.defaultPath
        if configFile != nil || access(path, F_OK) == 0 {
            try source.parseFile(try readSmallFile(path, what: "configuration file"), name: path)
        }
        for o in overrides { try source.parseOverride(o) }
        return source
    }

    /// A whole small text file (drac.conf, the allow file) with plain read(2), so that
    /// /dev/null and pipes work; refused over `limit` octets or when it is not UTF-8.
    public static func readSmallFile(_ path: String, what: String, limit: Int = 1 << 20) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ConfigFileError("cannot read \(what) \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw ConfigFileError("cannot read \(what) \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            out += buf[0..<n]
            guard out.count <= limit else { throw ConfigFileError("\(what) \(path) is larger than \(limit) bytes") }
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw ConfigFileError("\(what) \(path) is not UTF-8 text") }
        return s
    }
}
