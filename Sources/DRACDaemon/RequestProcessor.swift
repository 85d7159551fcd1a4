// What rpc.dracd does with one received RPC message: decode, check the caller, queue the add, reply.
import DRACCore
import DRACMap
import DRACRPC
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Settings that SIGHUP can change, swapped as one value.
struct RuntimeSettings: Sendable {
    var allowList: AllowList
    var allowSource: String
    var expireSeconds: Int64
}

/// Shared by the UDP and TCP transports. Thread-safe.
final class RequestProcessor: Sendable {
    private let settings: NIOLockedValueBox<RuntimeSettings>
    private let commits: CommitQueue
    private let logger: Logger
    private let acceptingBox = NIOLockedValueBox(true)
    private let garbageLog = RateLimitedLog(perSecond: 20)

    init(settings: RuntimeSettings, commits: CommitQueue, logger: Logger) {
        self.settings = NIOLockedValueBox(settings)
        self.commits = commits
        self.logger = logger
    }

    var current: RuntimeSettings { settings.withLockedValue { $0 } }
    func update(_ s: RuntimeSettings) { settings.withLockedValue { $0 = s } }
    func stopAccepting() { acceptingBox.withLockedValue { $0 = false } }

    /// A transport has read what was available: commit the queued adds (see CommitQueue).
    func flush(on loop: EventLoop) { commits.flush(on: loop) }

    /// The UDP thread has read what was available: commit the queued adds on it.
    func commitPending() { commits.commitPending() }

    /// Handles one message from `caller`, received on `eventLoop`; `reply` is called on that loop,
    /// or with no loop (the UDP thread) on whichever thread answers: the caller's own, or the one
    /// that committed the add.
    func handle(_ message: [UInt8], caller: IPAddress, transport: String, eventLoop: EventLoop?,
                reply: @escaping @Sendable ([UInt8]) -> Void) {
        let from = caller.unmapped
        switch DRACCodec.decodeCall(message) {
        case .drop(let reason):
            garbageLog.log(logger, "dropped message from \(from) \(transport): \(reason)")
        case .errorReply(_, let bytes, let reason):
            garbageLog.log(logger, "bad call from \(from) \(transport): \(reason)")
            reply(bytes)
        case .null(let xid, _):
            reply(DRACCodec.nullReply(xid: xid))
        case .add(let xid, let version, let requested):
            let address = requested.unmapped
            let s = current
            guard acceptingBox.withLockedValue({ $0 }) else {
                logger.warning("refused add \(address) from \(from) \(transport) v\(version): shutting down")
                reply(DRACCodec.addReply(xid: xid, .systemError))
                return
            }
            guard s.allowList.allows(from) else {
                logger.warning("refused add \(address) from \(from) \(transport) v\(version): caller not in allow list (\(s.allowSource))")
                reply(DRACCodec.addReply(xid: xid, .permissionDenied))
                return
            }
            guard address.isUsableClient else {
                logger.warning("refused add \(address) from \(from) \(transport) v\(version): not a client address")
                reply(DRACCodec.addReply(xid: xid, .permissionDenied))
                return
            }
            let expiry = Expiry.expiry(now: Int64(Date().timeIntervalSince1970), ttlSeconds: s.expireSeconds)
            let logger = self.logger
            let queued = commits.submit(CommitQueue.Add(address: address, expiry: expiry, eventLoop: eventLoop) { result in
                switch result {
                case .success:
                    reply(DRACCodec.addReply(xid: xid, .success))
                    logger.info("add \(address) from \(from) \(transport) v\(version) expires \(TimeFormat.iso8601UTC(expiry))")
                case .failure(let e):
                    reply(DRACCodec.addReply(xid: xid, .systemError))
                    logger.error("add \(address) from \(from) \(transport) v\(version) failed: \(e)")
                }
            })
            if !queued {
                logger.warning("refused add \(address) from \(from) \(transport) v\(version): shutting down")
                reply(DRACCodec.addReply(xid: xid, .systemError))
            }
        }
    }
}

/// Logs at most `perSecond` lines a second and counts the rest, so a flood of garbage cannot
/// flood syslog; the count of suppressed lines is logged with the next line that passes.
final class RateLimitedLog: Sendable {
    private struct State { var second: Int64 = 0; var used = 0; var suppressed = 0 }
    private let state = NIOLockedValueBox(State())
    private let perSecond: Int
    init(perSecond: Int) { self.perSecond = perSecond }

    func log(_ logger: Logger, _ message: @autoclosure () -> String) {
        let now = Int64(Date().timeIntervalSince1970)
        let (emit, suppressed) = state.withLockedValue { s -> (Bool, Int) in
            if s.second != now { s.second = now; s.used = 0 }
            guard s.used < perSecond else { s.suppressed += 1; return (false, 0) }
            s.used += 1
            let n = s.suppressed
            s.suppressed = 0
            return (true, n)
        }
        guard emit else { return }
        if suppressed > 0 { logger.warning("\(suppressed) similar messages suppressed") }
        logger.warning("\(message())")
    }
}
