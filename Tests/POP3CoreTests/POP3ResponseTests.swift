// POP3Response wire forms (RFC 1939 §3, RFC 2449 §8, RFC 3206, RFC 5034 §4) and the limits' defaults.
import XCTest
@testable import POP3Core

final class POP3ResponseTests: XCTestCase {
    func testSingleLine() {
        XCTAssertEqual(POP3Response.ok().encoded, "+OK\r\n")
        XCTAssertEqual(POP3Response.ok("2 320").encoded, "+OK 2 320\r\n")
        XCTAssertEqual(POP3Response.err("no such message").encoded, "-ERR no such message\r\n")
        XCTAssertEqual(POP3Response.err("").encoded, "-ERR\r\n")
        XCTAssertTrue(POP3Response.ok().isOK)
        XCTAssertFalse(POP3Response.err("x").isOK)
    }

    func testResponseCodes() {
        XCTAssertEqual(POP3Response.err(.auth, "Authentication failed.").encoded, "-ERR [AUTH] Authentication failed.\r\n")
        XCTAssertEqual(POP3Response.err(.inUse, "Mailbox is locked by another POP3 session.").encoded,
                       "-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n")
        XCTAssertEqual(POP3Response.err(.sysTemp, "Try later.").encoded, "-ERR [SYS/TEMP] Try later.\r\n")
        XCTAssertEqual(POP3Response.err(.sysPerm, "Gone.").encoded, "-ERR [SYS/PERM] Gone.\r\n")
        XCTAssertEqual(POP3Response.err(POP3Response.Code("LOGIN-DELAY"), "Wait.").statusLine, "-ERR [LOGIN-DELAY] Wait.")
        XCTAssertEqual(POP3Response.Code.sysTemp.description, "SYS/TEMP")
    }

    func testContinuation() {
        // RFC 5034 §4: "+" SP base64; the empty challenge is "+ ".
        XCTAssertEqual(POP3Response.continuation("VXNlcm5hbWU6").encoded, "+ VXNlcm5hbWU6\r\n")
        XCTAssertEqual(POP3Response.continuation("").encoded, "+ \r\n")
        XCTAssertFalse(POP3Response.continuation("").isOK)
    }

    func testMultiLineIsDotStuffedAndTerminated() {
        let r = POP3Response.multiline("Capability list follows", ["TOP", ".hidden", "..two", "", "USER"])
        XCTAssertEqual(r.encoded, "+OK Capability list follows\r\nTOP\r\n..hidden\r\n...two\r\n\r\nUSER\r\n.\r\n")
        XCTAssertEqual(POP3Response.multiline("", []).encoded, "+OK\r\n.\r\n")
        XCTAssertEqual(r.bytes, Array(r.encoded.utf8))
        XCTAssertEqual(r.description, "+OK Capability list follows (5 lines)")
    }

    func testLimitsDefaults() {
        let l = POP3Limits()
        XCTAssertEqual(l.commandLine, 255)          // RFC 2449 §4
        XCTAssertEqual(l.argument, 40)              // RFC 1939 §3
        XCTAssertEqual(l.authLine, 12_288)
        XCTAssertEqual(l.autologoutSeconds, 600)    // RFC 1939 §3
        XCTAssertEqual(l.maildropMessages, 100_000)
        XCTAssertGreaterThanOrEqual(l.commandsBeforeLogin, 4)
    }

    func testAutologoutNeverUnderTenMinutes() {
        var l = POP3Limits()
        l.autologoutSeconds = 60
        XCTAssertEqual(l.autologout, 600)
        l.autologoutSeconds = 1800
        XCTAssertEqual(l.autologout, 1800)
    }
}
