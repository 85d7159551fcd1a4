// The session's view of a locked maildrop (sizes, unique-ids, deletion marks) and octet counting.

/// One message as a session sees it.
public struct MessageInfo: Sendable, Hashable {
    /// Octets of the message as RETR sends it before dot-stuffing: every line end counted as
    /// CRLF (RFC 1939 §11: "the size of the message ... is the number of octets in the
    /// message as CRLF-terminated lines"). See `POP3Octets`.
    public var size: Int
    /// RFC 1939 §7: the unique-id, 1 to 70 characters in 0x21...0x7E, the same for this message
    /// in every session and never reused for another message of this maildrop.
    public var uid: String

    public init(size: Int, uid: String) {
        self.size = size
        self.uid = uid
    }

    /// RFC 1939 §7: 1 to 70 octets, each in 0x21...0x7E.
    public static func isValidUID(_ uid: String) -> Bool {
        let u = uid.utf8
        return (1...70).contains(u.count) && u.allSatisfy { $0 >= 0x21 && $0 <= 0x7E }
    }
}

/// The messages of one session and which of them the client marked deleted (RFC 1939 §5).
/// Message numbers are 1-based and fixed for the whole session; deleted messages keep their
/// numbers and are skipped by STAT, LIST and UIDL. Marks are only marks: the maildrop changes
/// in the UPDATE state, after QUIT, when the handler commits them.
public struct Maildrop: Sendable, Equatable {
    public let messages: [MessageInfo]
    private var marks: [Bool]
    /// Messages not marked deleted.
    public private(set) var count: Int
    /// Octets of the messages not marked deleted.
    public private(set) var size: Int
    /// Octets of all messages, marked or not (Dovecot's `size=` in the logout line).
    public let totalSize: Int

    public init(_ messages: [MessageInfo]) {
        self.messages = messages
        marks = Array(repeating: false, count: messages.count)
        count = messages.count
        let total = messages.reduce(0) { $0 + $1.size }
        size = total
        totalSize = total
    }

    /// What a message number refers to.
    public enum Lookup: Sendable, Equatable {
        case message(MessageInfo)
        case deleted
        case noSuchMessage
    }

    public func lookup(_ number: Int) -> Lookup {
        guard number >= 1 && number <= messages.count else { return .noSuchMessage }
        return marks[number - 1] ? .deleted : .message(messages[number - 1])
    }

    public func isDeleted(_ number: Int) -> Bool {
        number >= 1 && number <= messages.count && marks[number - 1]
    }

    /// Marks a message deleted; false when it does not exist or is already marked.
    @discardableResult
    public mutating func markDeleted(_ number: Int) -> Bool {
        guard case .message(let m) = lookup(number) else { return false }
        marks[number - 1] = true
        count -= 1
        size -= m.size
        return true
    }

    /// RFC 1939 §5 RSET: unmarks every message.
    public mutating func unmarkAll() {
        guard count != messages.count else { return }
        marks = Array(repeating: false, count: messages.count)
        count = messages.count
        size = totalSize
    }

    /// The numbers of the marked messages, ascending.
    public var deletedNumbers: [Int] {
        marks.indices.filter { marks[$0] }.map { $0 + 1 }
    }

    /// The live messages with their numbers, for LIST and UIDL.
    public var live: [(number: Int, info: MessageInfo)] {
        messages.indices.filter { !marks[$0] }.map { ($0 + 1, messages[$0]) }
    }
}

/// Counting message octets the way RETR sends them (RFC 1939 §11): a line end stored as a bare
/// LF is sent as CRLF and counts 2, a stored CRLF counts 2, every other octet (a bare CR
/// included) counts 1. Dot-stuffing and the added final CRLF and `.` of the multi-line response
/// are not part of the size.
public enum POP3Octets {
    /// The size of a whole message as stored (LF or CRLF line ends).
    public static func crlfSize<C: Collection>(of bytes: C) -> Int where C.Element == UInt8 {
        var c = Counter()
        c.add(bytes)
        return c.octets
    }

    /// The size with mboxrd `>From ` unquoting applied (see `DotStuffer.Options`).
    public static func crlfSize<C: Collection>(of bytes: C, mboxFromUnquote: Bool) -> Int where C.Element == UInt8 {
        var c = Counter(mboxFromUnquote: mboxFromUnquote)
        c.add(bytes)
        c.finish()
        return c.octets
    }

    /// The same count over a message that arrives in chunks (a file read piece by piece).
    /// Chunk boundaries do not matter: a CR at the end of one chunk pairs with an LF at the
    /// start of the next.
    public struct Counter: Sendable {
        public private(set) var octets = 0
        private var lastWasCR = false
        /// Present only with mboxrd unquoting, which needs the line-start logic of the stuffer.
        private var engine: LineEngine?

        public init(mboxFromUnquote: Bool = false) {
            if mboxFromUnquote { engine = LineEngine(stuffDots: false, mboxFromUnquote: true, topLines: nil) }
        }

        public mutating func add<C: Collection>(_ bytes: C) where C.Element == UInt8 {
            let done: Void? = bytes.withContiguousStorageIfAvailable { add(UnsafeRawBufferPointer($0)) }
            if done == nil { Array(bytes).withUnsafeBytes { add($0) } }
        }

        public mutating func add(_ bytes: UnsafeRawBufferPointer) {
            if engine != nil {
                var sink = CountingSink()
                engine!.run(bytes, &sink)
                octets += sink.count
                return
            }
            var n = bytes.count
            var prevCR = lastWasCR
            for c in bytes {
                if c == 0x0A && !prevCR { n += 1 }
                prevCR = c == 0x0D
            }
            if !bytes.isEmpty { lastWasCR = prevCR }
            octets += n
        }

        /// Call at the end of the message: flushes what mboxrd unquoting held back (a line
        /// that began like `>From` but ended the message). A no-op without unquoting.
        public mutating func finish() {
            guard engine != nil else { return }
            var sink = CountingSink()
            engine!.flushPrefix(&sink)
            octets += sink.count
        }
    }
}
