// Map keys and values in each variant, expiry rules, durations.
import XCTest
import Foundation
@testable import DRACCore

final class MapEncodingTests: XCTestCase {
    func testKeysAndValues() {
        let v4 = IPAddress("192.168.0.100")!, v6 = IPAddress("2001:db8::10")!
        let table: [(MapFormat, IPAddress, String)] = [
            (MapFormat(), v4, "192.168.0.100"),
            (MapFormat(), v6, "2001:db8::10"),
            (MapFormat(nulTerminated: true), v4, "192.168.0.100\0"),
            (MapFormat(cidrKeys: true), v4, "192.168.0.100/32"),
            (MapFormat(cidrKeys: true), v6, "2001:db8::10/128"),
            (MapFormat(nulTerminated: true, cidrKeys: true), v6, "2001:db8::10/128\0"),
        ]
        for (format, address, key) in table {
            XCTAssertEqual(format.key(for: address), Array(key.utf8))
            XCTAssertEqual(format.address(fromKey: Array(key.utf8)), address)
        }
        XCTAssertEqual(MapFormat().value(forExpiry: 1795393401), Array("1795393401".utf8))
        XCTAssertEqual(MapFormat(nulTerminated: true).value(forExpiry: 7), Array("7\0".utf8))
    }

    func testJunkKeysAndValuesAreRejected() {
        for key in ["", "1.2.3", "192.168.0.1/24", "::1/32", "host.example", "\0", "1.2.3.4\0\0"] {
            XCTAssertNil(MapFormat().address(fromKey: Array(key.utf8)), key)
        }
        for value in ["", "-5", "12a", " 12", "1234567890123456789", "\0"] {
            XCTAssertNil(MapFormat.expiry(fromValue: Array(value.utf8)), value)
        }
        XCTAssertEqual(MapFormat.expiry(fromValue: Array("1795393401\0".utf8)), 1795393401)
    }

    func testExpiryIsNeverLiveOnceDue() {
        XCTAssertTrue(Expiry.isLive(expiry: 1000, now: 999))
        XCTAssertFalse(Expiry.isLive(expiry: 1000, now: 1000))
        XCTAssertFalse(Expiry.isLive(expiry: 1000, now: 5000))
        XCTAssertEqual(Expiry.expiry(now: 100, ttlSeconds: 1800), 1900)
        XCTAssertEqual(Expiry.formatRemaining(0), "expired")
        XCTAssertEqual(Expiry.formatRemaining(-3), "expired")
        XCTAssertEqual(Expiry.formatRemaining(45), "45s")
        XCTAssertEqual(Expiry.formatRemaining(29 * 60 + 12), "29m12s")
        XCTAssertEqual(Expiry.formatRemaining(3605), "1h0m5s")
        XCTAssertEqual(Expiry.formatRemaining(90_061), "1d1h1m1s")
    }

    func testDurations() {
        let table: [(String, DurationParser.Unit, Int64?)] = [
            ("30", .minutes, 1800), ("30m", .seconds, 1800), ("90s", .minutes, 90), ("2h", .seconds, 7200),
            ("1d", .seconds, 86_400), (" 5 ", .seconds, 5), ("", .seconds, nil), ("m", .seconds, nil),
            ("-5", .seconds, nil), ("5x", .seconds, nil), ("1.5h", .seconds, nil), ("1234567890123d", .seconds, nil),
        ]
        for (text, unit, expected) in table {
            XCTAssertEqual(DurationParser.seconds(text, defaultUnit: unit), expected, text)
        }
    }
}

final class TimeFormatTests: XCTestCase {
    func testISO8601AgainstGmtime() {
        for epoch: Int64 in [0, 1, 59, 86_399, 86_400, 951_782_400, 1_795_393_401, 4_102_444_800, 1_709_164_800, 1_709_251_199] {
            var t = time_t(epoch)
            var tmv = tm()
            gmtime_r(&t, &tmv)
            let expected = String(format: "%04d-%02d-%02dT%02d:%02d:%02dZ", tmv.tm_year + 1900, tmv.tm_mon + 1, tmv.tm_mday, tmv.tm_hour, tmv.tm_min, tmv.tm_sec)
            XCTAssertEqual(TimeFormat.iso8601UTC(epoch), expected, "\(epoch)")
        }
    }
}
