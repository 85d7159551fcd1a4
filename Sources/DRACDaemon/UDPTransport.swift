// rpc.dracd's UDP transport: one thread that owns every UDP socket, reads what is waiting in
// batches, commits it and answers, without an event loop in between.
import CLinux
import DRACCore
import DRACRPC
import Foundation
import Glibc
import Logging
import NIOConcurrencyHelpers

/// Why not NIO here: an add is one datagram in and one out, and nearly all its time is the sync.
/// A dedicated thread that sleeps in poll(2), drains its sockets with recvmmsg(2), commits the
/// batch on the spot (waiting for the writer if a TCP loop or the housekeeping holds it) and
/// answers with sendto(2) keeps the rest of the path short: measured on a 2-CPU VM, NIO's
/// datagram pipeline cost more user time per add than the whole of DRAC 1.12's server loop.
/// Datagrams that arrive during a sync wait in the socket buffer and form the next batch.
final class UDPTransport: @unchecked Sendable {
    struct BoundSocket {
        let fd: Int32
        let address: IPAddress
        let port: Int
    }

    private let processor: RequestProcessor
    private let maxRecord: Int
    private let logger: Logger
    private(set) var sockets: [BoundSocket] = []
    private var wakePipe: [Int32] = [-1, -1]
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    private let stopping = NIOLockedValueBox(false)

    init(processor: RequestProcessor, maxRecord: Int, logger: Logger) {
        self.processor = processor
        self.maxRecord = maxRecord
        self.logger = logger
    }

    /// Binds a UDP socket (SO_REUSEADDR; IPv6-only for IPv6 addresses, so that the IPv4
    /// wildcard keeps its own socket) and returns its port.
    func bind(_ requested: IPAddress, port: Int, v6only: Bool) throws -> Int {
        let address = requested.unmapped
        let family = address.isV4 ? AF_INET : AF_INET6
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw StartError("udp \(address) port \(port): socket: \(errnoText())") }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if !address.isV4 {
            var flag: Int32 = v6only ? 1 : 0
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &flag, socklen_t(MemoryLayout<Int32>.size))
        }
        let rc = RawSocketAddress(address, port: port).withSockaddr { Glibc.bind(fd, $0, $1) }
        guard rc == 0 else {
            let text = errnoText()
            close(fd)
            throw StartError("udp \(address) port \(port): bind: \(text)")
        }
        var bound = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let got = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let boundPort = got == 0 ? RawSocketAddress(storage: bound, length: length).port : port
        sockets.append(BoundSocket(fd: fd, address: address, port: boundPort))
        return boundPort
    }

    /// Closes every socket (start-up failed, or after `stop`).
    func closeAll() {
        for s in sockets { close(s.fd) }
        sockets = []
    }

    func start() throws {
        guard pipe(&wakePipe) == 0 else { throw StartError("udp: pipe: \(errnoText())") }
        let t = Thread { [self] in
            self.serve()
            self.done.signal()
        }
        t.name = "dracd-udp"
        thread = t
        t.start()
    }

    /// Stops the thread (it finishes the batch in hand) and closes the sockets.
    func stop() {
        guard thread != nil else { closeAll(); return }
        stopping.withLockedValue { $0 = true }
        var byte: UInt8 = 1
        _ = write(wakePipe[1], &byte, 1)
        done.wait()
        thread = nil
        close(wakePipe[0]); close(wakePipe[1])
        closeAll()
    }

    private func serve() {
        let capacity = min(maxRecord, 65_535) + 1
        let count = 32
        let storage = UnsafeMutableRawPointer.allocate(byteCount: capacity * count, alignment: 16)
        defer { storage.deallocate() }
        var batch = [drac_datagram](repeating: drac_datagram(), count: count)
        for i in 0..<count {
            batch[i].data = storage + i * capacity
            batch[i].capacity = UInt32(capacity)
        }
        var fds = sockets.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        fds.append(pollfd(fd: wakePipe[0], events: Int16(POLLIN), revents: 0))
        while !stopping.withLockedValue({ $0 }) {
            let n = poll(&fds, nfds_t(fds.count), -1)
            if n < 0 {
                if errno == EINTR { continue }
                logger.error("udp: poll: \(errnoText())")
                Thread.sleep(forTimeInterval: 0.1)
                continue
            }
            if fds[fds.count - 1].revents != 0 { break }
            for i in 0..<sockets.count where fds[i].revents != 0 {
                receive(from: sockets[i], into: &batch)
            }
            // Everything waiting has been read: commit it as one batch and answer.
            processor.commitPending()
        }
    }

    /// Reads every datagram waiting on `socket` (in batches of up to 32) and hands each to the
    /// request processor.
    private func receive(from socket: BoundSocket, into batch: inout [drac_datagram]) {
        var total = 0
        while total < 1024 {
            let n = batch.withUnsafeMutableBufferPointer { drac_recv_datagrams(socket.fd, $0.baseAddress, UInt32($0.count)) }
            if n == -EINTR { continue }
            guard n > 0 else {
                if n != -EAGAIN { logger.debug("udp socket error: \(String(cString: strerror(-n)))") }
                return
            }
            for i in 0..<Int(n) { handle(batch[i], on: socket) }
            total += Int(n)
            if n < batch.count { return }
        }
    }

    private func handle(_ datagram: drac_datagram, on socket: BoundSocket) {
        let peer = RawSocketAddress(storage: datagram.from, length: socklen_t(datagram.fromlen))
        guard let caller = peer.address?.unmapped else { return }
        // The receive buffer holds rpc_max_record + 1 bytes: a longer datagram was truncated.
        guard datagram.truncated == 0, Int(datagram.length) <= maxRecord else {
            logger.warning("dropped datagram from \(caller) udp: over \(maxRecord) bytes (rpc_max_record)")
            return
        }
        let bytes = Array(UnsafeRawBufferPointer(start: datagram.data, count: Int(datagram.length)))
        let fd = socket.fd
        let logger = self.logger
        processor.handle(bytes, caller: caller, transport: "udp", eventLoop: nil) { reply in
            // A reply is one datagram; if it cannot be sent the client retransmits its call.
            let sent = reply.withUnsafeBytes { buffer in
                peer.withSockaddr { sendto(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT), $0, $1) }
            }
            if sent < 0 { logger.debug("udp reply to \(caller) not sent: \(errnoText())") }
        }
    }
}

private func errnoText() -> String { String(cString: strerror(errno)) }
