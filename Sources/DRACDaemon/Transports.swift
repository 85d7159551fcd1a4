// rpc.dracd's NIO transport: TCP record-marked streams, with limits (UDP: UDPTransport.swift).
import DRACCore
import DRACRPC
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

extension IPAddress {
    init?(_ address: NIOCore.SocketAddress?) {
        guard let address, let ip = address.ipAddress, let a = IPAddress(ip) else { return nil }
        self = a.unmapped
    }
}

/// Counts TCP connections against `max_connections`.
final class ConnectionLimiter: Sendable {
    private let count = NIOLockedValueBox(0)
    let limit: Int
    init(limit: Int) { self.limit = limit }
    func tryAcquire() -> Bool { count.withLockedValue { c in guard c < limit else { return false }; c += 1; return true } }
    func release() { count.withLockedValue { $0 -= 1 } }
    var current: Int { count.withLockedValue { $0 } }
}

/// One TCP connection: record-marked calls, replies may leave in any order (matched by xid).
final class TCPHandler: ChannelInboundHandler {
    typealias InboundIn = [UInt8]
    typealias OutboundOut = ByteBuffer

    let processor: RequestProcessor
    let limiter: ConnectionLimiter
    let logger: Logger
    var caller: IPAddress?

    init(processor: RequestProcessor, limiter: ConnectionLimiter, logger: Logger) {
        self.processor = processor
        self.limiter = limiter
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        caller = IPAddress(context.channel.remoteAddress)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        limiter.release()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let caller else { context.close(promise: nil); return }
        let record = unwrapInboundIn(data)
        let channel = context.channel
        processor.handle(record, caller: caller, transport: "tcp", eventLoop: context.eventLoop) { reply in
            channel.writeAndFlush(channel.allocator.buffer(bytes: RPCRecordDecoder.frame(reply)), promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        processor.flush(on: context.eventLoop)
        context.fireChannelReadComplete()
    }

    /// A client that sends calls but does not read the replies is not read until it does: the
    /// replies would otherwise pile up in memory for as long as it keeps sending. If it never
    /// reads, idle_timeout (no read for that long) closes the connection.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        if !writable {
            logger.info("tcp connection from \(caller.map { "\($0)" } ?? "?") does not read its replies; not reading its calls until it does")
        }
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: writable)
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            logger.info("closing idle tcp connection from \(caller.map { "\($0)" } ?? "?")")
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        let who = caller.map { "\($0)" } ?? "?"
        if let e = error as? RPCRecordDecoder.DecodeError {
            logger.warning("closing tcp connection from \(who): \(e)")
        } else {
            logger.info("tcp connection from \(who): \(error)")
        }
        context.close(promise: nil)
    }
}

extension TCPHandler: @unchecked Sendable {}
