// DotStuffer: RETR/TOP output byte for byte (RFC 1939 §3, §7), against a whole-message reference.
import XCTest
@testable import POP3Core

final class DotStufferTests: XCTestCase {
    static func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
    static func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

    /// The obvious implementation over a whole message: split at LF, drop the CR of each CRLF
    /// (and a CR that ends an unterminated last line), unquote, select for TOP, stuff, join with
    /// CRLF, terminate.
    static func reference(_ msg: [UInt8], top: Int? = nil, mbox: Bool = false) -> [UInt8] {
        var lines: [[UInt8]] = []
        var current: [UInt8] = []
        for b in msg {
            if b == 0x0A { lines.append(current); current = [] } else { current.append(b) }
        }
        if !current.isEmpty { lines.append(current) }
        lines = lines.map { $0.last == 0x0D ? Array($0.dropLast()) : $0 }
        if mbox {
            lines = lines.map { line in
                let quotes = line.prefix { $0 == 0x3E }.count
                let rest = line.dropFirst(quotes)
                return quotes > 0 && rest.starts(with: Array("From ".utf8)) ? Array(line.dropFirst()) : line
            }
        }
        if let top {
            var selected: [[UInt8]] = []
            var inBody = false
            var left = top
            for line in lines {
                if !inBody {
                    selected.append(line)
                    if line.isEmpty { inBody = true }
                } else {
                    if left == 0 { break }
                    selected.append(line)
                    left -= 1
                }
            }
            lines = selected
        }
        var out: [UInt8] = []
        for line in lines {
            if line.first == 0x2E { out.append(0x2E) }
            out += line
            out += [0x0D, 0x0A]
        }
        return out + [0x2E, 0x0D, 0x0A]
    }

    /// Runs the stuffer over `msg` cut at the given chunk lengths (the rest as a last chunk).
    static func run(_ msg: [UInt8], chunks: [Int] = [], top: Int? = nil, mbox: Bool = false) -> [UInt8] {
        var s = DotStuffer(topLines: top, mboxFromUnquote: mbox)
        var out: [UInt8] = []
        var i = 0
        var pieces = chunks
        while i < msg.count {
            let n = pieces.isEmpty ? msg.count - i : min(pieces.removeFirst(), msg.count - i)
            s.process(msg[i..<(i + n)], into: &out)
            i += n
        }
        s.finish(into: &out)
        XCTAssertEqual(s.octetsOut, out.count)
        return out
    }

    func check(_ input: String, _ expected: String, top: Int? = nil, mbox: Bool = false,
               file: StaticString = #filePath, line: UInt = #line) {
        let msg = Self.bytes(input)
        XCTAssertEqual(Self.text(Self.reference(msg, top: top, mbox: mbox)), expected, "reference", file: file, line: line)
        XCTAssertEqual(Self.text(Self.run(msg, top: top, mbox: mbox)), expected, "whole", file: file, line: line)
        // Every single cut point, and one octet at a time.
        for cut in 0...msg.count {
            XCTAssertEqual(Self.text(Self.run(msg, chunks: [cut], top: top, mbox: mbox)), expected, "cut at \(cut)", file: file, line: line)
        }
        XCTAssertEqual(Self.text(Self.run(msg, chunks: Array(repeating: 1, count: msg.count), top: top, mbox: mbox)),
                       expected, "octet by octet", file: file, line: line)
    }

    // MARK: - RETR

    func testCRLFInputPassesUnchanged() {
        check("Subject: hi\r\n\r\nbody\r\n", "Subject: hi\r\n\r\nbody\r\n.\r\n")
    }

    func testLFInputBecomesCRLF() {
        check("Subject: hi\n\nbody\n", "Subject: hi\r\n\r\nbody\r\n.\r\n")
    }

    func testMixedLineEnds() {
        check("a\r\nb\nc\r\n\n", "a\r\nb\r\nc\r\n\r\n.\r\n")
    }

    func testBareCRIsKept() {
        check("a\rb\n", "a\rb\r\n.\r\n")
        check("a\r\r\n", "a\r\r\n.\r\n")
    }

    func testLinesStartingWithDotAreStuffed() {
        check(".\n", "..\r\n.\r\n")
        check("a\n.\nb\n", "a\r\n..\r\nb\r\n.\r\n")
        check("..two\r\n", "...two\r\n.\r\n")
        check("a.b\n.c.\n", "a.b\r\n..c.\r\n.\r\n", top: nil)
        check("x\r\n.\r\n", "x\r\n..\r\n.\r\n", top: nil)
    }

    func testDotAtChunkStartThatIsALineStart() {
        let msg = Self.bytes("a\n.b\n")
        XCTAssertEqual(Self.text(Self.run(msg, chunks: [2])), "a\r\n..b\r\n.\r\n")
        // A "." at a chunk start that is not a line start is left alone.
        XCTAssertEqual(Self.text(Self.run(Self.bytes("a.b\n"), chunks: [1])), "a.b\r\n.\r\n")
    }

    func testCRAndLFInDifferentChunks() {
        let msg = Self.bytes("a\r\nb\r\n")
        XCTAssertEqual(Self.text(Self.run(msg, chunks: [2, 1])), "a\r\nb\r\n.\r\n")
        XCTAssertEqual(Self.text(Self.run(msg, chunks: [2, 1, 1, 1, 1])), "a\r\nb\r\n.\r\n")
    }

    func testMessageWithoutFinalNewline() {
        check("Subject: x\n\nno newline", "Subject: x\r\n\r\nno newline\r\n.\r\n")
        check(".", "..\r\n.\r\n")
        check("ends in CR\r", "ends in CR\r\n.\r\n")
    }

    func testEmptyMessage() {
        check("", ".\r\n")
        check("\n", "\r\n.\r\n")
    }

    func testNULAndEightBitPassThrough() {
        let msg: [UInt8] = [0x61, 0x00, 0xFF, 0xC3, 0xA9, 0x0A]
        XCTAssertEqual(Self.run(msg), [0x61, 0x00, 0xFF, 0xC3, 0xA9, 0x0D, 0x0A, 0x2E, 0x0D, 0x0A])
    }

    func testFinishAloneIsTheTerminator() {
        // finish() output alone: the terminator.
        var s = DotStuffer()
        XCTAssertEqual(s.finish(), Self.bytes(".\r\n"))
        XCTAssertEqual(s.octetsOut, 3)
    }

    // MARK: - TOP

    static let message = "From: a\nSubject: s\n\nline 1\n.line 2\nline 3\n"

    func testTopZeroGivesHeadersAndBlankLine() {
        check(Self.message, "From: a\r\nSubject: s\r\n\r\n.\r\n", top: 0)
    }

    func testTopN() {
        check(Self.message, "From: a\r\nSubject: s\r\n\r\nline 1\r\n.\r\n", top: 1)
        check(Self.message, "From: a\r\nSubject: s\r\n\r\nline 1\r\n..line 2\r\n.\r\n", top: 2)
        check(Self.message, "From: a\r\nSubject: s\r\n\r\nline 1\r\n..line 2\r\nline 3\r\n.\r\n", top: 3)
        check(Self.message, "From: a\r\nSubject: s\r\n\r\nline 1\r\n..line 2\r\nline 3\r\n.\r\n", top: 100)
        check(Self.message, "From: a\r\nSubject: s\r\n\r\nline 1\r\n..line 2\r\nline 3\r\n.\r\n", top: Int.max)
    }

    func testTopWithCRLFBlankLineSplitAcrossChunks() {
        let msg = Self.bytes("A: b\r\n\r\nbody 1\r\nbody 2\r\n")
        // Cut between the CR and the LF of the empty line.
        XCTAssertEqual(Self.text(Self.run(msg, chunks: [7], top: 0)), "A: b\r\n\r\n.\r\n")
        XCTAssertEqual(Self.text(Self.run(msg, chunks: [7], top: 1)), "A: b\r\n\r\nbody 1\r\n.\r\n")
    }

    func testTopWithoutBlankLineSendsAll() {
        check("A: b\nC: d\n", "A: b\r\nC: d\r\n.\r\n", top: 0)
        check("A: b\nC: d", "A: b\r\nC: d\r\n.\r\n", top: 0)
    }

    func testTopLastBodyLineWithoutNewline() {
        check("A: b\n\nonly", "A: b\r\n\r\nonly\r\n.\r\n", top: 5)
        check("A: b\n\nonly", "A: b\r\n\r\n.\r\n", top: 0)
    }

    func testTopIsCompleteStopsTakingInput() {
        var s = DotStuffer(topLines: 1)
        var out: [UInt8] = []
        s.process(Self.bytes("A: b\n\nbody 1\n"), into: &out)
        XCTAssertTrue(s.isComplete)
        s.process(Self.bytes("body 2\n"), into: &out)
        s.finish(into: &out)
        XCTAssertEqual(Self.text(out), "A: b\r\n\r\nbody 1\r\n.\r\n")
        var r = DotStuffer()
        _ = r.process(Self.bytes("A: b\n\n"))
        XCTAssertFalse(r.isComplete, "RETR is never complete before the end")
    }

    func testNegativeTopIsZero() {
        var s = DotStuffer(topLines: -3)
        let out = s.process(Self.bytes("A: b\n\nbody\n")) + s.finish()
        XCTAssertEqual(Self.text(out), "A: b\r\n\r\n.\r\n")
    }

    // MARK: - mbox (mboxrd)

    func testMboxFromUnquoting() {
        let input = "Subject: x\n\n>From me\n>>From you\n>>>From them\n> From not\n>Fromage\n>\n>>\nFrom x\n.>From\n"
        let expected = "Subject: x\r\n\r\nFrom me\r\n>From you\r\n>>From them\r\n> From not\r\n>Fromage\r\n>\r\n>>\r\nFrom x\r\n..>From\r\n.\r\n"
        check(input, expected, mbox: true)
    }

    func testMboxUnquotingIsOffByDefault() {
        check(">From me\n", ">From me\r\n.\r\n")
    }

    func testMboxPrefixAtTheEnd() {
        check("a\n>>Fro", "a\r\n>>Fro\r\n.\r\n", mbox: true)
        check("a\n>From ", "a\r\nFrom \r\n.\r\n", mbox: true)
        check(">", ">\r\n.\r\n", mbox: true)
        check(">From\r\n", ">From\r\n.\r\n", mbox: true)
        check(">From \r\n", "From \r\n.\r\n", mbox: true)
    }

    func testMboxWithTop() {
        check("A: b\n\n>From 1\n>From 2\n", "A: b\r\n\r\nFrom 1\r\n.\r\n", top: 1, mbox: true)
    }

    // MARK: - Random messages against the reference

    func testRandomMessagesAndSplitsMatchReference() {
        var rng = SplitMix(seed: 42)
        let alphabet: [UInt8] = Array("aaaaaa.\r\n\n\n>From xF".utf8)
        for round in 0..<3000 {
            let length = Int(rng.next() % 120)
            var msg = (0..<length).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            if round % 7 == 0 { msg = Array("H: v\n\n".utf8) + msg }       // make TOP's body likely
            let top: Int? = round % 3 == 0 ? nil : Int(rng.next() % 4)
            let mbox = round % 2 == 0
            var chunks: [Int] = []
            var total = 0
            while total < msg.count {
                let c = Int(rng.next() % 9) + 1
                chunks.append(c)
                total += c
            }
            let expected = Self.reference(msg, top: top, mbox: mbox)
            let got = Self.run(msg, chunks: chunks, top: top, mbox: mbox)
            if got != expected {
                XCTFail("round \(round) top=\(String(describing: top)) mbox=\(mbox) chunks=\(chunks)\n in: \(Self.text(msg).debugDescription)\nout: \(Self.text(got).debugDescription)\nref: \(Self.text(expected).debugDescription)")
                return
            }
            if top == nil {
                // The announced size: the output without stuffing, the added CRLF and the ".".
                let size = POP3Octets.crlfSize(of: msg, mboxFromUnquote: mbox)
                let unstuffed = Self.referenceSize(msg, mbox: mbox)
                XCTAssertEqual(size, unstuffed, "round \(round): \(Self.text(msg).debugDescription)")
            }
        }
    }

    /// The octets of the reference output for RETR before stuffing and termination, without the
    /// CRLF added to an unterminated last line (and with that line's CR, if it ended in one).
    static func referenceSize(_ msg: [UInt8], mbox: Bool) -> Int {
        var n = 0
        var lineStart = true
        var prev: UInt8 = 0
        var i = 0
        while i < msg.count {
            let b = msg[i]
            if lineStart && mbox && b == 0x3E {
                var j = i
                while j < msg.count && msg[j] == 0x3E { j += 1 }
                if msg[j...].starts(with: Array("From ".utf8)) { n -= 1 }
            }
            lineStart = b == 0x0A
            n += (b == 0x0A && prev != 0x0D) ? 2 : 1
            prev = b
            i += 1
        }
        return n
    }

    func testLargeMessageInBigChunks() {
        // 1 MB of 100-octet LF lines, some with a leading dot, in 64 KB chunks.
        var msg: [UInt8] = []
        for i in 0..<10_000 {
            if i % 10 == 0 { msg.append(0x2E) }
            msg += Array(repeating: 0x78, count: 99)
            msg.append(0x0A)
        }
        var s = DotStuffer()
        var out: [UInt8] = []
        var i = 0
        while i < msg.count {
            let n = min(65_536, msg.count - i)
            s.process(msg[i..<(i + n)], into: &out)
            i += n
        }
        s.finish(into: &out)
        XCTAssertEqual(out.count, msg.count + 10_000 + 1_000 + 3)
        XCTAssertEqual(out, Self.reference(msg))
    }
}
