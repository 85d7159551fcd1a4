// The NIO glue for one POP3 client: frames lines, runs POP3Session's actions, streams messages.
import DRACCore
import Foundation
import Logging
import MailServerKit
import MaildropStore
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import POP3Core
import SASLAuth
import SMTPCore

/// A maildrop session and its owner, carried to and from the thread pool. Only one pool job
/// touches it at a time (the handler is `busy` while a job runs).
final class MaildropBox: @unchecked Sendable {
    let session: any MaildropSession
    let owner: SystemUser?
    init(_ session: any MaildropSession, owner: SystemUser?) {
        self.session = session
        self.owner = owner
    }
    func run<T>(_ body: (any MaildropSession) throws -> T) throws -> T {
        try Privileges.asFilesystemUser(owner) { try body(session) }
    }
}

/// A message being sent: the stored octets and the stuffer that turns them into the response.
final class MessageStream: @unchecked Sendable {
    let source: MessageSource
    var stuffer: DotStuffer
    var done = false
    init(source: MessageSource, stuffer: DotStuffer) {
        self.source = source
        self.stuffer = stuffer
    }
}

/// One client connection. Everything here runs on the channel's event loop; SASL, maildrop
/// opens, message reads and UPDATE run on the thread pool and come back to the loop. While one
/// of them runs (`busy`), pipelined commands (RFC 2449 §6.6) wait in `input`.
final class POP3ConnectionHandler: ChannelInboundHandler, DrainableConnection, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let services: POP3Services
    let kind: POP3ListenerKind
    var logger: Logger { services.logger }
    var context: ChannelHandlerContext?
    var session: POP3Session?
    var client = IPAddress.v4(0)
    var clientPort = 0
    var id = ""
    var limited = false

    var input = ByteBuffer()
    var framer = LineFramer()
    var saslSession: (any SASLSession)?
    var maildrop: MaildropBox?
    var stream: MessageStream?
    /// A pool job or a delayed failure reply is under way: nothing else is processed.
    var busy = false
    var closing = false
    var draining = false
    var reading = false
    var lastActivity = NIODeadline.now()
    var timer: Scheduled<Void>?
    var refreshTimer: RepeatedTask?

    /// Output of one pool job while streaming a message; more is read once it is written.
    static let chunkOutput = 256 * 1024
    /// Pipelined input held while busy before we stop reading the socket.
    static let inputHighWater = 64 * 1024

    init(services: POP3Services, kind: POP3ListenerKind) {
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
            let why = refusal == .total ? "pop3d_max_connections" : "pop3d_max_connections_per_client"
            logger.warning("\(id): reject: connect from [\(client)]:\(clientPort): too many connections (\(why))")
            let r = POP3Response.err(.sysTemp, refusal == .total ? "Too many connections." : "Too many connections from your address.")
            context.writeAndFlush(wrapOutboundOut(buffer(r.encoded)), promise: nil)
            context.close(promise: nil)
            return
        }
        limited = true
        services.registry.add(self)
        let local = IPAddress(socketAddress: context.channel.localAddress)
        session = POP3Session(settings: services.sessionSettings(kind: kind, client: client), client: client,
                              local: local, secure: false)
        logger.info("\(id): connect from [\(client)]:\(clientPort) to \(kind.rawValue) \(local.map { $0.isV4 ? $0.text : "[\($0.text)]" } ?? "?"):\(context.channel.localAddress?.port ?? 0)")
        if services.draining.withLockedValue({ $0 }) {
            run(step { $0.shuttingDown() })
            return
        }
        // Implicit TLS (pop3s): the greeting goes out after the handshake.
        if kind == .pop3 { run([session!.greeting()]) }
        flushAndRead()
        armTimer()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        refreshTimer?.cancel()
        saslSession = nil
        let actions = step { $0.connectionClosed() }
        self.context = nil
        run(actions)    // log lines only, the connection is gone
        releaseMaildropIfIdle()
        if limited {
            limited = false
            services.limiter.release(client)
            services.registry.remove(self)
        }
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
        if context.channel.isWritable, !busy {
            if stream != nil { pump() } else { process() }
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted(let proto) = event {
            session?.tlsEstablished()
            logger.info("\(id): TLS established with [\(client)]\(proto.map { " (\($0))" } ?? "")")
            if kind == .pop3s, let s = session {
                run([s.greeting()])
                flushAndRead()
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.info("\(id): connection error from [\(client)]: \(error)")
        context.close(promise: nil)
    }

    // MARK: - Input

    /// Runs the commands that are buffered, as far as the session can go. Not re-entered: a
    /// call from inside (a message finished, the socket drained during a flush) makes the
    /// running call go round again instead, so nothing is left waiting and the stack stays flat.
    func process() {
        processing.run {
            // No new command while the client is not reading what we sent (a client that
            // pipelines RETR 1..N and reads nothing must not make us queue the maildrop in
            // memory); channelWritabilityChanged resumes.
            loop: while !busy && !closing && stream == nil && writable, let s = session, !s.isWaiting, !s.isClosed {
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

    func step(_ body: (inout POP3Session) -> [POP3Action]) -> [POP3Action] {
        guard session != nil else { return [] }
        return body(&session!)
    }

    // MARK: - Actions

    func run(_ actions: [POP3Action]) {
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
            case .checkPassword(let user, let password):
                checkPassword(user: user, password: password)
            case .authStart(let mech, let initial):
                authenticate { s in s.start(mechanism: mech, initialResponse: initial) }
            case .authStep(let bytes):
                authenticate { s in s.step(bytes) }
            case .openMaildrop(let user):
                openMaildrop(user)
            case .sendMessage(let n, let top, let response):
                sendMessage(n, topLines: top, response: response)
            case .commitDeletions(let numbers):
                commit(numbers)
            case .recordLogin:
                services.throttle.withLockedValue { $0.success(client) }
                recordDRAC()
            case .authFailed:
                let verdict = services.throttle.withLockedValue { $0.failure(client, now: Date().timeIntervalSince1970) }
                var remaining = Array(rest)
                if verdict.disconnect {
                    logger.warning("\(id): [\(client)]: \(verdict.failures) failed logins, disconnecting (pop3d_auth_failure_limit)")
                    // Unless the per-connection limit closed the session already.
                    let end = step { $0.disconnect(reason: "Too many failed logins from this address", response: .err(.auth, "Authentication failed.")) }
                    if !end.isEmpty { remaining = end }
                }
                if verdict.delay > 0 {
                    busy = true
                    flush()
                    context?.eventLoop.scheduleTask(in: .milliseconds(Int64(verdict.delay * 1000))) { [self] in
                        busy = false
                        guard context != nil else { return }
                        run(remaining)
                        process()
                    }
                    return
                }
                rest = remaining[...]
            case .log(let text):
                log(text)
            }
        }
    }

    /// Session lines in Dovecot's terms after the session id: `pop3-login:` before login,
    /// `pop3(user):` after it.
    func log(_ text: String) {
        if let u = session?.user {
            logger.info("\(id): pop3(\(POP3Session.logSafe(u))): \(text)")
        } else {
            logger.info("\(id): pop3-login: \(text)")
        }
    }

    func write(_ r: POP3Response) {
        context?.write(wrapOutboundOut(buffer(r.encoded)), promise: nil)
    }

    func buffer(_ s: String) -> ByteBuffer {
        var b = context?.channel.allocator.buffer(capacity: s.utf8.count) ?? ByteBuffer()
        b.writeString(s)
        return b
    }

    func flush() { context?.flush() }

    var writable: Bool { context?.channel.isWritable ?? false }

    /// Flushes when we are about to wait for the client (RFC 2449 §6.6: responses to a
    /// pipelined group may leave together), and reads when the session can take input.
    func flushAndRead() {
        guard let context else { return }
        let morePipelined = !busy && !closing && writable && stream == nil && input.readableBytesView.contains(0x0A)
        if !morePipelined { context.flush() }
        lastActivity = .now()
        var want = !closing && input.readableBytes < Self.inputHighWater
        if let s = session, s.isClosed { want = false }
        guard want != reading else { return }
        reading = want
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: want)
    }

    func close(with response: POP3Response?) {
        guard let context, !closing else { return }
        closing = true
        refreshTimer?.cancel()
        // The maildrop lock goes before the goodbye: a client that logs in again as soon as
        // it reads QUIT's +OK must not find its own old session holding it ([IN-USE]).
        // Unlocking and closing a descriptor do not block; no pool job uses it (not busy).
        if !busy, let box = maildrop {
            maildrop = nil
            stream?.source.close()
            stream = nil
            box.session.close()
        }
        if let r = response {
            context.writeAndFlush(wrapOutboundOut(buffer(r.encoded))).whenComplete { _ in context.close(promise: nil) }
            // A client that reads nothing never lets that write complete.
            context.eventLoop.scheduleTask(in: .seconds(10)) { context.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }

    func startTLS(_ response: POP3Response) {
        guard let context, let tls = services.tls else { return }
        write(response)
        MailServerKit.startTLS(context, tls, discarding: &input, command: "STLS", session: id, client: client, logger: logger)
    }

    var saslInfo: SASLConnectionInfo {
        var local: SASLEndpoint? = nil
        if let l = context?.channel.localAddress, let ip = l.ipAddress, let port = l.port { local = SASLEndpoint(ip: ip, port: port) }
        return SASLConnectionInfo(service: "pop", serverFQDN: services.hostname, local: local,
                                  remote: SASLEndpoint(ip: client.text, port: clientPort), secure: session?.secure ?? false)
    }

    /// Runs `body` on the thread pool, then `done` on the loop (unless the connection is gone,
    /// in which case `gone` runs there).
    func offload<T>(_ body: @escaping () throws -> T, done: @escaping (Result<T, Error>) -> Void,
                    gone: @escaping (Result<T, Error>) -> Void = { _ in }) {
        guard let loop = context?.eventLoop else { return }
        busy = true
        services.threadPool.runIfActive(eventLoop: loop, body).whenComplete { [self] result in
            busy = false
            guard context != nil else { gone(result); releaseMaildropIfIdle(); return }
            done(result)
            if !busy { process() }
        }
    }

    func checkPassword(user: String, password: String) {
        guard let sasl = services.sasl else {
            run(step { $0.passwordChecked(.temporary("no SASL backend configured")) })
            return
        }
        let info = saslInfo
        offload({ sasl.checkPassword(user: user, password: password, info: info) }) { [self] result in
            switch result {
            case .success(let o): run(step { $0.passwordChecked(AuthResult(o)) })
            case .failure(let e): run(step { $0.passwordChecked(.temporary("\(e)")) })
            }
        }
    }

    func authenticate(_ exchange: @escaping @Sendable (any SASLSession) -> SASLOutcome) {
        guard let sasl = services.sasl else {
            run(step { $0.authResult(.temporary("no SASL backend configured")) })
            return
        }
        let info = saslInfo
        let box = SASLBox(saslSession)
        offload({ () -> (SASLOutcome, SASLBox) in
            var s = box.session
            if s == nil { s = try sasl.makeSession(info) }
            return (exchange(s!), SASLBox(s))
        }) { [self] result in
            let outcome: AuthResult
            switch result {
            case .success(let (o, b)):
                saslSession = b.session
                outcome = AuthResult(o)
                if case .challenge = o {} else { saslSession = nil }
            case .failure(let e):
                logger.error("\(id): SASL server error: \(e)")
                outcome = .temporary("\(e)")
                saslSession = nil
            }
            run(step { $0.authResult(outcome) })
        }
    }

    func openMaildrop(_ user: String) {
        let options = services.maildropOptions
        let services = self.services
        // The passwd lookup (system users) may ask NSS (LDAP...): on the pool too.
        offload({ () -> MaildropBox in
            let target = try services.target(for: user).get()
            let s = try Privileges.asFilesystemUser(target.owner) { () throws -> any MaildropSession in
                try MaildropStore.open(target.location, options: options)
            }
            return MaildropBox(s, owner: target.owner)
        }, done: { [self] result in
            switch result {
            case .success(let box):
                maildrop = box
                for w in box.session.warnings { logger.warning("\(id): user=<\(user)>: \(w)") }
                run(step { $0.maildropOpened(.ok(box.session.messages)) })
            case .failure(let e):
                if (e as? MaildropError) == .inUse {
                    run(step { $0.maildropOpened(.inUse) })
                } else {
                    run(step { $0.maildropOpened(.failed("\(e)")) })
                }
            }
        }, gone: { result in
            if case .success(let box) = result { box.session.close() }
        })
    }

    // MARK: - RETR and TOP

    func sendMessage(_ number: Int, topLines: Int?, response: POP3Response) {
        guard let box = maildrop else {
            run(step { $0.messageUnavailable(reason: "no maildrop") })
            return
        }
        // mboxrd unquoting applies to mbox only; Maildir sizes are counted without it.
        let unquote = box.session.usesMboxFromUnquote
        let stuffer = DotStuffer(topLines: topLines, mboxFromUnquote: unquote)
        // A message in the page cache (mail is usually read soon after delivery, and clients
        // pipeline RETRs) is sent from the loop: a pool hop per message would cost more than
        // the read. What is not in memory, or fails, goes to the pool, where errors get -ERR.
        var quick: MessageStream? = nil
        if let source = (try? box.run { s in s.openMessageQuickly(number) }) ?? nil {
            let m = MessageStream(source: source, stuffer: stuffer)
            switch Result(catching: { try Self.fill(m, cachedOnly: true) }) {
            case .success(let bytes) where bytes.readableBytes > 0 || m.done:
                startStream(m, response: response, first: bytes)
                return
            case .success:
                quick = m           // nothing read yet: the pool reads it from the start
            case .failure:
                source.close()      // the pool opens it again and reports what is wrong
            }
        }
        // Open (unless done above) and the first chunk in one job: most messages fit in one.
        offload({ () -> (MessageStream, ByteBuffer) in
            let m = try quick ?? MessageStream(source: box.run { s in try s.openMessage(number) }, stuffer: stuffer)
            return (m, try box.run { _ in try Self.fill(m, cachedOnly: false) })
        }, done: { [self] result in
            switch result {
            case .success(let (m, bytes)):
                startStream(m, response: response, first: bytes)
            case .failure(let e):
                quick?.source.close()
                run(step { $0.messageUnavailable(reason: "\(e)") })
            }
        }, gone: { result in
            if case .success(let (m, _)) = result { m.source.close() }
            quick?.source.close()
        })
    }

    func startStream(_ m: MessageStream, response: POP3Response, first bytes: ByteBuffer) {
        write(response)
        stream = m
        context?.write(wrapOutboundOut(bytes), promise: nil)
        continueStream()
    }

    /// Reads and stuffs up to `chunkOutput` octets of the response body. `cachedOnly` (on the
    /// loop): stops, possibly with nothing, where the data is not in the page cache.
    static func fill(_ m: MessageStream, cachedOnly: Bool) throws -> ByteBuffer {
        // Buffers sized to the message: a 10 KB message must not cost two allocations of
        // hundreds of KB (glibc serves those with mmap/munmap, a page-fault storm per RETR).
        let stored = max(0, m.source.storedLength)
        var out: [UInt8] = []
        out.reserveCapacity(min(chunkOutput, stored + stored / 8 + 64) + 16)
        var raw = [UInt8](repeating: 0, count: min(64 * 1024, stored + 1))
        while out.count < chunkOutput && !m.done {
            let got = try raw.withUnsafeMutableBytes { buffer throws(MaildropError) -> Int? in
                cachedOnly ? try m.source.readIfCached(into: buffer) : try m.source.read(into: buffer)
            }
            guard let n = got else { break }
            if n == 0 || m.stuffer.isComplete {
                m.stuffer.finish(into: &out)
                m.done = true
                break
            }
            raw.withUnsafeBytes { m.stuffer.process(UnsafeRawBufferPointer(rebasing: $0.prefix(n)), into: &out) }
            if m.stuffer.isComplete {
                m.stuffer.finish(into: &out)
                m.done = true
            }
        }
        if m.done { m.source.close() }
        return ByteBuffer(bytes: out)
    }

    /// After a chunk was queued: the message is complete, or read more once the socket drains.
    func continueStream() {
        guard let m = stream, let context else { return }
        lastActivity = .now()   // the client took the previous chunk: it is reading
        if m.done {
            stream = nil
            run(step { $0.messageSent(octets: m.stuffer.octetsOut) })
            // The next pipelined command, whoever got us here (a pool job, the socket
            // draining, or the command loop itself, which then just goes round again).
            if !busy { process() }
            return
        }
        context.flush()
        if context.channel.isWritable { pump() }   // else channelWritabilityChanged resumes
    }

    /// Sends the next chunk of the message: from the page cache right here, else read on the
    /// pool. Not re-entered (a flush that drains the socket calls back into channelWritability-
    /// Changed); the running call goes round again instead.
    func pump() {
        pumping.run {
            guard !busy, let m = stream, let box = maildrop, context != nil else { return }
            let bytes: ByteBuffer
            do {
                bytes = try Self.fill(m, cachedOnly: true)
            } catch {
                failStream(m, error)
                return
            }
            guard bytes.readableBytes > 0 || m.done else {
                offload({ try box.run { _ in try Self.fill(m, cachedOnly: false) } }, done: { [self] result in
                    switch result {
                    case .success(let bytes):
                        context?.write(wrapOutboundOut(bytes), promise: nil)
                        continueStream()
                    case .failure(let e):
                        failStream(m, e)
                    }
                }, gone: { _ in m.source.close() })
                return
            }
            context?.write(wrapOutboundOut(bytes), promise: nil)
            continueStream()   // asks for more (a rerun) while the socket takes it
        }
    }
    let pumping = Rerunner()

    /// Part of the message is out: the response cannot be completed honestly.
    func failStream(_ m: MessageStream, _ error: Error) {
        logger.error("\(id): reading message failed mid-way: \(error); closing the connection")
        m.source.close()
        stream = nil
        context?.close(promise: nil)
    }

    // MARK: - UPDATE

    func commit(_ numbers: [Int]) {
        guard let box = maildrop else {
            run(step { $0.deletionsCommitted(ok: numbers.isEmpty) })
            return
        }
        // Runs to the end even if the client goes away after QUIT (RFC 1939 §6).
        offload({ () -> Void in
            defer { box.session.close() }
            if !numbers.isEmpty { try box.run { s in try s.commit(deleting: numbers) } }
        }, done: { [self] result in
            maildrop = nil
            if case .failure(let e) = result { logger.error("\(id): UPDATE failed: \(e)") }
            run(step { $0.deletionsCommitted(ok: (try? result.get()) != nil) })
        }, gone: { [self] result in
            maildrop = nil
            if case .failure(let e) = result { logger.error("\(id): UPDATE failed: \(e)") }
            // The state machine logs the outcome even without a connection.
            for case .log(let text) in step({ $0.deletionsCommitted(ok: (try? result.get()) != nil) }) { log(text) }
        })
    }

    /// Drops the maildrop lock once no job uses it (connection gone, no UPDATE under way).
    func releaseMaildropIfIdle() {
        guard context == nil, !busy else { return }
        stream?.source.close()
        stream = nil
        if let box = maildrop {
            maildrop = nil
            services.threadPool.submit { _ in box.session.close() }
        }
    }

    // MARK: - DRAC

    /// After login: add the client now and, while the session lasts, every pop3d_drac_refresh.
    func recordDRAC() {
        guard let notifier = services.notifier, let context else { return }
        notifier.loggedIn(client)
        let every = TimeAmount.seconds(services.config.dracRefreshSeconds)
        let client = self.client
        refreshTimer = context.eventLoop.scheduleRepeatedTask(initialDelay: every, delay: every) { _ in
            notifier.loggedIn(client, refresh: true)
        }
    }

    // MARK: - Timers and shutdown

    /// RFC 1939 §3 autologout: one timer, re-armed lazily from the last activity.
    func armTimer() {
        guard let context, let s = session else { return }
        let seconds = s.timeoutSeconds
        timer = context.eventLoop.scheduleTask(deadline: lastActivity + .seconds(seconds)) { [self] in
            guard self.context != nil, !closing else { return }
            // Our own work (a slow disk, saslauthd) is not the client's inactivity. A client
            // reading a long RETR slowly is active (every chunk it takes counts); one that
            // stopped reading what we sent is not.
            if busy || session?.isWaiting == true { lastActivity = .now() }
            if NIODeadline.now() >= lastActivity + .seconds(seconds) {
                logger.info("\(id): autologout after \(seconds / 60) minutes of inactivity from [\(client)]")
                run(step { $0.timedOut() })
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
            if !closing {
                closing = true
                context.writeAndFlush(wrapOutboundOut(buffer(POP3Response.err(.sysTemp, "Server shutting down.").encoded)), promise: nil)
            }
            context.close(promise: nil)
        }
    }

    /// During shutdown: between commands, say goodbye and close (nothing is deleted).
    func finishIfIdle() {
        guard draining, !busy, stream == nil, let s = session, !s.isWaiting, !closing else { return }
        run(step { $0.shuttingDown() })
    }
}
