// SMTPCommandParser: one table of command lines and what they parse to (RFC 5321 §4.1.1).
import XCTest
@testable import SMTPCore
import DRACCore

final class CommandParserTests: XCTestCase {
    /// Line (without CRLF) -> expected command.
    static let table: [(String, SMTPCommand)] = [
        // EHLO / HELO (RFC 5321 §4.1.1.1)
        ("EHLO client.example", .ehlo("client.example")),
        ("ehlo client.example", .ehlo("client.example")),
        ("EhLo [192.0.2.1]", .ehlo("[192.0.2.1]")),
        ("EHLO  client.example  ", .ehlo("client.example")),
        ("EHLO", .syntaxError("Syntax: EHLO hostname")),
        ("EHLO ", .syntaxError("Syntax: EHLO hostname")),
        ("EHLO two words", .syntaxError("Syntax: EHLO hostname")),
        ("HELO client.example", .helo("client.example")),
        ("helo client.example", .helo("client.example")),
        ("HELO", .syntaxError("Syntax: HELO hostname")),
        ("EHLO " + String(repeating: "a", count: 255), .ehlo(String(repeating: "a", count: 255))),
        ("EHLO " + String(repeating: "a", count: 256), .syntaxError("Syntax: EHLO hostname")),

        // MAIL / RCPT (RFC 5321 §4.1.1.2, §4.1.1.3): the argument is kept for SMTPPath.
        ("MAIL FROM:<a@b.example>", .mail("<a@b.example>")),
        ("mail from:<a@b.example>", .mail("<a@b.example>")),
        ("Mail From:<a@b.example>", .mail("<a@b.example>")),
        ("MAIL FROM: <a@b.example>", .mail(" <a@b.example>")),
        ("MAIL FROM:<a@b.example> ", .mail("<a@b.example>")),
        ("MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME", .mail("<a@b.example> SIZE=100 BODY=8BITMIME")),
        ("MAIL FROM:<>", .mail("<>")),
        ("MAIL FROM <a@b.example>", .syntaxError("Syntax: MAIL FROM:<address>")),
        ("MAIL <a@b.example>", .syntaxError("Syntax: MAIL FROM:<address>")),
        ("MAIL", .syntaxError("Syntax: MAIL FROM:<address>")),
        ("MAIL FRO", .syntaxError("Syntax: MAIL FROM:<address>")),
        ("RCPT TO:<u@example.org>", .rcpt("<u@example.org>")),
        ("rcpt to:<u@example.org>", .rcpt("<u@example.org>")),
        ("RCPT TO: <u@example.org>", .rcpt(" <u@example.org>")),
        ("RCPT TO:<u@example.org>\t ", .rcpt("<u@example.org>")),
        ("RCPT TO <u@example.org>", .syntaxError("Syntax: RCPT TO:<address>")),
        ("RCPT", .syntaxError("Syntax: RCPT TO:<address>")),
        ("RCPT FROM:<u@example.org>", .syntaxError("Syntax: RCPT TO:<address>")),

        // Verbs without arguments
        ("DATA", .data),
        ("data", .data),
        ("DATA ", .data),
        ("DATA x", .syntaxError("Syntax: DATA")),
        ("RSET", .rset),
        ("rset", .rset),
        ("RSET x", .syntaxError("Syntax: RSET")),
        ("NOOP", .noop),
        ("noop anything at all", .noop),       // RFC 5321 §4.1.1.9: argument ignored
        ("QUIT", .quit),
        ("Quit", .quit),
        ("QUIT now", .syntaxError("Syntax: QUIT")),
        ("HELP", .help),
        ("help mail", .help),
        ("STARTTLS", .starttls),
        ("starttls", .starttls),
        ("STARTTLS x", .syntaxError("Syntax: STARTTLS")),

        // VRFY / EXPN
        ("VRFY postmaster", .vrfy("postmaster")),
        ("vrfy  alice ", .vrfy("alice")),
        ("VRFY", .syntaxError("Syntax: VRFY address")),
        ("EXPN staff", .expn("staff")),
        ("EXPN", .expn("")),

        // AUTH (RFC 4954 §4): mechanism [initial-response]
        ("AUTH PLAIN", .auth(mechanism: "PLAIN", initial: nil)),
        ("auth plain", .auth(mechanism: "PLAIN", initial: nil)),
        ("AUTH PLAIN AGFsaWNlAHNlY3JldA==", .auth(mechanism: "PLAIN", initial: "AGFsaWNlAHNlY3JldA==")),
        ("AUTH PLAIN =", .auth(mechanism: "PLAIN", initial: "=")),
        ("AUTH LOGIN dXNlcg==", .auth(mechanism: "LOGIN", initial: "dXNlcg==")),
        ("AUTH cram-md5", .auth(mechanism: "CRAM-MD5", initial: nil)),
        ("AUTH  PLAIN   =  ", .auth(mechanism: "PLAIN", initial: "=")),
        ("AUTH", .syntaxError("Syntax: AUTH mechanism [initial-response]")),
        ("AUTH PLAIN a b", .syntaxError("Syntax: AUTH mechanism [initial-response]")),

        // Postfix proxy verbs and BDAT are recognised (to refuse them by name)
        ("XCLIENT ADDR=10.0.0.1", .xclient),
        ("xforward NAME=x", .xforward),
        ("BDAT 100 LAST", .bdat),

        // Unknown verbs
        ("FOO", .unknown("FOO")),
        ("foo bar", .unknown("FOO")),
        ("", .unknown("")),
        ("MAIL\tFROM:<a@b.example>", .unknown("MAIL\tFROM:<A@B.EXAMPLE>")),
        (String(repeating: "x", count: 100), .unknown(String(repeating: "X", count: 32))),
        ("GET / HTTP/1.1", .unknown("GET")),

        // NUL and 8-bit octets: refused before the verb is looked at
        ("EHLO a\u{0}b", .syntaxError("Error: invalid character in command")),
        ("\u{0}", .syntaxError("Error: invalid character in command")),
        ("MAIL FROM:<j\u{F6}rg@example.org>", .syntaxError("Error: invalid character in command")),
        ("EHLO h\u{E9}llo", .syntaxError("Error: invalid character in command")),
        ("FOO \u{80}", .syntaxError("Error: invalid character in command")),
    ]

    func testTable() {
        for (line, expected) in Self.table {
            XCTAssertEqual(SMTPCommandParser.parse(Substring(line)), expected, "line: \(line.debugDescription)")
        }
    }

    /// Every known verb, in every case combination of its first letters, parses to the same verb.
    func testVerbsAreCaseInsensitive() {
        let verbs: [(String, String)] = [
            ("EHLO", "EHLO x"), ("HELO", "HELO x"), ("MAIL", "MAIL FROM:<a@b.c>"), ("RCPT", "RCPT TO:<a@b.c>"),
            ("DATA", "DATA"), ("RSET", "RSET"), ("NOOP", "NOOP"), ("QUIT", "QUIT"), ("VRFY", "VRFY x"),
            ("EXPN", "EXPN x"), ("HELP", "HELP"), ("AUTH", "AUTH PLAIN"), ("STARTTLS", "STARTTLS"),
            ("XCLIENT", "XCLIENT"), ("XFORWARD", "XFORWARD"), ("BDAT", "BDAT 1"),
        ]
        for (verb, line) in verbs {
            for variant in [line, line.lowercased(), alternatingCase(line)] {
                XCTAssertEqual(SMTPCommandParser.parse(Substring(variant)).verb, verb, variant)
            }
        }
    }

    /// The parser only sees the bytes of a Substring slice, not the whole string around it.
    func testParsesASubstringSlice() {
        let full = "xxMAIL FROM:<a@b.example>yy"
        let slice = full.dropFirst(2).dropLast(2)
        XCTAssertEqual(SMTPCommandParser.parse(slice), .mail("<a@b.example>"))
    }

    func testVerbNames() {
        XCTAssertEqual(SMTPCommand.syntaxError("x").verb, "syntax")
        XCTAssertEqual(SMTPCommand.unknown("FOO").verb, "FOO")
        XCTAssertEqual(SMTPCommand.auth(mechanism: "PLAIN", initial: "secret").verb, "AUTH")
    }

    /// What the parser leaves for SMTPPath must go through it: `MAIL FROM: <a@b>` (one space) is
    /// accepted, two spaces are not.
    func testMailArgumentsReachThePathParser() throws {
        guard case .mail(let one) = SMTPCommandParser.parse("MAIL FROM: <a@b.example>") else { return XCTFail() }
        guard case .success((.mailbox(let m), let p)) = SMTPPath.parseReverse(one) else { return XCTFail("\(one)") }
        XCTAssertEqual(m.text, "a@b.example")
        XCTAssertEqual(p, [])
        guard case .mail(let two) = SMTPCommandParser.parse("MAIL FROM:  <a@b.example>") else { return XCTFail() }
        guard case .failure = SMTPPath.parseReverse(two) else { return XCTFail("two spaces accepted") }
        guard case .mail(let trailing) = SMTPCommandParser.parse("MAIL FROM:<a@b.example> ") else { return XCTFail() }
        guard case .success = SMTPPath.parseReverse(trailing) else { return XCTFail("trailing space refused") }
    }

    private func alternatingCase(_ s: String) -> String {
        String(s.enumerated().map { i, c in i % 2 == 0 ? Character(c.lowercased()) : Character(c.uppercased()) })
    }
}
