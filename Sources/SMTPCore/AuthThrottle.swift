// Slowing down password guessing: per client address, increasing delays, then disconnection.
import DRACCore

/// Counts AUTH failures per client address (IPv6 per /64, since one host owns a whole /64).
/// Each failure doubles the delay before the failure reply, up to `maxDelay`; from
/// `disconnectAfter` failures on, the client is also disconnected after each failure. A success
/// clears the address. Failures are forgotten `window` seconds after the last one.
///
/// The key is the address only, never the user name: guessing alice's password from one address
/// does not lock alice out when she logs in from another.
public struct AuthThrottle: Sendable {
    public struct Verdict: Sendable, Equatable {
        /// Seconds to wait before sending the failure reply.
        public var delay: Double
        public var disconnect: Bool
        public var failures: Int
    }

    public var baseDelay: Double = 1
    public var maxDelay: Double = 30
    public var disconnectAfter = 5
    public var window: Double = 3600
    public var capacity = 100_000

    private var table: [[UInt8]: (failures: Int, last: Double)] = [:]

    public init() {}

    static func key(_ a: IPAddress) -> [UInt8] {
        let u = a.unmapped
        return u.isV4 ? u.bytes : Array(u.bytes.prefix(8))
    }

    /// Failures recorded for this address that still count.
    public func failures(of address: IPAddress, now: Double) -> Int {
        guard let e = table[AuthThrottle.key(address)], now - e.last < window else { return 0 }
        return e.failures
    }

    public mutating func failure(_ address: IPAddress, now: Double) -> Verdict {
        let k = AuthThrottle.key(address)
        var n = 1
        if let e = table[k], now - e.last < window { n = e.failures + 1 }
        if table[k] == nil && table.count >= capacity { evict(now: now) }
        table[k] = (n, now)
        let delay = min(maxDelay, baseDelay * pow2(n - 1))
        return Verdict(delay: delay, disconnect: n >= disconnectAfter, failures: n)
    }

    public mutating func success(_ address: IPAddress) {
        table[AuthThrottle.key(address)] = nil
    }

    private func pow2(_ n: Int) -> Double { n >= 30 ? Double(1 << 30) : Double(1 << n) }

    /// Drops stale entries; if all are fresh, the oldest tenth (a flood of addresses must not
    /// grow memory without bound).
    private mutating func evict(now: Double) {
        table = table.filter { now - $0.value.last < window }
        if table.count >= capacity {
            let cut = table.values.map(\.last).sorted()[capacity / 10]
            table = table.filter { $0.value.last > cut }
        }
    }
}
