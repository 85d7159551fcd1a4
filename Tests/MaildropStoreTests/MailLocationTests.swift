// pop3d_mail_location: template parsing and per-user resolution, hostile user names above all.
import XCTest
@testable import MaildropStore

final class MailLocationTests: XCTestCase {
    func resolve(_ template: String, _ user: String, home: String? = "/home/bob") throws -> MailLocation {
        try MailLocationTemplate(template).resolve(user: user, home: home)
    }

    func testResolvesVariables() throws {
        XCTAssertEqual(try resolve("maildir:~/Maildir", "bob"), .maildir("/home/bob/Maildir"))
        XCTAssertEqual(try resolve("maildir:~", "bob"), .maildir("/home/bob"))
        XCTAssertEqual(try resolve("maildir:%h/Maildir", "bob", home: "/home/bob/"), .maildir("/home/bob/Maildir"))
        XCTAssertEqual(try resolve("mbox:/var/mail/%u", "bob", home: nil), .mbox("/var/mail/bob"))
        XCTAssertEqual(try resolve("mbox:/var/mail/%n", "bob@example.org", home: nil), .mbox("/var/mail/bob"))
        XCTAssertEqual(try resolve("maildir:/var/vmail/%d/%n/Maildir/", "Bob@Example.ORG", home: nil),
                       .maildir("/var/vmail/example.org/Bob/Maildir"))
        // %u: the domain is lower-cased there too, the local part is kept.
        XCTAssertEqual(try resolve("mbox:/var/mail/%u", "Bob@Example.ORG", home: nil), .mbox("/var/mail/Bob@example.org"))
        // The last "@" splits.
        XCTAssertEqual(try resolve("maildir:/v/%d/%n", "a@b@Example.org", home: nil), .maildir("/v/example.org/a@b"))
        XCTAssertEqual(try resolve("mbox:/var/mail/%%%n.100%%", "bob", home: nil), .mbox("/var/mail/%bob.100%"))
        // Substitution is one pass: a "%" in the user name is just a character.
        XCTAssertEqual(try resolve("mbox:/var/mail/%u", "%h%u", home: nil), .mbox("/var/mail/%h%u"))
        // Non-ASCII names are fine; exactly 255 octets is fine.
        XCTAssertEqual(try resolve("mbox:/var/mail/%u", "jürgen", home: nil), .mbox("/var/mail/jürgen"))
        let long = String(repeating: "a", count: 255)
        XCTAssertEqual(try resolve("mbox:/var/mail/%u", long, home: nil), .mbox("/var/mail/" + long))
        // A home of "/" gives "/Maildir", not "//Maildir".
        XCTAssertEqual(try resolve("maildir:~/Maildir", "root", home: "/"), .maildir("/Maildir"))
    }

    func testUsesHome() throws {
        XCTAssertTrue(try MailLocationTemplate("maildir:~/Maildir").usesHome)
        XCTAssertTrue(try MailLocationTemplate("mbox:%h/mbox").usesHome)
        XCTAssertFalse(try MailLocationTemplate("mbox:/var/mail/%u").usesHome)
        XCTAssertFalse(try MailLocationTemplate("mbox:/var/mail/~%u").usesHome)   // "~" only at the start
        XCTAssertEqual(try MailLocationTemplate("mbox:/var/mail/%u").text, "mbox:/var/mail/%u")
    }

    func testBadTemplates() {
        let bad = [
            "", "/var/mail/%u", "Maildir:~/Maildir", "imap:/x", "maildir:", "mbox:",
            "maildir:Maildir", "maildir:relative/%u", "maildir:%u/Maildir", "mbox:%d/%n",
            "maildir:/x/%z", "maildir:/x/%U", "maildir:/x/%", "mbox:/var/mail/%Lu",
            "maildir:~bob/Maildir", "maildir:/var/../etc/%u", "maildir:/var/./%u", "maildir:~/../%u",
            "mbox:/var/mail/", "mbox:~/", "maildir:~/Maildir:LAYOUT=fs", "maildir:/x\n/%u", "mbox:/var/mail/\u{0}%u",
        ]
        for t in bad {
            XCTAssertThrowsError(try MailLocationTemplate(t), "template \(t.debugDescription)") { error in
                guard case .badTemplate = error as? MaildropError else {
                    return XCTFail("\(t.debugDescription): \(error)")
                }
            }
        }
    }

    /// The security table: user names that try to leave the maildrop directory, or that would
    /// give a name nobody should get, are refused for every template using the part they spoil.
    func testHostileUserNames() throws {
        let templates = ["mbox:/var/mail/%u", "maildir:/var/vmail/%d/%n/Maildir", "mbox:/var/mail/%n", "maildir:/srv/%u/x"]
        // (user, templates it must be refused with, by index; nil = all)
        let hostile: [(String, [Int]?)] = [
            ("", nil),
            (".", nil), ("..", nil), ("...", nil), (".ssh", nil), (".hidden@example.org", nil),
            ("../etc/passwd", nil), ("../../root", nil), ("a/b", nil), ("/etc/passwd", nil), ("a/../../etc", nil),
            ("bob/", nil), ("/", nil), ("bob\u{0}", nil), ("bob\u{0}/../x", nil),
            ("bob\n", nil), ("bob\r\nX-Header: 1", nil), ("bob\t", nil), ("\u{1B}[31mbob", nil), ("bob\u{7F}", nil),
            ("bob\u{85}", nil), ("bob\u{9B}", nil),
            (String(repeating: "x", count: 256), nil),
            (String(repeating: "é", count: 128), nil),      // 256 octets
            ("bob@..", [1]), ("bob@.", [1]), ("bob@.example.org", [1]), ("bob@", [1]), ("bob@a/b", [0, 1, 3]),
            ("bob@../../etc", [0, 1, 3]), ("bob@exa\u{0}mple", [0, 1, 3]),
            ("@example.org", [1, 2]), ("..@example.org", nil), ("./@example.org", nil), ("a/b@example.org", nil),
            ("bob@" + String(repeating: "d", count: 256), [0, 1, 3]),
            (String(repeating: "n", count: 250) + "@example.org", [0, 3]),    // %u too long, %n fine
            ("bob", [1]),                                                      // no domain for %d
        ]
        for (user, refusedBy) in hostile {
            for (i, t) in templates.enumerated() {
                let template = try MailLocationTemplate(t)
                let mustRefuse = refusedBy.map { $0.contains(i) } ?? true
                do {
                    let loc = try template.resolve(user: user, home: "/home/x")
                    XCTAssertFalse(mustRefuse, "\(user.debugDescription) with \(t) gave \(loc)")
                    assertContained(loc, t)
                } catch {
                    if case .invalidUser(let why) = error {
                        XCTAssertTrue(mustRefuse, "\(user.debugDescription) with \(t) refused: \(why)")
                        // The log text never carries the raw control characters.
                        XCTAssertFalse(why.unicodeScalars.contains { $0.value < 0x20 }, why.debugDescription)
                    } else {
                        XCTFail("\(user.debugDescription): \(error)")
                    }
                }
            }
        }
    }

    /// Every accepted name resolves to a path with no "." or ".." component, one level per part.
    func assertContained(_ loc: MailLocation, _ template: String, file: StaticString = #filePath, line: UInt = #line) {
        let path: String
        switch loc { case .maildir(let p), .mbox(let p): path = p }
        XCTAssertTrue(path.hasPrefix("/"), file: file, line: line)
        let comps = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        for c in comps {
            XCTAssertFalse(c.isEmpty || c == "." || c == "..", "\(path) from \(template)", file: file, line: line)
        }
        // Still under the directory the template names before its first variable.
        let body = template.drop { $0 != ":" }.dropFirst()
        let fixed = body.prefix { $0 != "%" }
        let dir = fixed[..<(fixed.lastIndex(of: "/") ?? fixed.startIndex)]
        XCTAssertTrue(path.hasPrefix(dir + "/"), "\(path) from \(template)", file: file, line: line)
    }

    func testHomeChecks() throws {
        let t = try MailLocationTemplate("maildir:~/Maildir")
        for home: String? in [nil, "", "home/bob", "/home/../etc", "/home/./bob", "/home/bob\n"] {
            XCTAssertThrowsError(try t.resolve(user: "bob", home: home), "home \(String(describing: home))") { e in
                guard case .invalidUser = e as? MaildropError else { return XCTFail("\(e)") }
            }
        }
        // The home is not needed when the template does not use it.
        XCTAssertEqual(try MailLocationTemplate("mbox:/var/mail/%u").resolve(user: "bob", home: nil), .mbox("/var/mail/bob"))
    }

    func testErrorDescriptions() {
        XCTAssertTrue(MaildropError.inUse.description.contains("in use"))
        XCTAssertTrue(MaildropError.io("/x: boom").description == "/x: boom")
        XCTAssertTrue(MaildropError.badTemplate("t").description.contains("template"))
    }
}
