// StaticSASLServer, the test double the SMTP and POP3 state machine tests use.
import XCTest
@testable import SASLAuth

final class StaticSASLServerTests: XCTestCase {
    private let users = ["alice@example.org": "secret", "bob": "hunter2"]
    private let u = { (s: String) in Array(s.utf8) }

    private func session(realm: String? = nil, mechanisms: [String] = ["PLAIN", "LOGIN"],
                         unavailable: String? = nil) throws -> SASLSession {
        try StaticSASLServer(users: users, realm: realm, mechanisms: mechanisms, unavailable: unavailable)
            .makeSession(info())
    }

    func testMechanisms() {
        XCTAssertEqual(StaticSASLServer(users: users).mechanisms(secure: false), ["PLAIN", "LOGIN"])
        XCTAssertEqual(StaticSASLServer(users: users).mechanisms(secure: true), ["PLAIN", "LOGIN"])
        // Only what it implements, upper case, in the given order.
        XCTAssertEqual(StaticSASLServer(users: users, mechanisms: ["login", "CRAM-MD5", "plain"]).mechanisms(secure: false),
                       ["LOGIN", "PLAIN"])
    }

    func testPlain() throws {
        XCTAssertEqual(try session().start(mechanism: "PLAIN", initialResponse: plainMessage("alice@example.org", "secret")),
                       .success(identity: "alice@example.org"))
        let s = try session()
        XCTAssertEqual(s.start(mechanism: "plain", initialResponse: nil), .challenge([]))
        XCTAssertEqual(s.step(plainMessage("bob", "hunter2")), .success(identity: "bob"))
        XCTAssertEqual(try session().start(mechanism: "PLAIN", initialResponse: plainMessage(authzid: "bob", "bob", "hunter2")),
                       .success(identity: "bob"))
    }

    func testPlainFailures() throws {
        let cases: [([UInt8], SASLOutcome)] = [
            (plainMessage("alice@example.org", "wrong"), .failure(.badCredentials)),
            (plainMessage("mallory", "secret"), .failure(.badCredentials)),
            (plainMessage("alice@example.org", ""), .failure(.badCredentials)),
            (plainMessage(authzid: "bob", "alice@example.org", "secret"), .failure(.badCredentials)),
            ([0, 0xc3, 0x28, 0] + u("secret"), .failure(.badCredentials)),  // authcid not UTF-8
            (u("alice@example.org secret"), .failure(.malformed)),
            (u("alice@example.org") + [0] + u("secret"), .failure(.malformed)),
            (plainMessage("alice@example.org", "secret") + [0], .failure(.malformed)),
            (plainMessage("", "secret"), .failure(.malformed)),
            (plainMessage("  ", "secret"), .failure(.malformed)),
            ([], .failure(.malformed)),
        ]
        for (message, expected) in cases {
            XCTAssertEqual(try session().start(mechanism: "PLAIN", initialResponse: message), expected, "\(message)")
        }
    }

    func testRealmIsAppendedToBareNames() throws {
        XCTAssertEqual(try session(realm: "example.org").start(mechanism: "PLAIN", initialResponse: plainMessage(" alice", "secret")),
                       .success(identity: "alice@example.org"))
        XCTAssertEqual(try session(realm: "example.org").start(
            mechanism: "PLAIN", initialResponse: plainMessage(authzid: "alice@example.org", "alice", "secret")),
            .success(identity: "alice@example.org"))
        // "bob" becomes bob@example.org, which the table does not have.
        XCTAssertEqual(try session(realm: "example.org").start(mechanism: "PLAIN", initialResponse: plainMessage("bob", "hunter2")),
                       .failure(.badCredentials))
        XCTAssertEqual(try session().start(mechanism: "PLAIN", initialResponse: plainMessage("alice", "secret")),
                       .failure(.badCredentials))
    }

    func testLogin() throws {
        let s = try session()
        XCTAssertEqual(s.start(mechanism: "LOGIN", initialResponse: nil), .challenge(u("Username:")))
        XCTAssertEqual(s.step(u("alice@example.org")), .challenge(u("Password:")))
        XCTAssertEqual(s.step(u("secret")), .success(identity: "alice@example.org"))

        let withName = try session()
        XCTAssertEqual(withName.start(mechanism: "LOGIN", initialResponse: u("bob")), .challenge(u("Password:")))
        XCTAssertEqual(withName.step(u("wrong")), .failure(.badCredentials))

        let empty = try session()
        XCTAssertEqual(empty.start(mechanism: "LOGIN", initialResponse: []), .challenge(u("Username:")))
        XCTAssertEqual(empty.step([]), .challenge(u("Password:")))
        XCTAssertEqual(empty.step(u("secret")), .failure(.malformed))
    }

    func testUnknownMechanism() throws {
        XCTAssertEqual(try session().start(mechanism: "CRAM-MD5", initialResponse: nil), .failure(.unknownMechanism))
        XCTAssertEqual(try session(mechanisms: ["PLAIN"]).start(mechanism: "LOGIN", initialResponse: nil),
                       .failure(.unknownMechanism))
    }

    func testStepOutsideExchangeRetryAndCancel() throws {
        let s = try session()
        XCTAssertEqual(s.step(u("x")), .failure(.malformed))
        XCTAssertEqual(s.start(mechanism: "PLAIN", initialResponse: plainMessage("bob", "wrong")), .failure(.badCredentials))
        XCTAssertEqual(s.step(plainMessage("bob", "hunter2")), .failure(.malformed))
        XCTAssertEqual(s.start(mechanism: "LOGIN", initialResponse: nil), .challenge(u("Username:")))
        XCTAssertEqual(s.cancel(), .failure(.cancelled))
        XCTAssertEqual(s.step(u("bob")), .failure(.malformed))
        XCTAssertEqual(s.start(mechanism: "PLAIN", initialResponse: plainMessage("bob", "hunter2")), .success(identity: "bob"))
        XCTAssertEqual(s.step([]), .failure(.malformed))
    }

    func testUnavailableBackendIsTemporary() throws {
        let down = StaticSASLServer(users: users, unavailable: "saslauthd down")
        XCTAssertEqual(try down.makeSession(info()).start(mechanism: "PLAIN", initialResponse: plainMessage("bob", "hunter2")),
                       .failure(.temporary("saslauthd down")))
        let login = try down.makeSession(info())
        XCTAssertEqual(login.start(mechanism: "LOGIN", initialResponse: u("bob")), .challenge(u("Password:")))
        XCTAssertEqual(login.step(u("hunter2")), .failure(.temporary("saslauthd down")))
        XCTAssertEqual(down.checkPassword(user: "bob", password: "hunter2", info: info()), .failure(.temporary("saslauthd down")))
        // A message that cannot be parsed is still the client's fault.
        XCTAssertEqual(try down.makeSession(info()).start(mechanism: "PLAIN", initialResponse: u("junk")), .failure(.malformed))
    }

    func testCheckPassword() {
        let s = StaticSASLServer(users: users, realm: "example.org")
        XCTAssertEqual(s.checkPassword(user: "alice", password: "secret", info: info()), .success(identity: "alice@example.org"))
        XCTAssertEqual(s.checkPassword(user: "alice@example.org", password: "secret", info: info()),
                       .success(identity: "alice@example.org"))
        XCTAssertEqual(s.checkPassword(user: "alice", password: "Secret", info: info()), .failure(.badCredentials))
        XCTAssertEqual(s.checkPassword(user: "carol", password: "secret", info: info()), .failure(.badCredentials))
        XCTAssertEqual(s.checkPassword(user: "", password: "secret", info: info()), .failure(.malformed))
        XCTAssertEqual(s.checkPassword(user: " ", password: "secret", info: info()), .failure(.malformed))
        XCTAssertEqual(s.checkPassword(user: "alice", password: "sec\u{0}ret", info: info()), .failure(.malformed))
    }

    func testSameInputsSameOutcomes() throws {
        // Deterministic: no random challenges, no clock; two runs of a transcript agree exactly.
        func run() throws -> [SASLOutcome] {
            let s = try session(realm: "example.org")
            return [s.start(mechanism: "LOGIN", initialResponse: nil), s.step(u("alice")), s.step(u("secret")),
                    s.start(mechanism: "PLAIN", initialResponse: nil), s.step(plainMessage("alice", "nope"))]
        }
        XCTAssertEqual(try run(), try run())
    }

    func testSessionMovesBetweenThreads() throws {
        let s = try session()
        XCTAssertEqual(onNewThread { s.start(mechanism: "LOGIN", initialResponse: nil) }.result, .challenge(Array("Username:".utf8)))
        XCTAssertEqual(onNewThread { s.step(Array("bob".utf8)) }.result, .challenge(Array("Password:".utf8)))
        XCTAssertEqual(onNewThread { s.step(Array("hunter2".utf8)) }.result, .success(identity: "bob"))
    }
}
