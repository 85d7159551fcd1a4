// How entries are written to and read from the DRAC map: key text, expiry value, variants.

/// The map's on-disk conventions. DRAC 1.12's default (btree, no NUL, no suffix) is what
/// sendmail `Kdrac btree` and Postfix `check_client_access btree:` read; the variants are the
/// ones DRAC offered at compile time, here chosen at run time.
public struct MapFormat: Equatable, Sendable {
    public enum Kind: String, Sendable, CaseIterable { case btree, hash }
    public var kind: Kind
    /// Keys and values end with a NUL byte.
    public var nulTerminated: Bool
    /// Keys carry `/32` or `/128`.
    public var cidrKeys: Bool

    public init(kind: Kind = .btree, nulTerminated: Bool = false, cidrKeys: Bool = false) {
        self.kind = kind
        self.nulTerminated = nulTerminated
        self.cidrKeys = cidrKeys
    }

    public func key(for address: IPAddress) -> [UInt8] {
        var text = address.text
        if cidrKeys { text += address.isV4 ? "/32" : "/128" }
        var out = Array(text.utf8)
        if nulTerminated { out.append(0) }
        return out
    }

    public func value(forExpiry expiry: Int64) -> [UInt8] {
        var out = Array(String(expiry).utf8)
        if nulTerminated { out.append(0) }
        return out
    }

    /// Reads a key written in any of the variants (a map may be shared with other writers).
    /// Returns nil for keys that are not an address in canonical form.
    public func address(fromKey key: [UInt8]) -> IPAddress? {
        var bytes = key[...]
        if bytes.last == 0 { bytes = bytes.dropLast() }
        guard !bytes.isEmpty, bytes.count <= 64, let text = String(validating: bytes, as: UTF8.self) else { return nil }
        var addressText = Substring(text)
        if let slash = addressText.firstIndex(of: "/") {
            let suffix = addressText[addressText.index(after: slash)...]
            addressText = addressText[..<slash]
            guard let a = IPAddress(String(addressText)), suffix == (a.isV4 ? "32" : "128") else { return nil }
            return a
        }
        return IPAddress(String(addressText))
    }

    /// Parses an expiry value: ASCII decimal epoch seconds, optional trailing NUL. Anything else
    /// (signs, spaces, over 19 digits) is nil: a value we cannot read is never treated as live.
    public static func expiry(fromValue value: [UInt8]) -> Int64? {
        var bytes = value[...]
        if bytes.last == 0 { bytes = bytes.dropLast() }
        guard !bytes.isEmpty, bytes.count <= 18 else { return nil }
        var v: Int64 = 0
        for c in bytes {
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return nil }
            v = v * 10 + Int64(c - UInt8(ascii: "0"))
        }
        return v
    }
}

/// Expiry arithmetic in one place, so the daemon, dracctl and drac-smtpd agree.
public enum Expiry {
    /// An entry lets its address relay while `now < expiry`. DRAC deleted entries whose value
    /// was `< now`; we never report an entry live once its second has come, swept or not.
    @inlinable
    public static func isLive(expiry: Int64, now: Int64) -> Bool { now < expiry }

    public static func expiry(now: Int64, ttlSeconds: Int64) -> Int64 { now + ttlSeconds }

    /// `29m12s`, `1h0m5s`, `45s`; `expired` when nothing is left.
    public static func formatRemaining(_ seconds: Int64) -> String {
        if seconds <= 0 { return "expired" }
        let d = seconds / 86_400, h = (seconds % 86_400) / 3600, m = (seconds % 3600) / 60, s = seconds % 60
        if d > 0 { return "\(d)d\(h)h\(m)m\(s)s" }
        if h > 0 { return "\(h)h\(m)m\(s)s" }
        if m > 0 { return "\(m)m\(s)s" }
        return "\(s)s"
    }
}

/// A time span written in drac.conf or on a command line: `30m`, `90s`, `2h`, `1d`, or a bare
/// number in the key's default unit.
public enum DurationParser {
    public enum Unit: Int64, Sendable { case seconds = 1, minutes = 60, hours = 3600, days = 86_400 }

    public static func seconds(_ text: String, defaultUnit: Unit) -> Int64? {
        let t = text.trimmingASCIIWhitespace()
        guard !t.isEmpty, t.count <= 12 else { return nil }
        var digits = Substring(t)
        var unit = defaultUnit
        switch t.last! {
        case "s": unit = .seconds; digits = digits.dropLast()
        case "m": unit = .minutes; digits = digits.dropLast()
        case "h": unit = .hours; digits = digits.dropLast()
        case "d": unit = .days; digits = digits.dropLast()
        default: break
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int64(digits) else { return nil }
        let (product, overflow) = n.multipliedReportingOverflow(by: unit.rawValue)
        return overflow ? nil : product
    }
}

extension StringProtocol {
    func trimmingASCIIWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" || f == "\n" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" || l == "\n" { s = s.dropLast() }
        return String(s)
    }
}
