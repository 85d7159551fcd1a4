// The commit thread: group commit of adds (one sync per batch) and prompt, chunked expiry.
import DRACCore
import DRACMap
import Foundation
import Logging
import NIOCore

/// Owns the map writer. Adds are committed in batches, one sync per batch: throughput grows with
/// the number of concurrent clients while every acknowledged add is on disk (ARCHITECTURE.md:
/// nothing acknowledged is lost).
///
/// Who commits: when a transport has read everything available (`channelReadComplete`) it calls
/// `flush`, which commits the pending adds right there on the event loop if the writer is free.
/// No thread hop stands between a request and its sync, and datagrams that arrive during the
/// sync wait in the socket buffer and form the next batch. If the writer is busy (another loop
/// or housekeeping), the adds stay queued and the commit thread takes them as soon as it is free.
///
/// Expiry: the thread remembers the expiry of every entry it wrote or saw, and deletes entries
/// within `sweepInterval` of their expiry, a few hundred per locked batch. A full rescan of the
/// map, also in short locked chunks, runs every expire/10 to pick up entries written by others.
final class CommitQueue: @unchecked Sendable {
    struct Add {
        var address: IPAddress
        var expiry: Int64
        /// Where `completion` runs: the connection's event loop, so that replies and log lines
        /// are written there while this thread syncs the next batch; nil (UDP): on the thread
        /// that committed the add.
        var eventLoop: EventLoop?
        var completion: @Sendable (Result<Void, MapError>) -> Void
    }

    private let condition = NSCondition()
    private var pending: [Add] = []
    private var stopping = false
    private var finished = false
    /// Someone (the commit thread, an event loop in `flush`, the UDP thread) is using the writer.
    private var busy = false
    /// Threads in `commitPending` waiting for the writer to come free.
    private var writerWaiters = 0
    private let writer: MapWriter
    private let logger: Logger
    private var thread: Thread?

    // Settings that SIGHUP may change (read under `condition`).
    private var sweepInterval: Double
    private var rescanInterval: Double

    // Commit-thread state.
    private var known: [[UInt8]: Int64] = [:]
    private var heap = ExpiryHeap()
    private var rescanCursor: [UInt8]? = nil
    private var rescanActive = false
    private var rescanStats = SweepChunk()
    private var maxLockHoldNanos: UInt64 = 0
    private var nextRescan: Double = 0
    // Group-commit figures, logged at stop (written only by the writer's current owner).
    private var committedAdds = 0
    private var syncs = 0
    private var largestBatch = 0
    private var nextHousekeeping: Double = 0

    static let maxBatch = 4096
    static let maxDeletesPerBatch = 512

    init(writer: MapWriter, expireSeconds: Int64, sweepIntervalSeconds: Int64, logger: Logger) {
        self.writer = writer
        self.logger = logger
        sweepInterval = Double(sweepIntervalSeconds)
        rescanInterval = max(1, Double(expireSeconds) / 10)
    }

    func start() {
        let t = Thread { [self] in self.loop() }
        t.name = "dracd-commit"
        thread = t
        nextRescan = now()   // learn the existing entries' expiries at start
        t.start()
    }

    func updateSettings(expireSeconds: Int64, sweepIntervalSeconds: Int64) {
        condition.lock()
        sweepInterval = Double(sweepIntervalSeconds)
        rescanInterval = max(1, Double(expireSeconds) / 10)
        condition.broadcast()
        condition.unlock()
    }

    /// Queues an add; false once stopping (the caller answers ADD_SYSERR). The transport then
    /// calls `flush` when it has read what is available.
    func submit(_ add: Add) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else { return false }
        pending.append(add)
        return true
    }

    /// Commits the pending adds on the calling event loop if the writer is free; otherwise
    /// leaves them to the commit thread, which is woken when the writer comes free.
    func flush(on loop: EventLoop) {
        condition.lock()
        guard !busy, !pending.isEmpty else {
            let wake = !pending.isEmpty
            condition.unlock()
            if wake { condition.broadcast() }
            return
        }
        takeAndCommit(runningOn: loop)
    }

    /// Commits the pending adds on the calling thread, waiting for the writer if another thread
    /// holds it. For a thread that has nothing else to do meanwhile (the UDP transport's), so
    /// that its adds are answered without a thread hop. Once stopping, the commit thread does it.
    func commitPending() {
        condition.lock()
        writerWaiters += 1
        while busy && !stopping { condition.wait() }
        writerWaiters -= 1
        guard !busy, !stopping, !pending.isEmpty else {
            condition.unlock()
            return
        }
        takeAndCommit(runningOn: nil)
    }

    /// Called with `condition` locked and the writer free: takes a batch, commits it with the
    /// lock released, and wakes whoever waits for the writer or for work.
    private func takeAndCommit(runningOn loop: EventLoop?) {
        busy = true
        let batch = Array(pending.prefix(CommitQueue.maxBatch))
        pending.removeFirst(batch.count)
        condition.unlock()
        commit(batch, runningOn: loop)
        condition.lock()
        busy = false
        let more = !pending.isEmpty || stopping
        let waiters = writerWaiters > 0
        condition.unlock()
        if waiters || more { condition.broadcast() }
    }

    /// Commits what is queued, then stops the thread and closes the map.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }

    var pendingCount: Int {
        condition.lock(); defer { condition.unlock() }
        return pending.count
    }

    private func now() -> Double { Date().timeIntervalSince1970 }

    private func loop() {
        while true {
            condition.lock()
            // Wait for work we may do: queued adds or housekeeping, with the writer free.
            while busy || (pending.isEmpty && !stopping && now() < nextHousekeeping) {
                let until = busy ? Date().addingTimeInterval(0.005) : Date(timeIntervalSince1970: nextHousekeeping)
                _ = condition.wait(until: until)
            }
            busy = true
            let batch = Array(pending.prefix(CommitQueue.maxBatch))
            pending.removeFirst(batch.count)
            let exiting = stopping && pending.isEmpty
            let interval = sweepInterval
            condition.unlock()

            if !batch.isEmpty { commit(batch, runningOn: nil) }
            if !exiting {
                let t = now()
                if t >= nextHousekeeping {
                    housekeeping(now: t)
                    nextHousekeeping = t + min(interval, 1)
                } else if rescanActive && pending.isEmpty {
                    rescanStep(now: Int64(t))
                }
            }
            condition.lock()
            busy = false
            let waiters = writerWaiters > 0
            condition.unlock()
            if waiters { condition.broadcast() }
            if exiting { break }
        }
        writer.close()
        if syncs > 0 {
            let perSync = Double(committedAdds) / Double(syncs)
            logger.info("committed \(committedAdds) adds in \(syncs) syncs (\((perSync * 10).rounded() / 10) adds per sync, largest batch \(largestBatch))")
        }
        condition.lock()
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    /// Commits `batch` and runs its completions: directly for adds that came in on `loop` (the
    /// caller's own event loop) or on no loop (UDP), with one hop per other event loop for the rest.
    private func commit(_ batch: [Add], runningOn loop: EventLoop?) {
        let ops = batch.map { MapOperation.put($0.address, expiry: $0.expiry) }
        let result: Result<Void, MapError>
        do {
            try writer.commit(ops)
            for add in batch { remember(writer.format.key(for: add.address), expiry: add.expiry) }
            committedAdds += batch.count
            syncs += 1
            largestBatch = max(largestBatch, batch.count)
            result = .success(())
        } catch {
            logger.error("map write failed for \(batch.count) adds: \(error)")
            result = .failure(error)
        }
        // One hop per other event loop for the whole batch, not one per reply.
        var byLoop: [ObjectIdentifier: (EventLoop, [Add])] = [:]
        for add in batch {
            guard let target = add.eventLoop else { add.completion(result); continue }
            if let loop, target === loop { add.completion(result); continue }
            byLoop[ObjectIdentifier(target), default: (target, [])].1.append(add)
        }
        for (_, (other, adds)) in byLoop {
            let completions = adds.map(\.completion)
            other.execute { for c in completions { c(result) } }
        }
    }

    private func remember(_ key: [UInt8], expiry: Int64) {
        if known[key] == expiry { return }
        known[key] = expiry
        heap.push(expiry: expiry, key: key)
        if heap.count > 4 * known.count + 1024 { heap = ExpiryHeap(known) }
    }

    private func housekeeping(now t: Double) {
        let nowSec = Int64(t)
        deleteDue(now: nowSec)
        do { try writer.touchIfNeeded(now: nowSec) } catch { logger.warning("cannot touch map: \(error)") }
        condition.lock()
        let interval = rescanInterval
        condition.unlock()
        if !rescanActive && t >= nextRescan {
            rescanActive = true
            rescanCursor = nil
            rescanStats = SweepChunk()
            maxLockHoldNanos = 0
            nextRescan = t + interval
        }
        if rescanActive { rescanStep(now: nowSec) }
    }

    /// Deletes entries whose remembered expiry has come, re-checking each stored value.
    private func deleteDue(now: Int64) {
        var due: [[UInt8]] = []
        while let top = heap.peek, top.expiry <= now, due.count < CommitQueue.maxDeletesPerBatch {
            heap.pop()
            if known[top.key] == top.expiry { due.append(top.key); known[top.key] = nil }
        }
        guard !due.isEmpty else { return }
        do {
            let r = try writer.commit(due.map { .deleteIfExpired(key: $0, now: now) })
            if r.deleted > 0 {
                let names = zip(due, r.found).filter { $0.1 }.prefix(10).map { String(decoding: $0.0, as: UTF8.self) }
                let more = r.deleted > names.count ? " and \(r.deleted - names.count) more" : ""
                logger.info("sweep: deleted \(r.deleted) expired entries: \(names.joined(separator: " "))\(more)")
            }
        } catch {
            logger.error("sweep failed: \(error)")
            for key in due { known[key] = now }   // retry on the next pass
            for key in due { heap.push(expiry: now, key: key) }
        }
    }

    /// One chunk of the periodic full rescan: deletes expired entries and learns expiries of
    /// entries written by other programs.
    private func rescanStep(now: Int64) {
        do {
            let chunk = try writer.sweepChunk(after: rescanCursor, now: now)
            rescanStats.scanned += chunk.scanned
            rescanStats.deleted += chunk.deleted
            maxLockHoldNanos = max(maxLockHoldNanos, chunk.lockHeldNanoseconds)
            // Entries written by other programs are deleted promptly too once we know them.
            for (key, expiry) in chunk.live where known[key] != expiry { remember(key, expiry: expiry) }
            rescanCursor = chunk.resumeAfter
            if chunk.resumeAfter == nil {
                rescanActive = false
                if rescanStats.deleted > 0 {
                    logger.info("sweep: deleted \(rescanStats.deleted) expired entries (\(rescanStats.scanned) scanned, longest lock hold \(maxLockHoldNanos / 1_000_000) ms)")
                } else {
                    logger.debug("sweep: \(rescanStats.scanned) entries scanned, none expired")
                }
            }
        } catch {
            logger.error("sweep failed: \(error)")
            rescanActive = false
        }
    }
}

/// A binary min-heap of (expiry, key).
struct ExpiryHeap {
    private var items: [(expiry: Int64, key: [UInt8])] = []
    init() {}
    init(_ known: [[UInt8]: Int64]) { for (k, e) in known { push(expiry: e, key: k) } }
    var count: Int { items.count }
    var peek: (expiry: Int64, key: [UInt8])? { items.first }

    mutating func push(expiry: Int64, key: [UInt8]) {
        items.append((expiry, key))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i].expiry < items[parent].expiry else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() {
        guard !items.isEmpty else { return }
        items.swapAt(0, items.count - 1)
        items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count, items[l].expiry < items[m].expiry { m = l }
            if r < items.count, items[r].expiry < items[m].expiry { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
    }
}
