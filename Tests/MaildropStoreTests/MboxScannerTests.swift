// The mbox parser alone: boundaries, the blank-line rule, CRLF, pseudo messages, header identity.
import POP3Core
import XCTest
@testable import MaildropStore

func fromLine(_ who: String = "sender@example.org", _ day: Int = 1) -> String {
    "From \(who) Mon Jan  \(day) 00:00:00 2024\n"
}

/// One message as an MDA appends it: From line, the message (ending in LF), an empty line.
func mboxMessage(_ body: String, from who: String = "sender@example.org", day: Int = 1) -> String {
    fromLine(who, day) + body + "\n"
}

final class MboxScannerTests: XCTestCase {
    /// Scans `text` fed in chunks of `chunk` octets (0: all at once).
    static func scan(_ text: [UInt8], chunk: Int = 0, unquote: Bool = false) -> MboxScanner {
        var s = MboxScanner(mboxFromUnquote: unquote)
        let step = chunk == 0 ? max(text.count, 1) : chunk
        var i = 0
        text.withUnsafeBytes { raw in
            while i < text.count {
                let n = min(step, text.count - i)
                s.consume(UnsafeRawBufferPointer(rebasing: raw[i..<(i + n)]))
                i += n
            }
        }
        s.finish()
        return s
    }

    static func bodies(_ text: [UInt8], _ s: MboxScanner) -> [String] {
        s.records.map { String(decoding: text[Int($0.bodyStart)..<Int($0.bodyEnd)], as: UTF8.self) }
    }

    /// Scans in many chunkings; all must agree. Returns the message bodies.
    func check(_ text: String, unquote: Bool = false, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        let b = bytes(text)
        let whole = Self.scan(b, unquote: unquote)
        for chunk in [1, 2, 3, 4, 5, 6, 7, 11, 64] {
            let s = Self.scan(b, chunk: chunk, unquote: unquote)
            XCTAssertEqual(s.records, whole.records, "chunk \(chunk)", file: file, line: line)
            XCTAssertEqual(s.preambleHasText, whole.preambleHasText, file: file, line: line)
        }
        // Records tile the file after the preamble: each ends where the next starts.
        for (r, next) in zip(whole.records, whole.records.dropFirst()) {
            XCTAssertEqual(r.end, next.start, file: file, line: line)
        }
        if let last = whole.records.last { XCTAssertEqual(last.end, Int64(b.count), file: file, line: line) }
        // Sizes are POP3Octets of exactly the octets RETR delivers.
        for r in whole.records {
            let body = Array(b[Int(r.bodyStart)..<Int(r.bodyEnd)])
            XCTAssertEqual(r.size, POP3Octets.crlfSize(of: body, mboxFromUnquote: unquote), file: file, line: line)
            XCTAssertTrue(b[Int(r.start)...].starts(with: bytes("From ")), file: file, line: line)
        }
        return Self.bodies(b, whole)
    }

    func testMessagesAndSeparators() {
        let one = "Subject: one\n\nbody one\n"
        let two = "Subject: two\n\nbody two\n\n\n"          // ends with empty lines of its own
        let three = "Subject: three\n\n"                       // empty body
        let text = mboxMessage(one) + mboxMessage(two) + mboxMessage(three)
        XCTAssertEqual(check(text), [one, two, three])
        let s = Self.scan(bytes(text))
        XCTAssertEqual(s.records[0].start, 0)
        XCTAssertEqual(s.records[0].bodyStart, Int64(fromLine().utf8.count))
        XCTAssertFalse(s.preambleHasText)
    }

    func testFromInBodyNeedsAnEmptyLineBefore() {
        let body = "Subject: x\n\nline\nFrom me, not a new message\n>From quoted\nFrom\nFromage\n"
        XCTAssertEqual(check(mboxMessage(body) + mboxMessage("Subject: y\n\ny\n")), [body, "Subject: y\n\ny\n"])
        // After an empty line a From line splits (which is why MDAs quote ">From ").
        let text = fromLine() + "Subject: x\n\npara\n\nFrom here on\n"
        XCTAssertEqual(check(text), ["Subject: x\n\npara\n", ""])
    }

    func testCRLFMbox() {
        let one = "Subject: one\r\n\r\nbody\r\n"
        let two = "Subject: two\r\n\r\nbody\r\nFrom inside\r\nx\r\n"
        let text = "From a@b Mon Jan  1 00:00:00 2024\r\n" + one + "\r\n" + "From c@d Mon Jan  1 00:00:00 2024\r\n" + two + "\r\n"
        XCTAssertEqual(check(text), [one, two])
    }

    func testEndOfFile() {
        // No final empty line: the body runs to the end of the file.
        XCTAssertEqual(check(fromLine() + "Subject: a\n\nlast\n"), ["Subject: a\n\nlast\n"])
        XCTAssertEqual(check(fromLine() + "Subject: a\n\nno newline"), ["Subject: a\n\nno newline"])
        XCTAssertEqual(check(fromLine() + "Sub"), ["Sub"])
        XCTAssertEqual(check(fromLine()), [""])
        XCTAssertEqual(check("From x"), [""])
        XCTAssertEqual(check(fromLine() + "\n"), [""])
        XCTAssertEqual(check(fromLine() + "a\n\r\n"), ["a\n"])
        XCTAssertEqual(check(""), [])
    }

    func testPreamble() {
        XCTAssertFalse(Self.scan(bytes("\n\n" + mboxMessage("a\n"))).preambleHasText)
        XCTAssertEqual(check("\n\n" + mboxMessage("a\n")), ["a\n"])
        XCTAssertTrue(Self.scan(bytes("junk\n" + mboxMessage("a\n"))).preambleHasText)
        XCTAssertTrue(Self.scan(bytes("Received: x\n\n" + mboxMessage("a\n"))).preambleHasText)
        XCTAssertTrue(Self.scan(bytes("abc")).preambleHasText)
        _ = check("junk\n" + mboxMessage("a\n"))
    }

    func testPseudoMessage() {
        let pseudo = "Date: 01 Jan 2024 00:00:00 +0000\nFrom: Mail System Internal Data <MAILER-DAEMON@host>\n"
            + "Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\nMessage-ID: <1@host>\n"
            + "X-IMAP: 1700000000 0000000002\nStatus: RO\n\nThis text is part of the internal format of your mail folder.\n"
        let real = "Subject: real\n\nhello\n"
        var s = Self.scan(bytes(mboxMessage(pseudo, from: "MAILER-DAEMON") + mboxMessage(real)))
        XCTAssertEqual(s.records.map(\.isPseudo), [true, false])
        // Only the first message can be the pseudo message.
        s = Self.scan(bytes(mboxMessage(real) + mboxMessage(pseudo)))
        XCTAssertEqual(s.records.map(\.isPseudo), [false, false])
        // Dovecot keeps X-IMAPbase in the first real message: that one is mail.
        s = Self.scan(bytes(mboxMessage("X-IMAPbase: 1700000000 0000000003\nSubject: real\n\nhello\n")))
        XCTAssertEqual(s.records.map(\.isPseudo), [false])
        s = Self.scan(bytes(mboxMessage("Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\nx-imapbase: 1 2\n\nx\n")))
        XCTAssertEqual(s.records.map(\.isPseudo), [true])
    }

    func testHeaderInfo() {
        let a = HeaderInfo(bytes("Subject: hi\nX-UIDL:  abc123 \nMessage-ID: <1@x>\n"))
        XCTAssertEqual(a.uidl, "abc123")
        XCTAssertFalse(a.isPseudo)
        // Mail readers' status fields do not change the digest; other fields do; CRLF = LF.
        let b = HeaderInfo(bytes("Subject: hi\r\nStatus: RO\r\nX-UIDL:  abc123 \r\nX-Status: A\r\nX-Keywords: $x\r\n"
                                 + "Message-ID: <1@x>\r\nX-Mozilla-Status: 0001\r\nContent-Length: 5\r\nX-UID: 7\r\n"))
        XCTAssertEqual(a.digest, b.digest)
        XCTAssertNotEqual(a.digest, HeaderInfo(bytes("Subject: ho\nX-UIDL:  abc123 \nMessage-ID: <1@x>\n")).digest)
        // A folded status field goes entirely; a folded X-UIDL is unfolded.
        let c = HeaderInfo(bytes("Subject: hi\nStatus: R\n O\nX-UIDL:  abc123 \nMessage-ID: <1@x>\n"))
        XCTAssertEqual(a.digest, c.digest)
        XCTAssertEqual(HeaderInfo(bytes("x-uidl:\n abc\n")).uidl, "abc")
        // Invalid unique-ids are ignored (space inside, too long, empty).
        XCTAssertNil(HeaderInfo(bytes("X-UIDL: a b\n")).uidl)
        XCTAssertNil(HeaderInfo(bytes("X-UIDL: " + String(repeating: "u", count: 71) + "\n")).uidl)
        XCTAssertNil(HeaderInfo(bytes("X-UIDL:\n")).uidl)
        XCTAssertEqual(HeaderInfo(bytes("X-UIDL: first\nX-UIDL: second\n")).uidl, "first")
        XCTAssertEqual(a.digest.count, 32)
    }

    func testSizesWithAndWithoutUnquote() {
        let body = "Subject: q\n\n>From the start\n>>From deeper\n>Fromage\n.dot\nbare\rcr\r\ncrlf\n"
        let text = mboxMessage(body) + fromLine() + "Subject: end\n\n>From "
        for unquote in [false, true] {
            XCTAssertEqual(check(text, unquote: unquote), [body, "Subject: end\n\n>From "])
        }
        let plain = Self.scan(bytes(text)).records
        let unq = Self.scan(bytes(text), unquote: true).records
        XCTAssertEqual(plain[0].size - unq[0].size, 2)    // two quoted From lines lose one ">" each
        XCTAssertEqual(plain[1].size - unq[1].size, 1)    // a last line ">From " with no line end
    }

    func testHeaderSectionCapped() {
        let big = "X-Big: " + String(repeating: "b", count: 70 * 1024) + "\n"
        let one = "Subject: s\n" + big + "X-UIDL: late\n\nbody\n"
        let s = Self.scan(bytes(mboxMessage(one)))
        XCTAssertEqual(s.records.count, 1)
        XCTAssertNil(s.records[0].uidl)     // beyond the 64 KiB looked at
        XCTAssertEqual(check(mboxMessage(one)), [one])
    }
}
