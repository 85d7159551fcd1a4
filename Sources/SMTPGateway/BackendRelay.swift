// The backend relay: one SMTP client connection to the MTA behind drac-smtpd.
import DRACCore
import NIOCore
import NIOPosix
import SMTPCore

/// Why the backend could not give a verdict. Every case becomes a 4xx for the client.
public enum BackendError: Error, CustomStringConvertible {
    case connect(String)
    case io(String)
    case timeout(String)
    case closed
    case malformed(String)
    case unexpected(SMTPReply, String)

    public var description: String {
        switch self {
        case .connect(let e): "cannot connect: \(e)"
        case .io(let e): "connection error: \(e)"
        case .timeout(let what): "timeout waiting for \(what)"
        case .closed: "connection closed by backend"
        case .malformed(let why): "malformed reply: \(why)"
        case .unexpected(let r, let after): "unexpected reply \"\(r)\" to \(after)"
        }
    }
}

/// Who the client is, for XFORWARD (Postfix XFORWARD_README) and the log.
public struct ClientInfo: Sendable {
    public var address: IPAddress
    public var port: Int
    public var helo: String?
    public var protocolName: String
}

/// The backend relay contract, after Postfix's `smtpd_proxy.c`:
///
/// - One connection per client session, opened at the client's first MAIL (after EHLO and, when
///   the backend offers it, XFORWARD), reused by later transactions, closed at QUIT or when
///   the client goes away.
/// - Each command waits for its reply; the reply goes to the client unchanged when it is a
///   2xx, 4xx or 5xx that fits the command. Anything else (connection refused or lost,
///   timeout, a reply that does not parse or does not fit, such as 354 to MAIL or 250 to
///   DATA) fails the command: the caller tells the client 451 and drops the connection, so a
///   backend never half-holds a message.
/// - Message text is written as the client sends it, dot-stuffing intact; the caller only
///   writes a terminator (as part of the client's text) when the whole message was fine.
///   Dropping the connection before the terminator makes the backend discard the message.
///
/// Confined to the event loop of the client's channel: every method is called there.
public final class BackendConnection {
    public let channel: Channel
    let replies: BackendReplyHandler
    public private(set) var capabilities: [String: String] = [:]
    public var onWritable: (() -> Void)?

    init(channel: Channel, replies: BackendReplyHandler) {
        self.channel = channel
        self.replies = replies
    }

    /// Connects, reads the greeting and says EHLO.
    public static func open(host: String, port: Int, on eventLoop: EventLoop, timeout: TimeAmount,
                            heloName: String) -> EventLoopFuture<BackendConnection> {
        let replies = BackendReplyHandler()
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(replies) }
            }
        // An address literal skips the resolver and Happy Eyeballs (their thread hop and
        // resolution delay cost milliseconds per message).
        let connected: EventLoopFuture<Channel>
        if let address = try? SocketAddress(ipAddress: host, port: port) {
            connected = bootstrap.connect(to: address)
        } else {
            connected = bootstrap.connect(host: host, port: port)
        }
        return connected
            .flatMapErrorThrowing { error in throw BackendError.connect("\(host):\(port): \(error)") }
            .flatMap { channel in
                let conn = BackendConnection(channel: channel, replies: replies)
                replies.owner = conn
                return conn.expectReply(timeout: timeout, what: "greeting").flatMap { greeting -> EventLoopFuture<SMTPReply> in
                    guard greeting.code == 220 else {
                        return eventLoop.makeFailedFuture(BackendError.unexpected(greeting, "connect"))
                    }
                    return conn.command("EHLO \(heloName)", timeout: timeout, what: "EHLO")
                }.flatMapThrowing { ehlo -> BackendConnection in
                    guard ehlo.code == 250 else { throw BackendError.unexpected(ehlo, "EHLO") }
                    conn.capabilities = BackendConnection.parseCapabilities(ehlo)
                    return conn
                }.flatMapErrorThrowing { error in
                    channel.close(promise: nil)
                    throw error
                }
            }
    }

    /// Starts a transaction: XFORWARD (when offered: Postfix forgets the attributes after each
    /// transaction, so it precedes every MAIL) and MAIL, pipelined when the backend offers
    /// PIPELINING (RFC 2920 §3.1). The future holds the reply to MAIL; an XFORWARD refusal
    /// fails it.
    public func startTransaction(_ client: ClientInfo, mail: String, timeout: TimeAmount) -> EventLoopFuture<SMTPReply> {
        guard let attrs = capabilities["XFORWARD"] else { return command(mail, timeout: timeout, what: "MAIL") }
        let xforward = BackendConnection.xforwardLine(client, offered: attrs)
        let checked: (SMTPReply) throws -> Void = { r in
            guard r.code == 250 else { throw BackendError.unexpected(r, "XFORWARD") }
        }
        if capabilities["PIPELINING"] != nil {
            let x = expectReply(timeout: timeout, what: "XFORWARD")
            let m = expectReply(timeout: timeout, what: "MAIL")
            var buf = channel.allocator.buffer(capacity: xforward.utf8.count + mail.utf8.count + 4)
            buf.writeString(xforward + "\r\n" + mail + "\r\n")
            channel.writeAndFlush(buf, promise: nil)
            return x.flatMapThrowing(checked).flatMap { m }
        }
        return command(xforward, timeout: timeout, what: "XFORWARD").flatMapThrowing(checked)
            .flatMap { self.command(mail, timeout: timeout, what: "MAIL") }
    }

    /// Set when the connection last went idle in a pool.
    var idleSince = NIODeadline.now()

    /// EHLO keywords (uppercased) and their parameters; the first line is the greeting.
    static func parseCapabilities(_ r: SMTPReply) -> [String: String] {
        var caps: [String: String] = [:]
        for line in r.lines.dropFirst() {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard let k = parts.first else { continue }
            caps[k.uppercased()] = parts.count > 1 ? String(parts[1]) : ""
        }
        return caps
    }

    /// `XFORWARD NAME=... ADDR=... PORT=... PROTO=... HELO=...`, only the attributes offered,
    /// values in xtext (RFC 3461 §4); Postfix writes IPv6 addresses with an `IPV6:` prefix.
    static func xforwardLine(_ c: ClientInfo, offered: String) -> String {
        let offeredSet = Set(offered.uppercased().split(separator: " ").map(String.init))
        var attrs: [(String, String)] = [
            ("NAME", "[UNAVAILABLE]"),
            ("ADDR", c.address.isV4 ? c.address.text : "IPV6:\(c.address.text)"),
            ("PORT", String(c.port)),
            ("PROTO", c.protocolName.hasPrefix("E") ? "ESMTP" : "SMTP"),
        ]
        if let h = c.helo { attrs.append(("HELO", h)) }
        let parts = attrs.filter { offeredSet.contains($0.0) }.map { "\($0.0)=\(xtext($0.1))" }
        return "XFORWARD " + parts.joined(separator: " ")
    }

    static func xtext(_ s: String) -> String {
        var out = ""
        for b in s.utf8.prefix(255) {
            if b >= 33 && b <= 126 && b != UInt8(ascii: "+") && b != UInt8(ascii: "=") {
                out.append(Character(UnicodeScalar(b)))
            } else {
                out += "+" + String(b, radix: 16, uppercase: true).leftPadded(2)
            }
        }
        return out
    }

    /// Sends one command line and waits for its reply.
    public func command(_ line: String, timeout: TimeAmount, what: String) -> EventLoopFuture<SMTPReply> {
        let f = expectReply(timeout: timeout, what: what)
        var buf = channel.allocator.buffer(capacity: line.utf8.count + 2)
        buf.writeString(line)
        buf.writeString("\r\n")
        channel.writeAndFlush(buf, promise: nil)
        return f
    }

    /// Registers interest in the next reply (the one to the end of message text).
    public func expectReply(timeout: TimeAmount, what: String) -> EventLoopFuture<SMTPReply> {
        replies.expect(on: channel.eventLoop, timeout: timeout, what: what)
    }

    public func write(_ buffer: ByteBuffer) { channel.write(buffer, promise: nil) }
    public func flush() { channel.flush() }
    public var isWritable: Bool { channel.isWritable }
    public var isActive: Bool { channel.isActive }

    /// Drops the connection at once: a message without its terminator is discarded.
    public func abort() { channel.close(promise: nil) }

    /// Says QUIT and closes without waiting long for the reply.
    public func quit() {
        guard channel.isActive else { return }
        _ = command("QUIT", timeout: .seconds(5), what: "QUIT").always { [channel] _ in channel.close(promise: nil) }
    }
}

/// Reads backend replies (RFC 5321 §4.2: `ddd-text` continuation lines, `ddd text` last line)
/// and completes the oldest waiting command. Limits: 2048-octet lines, 200 lines per reply.
final class BackendReplyHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    static let maxLine = 2048
    static let maxLines = 200

    struct Waiter {
        var promise: EventLoopPromise<SMTPReply>
        var timer: Scheduled<Void>?
    }

    weak var owner: BackendConnection?
    private var buffer = ByteBuffer()
    private var lines: [String] = []
    private var waiters: [Waiter] = []
    private var failure: BackendError?

    func expect(on loop: EventLoop, timeout: TimeAmount, what: String) -> EventLoopFuture<SMTPReply> {
        let p = loop.makePromise(of: SMTPReply.self)
        if let failure { p.fail(failure); return p.futureResult }
        let timer = loop.scheduleTask(in: timeout) { [weak self] () -> Void in self?.failAll(.timeout(what)) }
        waiters.append(Waiter(promise: p, timer: timer))
        return p.futureResult
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        while let lf = buffer.readableBytesView.firstIndex(of: 0x0A) {
            let length = lf - buffer.readerIndex
            guard length <= BackendReplyHandler.maxLine else { failAll(.malformed("line too long")); context.close(promise: nil); return }
            var line = buffer.readString(length: length)!
            buffer.moveReaderIndex(forwardBy: 1)
            if line.hasSuffix("\r") { line.removeLast() }
            guard let (code, more, text) = BackendReplyHandler.split(line) else {
                failAll(.malformed(String(line.prefix(80)))); context.close(promise: nil); return
            }
            lines.append(text)
            guard lines.count <= BackendReplyHandler.maxLines else { failAll(.malformed("too many lines")); context.close(promise: nil); return }
            if more { continue }
            let reply = BackendReplyHandler.reply(code: code, lines: lines)
            lines = []
            guard !waiters.isEmpty else { failAll(.malformed("reply nobody asked for: \(reply)")); context.close(promise: nil); return }
            let w = waiters.removeFirst()
            w.timer?.cancel()
            w.promise.succeed(reply)
        }
        if buffer.readableBytes > BackendReplyHandler.maxLine { failAll(.malformed("line too long")); context.close(promise: nil) }
        buffer.discardReadBytes()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { owner?.onWritable?() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(.closed)
        owner?.onWritable?()   // wake a writer that waits for writability: it finds the failure
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(.io("\(error)"))
        context.close(promise: nil)
    }

    private func failAll(_ e: BackendError) {
        if failure == nil { failure = e }
        let ws = waiters
        waiters = []
        for w in ws { w.timer?.cancel(); w.promise.fail(e) }
        owner?.channel.close(promise: nil)
    }

    /// `250-text` -> (250, true, "text"); `250 text` / `250` -> (250, false, ...).
    static func split(_ line: String) -> (Int, Bool, String)? {
        let u = Array(line.utf8)
        guard u.count >= 3, u[0] >= 0x32, u[0] <= 0x35, u[1] >= 0x30, u[1] <= 0x35, u[2] >= 0x30, u[2] <= 0x39 else { return nil }
        let code = Int(u[0] - 0x30) * 100 + Int(u[1] - 0x30) * 10 + Int(u[2] - 0x30)
        if u.count == 3 { return (code, false, "") }
        guard u[3] == UInt8(ascii: "-") || u[3] == UInt8(ascii: " ") else { return nil }
        return (code, u[3] == UInt8(ascii: "-"), String(decoding: u[4...], as: UTF8.self))
    }

    /// Separates the enhanced status code (RFC 2034) when every line carries the same one.
    static func reply(code: Int, lines: [String]) -> SMTPReply {
        func enhanced(_ s: String) -> String? {
            let word = s.prefix { $0 != " " }
            let parts = word.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 3, parts[0] == Substring(String(code / 100)),
                  parts.allSatisfy({ !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isNumber) }) else { return nil }
            return String(word)
        }
        if let e = enhanced(lines[0]), lines.allSatisfy({ enhanced($0) == e }) {
            let texts = lines.map { String($0.dropFirst(e.count).drop { $0 == " " }) }
            return SMTPReply(code: code, enhanced: e, lines: texts)
        }
        return SMTPReply(code: code, enhanced: nil, lines: lines)
    }
}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

/// Idle backend connections of one event loop, reused by later client sessions so that a
/// message does not pay for a TCP connect, a greeting and an EHLO. Only connections between
/// transactions are pooled; they are dropped after `maxIdle` time (well under the backend's own
/// idle timeout, Postfix's is 300 s) and one failed reuse is retried on a new connection.
final class BackendPool {
    var idle: [BackendConnection] = []
    let capacity: Int
    let maxIdle: TimeAmount

    init(capacity: Int, maxIdle: TimeAmount) {
        self.capacity = capacity
        self.maxIdle = maxIdle
    }

    func take() -> BackendConnection? {
        let now = NIODeadline.now()
        while let c = idle.popLast() {
            if c.isActive && now - c.idleSince < maxIdle { return c }
            c.quit()
        }
        return nil
    }

    func give(_ c: BackendConnection) {
        c.onWritable = nil
        guard c.isActive, idle.count < capacity else { c.quit(); return }
        c.idleSince = .now()
        idle.append(c)
    }
}
