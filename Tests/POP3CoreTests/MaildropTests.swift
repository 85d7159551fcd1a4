// Maildrop views and deletion marks (RFC 1939 §5), unique-ids (§7), CRLF sizes (§11).
import XCTest
@testable import POP3Core

final class MaildropTests: XCTestCase {
    static let three = [MessageInfo(size: 100, uid: "a1"), MessageInfo(size: 200, uid: "b2"), MessageInfo(size: 300, uid: "c3")]

    func testLookupAndMarks() {
        var d = Maildrop(Self.three)
        XCTAssertEqual(d.count, 3)
        XCTAssertEqual(d.size, 600)
        XCTAssertEqual(d.lookup(1), .message(Self.three[0]))
        XCTAssertEqual(d.lookup(0), .noSuchMessage)
        XCTAssertEqual(d.lookup(4), .noSuchMessage)
        XCTAssertEqual(d.lookup(Int.max), .noSuchMessage)
        XCTAssertEqual(d.lookup(-1), .noSuchMessage)

        XCTAssertTrue(d.markDeleted(2))
        XCTAssertFalse(d.markDeleted(2), "a second mark is refused")
        XCTAssertFalse(d.markDeleted(9))
        XCTAssertEqual(d.lookup(2), .deleted)
        XCTAssertTrue(d.isDeleted(2))
        XCTAssertFalse(d.isDeleted(1))
        XCTAssertEqual(d.count, 2)
        XCTAssertEqual(d.size, 400)
        XCTAssertEqual(d.totalSize, 600)
        XCTAssertTrue(d.markDeleted(3))
        XCTAssertEqual(d.deletedNumbers, [2, 3])
        XCTAssertEqual(d.live.map(\.number), [1])
        XCTAssertEqual(d.live.map(\.info.uid), ["a1"])

        d.unmarkAll()
        XCTAssertEqual(d.count, 3)
        XCTAssertEqual(d.size, 600)
        XCTAssertEqual(d.deletedNumbers, [])
        XCTAssertEqual(d.lookup(2), .message(Self.three[1]))
    }

    func testEmptyMaildrop() {
        let d = Maildrop([])
        XCTAssertEqual(d.count, 0)
        XCTAssertEqual(d.size, 0)
        XCTAssertEqual(d.lookup(1), .noSuchMessage)
        XCTAssertTrue(d.live.isEmpty)
    }

    func testUniqueIDSyntax() {
        XCTAssertTrue(MessageInfo.isValidUID("1"))
        XCTAssertTrue(MessageInfo.isValidUID(String(repeating: "x", count: 70)))
        XCTAssertTrue(MessageInfo.isValidUID("!~1700000000.M1P2.host,S=123"))
        XCTAssertFalse(MessageInfo.isValidUID(""))
        XCTAssertFalse(MessageInfo.isValidUID(String(repeating: "x", count: 71)))
        XCTAssertFalse(MessageInfo.isValidUID("a b"))
        XCTAssertFalse(MessageInfo.isValidUID("a\u{7F}"))
        XCTAssertFalse(MessageInfo.isValidUID("a\tb"))
        XCTAssertFalse(MessageInfo.isValidUID("\u{00E9}"))
    }

    // MARK: - CRLF sizes

    static func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    func testCRLFSize() {
        XCTAssertEqual(POP3Octets.crlfSize(of: Self.bytes("")), 0)
        XCTAssertEqual(POP3Octets.crlfSize(of: Self.bytes("a\r\nb\r\n")), 6)
        XCTAssertEqual(POP3Octets.crlfSize(of: Self.bytes("a\nb\n")), 6, "a bare LF counts as CRLF")
        XCTAssertEqual(POP3Octets.crlfSize(of: Self.bytes("a\r\nb\n")), 6)
        XCTAssertEqual(POP3Octets.crlfSize(of: Self.bytes("a\rb")), 3, "a bare CR is one octet")
        XCTAssertEqual(POP3Octets.crlfSize(of: Self.bytes("\n\n\n")), 6)
        XCTAssertEqual(POP3Octets.crlfSize(of: Self.bytes("no newline")), 10)
        XCTAssertEqual(POP3Octets.crlfSize(of: Self.bytes(".dot\n")), 6, "dot-stuffing is not part of the size")
        XCTAssertEqual(POP3Octets.crlfSize(of: Self.bytes("a\r\r\n")), 4)
    }

    func testCounterAcrossChunkBoundaries() {
        var c = POP3Octets.Counter()
        c.add(Self.bytes("a\r"))
        c.add(Self.bytes("\nb\r"))
        c.add([UInt8]())                       // an empty chunk changes nothing
        c.add(Self.bytes("\n"))
        c.add(Self.bytes("\n"))
        XCTAssertEqual(c.octets, 8)            // a CRLF, b CRLF, CRLF
        c.finish()
        XCTAssertEqual(c.octets, 8)
    }

    func testCounterMatchesWholeCountForRandomSplits() {
        var rng = SplitMix(seed: 11)
        let alphabet: [UInt8] = [0x0D, 0x0A, 0x61, 0x2E, 0x3E]
        for _ in 0..<500 {
            let msg = (0..<Int(rng.next() % 200)).map { _ in alphabet[Int(rng.next() % 5)] }
            var expected = msg.count
            for (i, b) in msg.enumerated() where b == 0x0A && (i == 0 || msg[i - 1] != 0x0D) { expected += 1 }
            XCTAssertEqual(POP3Octets.crlfSize(of: msg), expected)
            var c = POP3Octets.Counter()
            var i = 0
            while i < msg.count {
                let n = min(msg.count - i, Int(rng.next() % 5) + 1)
                c.add(msg[i..<(i + n)])
                i += n
            }
            XCTAssertEqual(c.octets, expected, "\(msg)")
        }
    }

    func testCRLFSizeWithMboxUnquoting() {
        // ">From " loses one ">" (mboxrd): one octet less per such line.
        let m = Self.bytes("Subject: x\n\n>From me\n>>From you\n> From not\n>Fromage\nFrom x\n")
        XCTAssertEqual(POP3Octets.crlfSize(of: m), m.count + 7)
        XCTAssertEqual(POP3Octets.crlfSize(of: m, mboxFromUnquote: true), m.count + 7 - 2)
        XCTAssertEqual(POP3Octets.crlfSize(of: m, mboxFromUnquote: false), m.count + 7)
        // Held back at the end of the message, then counted by finish().
        XCTAssertEqual(POP3Octets.crlfSize(of: Self.bytes("a\n>>Fro"), mboxFromUnquote: true), 8)
        var c = POP3Octets.Counter(mboxFromUnquote: true)
        c.add(Self.bytes("a\n>>Fr"))
        XCTAssertEqual(c.octets, 3)
        c.add(Self.bytes("om x\n"))
        XCTAssertEqual(c.octets, 3 + 9)         // ">From x" CRLF
        c.finish()
        XCTAssertEqual(c.octets, 12)
    }

    func testCRLFSizeEqualsRETROutputWithoutStuffing() {
        // The size LIST announces is what RETR sends, minus dot-stuffing and the ".".
        let m = Self.bytes("A: b\n\nline\r\n.dot\nlast")
        var s = DotStuffer()
        let out = s.process(m) + s.finish()
        let dots = 1
        let addedFinalCRLF = 2
        XCTAssertEqual(out.count - dots - 3 - addedFinalCRLF, POP3Octets.crlfSize(of: m))
    }
}
