// The NIO glue for one client: frames input, runs SMTPSession's actions, streams DATA.
import DRACCore
import DRACMap
import Foundation
import Logging
import MailServerKit
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import SASLAuth
import SMTPCore

/// One client connection. Everything here runs on the channel's event loop; the SASL server
/// and map lookups run on the thread pool and come back to the loop. The socket is read
/// continuously (autoRead) except when pipelined input piles up past `inputHighWater` while we
/// wait, or when the backend's socket is full during DATA: then reading pauses (back-pressure).
/// Toggling autoRead only at those moments, not per read, saves two epoll_ctl calls per read.
final class SMTPConnectionHandler: ChannelInboundHandler, DrainableConnection, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let services: GatewayServices
    let kind: ListenerKind
    var logger: Logger { services.logger }
    var context: ChannelHandlerContext?
    var session: SMTPSession?
    var client = IPAddress.v4(0)
    var clientPort = 0
    var id = ""
    var limited = false

    var input = ByteBuffer()
    var framer = LineFramer()
    var scanner: DataScanner?
    var backend: BackendConnection?
    var saslSession: (any SASLSession)?
    /// Running a delayed or off-loop step: nothing else is processed meanwhile.
    var busy = false
    var closing = false
    var draining = false
    var lastActivity = NIODeadline.now()
    var timer: Scheduled<Void>?

    init(services: GatewayServices, kind: ListenerKind) {
        self.services = services
        self.kind = kind
    }

    // MARK: - Channel events

    func channelActive(context: ChannelHandlerContext) {
        self.context = context
        guard let a = IPAddress(socketAddress: context.channel.remoteAddress) else { context.close(promise: nil); return }
        client = a
        clientPort = context.channel.remoteAddress?.port ?? 0
        id = services.nextSessionID()
        input = context.channel.allocator.buffer(capacity: 0)
        if let refusal = services.limiter.acquire(client) {
            let r = refusal == .total
                ? SMTPReply(421, "4.7.0", "\(services.hostname) Error: too many connections")
                : SMTPReply(421, "4.7.0", "\(services.hostname) Error: too many connections from [\(client)]")
            logger.warning("\(id): reject: connect from [\(client)]:\(clientPort): \(r) (\(refusal == .total ? "smtpd_max_connections" : "smtpd_max_connections_per_client"))")
            context.writeAndFlush(wrapOutboundOut(buffer(r.encoded)), promise: nil)
            context.close(promise: nil)
            return
        }
        limited = true
        services.registry.add(self)
        let s = SMTPSession(settings: services.sessionSettings(kind: kind, client: client), client: client, secure: false)
        session = s
        logger.info("\(id): connect from [\(client)]:\(clientPort) to \(kind.rawValue)")
        if services.draining.withLockedValue({ $0 }) {
            close(with: .shuttingDown)
            return
        }
        run([s.greeting()])
        flushAndRead()
        armTimer()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        releaseBackend()
        saslSession = nil
        if limited {
            limited = false
            services.limiter.release(client)
            services.registry.remove(self)
            logger.info("\(id): disconnect from [\(client)]:\(clientPort) \(session?.countsText ?? "")")
        }
        self.context = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        lastActivity = .now()
        if closing { return }
        input.writeBuffer(&bytes)
        process()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, !busy, !closing { process() }
        context.fireChannelWritabilityChanged()
    }

    var writable: Bool { context?.channel.isWritable ?? false }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted(let proto) = event {
            session?.tlsEstablished()
            logger.info("\(id): TLS established with [\(client)]\(proto.map { " (\($0))" } ?? "")")
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.info("\(id): connection error from [\(client)]: \(error)")
        context.close(promise: nil)
    }

    // MARK: - Input

    /// Feeds buffered input to the session until it must wait or needs more octets.
    /// Not re-entered: a call from inside (the socket drained during a flush) makes the
    /// running call go round again instead.
    func process() {
        processing.run {
            // No new command while the client is not reading our replies: a client that
            // pipelines NOOPs and reads nothing must not make us queue replies in memory
            // without end (channelWritabilityChanged resumes).
            loop: while !busy && !closing && writable, let s = session, !s.isWaiting, !s.isClosed {
                if s.inData {
                    if input.readableBytes == 0 || !scanData() { break }
                    continue
                }
                switch framer.next(from: &input, limit: s.lineLimit) {
                case nil: break loop
                case .tooLong?: run(step { $0.received(line: "", tooLong: true) })
                case .text(let line)?: run(step { $0.received(line: Substring(line)) })
                }
            }
            input.discardReadBytes()
            flushAndRead()
            finishIfIdle()
        }
    }
    let processing = Rerunner()

    /// Runs one step of the session state machine.
    func step(_ body: (inout SMTPSession) -> [SMTPAction]) -> [SMTPAction] {
        guard session != nil else { return [] }
        return body(&session!)
    }

    /// DATA: scans what is buffered, streams the good part to the backend. Returns true when
    /// the message ended (the session takes over again), false when it needs more input.
    func scanData() -> Bool {
        guard var sc = scanner else { return false }
        let scanned = input.readableBytes
        let r = input.withUnsafeReadableBytes { sc.scan($0) }
        scanner = sc
        let forward = input.readSlice(length: r.forward)!
        if let end = r.end {
            input.moveReaderIndex(forwardBy: end - r.forward)
            scanner = nil
            let actions = step { $0.dataEnded(size: sc.size, problem: sc.problem) }
            guard sc.problem == nil else {
                run(actions)
                return true
            }
            guard let b = backend else {
                logger.warning("\(id): backend failed during DATA: \(BackendError.closed)")
                run(step { $0.backendReplied(.backendUnavailable) })
                return true
            }
            // A backend that died while we streamed fails this reply at once (then 451).
            let reply = b.expectReply(timeout: .seconds(services.config.backendDataTimeoutSeconds), what: "end of data")
            b.write(forward)
            b.flush()
            awaitBackend(reply, expect: [2, 4, 5], after: "end of data")
            return true
        }
        if forward.readableBytes > 0, let b = backend {
            b.write(forward)
            b.flush()
        }
        // Everything was scanned: octets not forwarded (after a problem) are dropped, never
        // scanned twice.
        input.moveReaderIndex(forwardBy: scanned - r.forward)
        input.discardReadBytes()
        return false
    }

    // MARK: - Actions

    func run(_ actions: [SMTPAction]) {
        var rest = actions[...]
        while let a = rest.popFirst() {
            switch a {
            case .reply(let r):
                write(r)
            case .close(let r):
                close(with: r)
                return
            case .startTLS(let r):
                startTLS(r)
            case .authStart(let mech, let initial):
                authenticate { s in s.start(mechanism: mech, initialResponse: initial) }
            case .authStep(let bytes):
                authenticate { s in s.step(bytes) }
            case .lookupDRAC:
                lookupDRAC()
            case .backendMail(let from, let params):
                backendMail(from, params)
            case .backendRcpt(let to, let params):
                let addr: String
                switch to { case .postmaster: addr = "Postmaster"; case .mailbox(let m): addr = m.text }
                backendCommand("RCPT TO:<\(addr)>" + paramText(params), expect: [2, 4, 5], what: "RCPT")
            case .backendData:
                backendCommand("DATA", expect: [3, 4, 5], what: "DATA")
            case .beginData(let r):
                beginData(r)
            case .backendRset:
                if let b = backend, b.isActive {
                    _ = b.command("RSET", timeout: timeout(services.config.backendTimeoutSeconds), what: "RSET").map { [weak self] r in
                        if r.code != 250 { self?.dropBackend("RSET answered \(r)") }
                    }.recover { [weak self] e in self?.dropBackend("\(e)") }
                }
            case .backendAbort:
                backend?.abort()
                backend = nil
            case .log(let text):
                logger.info("\(id): \(text)")
            case .authFailed:
                let verdict = services.throttle.withLockedValue { $0.failure(client, now: Date().timeIntervalSince1970) }
                var remaining = Array(rest)
                if verdict.disconnect {
                    logger.warning("\(id): [\(client)]: \(verdict.failures) failed authentications, disconnecting (smtpd_auth_failure_limit)")
                    remaining.append(.close(SMTPReply(421, "4.7.0", "\(services.hostname) Error: too many failed authentication attempts")))
                }
                if verdict.delay > 0 {
                    busy = true
                    context?.eventLoop.scheduleTask(in: .milliseconds(Int64(verdict.delay * 1000))) { [self] in
                        busy = false
                        guard context != nil else { return }
                        run(remaining)
                        process()
                    }
                    flush()
                    return
                }
                rest = remaining[...]
            case .authSucceeded:
                services.throttle.withLockedValue { $0.success(client) }
            }
        }
    }

    func write(_ r: SMTPReply) {
        context?.write(wrapOutboundOut(buffer(r.encoded)), promise: nil)
    }

    func buffer(_ s: String) -> ByteBuffer {
        var b = context?.channel.allocator.buffer(capacity: s.utf8.count) ?? ByteBuffer()
        b.writeString(s)
        return b
    }

    func flush() { context?.flush() }

    /// Flushes replies and asks for more input when the session can take it.
    func flushAndRead() {
        guard let context else { return }
        // RFC 2920 §3.1: replies to a pipelined group may be held until the server would wait
        // for the client. While we wait for the backend and the client's next command is
        // already here, the reply waits too, and the group's replies leave in one write.
        if let s = session, s.isWaiting, !s.inData, !closing, input.readableBytesView.contains(0x0A) {
            // no flush yet
        } else {
            context.flush()
        }
        // Timeouts count from our last reply or read, not from before a slow backend's answer.
        lastActivity = .now()
        var want = !closing && input.readableBytes < SMTPConnectionHandler.inputHighWater
        if let s = session, s.isClosed { want = false }
        if let s = session, s.inData, let b = backend, !b.isWritable { want = false }   // resumes on writability
        guard want != reading else { return }
        reading = want
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: want)
    }

    /// Pipelined input we hold while waiting before we stop reading the socket.
    static let inputHighWater = 64 * 1024
    var reading = false

    func close(with reply: SMTPReply) {
        guard let context, !closing else { return }
        closing = true
        releaseBackend()
        context.writeAndFlush(wrapOutboundOut(buffer(named(reply).encoded))).whenComplete { _ in context.close(promise: nil) }
        // A client that reads nothing never lets that write complete.
        context.eventLoop.scheduleTask(in: .seconds(10)) { context.close(promise: nil) }
    }

    /// RFC 5321 §3.8 / §4.2: a 421 names the server ("421 <domain> Service not available").
    func named(_ reply: SMTPReply) -> SMTPReply {
        var r = reply
        if r.code == 421, let first = r.lines.first, !first.hasPrefix(services.hostname) {
            r.lines[0] = services.hostname + " " + first
        }
        return r
    }

    func startTLS(_ reply: SMTPReply) {
        guard let context, let tls = services.tls else { return }
        write(reply)
        MailServerKit.startTLS(context, tls, discarding: &input, command: "STARTTLS", session: id, client: client, logger: logger)
    }

    func authenticate(_ exchange: @escaping @Sendable (any SASLSession) -> SASLOutcome) {
        guard let sasl = services.sasl, let eventLoop = context?.eventLoop else { return }
        let info = SASLConnectionInfo(service: "smtp", serverFQDN: services.hostname,
                                      local: localEndpoint, remote: SASLEndpoint(ip: client.text, port: clientPort),
                                      secure: session?.secure ?? false)
        let existing = saslSession
        let box = SASLBox(existing)
        busy = true
        services.threadPool.runIfActive(eventLoop: eventLoop) { () -> (SASLOutcome, SASLBox) in
            var s = box.session
            if s == nil { s = try sasl.makeSession(info) }
            return (exchange(s!), SASLBox(s))
        }.whenComplete { [self] result in
            busy = false
            guard context != nil else { return }
            let outcome: AuthResult
            switch result {
            case .success(let (o, b)):
                saslSession = b.session
                outcome = AuthResult(o)
                if case .challenge = o {} else { saslSession = nil }   // a fresh sasl_conn per exchange
            case .failure(let e):
                logger.error("\(id): SASL server error: \(e)")
                outcome = .temporary("\(e)")
                saslSession = nil
            }
            run(step { $0.authResult(outcome) })
            process()
        }
    }

    var localEndpoint: SASLEndpoint? {
        guard let l = context?.channel.localAddress, let ip = l.ipAddress, let port = l.port else { return nil }
        return SASLEndpoint(ip: ip, port: port)
    }

    func lookupDRAC() {
        guard let eventLoop = context?.eventLoop else { return }
        guard let map = services.map else {
            run(step { $0.dracLookedUp(expiry: nil, now: Int64(time(nil))) })
            return
        }
        let client = self.client
        // Most lookups find the map unlocked and its handle current: then they run here
        // (about 10 us, no thread hop). When a writer holds the lock, the lookup waits on the
        // thread pool instead, never on the event loop.
        let inline = Result { try map.expiry(of: client, wait: false) }
        if case .failure(let e) = inline, (e as? MapError)?.code == .busy {
            busy = true
            services.threadPool.runIfActive(eventLoop: eventLoop) { () -> Int64? in
                try map.expiry(of: client)
            }.whenComplete { [self] result in
                busy = false
                guard context != nil else { return }
                dracLookupFinished(result)
                process()
            }
            return
        }
        dracLookupFinished(inline)
    }

    /// A map that cannot be read grants nothing, and says so in the log.
    func dracLookupFinished(_ result: Result<Int64?, Error>) {
        var expiry: Int64? = nil
        switch result {
        case .success(let e): expiry = e
        case .failure(let e): logger.warning("\(id): DRAC map lookup for [\(client)] failed: \(e); treated as no entry")
        }
        run(step { $0.dracLookedUp(expiry: expiry, now: Int64(time(nil))) })
    }

    func backendMail(_ from: ReversePath, _ params: [MailParameter]) {
        guard let eventLoop = context?.eventLoop, let s = session else { return }
        let line = "MAIL FROM:<\(from.logText)>" + paramText(params)
        let c = services.config
        let t = timeout(c.backendTimeoutSeconds)
        let info = ClientInfo(address: client, port: clientPort, helo: s.helo, protocolName: s.protocolName)
        let pool = services.backendPool(for: eventLoop)
        let fresh: () -> EventLoopFuture<BackendConnection> = { [services] in
            BackendConnection.open(host: c.backendHost, port: c.backendPort, on: eventLoop, timeout: t, heloName: services.hostname)
                .map { b in
                    services.backendDSN.withLockedValue { $0 = b.capabilities["DSN"] != nil }
                    return b
                }
        }
        func mail(on b: BackendConnection) -> EventLoopFuture<SMTPReply> {
            b.startTransaction(info, mail: line, timeout: t)
        }
        let f: EventLoopFuture<SMTPReply>
        if let b = backend, b.isActive {
            f = mail(on: b)
        } else if let pooled = pool.take() {
            // A pooled connection may have died quietly: one retry on a new connection.
            f = mail(on: pooled).map { [self] r in self.adopt(pooled); return r }
                .flatMapError { _ in
                    pooled.abort()
                    return fresh().flatMap { [self] b in self.adopt(b); return mail(on: b) }
                }
        } else {
            f = fresh().flatMap { [self] b in self.adopt(b); return mail(on: b) }
        }
        awaitBackend(f, expect: [2, 4, 5], after: "MAIL")
    }

    func adopt(_ b: BackendConnection) {
        backend = b
        b.onWritable = { [weak self] in self?.flushAndRead() }
    }

    /// At the end of the session: an idle backend connection goes back to the pool, one in
    /// the middle of a message is dropped (the backend discards the message).
    func releaseBackend() {
        guard let b = backend else { return }
        backend = nil
        if scanner != nil || session?.isWaiting == true || session?.inTransaction == true || busy || !b.isActive {
            b.abort()
        } else if let loop = context?.eventLoop {
            services.backendPool(for: loop).give(b)
        } else {
            b.quit()
        }
    }

    func backendCommand(_ line: String, expect: Set<Int>, what: String) {
        guard let loop = context?.eventLoop else { return }
        guard let b = backend, b.isActive else {
            awaitBackend(loop.makeFailedFuture(BackendError.closed), expect: expect, after: what)
            return
        }
        awaitBackend(b.command(line, timeout: timeout(services.config.backendTimeoutSeconds), what: what), expect: expect, after: what)
    }

    /// Hands the backend's reply to the session; failures and replies that do not fit the
    /// command become 451 and drop the backend (smtpd_proxy.c's rule: never a false 250).
    func awaitBackend(_ f: EventLoopFuture<SMTPReply>, expect: Set<Int>, after what: String) {
        busy = true
        f.whenComplete { [self] result in
            busy = false
            guard context != nil, session?.isWaiting == true else { return }
            var reply: SMTPReply
            switch result {
            case .success(let r) where expect.contains(r.code / 100) && r.code != 421:
                reply = r
            case .success(let r):
                dropBackend("unexpected reply \"\(r)\" to \(what)")
                reply = .backendUnavailable
            case .failure(let e):
                dropBackend("\(e) (\(what))")
                reply = .backendUnavailable
            }
            if what == "DATA" && reply.code / 100 == 3 && reply.code != 354 { reply = .backendUnavailable }
            run(step { $0.backendReplied(reply) })
            process()
        }
    }

    func dropBackend(_ why: String) {
        logger.warning("\(id): backend \(services.config.backendHost):\(services.config.backendPort): \(why)")
        backend?.abort()
        backend = nil
    }

    func beginData(_ reply: SMTPReply) {
        write(reply)
        scanner = DataScanner(maxSize: services.config.limits.messageSize, maxLine: services.config.limits.textLine)
        guard let b = backend, let s = session else { return }
        let header = ReceivedHeader.make(helo: s.helo, client: client, hostname: services.hostname,
                                         protocolName: s.protocolName, id: id, recipient: nil, date: rfc5322Date())
        b.write(buffer(header))
    }

    func paramText(_ params: [MailParameter]) -> String {
        params.map { " " + $0.keyword + ($0.value.map { "=" + $0 } ?? "") }.joined()
    }

    func timeout(_ seconds: Int64) -> TimeAmount { .seconds(seconds) }

    // MARK: - Timers and shutdown

    /// One timer per connection, re-armed lazily: it fires at the earliest possible deadline
    /// and checks the last activity (cheap with a thousand idle clients).
    func armTimer() {
        guard let context, let s = session else { return }
        let seconds = s.inData ? services.config.limits.dataTimeoutSeconds : services.config.limits.commandTimeoutSeconds
        let deadline = lastActivity + .seconds(seconds)
        timer = context.eventLoop.scheduleTask(deadline: deadline) { [self] in
            guard self.context != nil, !closing else { return }
            let s = session!
            let limit = s.inData ? services.config.limits.dataTimeoutSeconds : services.config.limits.commandTimeoutSeconds
            // Waiting for the backend or SASL is our wait, not the client's.
            if busy || s.isWaiting { lastActivity = .now() }
            if NIODeadline.now() >= lastActivity + .seconds(limit) {
                logger.info("\(id): timeout after \(s.inData ? "DATA" : "command") from [\(client)]")
                close(with: .timeout)
            } else {
                armTimer()
            }
        }
    }

    func drain() {
        context?.eventLoop.execute { [self] in
            guard context != nil else { return }
            draining = true
            finishIfIdle()
        }
    }

    func forceClose() {
        context?.eventLoop.execute { [self] in
            guard let context else { return }
            backend?.abort()
            backend = nil
            if !closing {
                closing = true
                context.writeAndFlush(wrapOutboundOut(buffer(named(.shuttingDown).encoded)), promise: nil)
            }
            context.close(promise: nil)
        }
    }

    /// During shutdown: once no transaction is open, say 421 and close.
    func finishIfIdle() {
        guard draining, let s = session, !s.isWaiting, !busy, !s.inData, !s.inTransaction else { return }
        close(with: .shuttingDown)
    }
}

/// RFC 5322 §3.3 date in UTC, e.g. `Tue, 24 Nov 2026 10:00:00 +0000`.
func rfc5322Date() -> String {
    var t = time(nil)
    var tm = tm()
    gmtime_r(&t, &tm)
    var buf = [CChar](repeating: 0, count: 64)
    let n = strftime(&buf, buf.count, "%a, %d %b %Y %H:%M:%S +0000", &tm)
    return String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
