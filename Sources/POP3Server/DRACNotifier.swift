// After a login, tell rpc.dracd: in the background, never in the way of the login itself.
import DRACCore
import DRACRPC
import Foundation
import Logging
import NIOConcurrencyHelpers

/// Sends DRAC adds for logged-in clients. `loggedIn` returns at once: the add runs on one of a
/// few worker threads, so a login never waits for rpc.dracd and succeeds when it is down or
/// slow (DRAC's own dracauth() blocked the POP server for its timeout). An address added
/// successfully in the last `minimumInterval` seconds is not sent again (a mail client that
/// polls every minute from one address costs one RPC, not one per poll); failures are retried
/// at the next login or refresh.
public final class DRACNotifier: Sendable {
    public typealias Send = @Sendable (IPAddress) -> [DRACClient.Outcome]

    let send: Send
    let logger: Logger
    let minimumInterval: Double
    let maxQueued: Int
    let workers: Int
    private struct State {
        var queue: [IPAddress] = []
        var queued: Set<IPAddress> = []
        var lastSuccess: [IPAddress: Double] = [:]
        var running = 0
        var adds = 0
        var failures = 0
    }
    private let state = NIOLockedValueBox(State())

    public convenience init(servers: [String], timeout: Double, logger: Logger) {
        self.init(send: { address in
            DRACClient.addBlocking(address, servers: servers, transport: .udp, timeout: timeout)
        }, logger: logger)
    }

    /// For tests: a stand-in for the RPC.
    public init(send: @escaping Send, logger: Logger, minimumInterval: Double = 60, workers: Int = 4, maxQueued: Int = 10_000) {
        self.send = send
        self.logger = logger
        self.minimumInterval = minimumInterval
        self.workers = workers
        self.maxQueued = maxQueued
    }

    /// A client logged in (or refreshes during a long session).
    public func loggedIn(_ address: IPAddress, refresh: Bool = false) {
        let a = address.unmapped
        let now = Date().timeIntervalSince1970
        let startWorker: Bool = state.withLockedValue { s in
            if !refresh, let last = s.lastSuccess[a], now - last < minimumInterval { return false }
            if s.queued.contains(a) { return false }
            if s.queue.count >= maxQueued {
                logger.warning("drac add \(a) dropped: \(maxQueued) adds already waiting (rpc.dracd too slow?)")
                return false
            }
            s.queue.append(a)
            s.queued.insert(a)
            if s.running < workers { s.running += 1; return true }
            return false
        }
        if startWorker {
            let t = Thread { [self] in work() }
            t.name = "drac-add"
            t.start()
        }
    }

    /// Adds sent and failed so far (for tests and the shutdown log).
    public var counts: (adds: Int, failures: Int) { state.withLockedValue { ($0.adds, $0.failures) } }

    private func work() {
        while true {
            let next: IPAddress? = state.withLockedValue { s in
                if s.queue.isEmpty { s.running -= 1; return nil }
                return s.queue.removeFirst()
            }
            guard let a = next else { return }
            let outcomes = send(a)
            let ok = !outcomes.isEmpty && outcomes.allSatisfy(\.succeeded)
            for o in outcomes {
                switch o.result {
                case .success(.success): logger.info("drac add \(a) to \(o.server): ok")
                case .success(let status): logger.warning("drac add \(a) to \(o.server) refused: \(status)")
                case .failure(let e): logger.warning("drac add \(a) to \(o.server) failed: \(e)")
                }
            }
            let now = Date().timeIntervalSince1970
            state.withLockedValue { s in
                s.queued.remove(a)
                s.adds += 1
                if ok {
                    s.lastSuccess[a] = now
                    if s.lastSuccess.count > 100_000 { s.lastSuccess = s.lastSuccess.filter { now - $0.value < minimumInterval } }
                } else {
                    s.failures += 1
                    s.lastSuccess[a] = nil
                }
            }
        }
    }
}
