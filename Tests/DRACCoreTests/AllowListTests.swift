// The allow file: DRAC lines, CIDR lines, errors, defaults.
import XCTest
@testable import DRACCore

final class AllowListTests: XCTestCase {
    func testDRACAndCIDRLines() throws {
        let text = """
        # DRAC style
        255.255.255.255 127.0.0.1
        255.255.255.0   192.168.1.0   # office
        10.0.0.0/8
        2001:db8::/32
        ::1
        198.51.100.7
        """
        let list = try AllowList.parse(text).get()
        let cases: [(String, Bool)] = [
            ("127.0.0.1", true), ("127.0.0.2", false), ("192.168.1.77", true), ("192.168.2.1", false),
            ("10.200.3.4", true), ("11.0.0.1", false), ("2001:db8:ffff::9", true), ("2001:db9::1", false),
            ("::1", true), ("::2", false), ("198.51.100.7", true), ("198.51.100.8", false),
            ("::ffff:10.1.1.1", true),            // mapped callers are checked as IPv4
            ("::ffff:11.1.1.1", false),
        ]
        for (address, allowed) in cases {
            XCTAssertEqual(list.allows(IPAddress(address)!), allowed, address)
        }
    }

    func testNonContiguousDRACMaskIsHonoured() throws {
        let list = try AllowList.parse("255.0.255.0 10.0.5.0\n").get()
        XCTAssertTrue(list.allows(IPAddress("10.99.5.1")!))
        XCTAssertFalse(list.allows(IPAddress("10.99.6.1")!))
    }

    func testErrorsNameTheLine() {
        let table: [(String, Int, String)] = [
            ("127.0.0.1\nbogus\n", 2, "not an address"),
            ("255.255.255.0 192.168.1.1\n", 1, "bits outside netmask"),
            ("10.0.0.1/8\n", 1, "not an address"),
            ("10.0.0.0/33\n", 1, "not an address"),
            ("1.2.3.4 5.6.7.8 9.9.9.9\n", 1, "too many fields"),
            ("\n\n::1 ::2\n", 3, "two dotted quads"),
        ]
        for (text, line, fragment) in table {
            switch AllowList.parse(text) {
            case .success: XCTFail("accepted \(text)")
            case .failure(let e):
                XCTAssertEqual(e.line, line, text)
                XCTAssertTrue(e.message.contains(fragment), "\(e.message) lacks \(fragment)")
            }
        }
    }

    func testDefaultListIsLoopbackPlusHost() {
        let list = AllowList.defaultList(hostAddresses: [IPAddress("192.0.2.5")!, IPAddress("2001:db8::5")!])
        XCTAssertTrue(list.allows(IPAddress("127.0.0.1")!))
        XCTAssertTrue(list.allows(IPAddress("127.3.3.3")!))
        XCTAssertTrue(list.allows(IPAddress("::1")!))
        XCTAssertTrue(list.allows(IPAddress("192.0.2.5")!))
        XCTAssertTrue(list.allows(IPAddress("2001:db8::5")!))
        XCTAssertFalse(list.allows(IPAddress("192.0.2.6")!))
        XCTAssertFalse(list.allows(IPAddress("2001:db8::6")!))
    }

    func testRuleDescription() {
        XCTAssertEqual(AllowRule(cidr: "10.0.0.0/8")!.description, "10.0.0.0/8")
        XCTAssertEqual(AllowRule(cidr: "0.0.0.0/0")!.description, "0.0.0.0/0")
        XCTAssertEqual(AllowRule.v4(mask: 0xff00ff00, network: 0x0a000500).description, "255.0.255.0 10.0.5.0")
    }
}
