// The caller allow list: DRAC's `netmask netaddr` lines plus CIDR lines for IPv4 and IPv6.

/// One allow rule. IPv4 keeps DRAC's arbitrary mask (`netmask netaddr`, where DRAC compared
/// `(caller & mask) == netaddr`); IPv6 uses a prefix length.
public enum AllowRule: Hashable, Sendable, CustomStringConvertible {
    case v4(mask: UInt32, network: UInt32)
    case v6(prefix: Int, network: [UInt8])

    /// Parses `10.0.0.0/8`, `2001:db8::/32` or a single address (a host rule).
    public init?(cidr text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(String(parts[0])) else { return nil }
        let maxLen = address.isV4 ? 32 : 128
        var length = maxLen
        if parts.count == 2 {
            let p = parts[1]
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(p), n <= maxLen else { return nil }
            if p.count > 1 && p.first == "0" { return nil }
            length = n
        }
        switch address {
        case .v4(let a):
            let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << UInt32(32 - length)
            guard a & mask == a else { return nil }   // host bits set: a typo, not a rule
            self = .v4(mask: mask, network: a)
        case .v6(let b):
            guard AllowRule.masked(b, prefix: length) == b else { return nil }
            self = .v6(prefix: length, network: b)
        }
    }

    static func masked(_ b: [UInt8], prefix: Int) -> [UInt8] {
        var out = b
        for i in 0..<16 {
            let bitsHere = max(0, min(8, prefix - i * 8))
            out[i] = bitsHere == 8 ? b[i] : b[i] & UInt8(truncatingIfNeeded: 0xff << (8 - bitsHere))
        }
        return out
    }

    public func contains(_ address: IPAddress) -> Bool {
        switch (self, address.unmapped) {
        case (.v4(let mask, let net), .v4(let a)): return a & mask == net
        case (.v6(let prefix, let net), .v6(let b)): return AllowRule.masked(b, prefix: prefix) == net
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .v4(let mask, let net):
            if mask == 0 || (~mask &+ 1) & ~mask == 0 {   // contiguous mask: print as CIDR
                return "\(IPAddress.formatV4(net))/\(mask.nonzeroBitCount)"
            }
            return "\(IPAddress.formatV4(mask)) \(IPAddress.formatV4(net))"
        case .v6(let prefix, let net):
            return "\(IPAddress.formatV6(net))/\(prefix)"
        }
    }
}

/// A problem in an allow file, with its line number.
public struct AllowFileError: Error, Equatable, Sendable, CustomStringConvertible {
    public var line: Int
    public var message: String
    public var description: String { "line \(line): \(message)" }
}

/// The set of callers that may add entries.
public struct AllowList: Equatable, Sendable {
    public var rules: [AllowRule]

    public init(rules: [AllowRule]) { self.rules = rules }

    /// What DRAC allows when the allow file does not exist: loopback plus this host's addresses.
    public static func defaultList(hostAddresses: [IPAddress]) -> AllowList {
        var rules: [AllowRule] = [.v4(mask: 0xff00_0000, network: 0x7f00_0000),
                                  .v6(prefix: 128, network: IPAddress("::1")!.bytes)]
        for a in hostAddresses {
            let rule: AllowRule
            switch a.unmapped {
            case .v4(let v): rule = .v4(mask: 0xffff_ffff, network: v)
            case .v6(let b): rule = .v6(prefix: 128, network: b)
            }
            if !rules.contains(where: { $0.contains(a) }) { rules.append(rule) }
        }
        return AllowList(rules: rules)
    }

    public func allows(_ caller: IPAddress) -> Bool {
        rules.contains { $0.contains(caller) }
    }

    /// Parses an allow file. Accepts DRAC lines (`255.255.255.0 192.168.1.0`), CIDR lines and
    /// single addresses; `#` starts a comment. Any other line is an error: a typo in an access
    /// list must not silently change who may add entries.
    public static func parse(_ text: String, maxLines: Int = 100_000) -> Result<AllowList, AllowFileError> {
        var rules: [AllowRule] = []
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            if lineNumber > maxLines { return .failure(AllowFileError(line: lineNumber, message: "too many lines (limit \(maxLines))")) }
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            switch fields.count {
            case 0:
                continue
            case 1:
                guard let rule = AllowRule(cidr: String(fields[0])) else {
                    return .failure(AllowFileError(line: lineNumber, message: "not an address or CIDR block: \(fields[0])"))
                }
                rules.append(rule)
            case 2:
                guard case .v4(let mask)? = IPAddress(String(fields[0])),
                      case .v4(let net)? = IPAddress(String(fields[1])) else {
                    return .failure(AllowFileError(line: lineNumber, message: "expected 'netmask netaddr' (two dotted quads)"))
                }
                guard net & mask == net else {
                    return .failure(AllowFileError(line: lineNumber, message: "netaddr \(fields[1]) has bits outside netmask \(fields[0])"))
                }
                rules.append(.v4(mask: mask, network: net))
            default:
                return .failure(AllowFileError(line: lineNumber, message: "too many fields"))
            }
        }
        return .success(AllowList(rules: rules))
    }
}
