// The relay decision, checked exhaustively against a rule written out plainly here.
import XCTest
@testable import DRACCore

final class RelayPolicyTests: XCTestCase {
    private static let now: Int64 = 1_700_000_000

    private static func policy(dracEnabled: Bool) throws -> RelayPolicy {
        RelayPolicy(trustedNetworks: try AllowList.parse("192.0.2.0/24\n2001:db8:1::/48\n").get(),
                    localDomains: ["example.org"], relayDomains: ["backup.example"], dracEnabled: dracEnabled)
    }

    private static func recipient(_ s: String) throws -> ForwardPath { try SMTPPath.parseForward(s[...]).get().0 }
    private static func sender(_ s: String) throws -> ReversePath { try SMTPPath.parseReverse(s[...]).get().0 }

    private enum Destination { case local, relay, postmaster, elsewhere }

    /// The rule, restated without looking at RelayPolicy.decide.
    private static func expected(listener: ListenerKind, authenticated: Bool, trusted: Bool,
                                 dracEnabled: Bool, dracLive: Bool, destination: Destination) -> RelayDecision {
        if listener == .submission || listener == .submissions {
            if authenticated { return .accept(.sasl) }
            return .reject(.authRequired)
        }
        if authenticated { return .accept(.sasl) }
        if trusted { return .accept(.trustedNetwork) }
        if dracEnabled && dracLive { return .accept(.drac) }
        switch destination {
        case .local: return .accept(.localDomain)
        case .relay: return .accept(.relayDomain)
        case .postmaster: return .accept(.postmaster)
        case .elsewhere: return .reject(.relayDenied)
        }
    }

    func testEveryCombination() throws {
        let now = Self.now
        let sasl: [(String?, Bool)] = [(nil, false), ("", false), ("alice", true)]
        let clients: [(String, Bool)] = [
            ("192.0.2.10", true), ("2001:db8:1::25", true), ("::ffff:192.0.2.10", true),
            ("198.51.100.7", false), ("2001:db8:2::25", false), ("::ffff:198.51.100.7", false),
        ]
        let drac: [(Int64?, Bool)] = [(nil, false), (now - 1, false), (now, false), (now + 1, true), (now + 315_360_000, true)]
        let recipients: [(String, Destination)] = [
            ("<alice@example.org>", .local),
            ("<bob@backup.example>", .relay),
            ("<Alice@EXAMPLE.ORG>", .local),
            ("<carol@other.net>", .elsewhere),
            ("<dave@[192.0.2.1]>", .elsewhere),
            ("<Postmaster>", .postmaster),
            ("<eve@mail.example.org>", .elsewhere),
            ("<eve@mx.backup.example>", .elsewhere),
            ("<postmaster@other.net>", .elsewhere),
            ("<alice@example.org.evil.net>", .elsewhere),
        ]
        // The remote sender equals the remote recipient `carol@other.net`.
        let senders = ["<>", "<alice@example.org>", "<carol@other.net>", "<postmaster@example.org>"]

        var checked = 0, accepted = 0
        for dracEnabled in [false, true] {
            let policy = try Self.policy(dracEnabled: dracEnabled)
            for listener in ListenerKind.allCases {
                for (identity, authenticated) in sasl {
                    for (client, trusted) in clients {
                        for (expiry, live) in drac {
                            for (rcpt, destination) in recipients {
                                for from in senders {
                                    let request = RelayRequest(
                                        client: IPAddress(client)!, saslIdentity: identity, listener: listener,
                                        sender: try Self.sender(from), recipient: try Self.recipient(rcpt),
                                        dracExpiry: expiry, now: now)
                                    let want = Self.expected(listener: listener, authenticated: authenticated, trusted: trusted,
                                                             dracEnabled: dracEnabled, dracLive: live, destination: destination)
                                    let got = policy.decide(request)
                                    XCTAssertEqual(got, want, "\(listener) sasl=\(identity ?? "nil") client=\(client) drac=\(expiry.map(String.init) ?? "nil") enabled=\(dracEnabled) rcpt=\(rcpt) from=\(from)")
                                    checked += 1
                                    if got.isAccepted { accepted += 1 }
                                }
                            }
                        }
                    }
                }
            }
        }
        XCTAssertEqual(checked, 2 * 3 * 3 * 6 * 5 * 10 * 4)
        XCTAssertGreaterThan(accepted, 0)
        XCTAssertLessThan(accepted, checked)
    }

    func testSenderNeverMatters() throws {
        // Same request with every kind of sender, including one equal to the recipient: one answer.
        let policy = try Self.policy(dracEnabled: true)
        let senders = try ["<>", "<alice@example.org>", "<carol@other.net>", "<Postmaster@example.org>", "<bob@backup.example>"].map(Self.sender)
        for rcpt in ["<carol@other.net>", "<alice@example.org>", "<Postmaster>"] {
            for listener in ListenerKind.allCases {
                let answers = Set(senders.map { s in
                    policy.decide(RelayRequest(client: IPAddress("198.51.100.7")!, saslIdentity: nil, listener: listener,
                                               sender: s, recipient: try! Self.recipient(rcpt), dracExpiry: nil, now: Self.now)).logText
                })
                XCTAssertEqual(answers.count, 1, "\(rcpt) on \(listener): \(answers)")
            }
        }
    }

    func testAddressLiteralsAreNeverLocal() throws {
        // Even if the admin lists the literal's text among the local domains.
        let policy = RelayPolicy(localDomains: ["[192.0.2.1]", "192.0.2.1", "[ipv6:2001:db8::1]", "2001:db8::1"],
                                 relayDomains: ["[192.0.2.1]", "192.0.2.1"])
        for rcpt in ["<u@[192.0.2.1]>", "<u@[IPv6:2001:db8::1]>"] {
            let r = RelayRequest(client: IPAddress("198.51.100.7")!, saslIdentity: nil, listener: .smtp,
                                 sender: .null, recipient: try Self.recipient(rcpt), dracExpiry: nil, now: Self.now)
            XCTAssertEqual(policy.decide(r), .reject(.relayDenied), rcpt)
        }
    }

    func testConfiguredDomainsAreNormalizedAndHandBuiltMailboxesLowercased() {
        let policy = RelayPolicy(localDomains: ["Example.ORG."], relayDomains: ["BACKUP.example"])
        XCTAssertEqual(policy.localDomains, ["example.org"])
        XCTAssertEqual(policy.relayDomains, ["backup.example"])
        func decide(_ domain: String) -> RelayDecision {
            policy.decide(RelayRequest(client: IPAddress("198.51.100.7")!, saslIdentity: nil, listener: .smtp, sender: .null,
                                       recipient: .mailbox(Mailbox(localPart: "u", domain: .name(domain))), dracExpiry: nil, now: Self.now))
        }
        XCTAssertEqual(decide("EXAMPLE.org"), .accept(.localDomain))
        XCTAssertEqual(decide("Backup.Example"), .accept(.relayDomain))
        XCTAssertEqual(decide("example.org."), .reject(.relayDenied))   // only SMTPPath-made names are trusted
        XCTAssertEqual(decide("sub.example.org"), .reject(.relayDenied))
        XCTAssertEqual(decide("org"), .reject(.relayDenied))
    }

    func testDracBoundaryUsesExpiryIsLive() throws {
        let policy = try Self.policy(dracEnabled: true)
        for (expiry, want) in [(Self.now - 1, false), (Self.now, false), (Self.now + 1, true)] {
            let r = RelayRequest(client: IPAddress("198.51.100.7")!, saslIdentity: nil, listener: .smtp, sender: .null,
                                 recipient: try Self.recipient("<carol@other.net>"), dracExpiry: expiry, now: Self.now)
            XCTAssertEqual(policy.decide(r) == .accept(.drac), want, "expiry \(expiry)")
            XCTAssertEqual(Expiry.isLive(expiry: expiry, now: Self.now), want)
        }
    }

    func testLogTexts() {
        let texts: [(RelayDecision, String)] = [
            (.accept(.sasl), "relay via sasl"), (.accept(.drac), "relay via drac"),
            (.accept(.trustedNetwork), "relay via mynetworks"), (.accept(.localDomain), "local domain"),
            (.accept(.relayDomain), "relay domain"), (.accept(.postmaster), "postmaster"),
            (.reject(.relayDenied), "reject: relay denied"), (.reject(.authRequired), "reject: authentication required"),
        ]
        for (decision, text) in texts { XCTAssertEqual(decision.logText, text) }
        XCTAssertEqual(AcceptReason.allCases.count + RejectReason.allCases.count, texts.count)
    }

    func testUnparseableRecipientsNeverReachDecide() {
        // The policy trusts the recipient's domain; every trick must stop at the parser, in every case variant.
        var refused = 0
        for (argument, _) in PathCases.bad {
            for variant in [argument, argument.uppercased(), argument.lowercased()] {
                switch SMTPPath.parseForward(variant[...]) {
                case .success(let v): XCTFail("\(variant.debugDescription) parsed as \(v.0) and would reach decide")
                case .failure: refused += 1
                }
            }
        }
        XCTAssertEqual(refused, PathCases.bad.count * 3)
    }
}
