// Strict base64 (RFC 4648 §4) as SASL exchanges need it (RFC 4954 §4).
import XCTest
@testable import SMTPCore

final class Base64Tests: XCTestCase {
    /// RFC 4648 §10.
    static let vectors: [(String, String)] = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ]

    func testRFC4648Vectors() {
        for (plain, encoded) in Self.vectors {
            XCTAssertEqual(Base64.encode(Array(plain.utf8)), encoded, plain)
            XCTAssertEqual(Base64.decode(encoded), Array(plain.utf8), encoded)
        }
    }

    func testSASLExamples() {
        // RFC 4616 §4 PLAIN message "\0tim\0tanstaaftanstaaf".
        let plain = Array("\u{0}tim\u{0}tanstaaftanstaaf".utf8)
        XCTAssertEqual(Base64.encode(plain), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm")
        XCTAssertEqual(Base64.decode("AHRpbQB0YW5zdGFhZnRhbnN0YWFm"), plain)
        // Every alphabet character, including '+' and '/'.
        XCTAssertEqual(Base64.encode([0xfb, 0xff, 0xbf]), "+/+/")
        XCTAssertEqual(Base64.decode("+/+/"), [0xfb, 0xff, 0xbf])
        XCTAssertEqual(Base64.encode([0, 0, 0]), "AAAA")
        XCTAssertEqual(Base64.decode("AAAA"), [0, 0, 0])
        XCTAssertEqual(Base64.encode([0xff]), "/w==")
        XCTAssertEqual(Base64.decode("/w=="), [0xff])
    }

    func testRoundTripsRandomBytes() {
        var rng = SplitMix64(seed: 0x5eed_ba5e_64)
        for length in 0...64 {
            for _ in 0..<20 {
                let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let text = Base64.encode(bytes)
                XCTAssertEqual(text.utf8.count, (length + 2) / 3 * 4, "length \(length)")
                XCTAssertEqual(Base64.decode(text), bytes, "length \(length): \(text)")
                XCTAssertEqual(Base64.decode(Substring(text)), bytes)
            }
        }
    }

    func testEveryByteValueRoundTrips() {
        let all = (0...255).map { UInt8($0) }
        XCTAssertEqual(Base64.decode(Base64.encode(all)), all)
    }

    func testRejects() {
        let bad: [(String, String)] = [
            ("Zg", "missing padding"),
            ("Zg=", "bad length"),
            ("Zm9vY", "bad length"),
            ("Zm9vYg", "missing padding"),
            ("Z", "bad length"),
            ("Zm9v!A==", "stray character"),
            ("Zm9v-_==", "URL-safe alphabet (RFC 4648 §5) is not base64"),
            ("Zm\u{0}v", "NUL"),
            ("Zm\u{E9}", "8-bit character (two octets in UTF-8)"),
            ("Zg==Zm8=", "padding in the middle"),
            ("Z=9v", "'=' in the middle of a quantum"),
            ("Zm=v", "'=' followed by data"),
            ("=Zm9", "'=' first"),
            ("Z===", "three pads"),
            ("====", "only padding"),
            ("QR==", "non-zero trailing bits (one byte)"),
            ("Zh==", "non-zero trailing bits (one byte)"),
            ("Zm9=", "non-zero trailing bits (two bytes)"),
            // Whitespace, in inputs of a valid length so that only the whitespace is wrong.
            ("Zm 9", "space"),
            (" Zm9", "leading space"),
            ("Zm9 ", "trailing space"),
            ("Zm\r\n", "CRLF"),
            ("Zm\t9", "tab"),
            ("Zm9\nYmFy", "line break"),
        ]
        for (text, why) in bad {
            XCTAssertNil(Base64.decode(text), "\(text.debugDescription): \(why)")
        }
    }

    /// The canonical encodings of the trailing-bits cases decode, so the rejects above fail for
    /// the bits and not for some other reason.
    func testCanonicalNeighboursOfRejectsDecode() {
        XCTAssertEqual(Base64.decode("QQ=="), [0x41])
        XCTAssertEqual(Base64.decode("Zg=="), Array("f".utf8))
        XCTAssertEqual(Base64.decode("Zm8="), Array("fo".utf8))
        // And no non-canonical variant of a one-byte quantum is accepted.
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var accepted = 0
        for second in alphabet {
            if Base64.decode("Q\(second)==") != nil { accepted += 1 }
        }
        XCTAssertEqual(accepted, 4, "exactly the 4 symbols with zero low bits (A, Q, g, w)")
    }
}

/// A small deterministic generator so that failures can be reproduced.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49fb_133b_eb
        return z ^ (z >> 31)
    }
}
