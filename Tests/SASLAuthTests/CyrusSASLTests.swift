// The SASL system library links and answers.
import XCTest
import CSASL
@testable import SASLAuth

final class CyrusSASLTests: XCTestCase {
    func testLinkedLibraryIsCyrus2() {
        let v = CyrusSASL.version
        XCTAssertEqual(v.implementation, "Cyrus SASL")
        XCTAssertTrue(v.version.hasPrefix("2."), v.version)
    }

    func testErrorTexts() {
        XCTAssertEqual(SASL_NOUSER, -20)
        XCTAssertEqual(SASL_BADAUTH, -13)
        XCTAssertFalse(CyrusSASL.describe(SASL_BADAUTH).isEmpty)
        XCTAssertNotEqual(CyrusSASL.describe(SASL_BADAUTH), CyrusSASL.describe(SASL_NOUSER))
    }
}
