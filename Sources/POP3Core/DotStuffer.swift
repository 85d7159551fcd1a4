// RETR and TOP output: stored message octets in, CRLF lines dot-stuffed and terminated out.

/// Turns a message as stored (Maildir or mbox, LF or CRLF line ends) into the body of a RETR or
/// TOP response (RFC 1939 §3, §7), streaming: feed it chunks of any size, then call `finish()`.
///
/// - Every LF not preceded by CR becomes CRLF; a stored CRLF is kept; a bare CR is passed on
///   unchanged (as Dovecot does). A CR at the end of one chunk pairs with an LF at the start of
///   the next.
/// - A line that begins with "." gets another "." in front (RFC 1939 §3 byte-stuffing), also
///   when the line begins at the start of a chunk.
/// - TOP (`topLines: n`): the header lines, the empty line that ends them, then at most `n`
///   lines of the body (RFC 1939 §7). A message without an empty line is all header and is
///   sent whole. Once the last wanted line is out, `isComplete` is true and further input is
///   ignored, so the caller can stop reading.
/// - `finish()` ends a last line that has no line end with CRLF (a last line ending in a bare
///   CR gets only the LF), then adds the terminating `.` CRLF. An empty message gives `.` CRLF
///   alone.
/// - mbox (`mboxFromUnquote`): mboxrd unquoting. An mbox writer that quotes in the mboxrd way
///   turns every body line matching `>*From ` into one with one more `>`; reading, a line
///   matching `>+From ` loses one `>`. This is lossless only for mboxrd files. Writers of the
///   older mboxo variant (Postfix local(8), procmail) quote `From ` but not `>From `, so a
///   line that was `>From ` before delivery would lose its `>` too. Dovecot unquotes nothing;
///   the option is off by default and meant for mailboxes known to be mboxrd.
///
/// Sizes announced by LIST and STAT exclude the stuffing and the termination: see `POP3Octets`.
public struct DotStuffer: Sendable {
    private var engine: LineEngine
    /// Octets produced so far (stuffing, CRLFs and the termination included): Dovecot's
    /// `retr_bytes` / `top_bytes`.
    public private(set) var octetsOut = 0
    private var finished = false

    /// - Parameters:
    ///   - topLines: nil for RETR; for TOP, the number of body lines wanted (0: headers only).
    ///   - mboxFromUnquote: undo mboxrd `>From ` quoting (see above).
    public init(topLines: Int? = nil, mboxFromUnquote: Bool = false) {
        engine = LineEngine(stuffDots: true, mboxFromUnquote: mboxFromUnquote, topLines: topLines.map { max(0, $0) })
    }

    /// True once TOP has sent every line it wants: the rest of the message is not needed.
    public var isComplete: Bool { engine.done }

    /// Transforms the next chunk of stored message octets, appending to `out`.
    public mutating func process(_ input: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        precondition(!finished, "DotStuffer used after finish()")
        let before = out.count
        engine.run(input, &out)
        octetsOut += out.count - before
    }

    public mutating func process<C: Collection>(_ input: C, into out: inout [UInt8]) where C.Element == UInt8 {
        let done: Void? = input.withContiguousStorageIfAvailable { process(UnsafeRawBufferPointer($0), into: &out) }
        if done == nil { Array(input).withUnsafeBytes { process($0, into: &out) } }
    }

    public mutating func process<C: Collection>(_ input: C) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(input.count + input.count / 16 + 8)
        process(input, into: &out)
        return out
    }

    /// Ends the output: completes a last line without line end, then `.` CRLF.
    public mutating func finish(into out: inout [UInt8]) {
        precondition(!finished, "DotStuffer finished twice")
        finished = true
        let before = out.count
        if !engine.done {
            engine.flushPrefix(&out)
            if !engine.atLineStart {
                if engine.lastWasCR { out.append(0x0A) } else { out.append(contentsOf: [0x0D, 0x0A]) }
            }
        }
        out.append(contentsOf: [0x2E, 0x0D, 0x0A])
        octetsOut += out.count - before
    }

    public mutating func finish() -> [UInt8] {
        var out: [UInt8] = []
        finish(into: &out)
        return out
    }
}

// MARK: - The line engine shared by DotStuffer and POP3Octets.Counter

/// Where the engine writes: an array of octets (DotStuffer) or a count (size with unquoting).
protocol ByteSink {
    mutating func append(_ byte: UInt8)
    mutating func append(run: UnsafeRawBufferPointer)
    mutating func append(repeating byte: UInt8, count: Int)
}

extension Array: ByteSink where Element == UInt8 {
    mutating func append(run: UnsafeRawBufferPointer) { append(contentsOf: run) }
    mutating func append(repeating byte: UInt8, count: Int) { append(contentsOf: repeatElement(byte, count: count)) }
}

struct CountingSink: ByteSink {
    var count = 0
    mutating func append(_ byte: UInt8) { count += 1 }
    mutating func append(run: UnsafeRawBufferPointer) { count += run.count }
    mutating func append(repeating byte: UInt8, count n: Int) { count += n }
}

/// The per-octet state machine: line ends, line starts (dot, mboxrd quoting), TOP's header and
/// body lines. Works on raw memory so that the loop is specialised and runs of ordinary octets
/// are copied in one piece.
struct LineEngine: Sendable {
    let stuffDots: Bool
    let mboxFromUnquote: Bool
    /// TOP's body line budget; nil for the whole message.
    let topLines: Int?

    /// The next octet begins a line.
    private(set) var atLineStart = true
    /// The last octet taken in was a CR (pairs with an LF in the next chunk).
    private(set) var lastWasCR = false
    /// Octets of the current line so far, its line end excluded (finds the empty line).
    private var lineLength = 0
    /// TOP: past the empty line that ends the header.
    private var inBody = false
    private var bodyLinesLeft: Int
    /// TOP has everything it wants.
    private(set) var done = false

    /// mboxrd: a line that began with ">" is held back until it is known whether it matches
    /// `>+From `: the number of ">" and how much of "From " followed.
    private var inPrefix = false
    private var quotes = 0
    private var fromMatched = 0
    private static let from: [UInt8] = Array("From ".utf8)

    init(stuffDots: Bool, mboxFromUnquote: Bool, topLines: Int?) {
        self.stuffDots = stuffDots
        self.mboxFromUnquote = mboxFromUnquote
        self.topLines = topLines
        bodyLinesLeft = topLines ?? 0
    }

    mutating func run<S: ByteSink>(_ b: UnsafeRawBufferPointer, _ out: inout S) {
        let n = b.count
        var i = 0
        while i < n && !done {
            if inPrefix {
                let c = b[i]
                if fromMatched == 0 && c == 0x3E {         // another ">"
                    quotes += 1
                    lineLength += 1
                    i += 1
                    continue
                }
                if c == Self.from[fromMatched] {
                    fromMatched += 1
                    lineLength += 1
                    i += 1
                    if fromMatched == Self.from.count {
                        // `>+From `: one ">" less.
                        out.append(repeating: 0x3E, count: quotes - 1)
                        Self.from.withUnsafeBytes { out.append(run: $0) }
                        inPrefix = false
                        lastWasCR = false
                    }
                    continue
                }
                // Not a quoted From line: what was held back goes out as it was, and `c` is
                // taken by the ordinary path below (it is no longer at a line start).
                flushPrefix(&out)
                continue
            }
            if atLineStart {
                let c = b[i]
                atLineStart = false
                if mboxFromUnquote && c == 0x3E {
                    inPrefix = true
                    quotes = 1
                    fromMatched = 0
                    lineLength = 1
                    i += 1
                    continue
                }
                if stuffDots && c == 0x2E { out.append(0x2E) }
            }
            // The run of ordinary octets up to the next LF.
            var j = i
            while j < n && b[j] != 0x0A { j += 1 }
            if j > i {
                out.append(run: UnsafeRawBufferPointer(rebasing: b[i..<j]))
                lineLength += j - i
                lastWasCR = b[j - 1] == 0x0D
            }
            if j == n { break }
            // The LF at j ends the line.
            let empty = lineLength == 0 || (lineLength == 1 && lastWasCR)
            if !lastWasCR { out.append(0x0D) }
            out.append(0x0A)
            i = j + 1
            atLineStart = true
            lastWasCR = false
            lineLength = 0
            if topLines != nil {
                if !inBody {
                    if empty {
                        inBody = true
                        if bodyLinesLeft == 0 { done = true }
                    }
                } else {
                    bodyLinesLeft -= 1
                    if bodyLinesLeft == 0 { done = true }
                }
            }
        }
    }

    /// Sends a held-back `>>Fro`-like line start as it was.
    mutating func flushPrefix<S: ByteSink>(_ out: inout S) {
        guard inPrefix else { return }
        out.append(repeating: 0x3E, count: quotes)
        if fromMatched > 0 { Self.from.withUnsafeBytes { out.append(run: UnsafeRawBufferPointer(rebasing: $0[0..<fromMatched])) } }
        inPrefix = false
        lastWasCR = false
    }
}
