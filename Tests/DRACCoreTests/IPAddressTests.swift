// Address parsing/formatting against tables and against glibc's inet_pton/inet_ntop.
import XCTest
import Glibc
@testable import DRACCore

final class IPAddressTests: XCTestCase {
    func testCanonicalTextTable() {
        let table: [(String, String?)] = [
            ("192.168.0.100", "192.168.0.100"),
            ("0.0.0.0", "0.0.0.0"),
            ("255.255.255.255", "255.255.255.255"),
            ("01.2.3.4", nil), ("1.2.3", nil), ("1.2.3.4.5", nil), ("256.1.1.1", nil), ("1.2.3.4 ", nil),
            ("", nil), ("1..2.3", nil), ("a.b.c.d", nil),
            ("::", "::"), ("::1", "::1"), ("1::", "1::"),
            ("2001:DB8::1", "2001:db8::1"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("1:0:1:1:1:1:1:1", "1:0:1:1:1:1:1:1"),     // one zero word is not compressed
            ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
            ("::192.0.2.1", "::192.0.2.1"),
            ("fe80::1%eth0", nil), ("1:2:3:4:5:6:7:8:9", nil), ("1::2::3", nil), (":1::", nil),
            ("12345::", nil), ("1:2:3:4:5:6:7:1.2.3.4", nil), ("::1.2.3.4:5", nil), ("1:", nil),
            ("[::1]", nil), ("::1/128", nil),
        ]
        for (input, expected) in table {
            XCTAssertEqual(IPAddress(input)?.text, expected, "input \(input)")
        }
    }

    func testMatchesGlibcForRandomAddresses() {
        var rng = SystemRandomNumberGenerator()
        for i in 0..<20_000 {
            var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Bias towards zero runs, where the formatting rules live.
            for j in 0..<16 where Int.random(in: 0..<3, using: &rng) == 0 { bytes[j] = 0 }
            if i % 7 == 0 { for j in 0..<10 { bytes[j] = 0 }; bytes[10] = 0xff; bytes[11] = 0xff }
            var buf = [CChar](repeating: 0, count: 64)
            let glibcText: String = bytes.withUnsafeBytes { raw in
                inet_ntop(AF_INET6, raw.baseAddress, &buf, 64)
                return String(cString: buf)
            }
            let ours = IPAddress.v6(bytes)
            XCTAssertEqual(ours.text, glibcText)
            XCTAssertEqual(IPAddress(glibcText), ours, "round trip \(glibcText)")
        }
    }

    func testParserAgreesWithInetPton() {
        let samples = ["1.2.3.4", "1.2.3.04", "::", ":::", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8",
                       "1:2:3:4:5:6::8", "::ffff:1.2.3.4", "::1.2.3", "0:0:0:0:0:0:0:0", "a:b:c:d:e:f:0:1", "G::1",
                       "00000::1", "0000::1", "1.2.3.4::", "::1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:"]
        for s in samples {
            var buf = [UInt8](repeating: 0, count: 16)
            let v4 = inet_pton(AF_INET, s, &buf) == 1
            let v6 = inet_pton(AF_INET6, s, &buf) == 1
            XCTAssertEqual(IPAddress(s) != nil, v4 || v6, "acceptance differs for \(s)")
        }
    }

    func testClassification() {
        XCTAssertFalse(IPAddress("0.0.0.0")!.isUsableClient)
        XCTAssertFalse(IPAddress("255.255.255.255")!.isUsableClient)
        XCTAssertFalse(IPAddress("224.0.0.1")!.isUsableClient)
        XCTAssertFalse(IPAddress("::")!.isUsableClient)
        XCTAssertFalse(IPAddress("ff02::1")!.isUsableClient)
        XCTAssertTrue(IPAddress("192.0.2.1")!.isUsableClient)
        XCTAssertTrue(IPAddress("2001:db8::1")!.isUsableClient)
        XCTAssertEqual(IPAddress("::ffff:10.1.2.3")!.unmapped, IPAddress("10.1.2.3"))
        XCTAssertEqual(IPAddress("::10.1.2.3")!.unmapped, IPAddress("::10.1.2.3"))
        XCTAssertTrue(IPAddress("127.8.9.10")!.isLoopback)
        XCTAssertTrue(IPAddress("::1")!.isLoopback)
    }
}
