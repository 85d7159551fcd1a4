// The Received: header (RFC 5321 §4.4): its form, and that a client's HELO cannot break it.
import XCTest
@testable import SMTPCore
import DRACCore

final class ReceivedHeaderTests: XCTestCase {
    static let date = "Mon, 23 Nov 2026 23:10:00 +0000"

    func testFormat() {
        let h = ReceivedHeader.make(helo: "client.example", client: IPAddress("192.0.2.10")!, hostname: "mx.example.org",
                                    protocolName: "ESMTPSA", id: "a1b2c3", recipient: nil, date: Self.date)
        XCTAssertEqual(h, "Received: from client.example ([192.0.2.10])\r\n\tby mx.example.org (drac-smtpd) with ESMTPSA id a1b2c3; \(Self.date)\r\n")
    }

    func testWithRecipient() {
        let h = ReceivedHeader.make(helo: "client.example", client: IPAddress("192.0.2.10")!, hostname: "mx.example.org",
                                    protocolName: "ESMTP", id: "X", recipient: "bob@example.org", date: Self.date)
        XCTAssertEqual(h, "Received: from client.example ([192.0.2.10])\r\n\tby mx.example.org (drac-smtpd) with ESMTP id X\r\n\tfor <bob@example.org>; \(Self.date)\r\n")
    }

    func testIPv6LiteralAndUnknownHELO() {
        let h = ReceivedHeader.make(helo: nil, client: IPAddress("2001:db8::25")!, hostname: "mx.example.org",
                                    protocolName: "SMTP", id: "1", recipient: nil, date: Self.date)
        XCTAssertTrue(h.hasPrefix("Received: from unknown ([IPv6:2001:db8::25])\r\n"), h)
        // An address literal as HELO is kept readable.
        let l = ReceivedHeader.make(helo: "[IPv6:2001:db8::25]", client: IPAddress("2001:db8::25")!, hostname: "mx",
                                    protocolName: "ESMTPS", id: "1", recipient: nil, date: Self.date)
        XCTAssertTrue(l.hasPrefix("Received: from [IPv6:2001:db8::25] ([IPv6:2001:db8::25])\r\n"), l)
    }

    /// Whatever the HELO contains, the result is exactly one header: CRLF only where we fold,
    /// every continuation line starts with a tab, and no character outside the safe set.
    func testHELOIsSanitised() {
        let hostile = [
            "evil\r\nX-Injected: yes",
            "evil\nBcc: victim@example.org",
            "evil\rSubject: x",
            "a b(c)d;e<f>g\"h'i\\j",
            "tab\there",
            "nul\u{0}here",
            "h\u{E9}llo.example",
            "\u{202E}moc.elpmaxe",
            String(repeating: "x", count: 1000),
            "",
        ]
        for helo in hostile {
            let h = ReceivedHeader.make(helo: helo, client: IPAddress("192.0.2.10")!, hostname: "mx.example.org",
                                        protocolName: "ESMTP", id: "1", recipient: "u\r\nX-Bad: 1@example.org", date: Self.date)
            XCTAssertTrue(Self.lineEndsAreCRLF(h), "a bare CR or LF: \(h.debugDescription)")
            let lines = h.split(separator: "\r\n" as Character, omittingEmptySubsequences: false)
            XCTAssertEqual(lines.last, "", "ends with CRLF: \(helo.debugDescription)")
            let body = lines.dropLast()
            XCTAssertEqual(body.count, 3, "one header, folded twice: \(helo.debugDescription) -> \(h.debugDescription)")
            XCTAssertTrue(body.first?.hasPrefix("Received: from ") ?? false)
            for continuation in body.dropFirst() {
                XCTAssertTrue(continuation.hasPrefix("\t"), "\(helo.debugDescription): \(continuation.debugDescription)")
            }
            XCTAssertFalse(h.contains("\r\nX-Injected"), h)
            XCTAssertFalse(h.contains("\r\nBcc"), h)
            XCTAssertFalse(h.contains("\r\nX-Bad"), h)
            XCTAssertTrue(h.unicodeScalars.allSatisfy { $0.isASCII && ($0.value >= 0x20 || $0 == "\r" || $0 == "\n" || $0 == "\t") },
                          "only printable ASCII: \(h.debugDescription)")
            // The claimed name sits between "from " and " ([": it has no spaces or parentheses.
            let first = body.first ?? ""
            let name = first.dropFirst("Received: from ".count).prefix { $0 != " " }
            XCTAssertFalse(name.contains("("), String(name))
            XCTAssertLessThanOrEqual(name.count, 255)
            XCTAssertTrue(first.hasSuffix(" ([192.0.2.10])"), String(first))
        }
        let h = ReceivedHeader.make(helo: "evil\r\nX-Injected: yes", client: IPAddress("192.0.2.10")!, hostname: "mx",
                                    protocolName: "ESMTP", id: "1", recipient: nil, date: Self.date)
        XCTAssertTrue(h.hasPrefix("Received: from evil??X-Injected:?yes ([192.0.2.10])\r\n"), h)
    }

    /// Every CR is followed by LF and every LF preceded by CR.
    static func lineEndsAreCRLF(_ s: String) -> Bool {
        let b = Array(s.utf8)
        for (i, c) in b.enumerated() {
            if c == 0x0D && (i + 1 == b.count || b[i + 1] != 0x0A) { return false }
            if c == 0x0A && (i == 0 || b[i - 1] != 0x0D) { return false }
        }
        return true
    }

    func testSanitizeKeepsOrdinaryNames() {
        for name in ["mail.example.org", "[192.0.2.1]", "[IPv6:2001:db8::1]", "host-1_a.example", "user+tag=x@example.org"] {
            XCTAssertEqual(ReceivedHeader.sanitize(name), name)
        }
        XCTAssertEqual(ReceivedHeader.sanitize("a b"), "a?b")
        XCTAssertEqual(ReceivedHeader.sanitize(String(repeating: "y", count: 300)).count, 255)
    }
}
