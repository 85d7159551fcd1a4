// The DRAC notifier: adds run in the background, once a minute per address, failures retried.
import XCTest
import Logging
import NIOConcurrencyHelpers
@testable import DRACRPC
@testable import POP3Server
import DRACCore

final class DRACNotifierTests: XCTestCase {
    final class FakeServer: Sendable {
        let calls = NIOLockedValueBox<[IPAddress]>([])
        let status = NIOLockedValueBox<Result<AddStatus, DRACClientError>>(.success(.success))
        let delay: Double
        init(delay: Double = 0) { self.delay = delay }
        func send(_ a: IPAddress) -> [DRACClient.Outcome] {
            if delay > 0 { Thread.sleep(forTimeInterval: delay) }
            calls.withLockedValue { $0.append(a) }
            return [DRACClient.Outcome(server: "fake", result: status.withLockedValue { $0 })]
        }
    }

    func wait(_ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(5)
        while Date() < end { if condition() { return true }; Thread.sleep(forTimeInterval: 0.01) }
        return condition()
    }

    func testLoginNeverWaitsForTheServer() {
        let server = FakeServer(delay: 1)
        let n = DRACNotifier(send: { server.send($0) }, logger: Logger(label: "t"))
        let start = Date()
        n.loggedIn(IPAddress("192.0.2.1")!)
        XCTAssertLessThan(Date().timeIntervalSince(start), 0.1)
        XCTAssertTrue(wait { server.calls.withLockedValue { $0 } == [IPAddress("192.0.2.1")!] })
    }

    func testSameAddressSentOnceAMinuteButRefreshAlwaysSends() {
        let server = FakeServer()
        let n = DRACNotifier(send: { server.send($0) }, logger: Logger(label: "t"))
        let a = IPAddress("192.0.2.2")!
        n.loggedIn(a)
        XCTAssertTrue(wait { n.counts.adds == 1 })
        n.loggedIn(a)
        n.loggedIn(IPAddress("::ffff:192.0.2.2")!)    // the same client, IPv4-mapped
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertEqual(server.calls.withLockedValue { $0.count }, 1)
        n.loggedIn(a, refresh: true)
        XCTAssertTrue(wait { server.calls.withLockedValue { $0.count } == 2 })
        n.loggedIn(IPAddress("2001:db8::5")!)
        XCTAssertTrue(wait { server.calls.withLockedValue { $0.last } == IPAddress("2001:db8::5")! })
    }

    func testFailuresAreRetriedAtTheNextLogin() {
        let server = FakeServer()
        server.status.withLockedValue { $0 = .failure(.timeout) }
        let n = DRACNotifier(send: { server.send($0) }, logger: Logger(label: "t"))
        let a = IPAddress("192.0.2.3")!
        n.loggedIn(a)
        XCTAssertTrue(wait { n.counts.failures == 1 })
        server.status.withLockedValue { $0 = .success(.permissionDenied) }
        n.loggedIn(a)
        XCTAssertTrue(wait { n.counts.failures == 2 })
        server.status.withLockedValue { $0 = .success(.success) }
        n.loggedIn(a)
        XCTAssertTrue(wait { n.counts.adds == 3 && n.counts.failures == 2 })
        n.loggedIn(a)
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertEqual(server.calls.withLockedValue { $0.count }, 3)
    }

    func testQueueIsBounded() {
        let server = FakeServer(delay: 0.2)
        let n = DRACNotifier(send: { server.send($0) }, logger: Logger(label: "t"), workers: 1, maxQueued: 3)
        for i in 1...10 { n.loggedIn(IPAddress("192.0.2.\(i + 10)")!) }
        XCTAssertTrue(wait { n.counts.adds >= 3 })
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertLessThanOrEqual(server.calls.withLockedValue { $0.count }, 4, "queue grew past its bound")
    }
}
