// IPv4/IPv6 addresses: strict parsing (inet_pton rules) and canonical text (glibc inet_ntop form).

/// An IP address as DRAC stores it. The text form is exactly what glibc's `inet_ntop` prints,
/// because that text is the map key the MTAs look up (INTEROP.md section 1).
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt32)
    case v6([UInt8])   // always 16 bytes

    /// Builds an IPv6 address from 16 bytes; nil if the count is wrong.
    public static func v6(bytes: [UInt8]) -> IPAddress? {
        bytes.count == 16 ? .v6(bytes) : nil
    }

    /// Parses an address as `inet_pton` would (AF_INET first, then AF_INET6). No zone ids,
    /// no prefixes, no brackets, no leading zeros in dotted quads.
    public init?(_ text: String) {
        let utf8 = Array(text.utf8)
        if let v4 = IPAddress.parseV4(utf8[...]) {
            self = .v4(v4)
        } else if let v6 = IPAddress.parseV6(utf8[...]) {
            self = .v6(v6)
        } else {
            return nil
        }
    }

    public var isV4: Bool { if case .v4 = self { return true } else { return false } }

    /// Network-order bytes: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let a): return [UInt8(a >> 24), UInt8((a >> 16) & 0xff), UInt8((a >> 8) & 0xff), UInt8(a & 0xff)]
        case .v6(let b): return b
        }
    }

    /// `::ffff:a.b.c.d` becomes `a.b.c.d`; everything else is returned unchanged. A dual-stack
    /// socket reports IPv4 peers this way, and the MTAs look them up by their IPv4 text.
    public var unmapped: IPAddress {
        if case .v6(let b) = self, b[0..<10].allSatisfy({ $0 == 0 }), b[10] == 0xff, b[11] == 0xff {
            return .v4(UInt32(b[12]) << 24 | UInt32(b[13]) << 16 | UInt32(b[14]) << 8 | UInt32(b[15]))
        }
        return self
    }

    public var isUnspecified: Bool {
        switch self {
        case .v4(let a): return a == 0
        case .v6(let b): return b.allSatisfy { $0 == 0 }
        }
    }

    public var isLoopback: Bool {
        switch self {
        case .v4(let a): return a >> 24 == 127
        case .v6(let b): return b[0..<15].allSatisfy { $0 == 0 } && b[15] == 1
        }
    }

    /// fe80::/10: needs a scope (interface) to be used.
    public var isLinkLocal: Bool {
        if case .v6(let b) = self { return b[0] == 0xfe && b[1] & 0xc0 == 0x80 }
        return false
    }

    public var isMulticast: Bool {
        switch self {
        case .v4(let a): return a >> 28 == 0xe
        case .v6(let b): return b[0] == 0xff
        }
    }

    /// True for addresses that can never be a mail client: unspecified, multicast, limited broadcast.
    public var isUsableClient: Bool {
        if isUnspecified || isMulticast { return false }
        if case .v4(let a) = self, a == 0xffff_ffff { return false }
        return true
    }

    public var description: String { text }

    /// The `inet_ntop` text.
    public var text: String {
        switch self {
        case .v4(let a): return IPAddress.formatV4(a)
        case .v6(let b): return IPAddress.formatV6(b)
        }
    }

    static func formatV4(_ a: UInt32) -> String {
        "\(a >> 24).\((a >> 16) & 0xff).\((a >> 8) & 0xff).\(a & 0xff)"
    }

    /// glibc `inet_ntop6`: the first longest run of two or more zero words becomes `::`;
    /// `::a.b.c.d` and `::ffff:a.b.c.d` keep the dotted tail (glibc prints both that way).
    static func formatV6(_ b: [UInt8]) -> String {
        var words = [Int](repeating: 0, count: 8)
        for i in 0..<8 { words[i] = Int(b[2 * i]) << 8 | Int(b[2 * i + 1]) }
        var bestBase = -1, bestLen = 0, curBase = -1, curLen = 0
        for i in 0..<8 {
            if words[i] == 0 {
                if curBase == -1 { curBase = i; curLen = 1 } else { curLen += 1 }
            } else if curBase != -1 {
                if bestBase == -1 || curLen > bestLen { bestBase = curBase; bestLen = curLen }
                curBase = -1
            }
        }
        if curBase != -1, bestBase == -1 || curLen > bestLen { bestBase = curBase; bestLen = curLen }
        if bestBase != -1, bestLen < 2 { bestBase = -1 }

        var out = ""
        var i = 0
        while i < 8 {
            if bestBase != -1, i >= bestBase, i < bestBase + bestLen {
                if i == bestBase { out += ":" }
                i += 1
                continue
            }
            if i != 0 { out += ":" }
            if i == 6, bestBase == 0, bestLen == 6 || (bestLen == 5 && words[5] == 0xffff) {
                out += "\(b[12]).\(b[13]).\(b[14]).\(b[15])"
                break
            }
            out += String(words[i], radix: 16)
            i += 1
        }
        if bestBase != -1, bestBase + bestLen == 8 { out += ":" }
        return out
    }

    static func parseV4(_ s: ArraySlice<UInt8>) -> UInt32? {
        var result: UInt32 = 0
        var octets = 0
        var value = 0
        var digits = 0
        for c in s {
            if c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") {
                if digits > 0, value == 0 { return nil }   // leading zero, as inet_pton
                value = value * 10 + Int(c - UInt8(ascii: "0"))
                digits += 1
                if value > 255 { return nil }
            } else if c == UInt8(ascii: ".") {
                if digits == 0 || octets == 3 { return nil }
                result = result << 8 | UInt32(value)
                octets += 1
                value = 0
                digits = 0
            } else {
                return nil
            }
        }
        if digits == 0 || octets != 3 { return nil }
        return result << 8 | UInt32(value)
    }

    static func parseV6(_ s: ArraySlice<UInt8>) -> [UInt8]? {
        guard !s.isEmpty, s.count <= 45 else { return nil }
        var words: [UInt16] = []
        var gap: Int? = nil
        var rest = s
        // Leading "::"
        if rest.first == UInt8(ascii: ":") {
            guard rest.count >= 2, rest[rest.startIndex + 1] == UInt8(ascii: ":") else { return nil }
            gap = 0
            rest = rest.dropFirst(2)
            if rest.isEmpty { return [UInt8](repeating: 0, count: 16) }
        }
        var tailV4: UInt32? = nil
        while !rest.isEmpty {
            // A dotted quad may only end the address.
            if let colon = rest.firstIndex(of: UInt8(ascii: ":")) {
                let group = rest[rest.startIndex..<colon]
                guard let w = parseHexWord(group) else { return nil }
                words.append(w)
                rest = rest[(colon + 1)...]
                if rest.first == UInt8(ascii: ":") {
                    guard gap == nil else { return nil }
                    gap = words.count
                    rest = rest.dropFirst()
                    if rest.isEmpty { break }
                } else if rest.isEmpty {
                    return nil   // trailing single colon
                }
            } else {
                if rest.contains(UInt8(ascii: ".")) {
                    guard let v4 = parseV4(rest) else { return nil }
                    tailV4 = v4
                } else {
                    guard let w = parseHexWord(rest) else { return nil }
                    words.append(w)
                }
                rest = rest[rest.endIndex...]
            }
        }
        if let v4 = tailV4 {
            words.append(UInt16(v4 >> 16))
            words.append(UInt16(v4 & 0xffff))
        }
        if let g = gap {
            guard words.count <= 7 else { return nil }
            let zeros = [UInt16](repeating: 0, count: 8 - words.count)
            words.insert(contentsOf: zeros, at: g)
        }
        guard words.count == 8 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(16)
        for w in words { out.append(UInt8(w >> 8)); out.append(UInt8(w & 0xff)) }
        return out
    }

    private static func parseHexWord(_ s: ArraySlice<UInt8>) -> UInt16? {
        guard (1...4).contains(s.count) else { return nil }
        var v: UInt16 = 0
        for c in s {
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: return nil
            }
            v = v << 4 | UInt16(d)
        }
        return v
    }
}

/// The `ADDRESS:PORT` part of a listener setting (`*:25`, `127.0.0.1:110`, `[::1]:995`): nil
/// address means every address. Names are not accepted: a listener binds a literal address.
public enum ListenAddress {
    public static func parse(_ text: Substring) -> (address: IPAddress?, port: Int)? {
        guard let c = text.lastIndex(of: ":") else { return nil }
        let digits = text[text.index(after: c)...]
        guard !digits.isEmpty, digits.count <= 5, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
              let port = Int(digits), port <= 65535 else { return nil }
        var host = text[..<c]
        if host.first == "[" && host.last == "]" { host = host.dropFirst().dropLast() }
        if host == "*" { return (nil, port) }
        guard let a = IPAddress(String(host)) else { return nil }
        return (a, port)
    }

    /// The setting's form of an address: `*`, `127.0.0.1`, `[::1]`.
    public static func text(_ address: IPAddress?) -> String {
        address.map { $0.isV4 ? $0.text : "[\($0.text)]" } ?? "*"
    }
}
