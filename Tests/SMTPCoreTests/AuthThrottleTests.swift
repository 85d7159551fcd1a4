// AuthThrottle: per-address delays and disconnection after failed AUTH attempts.
import XCTest
@testable import SMTPCore
import DRACCore

final class AuthThrottleTests: XCTestCase {
    static func ip(_ s: String) -> IPAddress { IPAddress(s)! }
    let t0 = 1_800_000_000.0

    func testDelaysDoubleThenAreCapped() {
        var t = AuthThrottle()
        t.maxDelay = 8
        t.disconnectAfter = 100
        let a = Self.ip("192.0.2.1")
        let delays = (0..<7).map { i in t.failure(a, now: t0 + Double(i)).delay }
        XCTAssertEqual(delays, [1, 2, 4, 8, 8, 8, 8])
        XCTAssertEqual(t.failures(of: a, now: t0 + 7), 7)

        // The defaults: 1, 2, 4, 8, 16, then 30 (maxDelay) for ever, without overflowing.
        var d = AuthThrottle()
        d.disconnectAfter = 1000
        let defaults = (0..<80).map { i in d.failure(a, now: t0 + Double(i)).delay }
        XCTAssertEqual(Array(defaults.prefix(7)), [1, 2, 4, 8, 16, 30, 30])
        XCTAssertTrue(defaults.allSatisfy { $0 <= 30 && $0 > 0 })
        XCTAssertEqual(defaults.last, 30)
    }

    func testDisconnectFromDisconnectAfter() {
        var t = AuthThrottle()
        t.disconnectAfter = 3
        let a = Self.ip("192.0.2.1")
        let verdicts = (1...5).map { i in t.failure(a, now: t0 + Double(i)) }
        XCTAssertEqual(verdicts.map(\.disconnect), [false, false, true, true, true])
        XCTAssertEqual(verdicts.map(\.failures), [1, 2, 3, 4, 5])
        XCTAssertEqual(verdicts[0], AuthThrottle.Verdict(delay: 1, disconnect: false, failures: 1))
        // Default: the fifth failure disconnects.
        var d = AuthThrottle()
        let dv = (1...5).map { i in d.failure(a, now: t0 + Double(i)).disconnect }
        XCTAssertEqual(dv, [false, false, false, false, true])
    }

    func testAnotherAddressIsUnaffected() {
        var t = AuthThrottle()
        let a = Self.ip("192.0.2.1"), b = Self.ip("192.0.2.2")
        for i in 0..<4 { _ = t.failure(a, now: t0 + Double(i)) }
        XCTAssertEqual(t.failures(of: b, now: t0 + 5), 0)
        XCTAssertEqual(t.failure(b, now: t0 + 5), AuthThrottle.Verdict(delay: 1, disconnect: false, failures: 1))
        XCTAssertEqual(t.failures(of: a, now: t0 + 5), 4)
    }

    /// One host owns a whole /64: counting per address would let it rotate through 2^64.
    func testIPv6CountsPerSlash64() {
        var t = AuthThrottle()
        _ = t.failure(Self.ip("2001:db8:1:2::1"), now: t0)
        _ = t.failure(Self.ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), now: t0 + 1)
        let v = t.failure(Self.ip("2001:db8:1:2:abcd::9"), now: t0 + 2)
        XCTAssertEqual(v.failures, 3)
        XCTAssertEqual(t.failures(of: Self.ip("2001:db8:1:2::42"), now: t0 + 3), 3)
        // The neighbouring /64s have their own counters.
        XCTAssertEqual(t.failures(of: Self.ip("2001:db8:1:3::1"), now: t0 + 3), 0)
        XCTAssertEqual(t.failures(of: Self.ip("2001:db8:1:1::1"), now: t0 + 3), 0)
        XCTAssertEqual(t.failure(Self.ip("2001:db8:1:3::1"), now: t0 + 3).failures, 1)
    }

    func testV4MappedIsTheSameAsV4() {
        var t = AuthThrottle()
        _ = t.failure(Self.ip("::ffff:192.0.2.7"), now: t0)
        XCTAssertEqual(t.failure(Self.ip("192.0.2.7"), now: t0 + 1).failures, 2)
        XCTAssertEqual(t.failures(of: Self.ip("::ffff:192.0.2.7"), now: t0 + 2), 2)
        // A v4-mapped address does not share the /64 of ::ffff:0:0 with other mapped addresses.
        XCTAssertEqual(t.failures(of: Self.ip("::ffff:192.0.2.8"), now: t0 + 2), 0)
        // Nor does an IPv4 address collide with an IPv6 /64 that starts with the same octets.
        XCTAssertEqual(t.failures(of: Self.ip("c000:207::1"), now: t0 + 2), 0)
    }

    func testSuccessResets() {
        var t = AuthThrottle()
        let a = Self.ip("192.0.2.1")
        for i in 0..<4 { _ = t.failure(a, now: t0 + Double(i)) }
        t.success(a)
        XCTAssertEqual(t.failures(of: a, now: t0 + 5), 0)
        XCTAssertEqual(t.failure(a, now: t0 + 6), AuthThrottle.Verdict(delay: 1, disconnect: false, failures: 1))
        // For IPv6 the success clears the whole /64.
        _ = t.failure(Self.ip("2001:db8::1"), now: t0)
        t.success(Self.ip("2001:db8::2"))
        XCTAssertEqual(t.failures(of: Self.ip("2001:db8::1"), now: t0 + 1), 0)
    }

    func testWindowExpiry() {
        var t = AuthThrottle()
        t.window = 100
        let a = Self.ip("192.0.2.1")
        _ = t.failure(a, now: t0)
        _ = t.failure(a, now: t0 + 50)
        // The window runs from the last failure.
        XCTAssertEqual(t.failures(of: a, now: t0 + 149), 2)
        XCTAssertEqual(t.failures(of: a, now: t0 + 150), 0)
        XCTAssertEqual(t.failure(a, now: t0 + 149).failures, 3)
        XCTAssertEqual(t.failure(a, now: t0 + 249).failures, 1, "forgotten exactly one window after the last failure")
    }

    func testCapacityEvictionKeepsMemoryBounded() {
        var t = AuthThrottle()
        t.capacity = 100
        t.window = 1_000_000
        let addresses = (0..<1000).map { i in IPAddress.v4(0x0A00_0000 + UInt32(i)) }
        for (i, a) in addresses.enumerated() { _ = t.failure(a, now: t0 + Double(i)) }
        let remembered = addresses.enumerated().filter { t.failures(of: $0.element, now: t0 + 1000) > 0 }
        XCTAssertLessThanOrEqual(remembered.count, 100)
        XCTAssertGreaterThan(remembered.count, 50, "eviction drops the oldest tenth, not everything")
        // The most recent addresses survive; the oldest are gone.
        XCTAssertEqual(t.failures(of: addresses[999], now: t0 + 1000), 1)
        XCTAssertEqual(t.failures(of: addresses[0], now: t0 + 1000), 0)
        XCTAssertTrue(remembered.allSatisfy { $0.offset >= 850 }, "only recent entries are kept: \(remembered.map(\.offset).prefix(5))")

        // Stale entries go first: a fresh one that was active is kept.
        var s = AuthThrottle()
        s.capacity = 10
        s.window = 100
        let keep = Self.ip("192.0.2.200")
        for i in 0..<9 { _ = s.failure(IPAddress.v4(0x0A00_0000 + UInt32(i)), now: t0) }
        _ = s.failure(keep, now: t0 + 150)
        _ = s.failure(keep, now: t0 + 160)
        for i in 100..<105 { _ = s.failure(IPAddress.v4(0x0A00_0000 + UInt32(i)), now: t0 + 170) }
        XCTAssertEqual(s.failures(of: keep, now: t0 + 171), 2)
        // Repeated failures from one address never evict it.
        var r = AuthThrottle()
        r.capacity = 1
        r.disconnectAfter = 1000
        for i in 0..<50 { _ = r.failure(keep, now: t0 + Double(i)) }
        XCTAssertEqual(r.failures(of: keep, now: t0 + 50), 50)
    }
}
