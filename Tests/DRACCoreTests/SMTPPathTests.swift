// RFC 5321 paths: good paths, parameters, limits, and every relay trick we refuse.
import XCTest
@testable import DRACCore

/// Shared with RelayPolicyTests: none of these may ever reach a relay decision.
enum PathCases {
    enum Kind: Equatable { case syntax, trick, tooLong }

    /// Arguments as they follow `RCPT TO:`, with the error class they must produce.
    static let bad: [(String, Kind)] = [
        // Source routes (RFC 5321 §4.1.1.3, appendix C).
        ("<@relay.example:user@other.net>", .trick),
        ("<@a.example,@b.example:user@other.net>", .trick),
        ("<@[127.0.0.1]:user@other.net>", .trick),
        ("<@example.org:user@other.net>", .trick),
        ("<@EXAMPLE.ORG:USER@OTHER.NET>", .trick),
        // Percent hack.
        ("<user%other.net@example.org>", .trick),
        ("<USER%OTHER.NET@EXAMPLE.ORG>", .trick),
        ("<user%other.net@[127.0.0.1]>", .trick),
        ("<user%other.net@localhost>", .trick),
        ("<user%other.net%example.org>", .trick),
        ("<user%other.net>", .trick),
        ("<user%other.net@127.0.0.1>", .trick),
        ("<user@other.net%example.org>", .trick),
        ("<%@example.org>", .trick),
        // Bang paths.
        ("<other.net!user@example.org>", .trick),
        ("<OTHER.NET!USER@EXAMPLE.ORG>", .trick),
        ("<other.net!user>", .trick),
        ("<example.org!other.net!user@example.org>", .trick),
        ("<user@other.net!example.org>", .trick),
        // '@', ':', '%', '!' inside a quoted local part, plain or as quoted-pairs.
        ("<\"user@other.net\"@example.org>", .trick),
        ("<\"USER@OTHER.NET\"@EXAMPLE.ORG>", .trick),
        ("<\"user@other.net\">", .trick),
        ("<\"user%other.net\"@example.org>", .trick),
        ("<\"other.net!user\"@example.org>", .trick),
        ("<\"@other.net:user\"@example.org>", .trick),
        ("<\"other:user\"@example.org>", .trick),
        ("<\"user\\@other.net\"@example.org>", .trick),
        ("<\"user\\%other.net\"@example.org>", .trick),
        ("<\"other.net\\!user\"@example.org>", .trick),
        ("<\"other\\:user\"@example.org>", .trick),
        ("<\"postmaster@other.net\">", .trick),
        // Quoted-pairs producing control characters; raw controls inside quotes.
        ("<\"user\\\u{0}x\"@example.org>", .trick),
        ("<\"user\\\tx\"@example.org>", .trick),
        ("<\"user\\\u{7f}x\"@example.org>", .trick),
        ("<\"user\\\rx\"@example.org>", .trick),
        ("<\"user\tx\"@example.org>", .trick),
        ("<\"user\u{0}\"@example.org>", .trick),
        // Trailing dots and empty labels.
        ("<user@example.org.>", .trick),
        ("<user@EXAMPLE.ORG.>", .trick),
        ("<user@example.org..>", .trick),
        ("<user@example..org>", .trick),
        ("<user@.example.org>", .trick),
        ("<user@.>", .trick),
        // More than one '@'; text glued after '>'.
        ("<user@other.net@example.org>", .trick),
        ("<user@example.org@other.net>", .trick),
        ("<\"user\"@other.net@example.org>", .trick),
        ("<user@[127.0.0.1]@other.net>", .trick),
        ("<user@[IPv6:::1]@other.net>", .trick),
        ("<Postmaster@example.org@other.net>", .trick),
        ("<user@other.net>@example.org", .trick),
        (" <user@other.net>@example.org", .trick),
        ("<user>@example.org", .trick),
        // Nested brackets.
        ("<<user@other.net>@example.org>", .trick),
        ("<<user@other.net>>", .trick),
        ("<user<user@other.net>@example.org>", .trick),
        // Empty local part, missing domain.
        ("<@example.org>", .trick),
        ("<\"\"@example.org>", .trick),
        ("<user>", .trick),
        ("<user@>", .trick),
        ("<\"user\">", .trick),
        ("<postmaster%other.net>", .trick),
        ("<Postmaster.>", .syntax),
        // Whitespace and controls inside the path.
        ("<user @example.org>", .trick),
        ("<user@ example.org>", .trick),
        ("<user@example.org >", .trick),
        ("< user@example.org>", .trick),
        ("<user\t@example.org>", .trick),
        ("<user\u{0}@example.org>", .trick),
        ("<user@other.net\u{0}.example.org>", .trick),
        ("<user\r\n@example.org>", .trick),
        ("<user@exa mple.org>", .trick),
        ("<user@example.org\u{7f}>", .trick),
        ("<user@example.org\u{0}>", .trick),
        // Backslash outside quotes (sendmail unescapes it), colons in the local part.
        ("<user\\@other.net@example.org>", .trick),
        ("<user@other.net\\@example.org>", .trick),
        ("<other.net:user@example.org>", .trick),
        ("<:user@example.org>", .trick),
        // Unbracketed address as a domain.
        ("<user@127.0.0.1>", .trick),
        ("<user@10.0.0.1>", .trick),
        ("<user@2130706433>", .trick),

        // Plain syntax errors.
        ("", .syntax),
        (" ", .syntax),
        ("<>", .syntax),                       // the null path is only a reverse path
        ("user@example.org", .syntax),
        ("  <user@example.org>", .syntax),
        ("\t<user@example.org>", .syntax),
        ("<user@example.org", .syntax),
        ("<\"user@example.org>", .syntax),
        ("<user@exa_mple.org>", .syntax),
        ("<user@-example.org>", .syntax),
        ("<user@example-.org>", .syntax),
        ("<user@example.org:25>", .syntax),
        ("<.user@example.org>", .syntax),
        ("<user.@example.org>", .syntax),
        ("<us..er@example.org>", .syntax),
        ("<us\"er\"@example.org>", .syntax),
        ("<\"us\"er@example.org>", .syntax),
        ("<\"a\".\"b\"@example.org>", .syntax),
        ("<user(comment)@example.org>", .syntax),
        ("<user,x@example.org>", .syntax),
        ("<user;x@example.org>", .syntax),
        ("<[user]@example.org>", .syntax),
        ("<user@[127.0.0.01]>", .syntax),
        ("<user@[127.1]>", .syntax),
        ("<user@[2130706433]>", .syntax),
        ("<user@[IPv6:1.2.3.4]>", .syntax),
        ("<user@[2001:db8::1]>", .syntax),      // IPv6 needs its tag
        ("<user@[IPv6:fe80::1%eth0]>", .syntax),
        ("<user@[IPv6:]>", .syntax),
        ("<user@[x-tag:stuff]>", .syntax),
        ("<user@[]>", .syntax),
        ("<user@[127.0.0.1>", .syntax),
        ("<user@[127.0.0.1].>", .syntax),
        ("<user@[127.0.0.1]x>", .syntax),
        ("<user@example.org>SIZE=10", .syntax),
        ("<user@example.org>  SIZE=10", .syntax),
        ("<user@example.org> SIZE=10 ", .syntax),
        ("<user@example.org> ", .syntax),
        ("<user@example.org> SIZE=10 size=20", .syntax),
        ("<user@example.org> =10", .syntax),
        ("<user@example.org> -X=1", .syntax),
        ("<user@example.org> X_Y=1", .syntax),
        ("<user@example.org> SIZE=", .syntax),
        ("<user@example.org> X=a=b", .syntax),
        ("<user@example.org> X=a\u{7f}", .syntax),
        ("<user@example.org> X=a\tb", .syntax),
        ("<user@example.org> <other@other.net>", .syntax),
        // Non-ASCII (no SMTPUTF8): accents and a Cyrillic 'а' homoglyph.
        ("<üser@example.org>", .syntax),
        ("<user@exämple.org>", .syntax),
        ("<user@ex\u{430}mple.org>", .syntax),
        ("<\"üser\"@example.org>", .syntax),
        ("<user@example.org> X=ä", .syntax),

        // Over the RFC 5321 §4.5.3.1 limits.
        ("<" + String(repeating: "a", count: 65) + "@example.org>", .tooLong),
        ("<\"" + String(repeating: "a", count: 63) + "\"@example.org>", .tooLong),
        ("<a@" + PathCases.domain(length: 253) + ">", .tooLong),
        ("<a@" + PathCases.domain(length: 256) + ">", .tooLong),
        ("<" + String(repeating: "a", count: 64) + "@" + PathCases.domain(length: 190) + ">", .tooLong),
    ]

    /// A valid domain name of exactly `length` octets: 63-octet labels, then a shorter last one.
    static func domain(length: Int) -> String {
        var labels: [String] = []
        var left = length
        while left > 64 { labels.append(String(repeating: "a", count: 63)); left -= 64 }
        labels.append(String(repeating: "b", count: left))
        return labels.joined(separator: ".")
    }
}

final class SMTPPathTests: XCTestCase {
    private func kind(_ e: PathError) -> PathCases.Kind {
        switch e {
        case .syntax: return .syntax
        case .routingTrick: return .trick
        case .tooLong: return .tooLong
        }
    }

    private func forward(_ s: String, file: StaticString = #filePath, line: UInt = #line) throws -> (ForwardPath, [MailParameter]) {
        switch SMTPPath.parseForward(s[...]) {
        case .success(let v): return v
        case .failure(let e): XCTFail("\(s.debugDescription): \(e)", file: file, line: line); throw e
        }
    }

    private func reverse(_ s: String, file: StaticString = #filePath, line: UInt = #line) throws -> (ReversePath, [MailParameter]) {
        switch SMTPPath.parseReverse(s[...]) {
        case .success(let v): return v
        case .failure(let e): XCTFail("\(s.debugDescription): \(e)", file: file, line: line); throw e
        }
    }

    func testBadForwardPathsAreRefusedWithTheRightClass() {
        XCTAssertGreaterThanOrEqual(PathCases.bad.filter { $0.1 == .trick }.count, 40)
        for (argument, expected) in PathCases.bad {
            switch SMTPPath.parseForward(argument[...]) {
            case .success(let v): XCTFail("accepted \(argument.debugDescription) as \(v.0)")
            case .failure(let e): XCTAssertEqual(kind(e), expected, "\(argument.debugDescription): \(e)")
            }
        }
    }

    func testBadPathsAreRefusedAsReversePathsToo() {
        for (argument, expected) in PathCases.bad where argument != "<>" {
            switch SMTPPath.parseReverse(argument[...]) {
            case .success(let v): XCTFail("accepted \(argument.debugDescription) as \(v.0)")
            case .failure(let e): XCTAssertEqual(kind(e), expected, "\(argument.debugDescription): \(e)")
            }
        }
        // A reverse path needs a domain: the bare postmaster form is for RCPT only.
        for argument in ["<Postmaster>", "<postmaster>"] {
            XCTAssertEqual(SMTPPath.parseReverse(argument[...]).failure, .routingTrick("missing domain"), argument)
        }
    }

    func testErrorTextsSayWhatWasWrong() {
        let cases: [(String, PathError)] = [
            ("<user%other.net@example.org>", .routingTrick("percent hack in local part")),
            ("<\"user%other.net\"@example.org>", .routingTrick("percent hack in local part")),
            ("<other.net!user@example.org>", .routingTrick("bang path in local part")),
            ("<@a.example,@b.example:user@other.net>", .routingTrick("source route in path")),
            ("<\"user@other.net\"@example.org>", .routingTrick("'@' inside quoted local part")),
            ("<\"user\\@other.net\"@example.org>", .routingTrick("quoted-pair '\\@' inside quoted local part")),
            ("<\"user\\\u{0}\"@example.org>", .routingTrick("quoted-pair produces a control character")),
            ("<user@example.org.>", .routingTrick("trailing dot in domain")),
            ("<user@example..org>", .routingTrick("empty label in domain")),
            ("<user@other.net@example.org>", .routingTrick("more than one '@' in path")),
            ("<user@other.net>@example.org", .routingTrick("text after '>'")),
            ("<@example.org>", .routingTrick("empty local part")),
            ("<user>", .routingTrick("missing domain")),
            ("<user @example.org>", .routingTrick("whitespace or control character in path")),
            ("<user@127.0.0.1>", .routingTrick("numeric top-level label (an address must be written [a.b.c.d])")),
            ("<user@example.org> SIZE=1 size=2", .syntax("duplicate parameter SIZE")),
            ("<>", .syntax("empty forward path")),
            ("<üser@example.org>", .syntax("non-ASCII octet (SMTPUTF8 is not supported)")),
        ]
        for (argument, error) in cases {
            XCTAssertEqual(SMTPPath.parseForward(argument[...]).failure, error, argument.debugDescription)
        }
        XCTAssertEqual(PathError.routingTrick("percent hack in local part").description, "refused: percent hack in local part")
        XCTAssertEqual(PathError.syntax("x").description, "syntax error: x")
        XCTAssertEqual(PathError.tooLong.description, "path too long")
    }

    func testGoodForwardPaths() throws {
        let v4 = IPAddress("192.0.2.1")!, v6 = IPAddress("2001:db8::1")!, mapped = IPAddress("::ffff:192.0.2.1")!
        // argument, local part, domain, canonical text
        let cases: [(String, String, MailDomain, String)] = [
            ("<user@example.org>", "user", .name("example.org"), "user@example.org"),
            (" <user@example.org>", "user", .name("example.org"), "user@example.org"),
            ("<User.Name+tag@Example.ORG>", "User.Name+tag", .name("example.org"), "User.Name+tag@example.org"),
            ("<#$&'*+-/=?^_`{|}~@example.org>", "#$&'*+-/=?^_`{|}~", .name("example.org"), "#$&'*+-/=?^_`{|}~@example.org"),
            ("<\"john smith\"@example.org>", "john smith", .name("example.org"), "\"john smith\"@example.org"),
            ("<\"john\\ smith\"@example.org>", "john smith", .name("example.org"), "\"john smith\"@example.org"),
            ("<\"john.smith\"@example.org>", "john.smith", .name("example.org"), "john.smith@example.org"),
            ("<\"a\\\"b\"@example.org>", "a\"b", .name("example.org"), "\"a\\\"b\"@example.org"),
            ("<\"a\\\\b\"@example.org>", "a\\b", .name("example.org"), "\"a\\\\b\"@example.org"),
            ("<\"a>b\"@example.org>", "a>b", .name("example.org"), "\"a>b\"@example.org"),
            ("<\"a<b\"@example.org>", "a<b", .name("example.org"), "\"a<b\"@example.org"),
            ("<\".lead\"@example.org>", ".lead", .name("example.org"), "\".lead\"@example.org"),
            ("<\"a..b\"@example.org>", "a..b", .name("example.org"), "\"a..b\"@example.org"),
            ("<\"\\a\"@example.org>", "a", .name("example.org"), "a@example.org"),
            ("<\" \"@example.org>", " ", .name("example.org"), "\" \"@example.org"),
            ("<user@localhost>", "user", .name("localhost"), "user@localhost"),
            ("<user@a1.b-c.example>", "user", .name("a1.b-c.example"), "user@a1.b-c.example"),
            ("<user@123.example>", "user", .name("123.example"), "user@123.example"),
            ("<user@3com.com>", "user", .name("3com.com"), "user@3com.com"),
            ("<user@xn--bcher-kva.example>", "user", .name("xn--bcher-kva.example"), "user@xn--bcher-kva.example"),
            ("<postmaster@example.org>", "postmaster", .name("example.org"), "postmaster@example.org"),
            ("<Postmaster@Example.Org>", "Postmaster", .name("example.org"), "Postmaster@example.org"),
            ("<user@[192.0.2.1]>", "user", .literal(v4), "user@[192.0.2.1]"),
            ("<user@[IPv6:2001:DB8::1]>", "user", .literal(v6), "user@[IPv6:2001:db8::1]"),
            ("<user@[ipv6:2001:db8:0:0:0:0:0:1]>", "user", .literal(v6), "user@[IPv6:2001:db8::1]"),
            ("<user@[IPv6:::ffff:192.0.2.1]>", "user", .literal(mapped), "user@[IPv6:::ffff:192.0.2.1]"),
        ]
        for (argument, local, domain, text) in cases {
            let (path, params) = try forward(argument)
            XCTAssertEqual(path, .mailbox(Mailbox(localPart: local, domain: domain)), argument)
            XCTAssertEqual(params, [], argument)
            guard case .mailbox(let box) = path else { continue }
            XCTAssertEqual(box.text, text, argument)
            // The canonical text parses back to the same mailbox, as the next hop will see it.
            XCTAssertEqual(try forward("<" + box.text + ">").0, path, "round trip of \(argument)")
            XCTAssertEqual(try reverse("<" + box.text + ">").0, .mailbox(box), "reverse \(argument)")
        }
    }

    func testPostmaster() throws {
        for argument in ["<Postmaster>", "<postmaster>", "<POSTMASTER>", " <PostMaster>", "<pOsTmAsTeR>"] {
            XCTAssertEqual(try forward(argument).0, .postmaster, argument)
        }
        XCTAssertEqual(try forward("<Postmaster> NOTIFY=NEVER").1, [MailParameter(keyword: "NOTIFY", value: "NEVER")])
        XCTAssertNotNil(SMTPPath.parseForward("<\"Postmaster\">").failure)
        XCTAssertNotNil(SMTPPath.parseForward("<Postmaster >").failure)
        XCTAssertNotNil(SMTPPath.parseForward("<postmasters>").failure)
    }

    func testReversePathsAndParameters() throws {
        let cases: [(String, ReversePath, [MailParameter])] = [
            ("<>", .null, []),
            (" <>", .null, []),
            ("<> SIZE=1000 BODY=8BITMIME", .null,
             [MailParameter(keyword: "SIZE", value: "1000"), MailParameter(keyword: "BODY", value: "8BITMIME")]),
            ("<sender@Example.org> size=1000 body=8bitmime", .mailbox(Mailbox(localPart: "sender", domain: .name("example.org"))),
             [MailParameter(keyword: "SIZE", value: "1000"), MailParameter(keyword: "BODY", value: "8bitmime")]),
            ("<a@b.example> SMTPUTF8", .mailbox(Mailbox(localPart: "a", domain: .name("b.example"))),
             [MailParameter(keyword: "SMTPUTF8", value: nil)]),
            ("<a@b.example> AUTH=<> RET=HDRS ENVID=QQ314159 X-Vendor-Opt=a+2B~}", .mailbox(Mailbox(localPart: "a", domain: .name("b.example"))),
             [MailParameter(keyword: "AUTH", value: "<>"), MailParameter(keyword: "RET", value: "HDRS"),
              MailParameter(keyword: "ENVID", value: "QQ314159"), MailParameter(keyword: "X-VENDOR-OPT", value: "a+2B~}")]),
        ]
        for (argument, path, params) in cases {
            let (p, ps) = try reverse(argument)
            XCTAssertEqual(p, path, argument)
            XCTAssertEqual(ps, params, argument)
        }
        let (f, fps) = try forward("<user@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user@example.org")
        XCTAssertEqual(f, .mailbox(Mailbox(localPart: "user", domain: .name("example.org"))))
        XCTAssertEqual(fps, [MailParameter(keyword: "NOTIFY", value: "SUCCESS,FAILURE"),
                             MailParameter(keyword: "ORCPT", value: "rfc822;user@example.org")])
    }

    func testLimits() throws {
        // Local part: 64 octets on the wire, quotes included.
        XCTAssertNoThrow(try forward("<" + String(repeating: "a", count: 64) + "@example.org>"))
        XCTAssertNoThrow(try forward("<\"" + String(repeating: "a", count: 62) + "\"@example.org>"))
        XCTAssertEqual(SMTPPath.parseForward(("<" + String(repeating: "a", count: 65) + "@example.org>")[...]).failure, .tooLong)
        // Labels: 63 octets.
        XCTAssertNoThrow(try forward("<a@" + String(repeating: "b", count: 63) + ".example>"))
        XCTAssertEqual(SMTPPath.parseForward(("<a@" + String(repeating: "b", count: 64) + ".example>")[...]).failure,
                       .syntax("domain label longer than 63 octets"))
        // Path: 256 octets with the brackets, so `<a@` + 252 + `>` is the longest.
        XCTAssertEqual(PathCases.domain(length: 252).utf8.count, 252)
        let longest = "<a@" + PathCases.domain(length: 252) + ">"
        XCTAssertEqual(longest.utf8.count, 256)
        XCTAssertNoThrow(try forward(longest))
        XCTAssertNoThrow(try reverse(longest + " SIZE=1"))
        XCTAssertEqual(SMTPPath.parseForward(("<a@" + PathCases.domain(length: 253) + ">")[...]).failure, .tooLong)
        // Parameters do not count towards the path.
        XCTAssertNoThrow(try forward("<a@b.example> X=" + String(repeating: "v", count: 300)))
    }

    func testRefusedVariantsByCase() {
        // Case must not matter to any refusal: every letter case of each trick is refused.
        for (argument, _) in PathCases.bad {
            for variant in [argument.uppercased(), argument.lowercased()] {
                XCTAssertNotNil(SMTPPath.parseForward(variant[...]).failure, variant.debugDescription)
            }
        }
    }
}

extension Result {
    var failure: Failure? { if case .failure(let e) = self { return e } else { return nil } }
}
