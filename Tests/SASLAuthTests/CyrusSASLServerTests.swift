// CyrusSASLServer against real sasldb files made by saslpasswd2.
import Foundation
import XCTest
import CSASL
@testable import SASLAuth

final class CyrusSASLServerTests: XCTestCase {
    override class func tearDown() {
        if case .success(let fixture) = sasldbFixture {
            try? FileManager.default.removeItem(atPath: fixture.directory)
        }
        super.tearDown()
    }

    private func server(secondary: Bool = false, realm: String? = nil,
                        mechanisms: [String] = ["PLAIN", "LOGIN", "CRAM-MD5"]) throws -> CyrusSASLServer {
        let fixture = try sasldbFixture.get()
        return try CyrusSASLServer(config: CyrusSASLConfig(
            sasldbPath: secondary ? fixture.secondary : fixture.primary, mechanisms: mechanisms, realm: realm))
    }

    /// Runs a whole exchange: start, then one step per response while challenges come back.
    /// Returns every outcome, so tests see the challenges too.
    private func exchange(_ session: SASLSession, _ mechanism: String, _ initial: [UInt8]?,
                          _ responses: [[UInt8]]) -> [SASLOutcome] {
        var outcomes = [session.start(mechanism: mechanism, initialResponse: initial)]
        for response in responses {
            guard case .challenge = outcomes.last! else { break }
            outcomes.append(session.step(response))
        }
        return outcomes
    }

    // MARK: Mechanisms

    func testMechanismsAreTheConfiguredOnesTheLibraryHas() throws {
        let s = try server()
        XCTAssertEqual(s.mechanisms(secure: false), ["PLAIN", "LOGIN", "CRAM-MD5"])
        XCTAssertEqual(s.mechanisms(secure: true), ["PLAIN", "LOGIN", "CRAM-MD5"])
        // Configured order and case do not matter; the answer is upper case in configured order.
        XCTAssertEqual(try server(mechanisms: ["cram-md5", "plain", "PLAIN"]).mechanisms(secure: false),
                       ["CRAM-MD5", "PLAIN"])
        // A mechanism with no plugin is left out...
        XCTAssertEqual(try server(mechanisms: ["PLAIN", "X-NO-SUCH-MECH"]).mechanisms(secure: false), ["PLAIN"])
        // ...and a configuration with none left is refused at startup.
        XCTAssertThrowsError(try server(mechanisms: ["X-NO-SUCH-MECH"])) { error in
            XCTAssertEqual((error as? SASLError)?.code, .configuration, "\(error)")
        }
        XCTAssertThrowsError(try server(mechanisms: [])) { error in
            XCTAssertEqual((error as? SASLError)?.code, .configuration, "\(error)")
        }
    }

    // MARK: PLAIN (RFC 4616)

    func testPlainWithInitialResponse() throws {
        let session = try server().makeSession(info())
        XCTAssertEqual(session.start(mechanism: "PLAIN", initialResponse: plainMessage("alice@example.org", "secret")),
                       .success(identity: "alice@example.org"))
    }

    func testPlainWithoutInitialResponseGetsEmptyChallenge() throws {
        let session = try server().makeSession(info())
        XCTAssertEqual(exchange(session, "plain", nil, [plainMessage("alice@example.org", "secret")]),
                       [.challenge([]), .success(identity: "alice@example.org")])
    }

    func testPlainAuthzid() throws {
        let s = try server()
        XCTAssertEqual(try s.makeSession(info()).start(
            mechanism: "PLAIN", initialResponse: plainMessage(authzid: "alice@example.org", "alice@example.org", "secret")),
            .success(identity: "alice@example.org"))
        // Acting as someone else is an authorization failure, reported like any bad credential.
        XCTAssertEqual(try s.makeSession(info()).start(
            mechanism: "PLAIN", initialResponse: plainMessage(authzid: "carol@example.org", "alice@example.org", "secret")),
            .failure(.badCredentials))
    }

    func testWrongPasswordAndUnknownUserAreBothBadCredentials() throws {
        let s = try server()
        for message in [plainMessage("alice@example.org", "wrong"), plainMessage("mallory@example.org", "secret"),
                        plainMessage("alice@example.com", "secret")] {
            XCTAssertEqual(try s.makeSession(info()).start(mechanism: "PLAIN", initialResponse: message),
                           .failure(.badCredentials))
        }
        XCTAssertEqual(exchange(try s.makeSession(info()), "LOGIN", nil, [Array("alice@example.org".utf8), Array("wrong".utf8)]).last,
                       .failure(.badCredentials))
        XCTAssertEqual(exchange(try s.makeSession(info()), "LOGIN", nil, [Array("nobody@example.org".utf8), Array("x".utf8)]).last,
                       .failure(.badCredentials))
    }

    func testMalformedPlain() throws {
        let s = try server()
        for message: [UInt8] in [Array("alice@example.orgsecret".utf8), Array("alice@example.org\u{0}secret".utf8),
                                 plainMessage("alice@example.org", "secret") + [0, 0x41], []] {
            XCTAssertEqual(try s.makeSession(info()).start(mechanism: "PLAIN", initialResponse: message),
                           .failure(.malformed), "\(message)")
        }
        // Same after the empty challenge.
        XCTAssertEqual(exchange(try s.makeSession(info()), "PLAIN", nil, [Array("no nuls".utf8)]),
                       [.challenge([]), .failure(.malformed)])
    }

    func testNonASCIIPassword() throws {
        XCTAssertEqual(try server().makeSession(info()).start(
            mechanism: "PLAIN", initialResponse: plainMessage("carol@example.org", "pässwörd")),
            .success(identity: "carol@example.org"))
    }

    // MARK: Identities and realms

    func testIdentityForms() throws {
        let noRealm = try server()
        let withRealm = try server(realm: "example.org")
        func plain(_ s: CyrusSASLServer, _ user: String, _ password: String) throws -> SASLOutcome {
            try s.makeSession(info()).start(mechanism: "PLAIN", initialResponse: plainMessage(user, password))
        }
        // Qualified names are taken as they are.
        XCTAssertEqual(try plain(noRealm, "alice@example.org", "secret"), .success(identity: "alice@example.org"))
        XCTAssertEqual(try plain(withRealm, "alice@example.org", "secret"), .success(identity: "alice@example.org"))
        // A configured realm is appended to bare names.
        XCTAssertEqual(try plain(withRealm, "alice", "secret"), .success(identity: "alice@example.org"))
        XCTAssertEqual(try plain(withRealm, "  alice ", "secret"), .success(identity: "alice@example.org"))
        // Without one, a bare name is looked up in the serverFQDN's realm and comes back bare.
        XCTAssertEqual(try plain(noRealm, "alice", "secret"), .failure(.badCredentials))
        XCTAssertEqual(try plain(noRealm, "bob", "hunter2"), .success(identity: "bob"))
        XCTAssertEqual(try plain(noRealm, "bob@mail.example.net", "hunter2"), .success(identity: "bob@mail.example.net"))
        XCTAssertEqual(try plain(withRealm, "bob", "hunter2"), .failure(.badCredentials))
    }

    // MARK: LOGIN

    func testLoginTwoChallenges() throws {
        let session = try server().makeSession(info())
        XCTAssertEqual(exchange(session, "LOGIN", nil, [Array("alice@example.org".utf8), Array("secret".utf8)]),
                       [.challenge(Array("Username:".utf8)), .challenge(Array("Password:".utf8)),
                        .success(identity: "alice@example.org")])
    }

    func testLoginWithUserNameAsInitialResponse() throws {
        let session = try server(realm: "example.org").makeSession(info())
        XCTAssertEqual(exchange(session, "LOGIN", Array("alice".utf8), [Array("secret".utf8)]),
                       [.challenge(Array("Password:".utf8)), .success(identity: "alice@example.org")])
        // The empty initial response ("=") is no user name: Cyrus asks for one.
        XCTAssertEqual(try server().makeSession(info()).start(mechanism: "LOGIN", initialResponse: []),
                       .challenge(Array("Username:".utf8)))
    }

    // MARK: CRAM-MD5 (RFC 2195)

    func testCramMD5() throws {
        let session = try server().makeSession(info())
        guard case .challenge(let challenge) = session.start(mechanism: "CRAM-MD5", initialResponse: nil) else {
            return XCTFail("no challenge")
        }
        // RFC 2195 §2: a msg-id, "<digits.digits@host>".
        let text = String(decoding: challenge, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("<") && text.hasSuffix(">") && text.contains("@"), text)
        XCTAssertEqual(session.step(cramMD5Response(user: "alice@example.org", secret: "secret", challenge: challenge)),
                       .success(identity: "alice@example.org"))
    }

    func testCramMD5BareNameWithRealmAndWrongSecret() throws {
        let s = try server(realm: "example.org")
        let good = try s.makeSession(info())
        guard case .challenge(let c1) = good.start(mechanism: "cram-md5", initialResponse: nil) else {
            return XCTFail("no challenge")
        }
        XCTAssertEqual(good.step(cramMD5Response(user: "alice", secret: "secret", challenge: c1)),
                       .success(identity: "alice@example.org"))

        let bad = try s.makeSession(info())
        guard case .challenge(let c2) = bad.start(mechanism: "CRAM-MD5", initialResponse: nil) else {
            return XCTFail("no challenge")
        }
        XCTAssertNotEqual(c1, c2, "challenges must not repeat")
        XCTAssertEqual(bad.step(cramMD5Response(user: "alice", secret: "wrong", challenge: c2)), .failure(.badCredentials))

        let unknown = try s.makeSession(info())
        guard case .challenge(let c3) = unknown.start(mechanism: "CRAM-MD5", initialResponse: nil) else {
            return XCTFail("no challenge")
        }
        XCTAssertEqual(unknown.step(cramMD5Response(user: "mallory", secret: "secret", challenge: c3)),
                       .failure(.badCredentials))
    }

    func testCramMD5RefusesInitialResponse() throws {
        // CRAM-MD5 is server-first: a client response before the challenge is a protocol error.
        XCTAssertEqual(try server().makeSession(info()).start(mechanism: "CRAM-MD5", initialResponse: Array("x".utf8)),
                       .failure(.malformed))
    }

    // MARK: Mechanism and session state

    func testUnknownMechanism() throws {
        let s = try server(mechanisms: ["PLAIN", "LOGIN"])
        for mech in ["CRAM-MD5", "DIGEST-MD5", "ANONYMOUS", "X-FOO", ""] {
            XCTAssertEqual(try s.makeSession(info()).start(mechanism: mech, initialResponse: nil),
                           .failure(.unknownMechanism), mech)
        }
    }

    func testStepOutsideAnExchangeIsRefusedNotCrashed() throws {
        let s = try server()
        let session = try s.makeSession(info())
        XCTAssertEqual(session.step(Array("x".utf8)), .failure(.malformed))
        // After a failure libsasl2 has disposed the mechanism: another step must not reach it.
        XCTAssertEqual(session.start(mechanism: "PLAIN", initialResponse: plainMessage("alice@example.org", "wrong")),
                       .failure(.badCredentials))
        XCTAssertEqual(session.step(plainMessage("alice@example.org", "secret")), .failure(.malformed))
        // And after a success.
        XCTAssertEqual(session.start(mechanism: "PLAIN", initialResponse: plainMessage("alice@example.org", "secret")),
                       .success(identity: "alice@example.org"))
        XCTAssertEqual(session.step([]), .failure(.malformed))
    }

    func testRetryOnTheSameSession() throws {
        let session = try server().makeSession(info())
        XCTAssertEqual(exchange(session, "LOGIN", nil, [Array("alice@example.org".utf8), Array("wrong".utf8)]).last,
                       .failure(.badCredentials))
        // A CRAM-MD5 answer without "user SP digest" is malformed (RFC 2195 §2).
        XCTAssertEqual(exchange(session, "CRAM-MD5", nil, [Array("garbage".utf8)]).last, .failure(.malformed))
        XCTAssertEqual(exchange(session, "PLAIN", nil, [plainMessage("alice@example.org", "secret")]).last,
                       .success(identity: "alice@example.org"))
    }

    func testCancel() throws {
        let session = try server().makeSession(info())
        XCTAssertEqual(session.start(mechanism: "LOGIN", initialResponse: nil), .challenge(Array("Username:".utf8)))
        XCTAssertEqual(session.cancel(), .failure(.cancelled))
        XCTAssertEqual(session.step(Array("alice@example.org".utf8)), .failure(.malformed))
        // A new AUTH in the middle of an exchange abandons it too.
        XCTAssertEqual(session.start(mechanism: "LOGIN", initialResponse: nil), .challenge(Array("Username:".utf8)))
        XCTAssertEqual(session.start(mechanism: "PLAIN", initialResponse: plainMessage("alice@example.org", "secret")),
                       .success(identity: "alice@example.org"))
    }

    func testSecureConnectionAndIPv6Addresses() throws {
        let s = try server()
        let v6 = SASLConnectionInfo(service: "smtp", serverFQDN: SASLDBFixture.serverFQDN,
                                    local: SASLEndpoint(ip: "2001:db8::1", port: 587),
                                    remote: SASLEndpoint(ip: "::1", port: 50000), secure: true)
        XCTAssertEqual(try s.makeSession(v6).start(mechanism: "PLAIN", initialResponse: plainMessage("alice@example.org", "secret")),
                       .success(identity: "alice@example.org"))
        let noAddresses = SASLConnectionInfo(service: "pop", serverFQDN: "")
        XCTAssertEqual(try s.makeSession(noAddresses).start(mechanism: "PLAIN",
                                                             initialResponse: plainMessage("alice@example.org", "secret")),
                       .success(identity: "alice@example.org"))
    }

    func testBadAddressIsAMakeSessionError() throws {
        let s = try server()
        let bad = SASLConnectionInfo(service: "smtp", serverFQDN: "mx", local: SASLEndpoint(ip: "not an address", port: 25))
        XCTAssertThrowsError(try s.makeSession(bad)) { error in
            XCTAssertEqual((error as? SASLError)?.code, .connection, "\(error)")
        }
    }

    // MARK: POP3 USER/PASS

    func testCheckPassword() throws {
        let s = try server()
        let pop = SASLConnectionInfo(service: "pop", serverFQDN: SASLDBFixture.serverFQDN,
                                     local: SASLEndpoint(ip: "192.0.2.1", port: 110),
                                     remote: SASLEndpoint(ip: "198.51.100.7", port: 40001))
        XCTAssertEqual(s.checkPassword(user: "alice@example.org", password: "secret", info: pop),
                       .success(identity: "alice@example.org"))
        XCTAssertEqual(s.checkPassword(user: "alice@example.org", password: "wrong", info: pop), .failure(.badCredentials))
        XCTAssertEqual(s.checkPassword(user: "nobody@example.org", password: "secret", info: pop), .failure(.badCredentials))
        XCTAssertEqual(s.checkPassword(user: "alice@example.org", password: "", info: pop), .failure(.badCredentials))
        XCTAssertEqual(s.checkPassword(user: "alice@example.org\u{0}x", password: "secret", info: pop), .failure(.malformed))
        XCTAssertEqual(s.checkPassword(user: "", password: "secret", info: pop), .failure(.malformed))
        // Cyrus alone would say SASL_FAIL ("All-whitespace username"): a 454 for a client's mistake.
        XCTAssertEqual(s.checkPassword(user: " \t ", password: "secret", info: pop), .failure(.malformed))
        XCTAssertEqual(s.checkPassword(user: "bob", password: "hunter2", info: pop), .success(identity: "bob"))
        // The realm is appended before the lookup (the canonical name is longer than the input).
        XCTAssertEqual(try server(realm: "example.org").checkPassword(user: "alice", password: "secret", info: pop),
                       .success(identity: "alice@example.org"))
    }

    // MARK: Several configurations, several threads

    func testTwoServersWithDifferentSasldbFilesInOneProcess() throws {
        let first = try server()
        let second = try server(secondary: true)
        let alice = "alice@example.org"
        // Interleaved, so a library that cached the first database (KEEP_DB_OPEN) would show.
        for _ in 0..<2 {
            XCTAssertEqual(try first.makeSession(info()).start(mechanism: "PLAIN", initialResponse: plainMessage(alice, "secret")),
                           .success(identity: alice))
            XCTAssertEqual(try second.makeSession(info()).start(mechanism: "PLAIN", initialResponse: plainMessage(alice, "secret")),
                           .failure(.badCredentials))
            XCTAssertEqual(try second.makeSession(info()).start(mechanism: "PLAIN", initialResponse: plainMessage(alice, "other-secret")),
                           .success(identity: alice))
            XCTAssertEqual(try first.makeSession(info()).start(mechanism: "PLAIN", initialResponse: plainMessage(alice, "other-secret")),
                           .failure(.badCredentials))
            XCTAssertEqual(second.checkPassword(user: "bob@mail.example.net", password: "hunter2", info: info()),
                           .failure(.badCredentials))
            XCTAssertEqual(first.checkPassword(user: "bob@mail.example.net", password: "hunter2", info: info()),
                           .success(identity: "bob@mail.example.net"))
        }
        // Sessions of both alive at once, CRAM-MD5 reading each one's own secret.
        let s1 = try first.makeSession(info())
        let s2 = try second.makeSession(info())
        guard case .challenge(let c1) = s1.start(mechanism: "CRAM-MD5", initialResponse: nil),
              case .challenge(let c2) = s2.start(mechanism: "CRAM-MD5", initialResponse: nil) else {
            return XCTFail("no challenges")
        }
        XCTAssertEqual(s2.step(cramMD5Response(user: alice, secret: "other-secret", challenge: c2)), .success(identity: alice))
        XCTAssertEqual(s1.step(cramMD5Response(user: alice, secret: "secret", challenge: c1)), .success(identity: alice))
    }

    func testOneSessionUsedFromDifferentThreadsInTurn() throws {
        let session = try server().makeSession(info())
        let mainThread = pthread_self()
        let r1 = onNewThread { session.start(mechanism: "LOGIN", initialResponse: nil) }
        let r2 = onNewThread { session.step(Array("alice@example.org".utf8)) }
        let r3 = onNewThread { session.step(Array("secret".utf8)) }
        XCTAssertEqual([r1.result, r2.result, r3.result],
                       [.challenge(Array("Username:".utf8)), .challenge(Array("Password:".utf8)),
                        .success(identity: "alice@example.org")])
        // (Thread ids may be reused once a thread ends, so only "not the caller's" is certain.)
        for r in [r1.thread, r2.thread, r3.thread] {
            XCTAssertEqual(pthread_equal(r, mainThread), 0)
        }

        // CRAM-MD5 across threads: the challenge comes from one, the answer is checked on another.
        let c = onNewThread { session.start(mechanism: "CRAM-MD5", initialResponse: nil) }.result
        guard case .challenge(let challenge) = c else { return XCTFail("\(c)") }
        let response = cramMD5Response(user: "alice@example.org", secret: "secret", challenge: challenge)
        XCTAssertEqual(onNewThread { session.step(response) }.result, .success(identity: "alice@example.org"))
    }

    func testManySessionsConcurrently() throws {
        let servers = [try server(), try server(secondary: true)]
        let passwords = ["secret", "other-secret"]
        final class Failures: @unchecked Sendable {
            let lock = NSLock()
            var list: [String] = []
            func add(_ s: String) { lock.lock(); list.append(s); lock.unlock() }
        }
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: 32) { i in
            let which = i % 2
            do {
                let session = try servers[which].makeSession(info())
                let plain = session.start(mechanism: "PLAIN",
                                          initialResponse: plainMessage("alice@example.org", passwords[which]))
                if plain != .success(identity: "alice@example.org") { failures.add("\(i) PLAIN: \(plain)") }
                guard case .challenge(let c) = session.start(mechanism: "CRAM-MD5", initialResponse: nil) else {
                    return failures.add("\(i): no CRAM-MD5 challenge")
                }
                let cram = session.step(cramMD5Response(user: "alice@example.org", secret: passwords[1 - which], challenge: c))
                if cram != .failure(.badCredentials) { failures.add("\(i) CRAM-MD5 with the other password: \(cram)") }
            } catch {
                failures.add("\(i): \(error)")
            }
        }
        XCTAssertEqual(failures.list, [])
    }

    // MARK: saslauthd and configuration

    func testSaslauthdDownIsTemporary() throws {
        let fixture = try sasldbFixture.get()
        let s = try CyrusSASLServer(config: CyrusSASLConfig(
            pwcheckMethod: "saslauthd", sasldbPath: fixture.primary,
            saslauthdPath: fixture.directory + "/no-saslauthd/mux"))
        // Shared-secret mechanisms cannot work through saslauthd.
        XCTAssertEqual(s.mechanisms(secure: false), ["PLAIN", "LOGIN"])
        guard case .failure(.temporary(let why)) = s.checkPassword(user: "alice@example.org", password: "secret",
                                                                   info: info()) else {
            return XCTFail("expected a temporary failure")
        }
        // The cause comes from what libsasl2 logged; sasl_errdetail alone says "checkpass failed".
        XCTAssertTrue(why.contains("cannot connect to saslauthd server"), why)
        guard case .failure(.temporary) = try s.makeSession(info()).start(
            mechanism: "PLAIN", initialResponse: plainMessage("alice@example.org", "secret")) else {
            return XCTFail("expected a temporary failure")
        }
        XCTAssertEqual(try s.makeSession(info()).start(mechanism: "CRAM-MD5", initialResponse: nil),
                       .failure(.unknownMechanism))
        XCTAssertThrowsError(try CyrusSASLServer(config: CyrusSASLConfig(pwcheckMethod: "saslauthd",
                                                                         mechanisms: ["CRAM-MD5"])))
    }

    func testAuxpropFallsBackToSaslauthd() throws {
        // "auxprop saslauthd": a sasldb answer settles it; otherwise saslauthd is asked (and is down).
        let fixture = try sasldbFixture.get()
        let s = try CyrusSASLServer(config: CyrusSASLConfig(
            pwcheckMethod: "auxprop saslauthd", sasldbPath: fixture.primary,
            saslauthdPath: fixture.directory + "/no-saslauthd/mux"))
        XCTAssertEqual(s.mechanisms(secure: false), ["PLAIN", "LOGIN", "CRAM-MD5"])
        XCTAssertEqual(s.checkPassword(user: "alice@example.org", password: "secret", info: info()),
                       .success(identity: "alice@example.org"))
    }

    func testUnreadableSasldbIsAStartupError() throws {
        let fixture = try sasldbFixture.get()
        XCTAssertThrowsError(try CyrusSASLServer(config: CyrusSASLConfig(sasldbPath: fixture.directory + "/missing"))) {
            XCTAssertEqual(($0 as? SASLError)?.code, .configuration, "\($0)")
        }
        XCTAssertThrowsError(try CyrusSASLServer(config: CyrusSASLConfig(pwcheckMethod: " ", sasldbPath: fixture.primary)))
    }

    func testSasldbRemovedWhileRunning() throws {
        let fixture = try sasldbFixture.get()
        let copy = fixture.directory + "/sasldb2-removed"
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: fixture.primary, toPath: copy)
        let s = try CyrusSASLServer(config: CyrusSASLConfig(sasldbPath: copy))
        try FileManager.default.removeItem(atPath: copy)
        // libsasl2 treats a missing sasldb as "no such user" (sasldb/db_berkeley.c), hence the
        // readability check at startup; after that, users simply stop authenticating.
        XCTAssertEqual(try s.makeSession(info()).start(mechanism: "PLAIN", initialResponse: plainMessage("alice@example.org", "secret")),
                       .failure(.badCredentials))
        XCTAssertEqual(s.checkPassword(user: "alice@example.org", password: "secret", info: info()), .failure(.badCredentials))
    }

    func testResultCodeMapping() {
        let table: [(Int32, SASLFailure)] = [
            (SASL_BADAUTH, .badCredentials), (SASL_NOUSER, .badCredentials), (SASL_NOAUTHZ, .badCredentials),
            (SASL_BADVERS, .badCredentials), (SASL_EXPIRED, .badCredentials), (SASL_DISABLED, .badCredentials),
            (SASL_NOVERIFY, .badCredentials),
            (SASL_BADPROT, .malformed), (SASL_BUFOVER, .malformed),
            (SASL_NOMECH, .unknownMechanism),
            (SASL_TOOWEAK, .tooWeak), (SASL_ENCRYPT, .tooWeak),
        ]
        for (code, failure) in table {
            XCTAssertEqual(CyrusSASLServer.failure(for: code), failure, "\(code)")
        }
        for code in [SASL_TRYAGAIN, SASL_UNAVAIL, SASL_FAIL, SASL_NOMEM, SASL_BADPARAM, SASL_NOTINIT, SASL_CONFIGERR, -999] {
            guard case .temporary = CyrusSASLServer.failure(for: code) else {
                return XCTFail("\(code) should be temporary")
            }
        }
    }

    // MARK: The test double answers like Cyrus

    /// The same transcripts through Cyrus and StaticSASLServer give the same outcomes, so state
    /// machine tests written against the double hold for the real backend.
    func testStaticServerMatchesCyrus() throws {
        let cyrus = try server(realm: "example.org", mechanisms: ["PLAIN", "LOGIN"])
        let double = StaticSASLServer(users: ["alice@example.org": "secret", "carol@example.org": "pässwörd",
                                              "bob@mail.example.net": "hunter2"],
                                      realm: "example.org")
        XCTAssertEqual(cyrus.mechanisms(secure: false), double.mechanisms(secure: false))
        let u = { (s: String) in Array(s.utf8) }
        let transcripts: [(String, [UInt8]?, [[UInt8]])] = [
            ("PLAIN", plainMessage("alice", "secret"), []),
            ("PLAIN", plainMessage("alice@example.org", "secret"), []),
            ("PLAIN", plainMessage(" alice ", "secret"), []),
            ("PLAIN", plainMessage(authzid: "alice", "alice@example.org", "secret"), []),
            ("PLAIN", plainMessage(authzid: "carol", "alice", "secret"), []),
            ("PLAIN", plainMessage("carol", "pässwörd"), []),
            ("PLAIN", plainMessage("alice", "Secret"), []),
            ("PLAIN", plainMessage("bob", "hunter2"), []),
            ("PLAIN", plainMessage("bob@mail.example.net", "hunter2"), []),
            ("PLAIN", plainMessage("mallory", "secret"), []),
            ("PLAIN", u("alice secret"), []),
            ("PLAIN", plainMessage("alice", ""), []),
            ("PLAIN", plainMessage("", "secret"), []),
            ("PLAIN", plainMessage("alice", "secret\u{0}"), []),
            ("PLAIN", [0] + [0xff, 0xfe] + [0] + u("secret"), []),
            ("LOGIN", nil, [u("alice"), []]),
            ("LOGIN", nil, [[], u("secret")]),
            ("PLAIN", [], []),
            ("PLAIN", nil, [plainMessage("alice", "secret")]),
            ("PLAIN", nil, [u("x")]),
            ("plain", nil, [plainMessage("alice", "bad")]),
            ("LOGIN", nil, [u("alice"), u("secret")]),
            ("LOGIN", nil, [u("alice@example.org"), u("secret")]),
            ("LOGIN", nil, [u("alice"), u("wrong")]),
            ("LOGIN", nil, [u("nobody"), u("secret")]),
            ("LOGIN", u("alice"), [u("secret")]),
            ("LOGIN", [], [u("alice"), u("secret")]),
            ("CRAM-MD5", nil, []),
            ("SCRAM-SHA-1", nil, []),
        ]
        for (mech, initial, responses) in transcripts {
            let expected = exchange(try double.makeSession(info()), mech, initial, responses)
            let actual = exchange(try cyrus.makeSession(info()), mech, initial, responses)
            XCTAssertEqual(actual, expected, "\(mech) \(initial.map { String(decoding: $0, as: UTF8.self) } ?? "-") \(responses)")
        }
        for (user, password) in [("alice", "secret"), ("alice@example.org", "secret"), ("alice", "x"), ("zed", "y"),
                                 ("bob", "hunter2")] {
            XCTAssertEqual(cyrus.checkPassword(user: user, password: password, info: info()),
                           double.checkPassword(user: user, password: password, info: info()), user)
        }
    }

    // MARK: The test's own MD5

    func testMD5AndHMACVectors() {
        // RFC 1321 appendix A.5, RFC 2104 appendix (test 1), RFC 2195 §2 example.
        XCTAssertEqual(hex(md5([])), "d41d8cd98f00b204e9800998ecf8427e")
        XCTAssertEqual(hex(md5(Array("abc".utf8))), "900150983cd24fb0d6963f7d28e17f72")
        XCTAssertEqual(hex(md5(Array("12345678901234567890123456789012345678901234567890123456789012345678901234567890".utf8))),
                       "57edf4a22be3c955ac49da2e2107b67a")
        XCTAssertEqual(hex(hmacMD5(key: [UInt8](repeating: 0x0b, count: 16), message: Array("Hi There".utf8))),
                       "9294727a3638bb1c13f48ef8158bfc9d")
        XCTAssertEqual(String(decoding: cramMD5Response(user: "tim", secret: "tanstaaftanstaaf",
                                                        challenge: Array("<1896.697170952@postoffice.reston.mci.net>".utf8)),
                              as: UTF8.self),
                       "tim b913a602c7eda7a495b4e6e7334d3890")
    }
}
