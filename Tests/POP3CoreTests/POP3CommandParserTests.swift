// POP3CommandParser: one table of command lines and what they parse to (RFC 1939 §3, RFC 2449, RFC 5034).
import XCTest
@testable import POP3Core

final class POP3CommandParserTests: XCTestCase {
    static let forty = String(repeating: "9", count: 40)

    /// Line (without CRLF) -> expected command.
    static let table: [(String, POP3Command)] = [
        // USER / PASS (RFC 1939 §7): the rest of the line.
        ("USER alice", .user("alice")),
        ("user alice@example.org", .user("alice@example.org")),
        ("User  alice  ", .user("alice")),
        ("USER j\u{00FC}rgen", .user("j\u{00FC}rgen")),
        ("USER " + String(repeating: "u", count: 100), .user(String(repeating: "u", count: 100))),
        ("USER", .syntaxError(verb: "USER", text: "Syntax: USER name")),
        ("USER ", .syntaxError(verb: "USER", text: "Syntax: USER name")),
        ("USER a\u{0000}b", .syntaxError(verb: "USER", text: "Invalid characters in USER argument.")),
        ("PASS secret", .pass("secret")),
        ("pass secret", .pass("secret")),
        ("PASS my secret pass ", .pass("my secret pass ")),
        ("PASS  leading", .pass(" leading")),
        ("PASS tab\there", .pass("tab\there")),
        ("PASS p\u{00E4}ss", .pass("p\u{00E4}ss")),
        ("PASS " + String(repeating: "p", count: 200), .pass(String(repeating: "p", count: 200))),
        ("PASS", .syntaxError(verb: "PASS", text: "Syntax: PASS password")),
        ("PASS ", .syntaxError(verb: "PASS", text: "Syntax: PASS password")),
        ("PASS a\u{0000}b", .syntaxError(verb: "PASS", text: "Invalid characters in PASS argument.")),
        ("PASS a\u{007F}b", .syntaxError(verb: "PASS", text: "Invalid characters in PASS argument.")),
        ("APOP alice c4c9334bac560ecc979e58001b3e22fb", .apop),

        // Commands without arguments.
        ("STAT", .stat), ("stat", .stat), ("StAt", .stat), ("STAT ", .stat),
        ("STAT 1", .syntaxError(verb: "STAT", text: "Syntax: STAT")),
        ("NOOP", .noop), ("noop", .noop),
        ("NOOP x", .syntaxError(verb: "NOOP", text: "Syntax: NOOP")),
        ("RSET", .rset),
        ("RSET 1", .syntaxError(verb: "RSET", text: "Syntax: RSET")),
        ("QUIT", .quit), ("quit", .quit),
        ("QUIT now", .syntaxError(verb: "QUIT", text: "Syntax: QUIT")),
        ("CAPA", .capa), ("capa", .capa),
        ("CAPA x", .syntaxError(verb: "CAPA", text: "Syntax: CAPA")),
        ("STLS", .stls), ("stls", .stls),
        ("STLS x", .syntaxError(verb: "STLS", text: "Syntax: STLS")),

        // LIST / UIDL [msg]
        ("LIST", .list(nil)), ("list", .list(nil)),
        ("LIST 1", .list(1)), ("LIST 42", .list(42)), ("LIST  7 ", .list(7)),
        ("LIST 0", .list(0)),
        ("LIST 007", .list(7)),
        ("LIST " + forty, .list(Int.max)),
        ("LIST 12345678901234567890", .list(Int.max)),
        ("LIST 1 2", .syntaxError(verb: "LIST", text: "Syntax: LIST [message]")),
        ("LIST x", .syntaxError(verb: "LIST", text: "Invalid message number: x")),
        ("LIST -1", .syntaxError(verb: "LIST", text: "Invalid message number: -1")),
        ("LIST +1", .syntaxError(verb: "LIST", text: "Invalid message number: +1")),
        ("LIST 1.", .syntaxError(verb: "LIST", text: "Invalid message number: 1.")),
        ("LIST 0x1", .syntaxError(verb: "LIST", text: "Invalid message number: 0x1")),
        ("LIST " + forty + "9", .syntaxError(verb: "LIST", text: "Invalid message number: " + forty)),
        ("UIDL", .uidl(nil)), ("uidl 3", .uidl(3)),
        ("UIDL a", .syntaxError(verb: "UIDL", text: "Invalid message number: a")),

        // RETR / DELE msg
        ("RETR 1", .retr(1)), ("retr 10", .retr(10)),
        ("RETR", .syntaxError(verb: "RETR", text: "Syntax: RETR message")),
        ("RETR 1 2", .syntaxError(verb: "RETR", text: "Syntax: RETR message")),
        ("RETR one", .syntaxError(verb: "RETR", text: "Invalid message number: one")),
        ("DELE 2", .dele(2)), ("dele 2", .dele(2)),
        ("DELE", .syntaxError(verb: "DELE", text: "Syntax: DELE message")),
        ("DELE \u{00E9}", .syntaxError(verb: "DELE", text: "Invalid characters in command.")),

        // TOP msg n
        ("TOP 1 0", .top(1, lines: 0)), ("top 2 10", .top(2, lines: 10)),
        ("TOP 1 99999999999999999999", .top(1, lines: Int.max)),
        ("TOP 1", .syntaxError(verb: "TOP", text: "Syntax: TOP message lines")),
        ("TOP", .syntaxError(verb: "TOP", text: "Syntax: TOP message lines")),
        ("TOP 1 2 3", .syntaxError(verb: "TOP", text: "Syntax: TOP message lines")),
        ("TOP x 1", .syntaxError(verb: "TOP", text: "Invalid message number: x")),
        ("TOP 1 -5", .syntaxError(verb: "TOP", text: "Invalid number of lines: -5")),

        // AUTH (RFC 5034 §4)
        ("AUTH", .auth(mechanism: nil, initial: nil)),
        ("AUTH PLAIN", .auth(mechanism: "PLAIN", initial: nil)),
        ("auth plain", .auth(mechanism: "PLAIN", initial: nil)),
        ("AUTH PLAIN AGFsaWNlAHNlY3JldA==", .auth(mechanism: "PLAIN", initial: "AGFsaWNlAHNlY3JldA==")),
        ("AUTH PLAIN =", .auth(mechanism: "PLAIN", initial: "=")),
        ("AUTH CRAM-MD5", .auth(mechanism: "CRAM-MD5", initial: nil)),
        ("AUTH SCRAM-SHA-256", .auth(mechanism: "SCRAM-SHA-256", initial: nil)),
        ("AUTH PLAIN a b", .syntaxError(verb: "AUTH", text: "Syntax: AUTH mechanism [initial-response]")),
        ("AUTH PL@IN", .syntaxError(verb: "AUTH", text: "Invalid authentication mechanism name.")),
        ("AUTH " + String(repeating: "A", count: 21), .syntaxError(verb: "AUTH", text: "Invalid authentication mechanism name.")),

        // Unknown verbs, control characters.
        ("XYZZY", .unknown("XYZZY")),
        ("HELO x", .unknown("HELO")),
        ("LAST", .unknown("LAST")),
        ("", .unknown("")),
        (" STAT", .unknown("")),
        ("ST\u{0001}T", .unknown("ST?T")),
        ("STAT\u{0007}", .unknown("STAT?")),
        ("NOOP\tx", .unknown("NOOP?X")),
        ("R\u{00C9}TR 1", .unknown("R??TR")),
        ("LIST 1\u{001B}", .syntaxError(verb: "LIST", text: "Invalid characters in command.")),
        ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", .unknown("ABCDEFGHIJKLMNOP")),
    ]

    func testTable() {
        for (line, expected) in Self.table {
            XCTAssertEqual(POP3CommandParser.parse(Substring(line)), expected, "line: \(line.debugDescription)")
        }
    }

    func testArgumentLimitIsConfigurable() {
        var limits = POP3Limits()
        limits.argument = 3
        XCTAssertEqual(POP3CommandParser.parse("RETR 123", limits: limits), .retr(123))
        XCTAssertEqual(POP3CommandParser.parse("RETR 1234", limits: limits),
                       .syntaxError(verb: "RETR", text: "Invalid message number: 1234"))
        XCTAssertEqual(POP3CommandParser.parse("AUTH LOGIN", limits: limits),
                       .syntaxError(verb: "AUTH", text: "Invalid authentication mechanism name."))
        // USER and PASS are bounded by the line only.
        XCTAssertEqual(POP3CommandParser.parse("USER alice", limits: limits), .user("alice"))
    }

    func testVerbNames() {
        XCTAssertEqual(POP3Command.top(1, lines: 2).verb, "TOP")
        XCTAssertEqual(POP3Command.auth(mechanism: nil, initial: nil).verb, "AUTH")
        XCTAssertEqual(POP3Command.syntaxError(verb: "RETR", text: "x").verb, "RETR")
        XCTAssertEqual(POP3Command.unknown("XYZ").verb, "XYZ")
        XCTAssertEqual(POP3Command.pass("secret").verb, "PASS")
    }

    /// Whatever a client sends, the parser returns (no trap) and nothing it echoes holds a
    /// control character.
    func testRandomLinesNeverEchoControls() {
        var rng = SplitMix(seed: 7)
        let alphabet: [UInt8] = Array("USERPASLITDOQNCAHuserpas 0123456789.-+=*\t".utf8) + [0, 1, 0x1B, 0x7F, 0xC3, 0xA9]
        for _ in 0..<5000 {
            let n = Int(rng.next() % 30)
            let bytes = (0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            let line = String(decoding: bytes, as: UTF8.self)
            let text: String
            switch POP3CommandParser.parse(Substring(line)) {
            case .unknown(let v): text = v
            case .syntaxError(let v, let t): text = v + t
            default: continue
            }
            XCTAssertFalse(text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, line.debugDescription)
        }
    }
}

/// A small deterministic generator for the randomized tests.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
