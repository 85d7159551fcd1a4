// DataScanner: the end of DATA (RFC 5321 §4.1.1.4), sizes, long lines and SMTP smuggling.
import XCTest
@testable import SMTPCore

final class DataScannerTests: XCTestCase {
    /// What a whole scan produced, in offsets of the whole input.
    struct Outcome: Equatable, CustomStringConvertible {
        var forwarded: [UInt8]
        var end: Int?
        var size: Int
        var problem: DataScanner.Problem?
        var description: String {
            "forwarded=\(forwarded.count) end=\(end.map(String.init) ?? "nil") size=\(size) problem=\(problem.map { "\($0)" } ?? "nil")"
        }
    }

    /// Feeds `bytes` in chunks of the given lengths (the rest as a last chunk), as the
    /// connection handler does: each chunk's first `forward` octets go to the backend, and
    /// scanning stops at the end of data.
    static func run(_ bytes: [UInt8], chunks: [Int] = [], maxSize: Int = 10_240_000, maxLine: Int = 1000,
                    file: StaticString = #filePath, line: UInt = #line) -> Outcome {
        var scanner = DataScanner(maxSize: maxSize, maxLine: maxLine)
        var forwarded: [UInt8] = []
        var start = 0
        var pieces = chunks
        while start < bytes.count {
            let length = pieces.isEmpty ? bytes.count - start : min(pieces.removeFirst(), bytes.count - start)
            let chunk = bytes[start..<(start + length)]
            let r = scanner.scan(chunk)
            XCTAssertGreaterThanOrEqual(r.forward, 0, file: file, line: line)
            XCTAssertLessThanOrEqual(r.forward, chunk.count, file: file, line: line)
            forwarded += chunk.prefix(r.forward)
            if let e = r.end {
                XCTAssertLessThanOrEqual(r.forward, e, file: file, line: line)
                XCTAssertLessThanOrEqual(e, chunk.count, file: file, line: line)
                return Outcome(forwarded: forwarded, end: start + e, size: scanner.size, problem: scanner.problem)
            }
            start += length
        }
        return Outcome(forwarded: forwarded, end: nil, size: scanner.size, problem: scanner.problem)
    }

    static func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    // MARK: - The end of data

    func testEndsAtCRLFDotCRLF() {
        let text = Self.bytes("Subject: hi\r\n\r\nbody line\r\n.\r\n")
        let o = Self.run(text)
        XCTAssertEqual(o.end, text.count)
        XCTAssertEqual(o.forwarded, text, "the terminator goes to the backend with the text")
        XCTAssertEqual(o.size, text.count - 3, "the size excludes the terminator")
        XCTAssertNil(o.problem)
    }

    /// The CRLF of the DATA line counts as the first CRLF: an empty message is just `.CRLF`.
    func testEmptyMessage() {
        let o = Self.run(Self.bytes(".\r\n"))
        XCTAssertEqual(o, Outcome(forwarded: Self.bytes(".\r\n"), end: 3, size: 0, problem: nil))
    }

    func testNoEndYet() {
        for text in ["", "a", "a\r", "a\r\n", "a\r\n.", "a\r\n.\r", "a\r\n..\r\n", "a\r\n.x\r\n"] {
            let o = Self.run(Self.bytes(text))
            XCTAssertNil(o.end, text.debugDescription)
            XCTAssertNil(o.problem, text.debugDescription)
            XCTAssertEqual(o.forwarded, Self.bytes(text), "everything so far is fine: \(text.debugDescription)")
        }
    }

    /// A dot-stuffed line (`..foo`, RFC 5321 §4.5.2) is text, forwarded still stuffed.
    func testDotStuffedLinesAreNotTheEnd() {
        let text = Self.bytes("..foo\r\n..\r\n.bar\r\n...\r\nend\r\n.\r\n")
        let o = Self.run(text)
        XCTAssertEqual(o.end, text.count)
        XCTAssertEqual(o.forwarded, text)
        XCTAssertEqual(o.size, text.count - 3)
        XCTAssertNil(o.problem)
    }

    /// Octets after the end (pipelined QUIT, or the next transaction) are left for the session.
    func testBytesAfterTheEndAreNotConsumed() {
        let message = Self.bytes("hello\r\n.\r\n")
        let text = message + Self.bytes("QUIT\r\n")
        var scanner = DataScanner(maxSize: 1000, maxLine: 1000)
        let r = scanner.scan(text)
        XCTAssertEqual(r.end, message.count)
        XCTAssertEqual(r.forward, message.count)
        XCTAssertEqual(scanner.size, 7)
        // A second message right behind the first (pipelined MAIL...DATA is not possible, but the
        // scanner must not care): only the first end is reported.
        var s2 = DataScanner(maxSize: 1000, maxLine: 1000)
        let r2 = s2.scan(message + message)
        XCTAssertEqual(r2.end, message.count)
    }

    func testForwardCountsAcrossChunks() {
        var scanner = DataScanner(maxSize: 1000, maxLine: 1000)
        XCTAssertEqual(scanner.scan(Self.bytes("Subject: a\r\n")), DataScanner.Result(forward: 12, end: nil))
        XCTAssertEqual(scanner.scan(Self.bytes("\r\nbody")), DataScanner.Result(forward: 6, end: nil))
        XCTAssertEqual(scanner.scan(Self.bytes("\r\n.")), DataScanner.Result(forward: 3, end: nil))
        XCTAssertEqual(scanner.scan(Self.bytes("\r\nQUIT\r\n")), DataScanner.Result(forward: 2, end: 2))
        XCTAssertEqual(scanner.size, 12 + 6 + 2)
        XCTAssertNil(scanner.problem)
        XCTAssertEqual(scanner.scan([UInt8]()), DataScanner.Result(forward: 0, end: nil))
    }

    // MARK: - Chunk boundaries

    static let samples: [String] = [
        "Subject: x\r\n\r\nbody\r\n.\r\n",
        ".\r\n",
        "..\r\n.\r\n",
        "a\r\n..b\r\n.\r\nQUIT\r\n",
        "x\r\n\r\n\r\n.\r\n",
        // Problems: the results must not depend on how the input was cut.
        "a\nb\r\n.\r\n",
        "a\rb\r\n.\r\n",
        "a\r\r\n.\r\n",
        "a\r\n.\n.\r\n.\r\nNOOP\r\n",
        "a\r\n.\rx\r\n.\r\n",
        "a\n.\r\nMAIL FROM:<x@evil.example>\r\n.\r\n",
        "hello\r.\r\nmore\r\n.\r\n",
        "\n.\r\nx\r\n.\r\n",
        "\r.\r\nx\r\n.\r\n",
        "\r\n.\n\r\n.\r\n",
    ]

    /// Splitting the input at every possible single boundary, byte by byte, and at random
    /// boundaries gives the single-chunk outcome.
    func testChunkBoundariesDoNotMatter() {
        var rng = SplitMix64(seed: 42)
        for sample in Self.samples {
            let text = Self.bytes(sample)
            let whole = Self.run(text)
            var cuts: [[Int]] = (0...text.count).map { [$0] }            // two chunks, every boundary
            cuts.append(Array(repeating: 1, count: text.count))           // byte by byte
            for _ in 0..<200 {                                           // random splits
                var c: [Int] = []
                var left = text.count
                while left > 0 { let n = Int.random(in: 0...min(left, 5), using: &rng); c.append(n); left -= n; if n == 0 && left > 0 { c.append(1); left -= 1 } }
                cuts.append(c)
            }
            for c in cuts {
                let o = Self.run(text, chunks: c)
                XCTAssertEqual(o.end, whole.end, "\(sample.debugDescription) cut \(c)")
                XCTAssertEqual(o.size, whole.size, "\(sample.debugDescription) cut \(c)")
                XCTAssertEqual(o.problem, whole.problem, "\(sample.debugDescription) cut \(c)")
                if whole.problem == nil {
                    XCTAssertEqual(o.forwarded, whole.forwarded, "\(sample.debugDescription) cut \(c)")
                } else {
                    // The scanner cannot take back an octet it forwarded in an earlier chunk: a
                    // CR that ended a chunk is only known to be bare (or to end an over-size
                    // line) with the next octet. That CR is the only extra allowed; the caller
                    // drops the backend connection without a terminator anyway.
                    XCTAssertEqual(Array(o.forwarded.prefix(whole.forwarded.count)), whole.forwarded, "\(sample.debugDescription) cut \(c)")
                    XCTAssertLessThanOrEqual(o.forwarded.count, whole.forwarded.count + 1, "\(sample.debugDescription) cut \(c)")
                    if o.forwarded.count > whole.forwarded.count {
                        XCTAssertEqual(o.forwarded.last, 0x0D, "\(sample.debugDescription) cut \(c)")
                    }
                    XCTAssertFalse(Self.containsBareLF(o.forwarded), "\(sample.debugDescription) cut \(c)")
                }
            }
        }
    }

    /// The terminator split at each of its four inner boundaries, explicitly.
    func testTerminatorSplitEverywhere() {
        let text = Self.bytes("body\r\n.\r\n")
        for cut in 4...text.count {
            var scanner = DataScanner(maxSize: 1000, maxLine: 1000)
            let a = scanner.scan(text[..<cut])
            XCTAssertEqual(a.forward, cut)
            if cut == text.count {
                XCTAssertEqual(a.end, text.count)
                continue
            }
            XCTAssertNil(a.end, "cut at \(cut)")
            let b = scanner.scan(text[cut...])
            XCTAssertEqual(b, DataScanner.Result(forward: text.count - cut, end: text.count - cut), "cut at \(cut)")
            XCTAssertEqual(scanner.size, 6)
        }
    }

    // MARK: - SMTP smuggling (CVE-2023-51764 and kin)

    /// Line-ending variants that some MTAs take for an end of data. None ends the message here:
    /// the message is rejected, nothing from the offending octet on is forwarded, and only the
    /// real `CRLF.CRLF` further on ends it (the "smuggled" commands stay message text).
    func testSmugglingVariantsDoNotEndTheMessage() {
        let head = "Subject: test\r\n\r\nhello"
        let smuggled = "MAIL FROM:<attacker@evil.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nforged\r\n.\r\n"
        let variants: [(String, Int, DataScanner.Problem)] = [
            // variant, offset of the offending octet from the end of `head`, problem
            ("\n.\n", 0, .bareLF),
            ("\r.\r", 0, .bareCR),
            ("\n.\r\n", 0, .bareLF),
            ("\r\n.\n", 3, .bareLF),
            ("\r.\r\n", 0, .bareCR),
            ("\r\n.\r", 3, .bareCR),
        ]
        for (variant, at, problem) in variants {
            let text = Self.bytes(head + variant + smuggled)
            let realEnd = text.count
            let offending = head.utf8.count + at
            for chunks in [[], Array(repeating: 1, count: text.count), [head.utf8.count + 1]] {
                let o = Self.run(text + Self.bytes("QUIT\r\n"), chunks: chunks)
                XCTAssertEqual(o.problem, problem, "\(variant.debugDescription) \(chunks.count) chunks")
                XCTAssertEqual(o.end, realEnd, "\(variant.debugDescription) must not end the message (\(chunks.count) chunks)")
                // Split input may have sent the offending CR before it was known to be bare.
                XCTAssertLessThanOrEqual(o.forwarded.count, offending + 1, "\(variant.debugDescription)")
                if chunks.isEmpty {
                    XCTAssertEqual(o.forwarded, Array(text.prefix(offending)), "\(variant.debugDescription): forwarding stops before the offending octet")
                }
                XCTAssertFalse(Self.containsBareLF(o.forwarded))
            }
        }
    }

    /// `<LF>.<CR><LF>` at the very start of the text (right after the DATA line).
    func testSmugglingAtTheStartOfTheText() {
        for variant in ["\n.\r\n", "\r.\r\n", "\n.\n", ".\n", ".\r.\r\n"] {
            let text = Self.bytes(variant + "MAIL FROM:<a@evil.example>\r\n.\r\n")
            let o = Self.run(text)
            XCTAssertNotNil(o.problem, variant.debugDescription)
            XCTAssertEqual(o.end, text.count, variant.debugDescription)
        }
    }

    func testBareLFAndBareCRMidLine() {
        let lf = Self.bytes("abc\ndef\r\n.\r\n")
        var o = Self.run(lf)
        XCTAssertEqual(o, Outcome(forwarded: Self.bytes("abc"), end: lf.count, size: o.size, problem: .bareLF))
        let cr = Self.bytes("abc\rdef\r\n.\r\n")
        o = Self.run(cr)
        XCTAssertEqual(o, Outcome(forwarded: Self.bytes("abc"), end: cr.count, size: o.size, problem: .bareCR))
        // Only the first problem is kept.
        let both = Self.bytes("a\rb\nc\r\n.\r\n")
        XCTAssertEqual(Self.run(both).problem, .bareCR)
        // A bare CR right before a real CRLF.
        let crcrlf = Self.bytes("abc\r\r\n.\r\n")
        o = Self.run(crcrlf)
        XCTAssertEqual(o.problem, .bareCR)
        XCTAssertEqual(o.forwarded, Self.bytes("abc"))
        XCTAssertEqual(o.end, crcrlf.count)
    }

    /// After a problem, nothing more is forwarded, not even the terminator.
    func testAfterAProblemLaterChunksForwardNothing() {
        var scanner = DataScanner(maxSize: 1000, maxLine: 1000)
        XCTAssertEqual(scanner.scan(Self.bytes("ok\r\nbad\nline")), DataScanner.Result(forward: 7, end: nil))
        XCTAssertEqual(scanner.problem, .bareLF)
        XCTAssertEqual(scanner.scan(Self.bytes("more text\r\n")), DataScanner.Result(forward: 0, end: nil))
        XCTAssertEqual(scanner.scan(Self.bytes("\r\n")), DataScanner.Result(forward: 0, end: nil))
        XCTAssertEqual(scanner.scan(Self.bytes(".\r\nQUIT\r\n")), DataScanner.Result(forward: 0, end: 3))
        XCTAssertEqual(scanner.problem, .bareLF)
    }

    // MARK: - Limits

    /// RFC 5321 §4.5.3.1.6: 1000 octets including the CRLF.
    func testLineLengthLimitCountsCRLF() {
        let ok = Self.bytes(String(repeating: "x", count: 998) + "\r\n.\r\n")
        var o = Self.run(ok, maxLine: 1000)
        XCTAssertNil(o.problem)
        XCTAssertEqual(o.end, ok.count)
        XCTAssertEqual(o.size, 1000)

        let long = Self.bytes(String(repeating: "x", count: 999) + "\r\n.\r\n")
        o = Self.run(long, maxLine: 1000)
        XCTAssertEqual(o.problem, .lineTooLong)
        XCTAssertEqual(o.end, long.count, "the scanner keeps reading to the real end")
        XCTAssertEqual(o.forwarded.count, 998, "forwarding stops before the 999th octet")

        // The limit is per line: many lines of 998 are fine.
        let line = String(repeating: "y", count: 998) + "\r\n"
        let many = Self.bytes(String(repeating: line, count: 5) + ".\r\n")
        o = Self.run(many, maxLine: 1000)
        XCTAssertNil(o.problem)
        XCTAssertEqual(o.end, many.count)

        // A dot-stuffed line counts its stuffing dot (the backend sees the stuffed line).
        let stuffed = Self.bytes("." + String(repeating: "z", count: 998) + "\r\n.\r\n")
        XCTAssertEqual(Self.run(stuffed, maxLine: 1000).problem, .lineTooLong)
        let stuffedOK = Self.bytes("." + String(repeating: "z", count: 997) + "\r\n.\r\n")
        XCTAssertNil(Self.run(stuffedOK, maxLine: 1000).problem)

        // Byte by byte gives the same.
        XCTAssertEqual(Self.run(long, chunks: Array(repeating: 1, count: long.count), maxLine: 1000).problem, .lineTooLong)
        XCTAssertNil(Self.run(ok, chunks: Array(repeating: 1, count: ok.count), maxLine: 1000).problem)
    }

    func testSizeLimit() {
        // Exactly the limit (CRLF included, terminator excluded) is accepted.
        let exact = Self.bytes(String(repeating: "x", count: 98) + "\r\n.\r\n")
        var o = Self.run(exact, maxSize: 100)
        XCTAssertNil(o.problem, "a message of exactly maxSize octets is accepted")
        XCTAssertEqual(o.size, 100)
        XCTAssertEqual(o.forwarded, exact)

        // Same with byte-by-byte input.
        o = Self.run(exact, chunks: Array(repeating: 1, count: exact.count), maxSize: 100)
        XCTAssertNil(o.problem)

        // One octet more in the text.
        let over = Self.bytes(String(repeating: "x", count: 101) + "\r\n.\r\n")
        o = Self.run(over, maxSize: 100)
        XCTAssertEqual(o.problem, .tooBig)
        XCTAssertEqual(o.forwarded.count, 100, "forwarding stops before the 101st octet")
        XCTAssertEqual(o.end, over.count, "the scanner keeps reading to the real end")

        // The CRLF pushes it over.
        let crlfOver = Self.bytes(String(repeating: "x", count: 99) + "\r\n.\r\n")
        o = Self.run(crlfOver, maxSize: 100)
        XCTAssertEqual(o.problem, .tooBig)
        XCTAssertEqual(o.forwarded.count, 99)
        XCTAssertEqual(o.end, crlfOver.count)

        // A long message over many lines.
        let lines = Self.bytes(String(repeating: "0123456789\r\n", count: 20) + ".\r\n")
        o = Self.run(lines, maxSize: 200)
        XCTAssertEqual(o.problem, .tooBig)
        XCTAssertEqual(o.end, lines.count)
        XCTAssertNil(Self.run(lines, maxSize: 240).problem)
    }

    func testProblemReplies() {
        XCTAssertEqual(DataScanner.Problem.bareLF.reply.code, 550)
        XCTAssertEqual(DataScanner.Problem.bareLF.reply.enhanced, "5.5.2")
        XCTAssertEqual(DataScanner.Problem.bareCR.reply.code, 550)
        XCTAssertEqual(DataScanner.Problem.bareCR.reply.enhanced, "5.5.2")
        XCTAssertEqual(DataScanner.Problem.lineTooLong.reply.code, 550)
        XCTAssertEqual(DataScanner.Problem.lineTooLong.reply.enhanced, "5.5.6")
        XCTAssertEqual(DataScanner.Problem.tooBig.reply.code, 552)
        XCTAssertEqual(DataScanner.Problem.tooBig.reply.enhanced, "5.3.4")
        for p in [DataScanner.Problem.bareLF, .bareCR, .lineTooLong, .tooBig] {
            XCTAssertTrue(p.reply.isPermanent)
            XCTAssertFalse(p.logText.isEmpty)
        }
    }

    /// A LF not preceded by CR anywhere in what went to the backend.
    static func containsBareLF(_ b: [UInt8]) -> Bool {
        for (i, c) in b.enumerated() where c == 0x0A && (i == 0 || b[i - 1] != 0x0D) { return true }
        return false
    }
}
