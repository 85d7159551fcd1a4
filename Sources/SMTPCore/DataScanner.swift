// The DATA phase: finds the end of the message, counts it, and stops a smuggled second message.

/// Scans message text as it streams from the client to the backend, without unstuffing it
/// (the backend gets the dot-stuffed text unchanged, RFC 5321 §4.5.2).
///
/// Only `CRLF . CRLF` ends the message (RFC 5321 §4.1.1.4). A bare LF or a bare CR anywhere is
/// not normalised: the message is *rejected*. We stop forwarding at the offending octet and the
/// caller drops the backend connection without a terminator, so the backend discards the text
/// and can never see a `<LF>.<LF>` that its own parser might take for an end of data (SMTP
/// smuggling, CVE-2023-51764 and kin). The same happens for an over-long line and an
/// over-size message: we keep reading to the real end, then reply with the error.
public struct DataScanner: Sendable {
    public enum Problem: Sendable, Equatable {
        case bareLF, bareCR, lineTooLong, tooBig

        /// The reply after the client's end of data.
        public var reply: SMTPReply {
            switch self {
            case .bareLF: SMTPReply(550, "5.5.2", "Error: bare <LF> received; lines must end with <CR><LF> (RFC 5321 2.3.8)")
            case .bareCR: SMTPReply(550, "5.5.2", "Error: bare <CR> received; lines must end with <CR><LF> (RFC 5321 2.3.8)")
            case .lineTooLong: SMTPReply(550, "5.5.6", "Error: message line longer than the 1000 octets RFC 5321 4.5.3.1.6 allows")
            case .tooBig: SMTPReply(552, "5.3.4", "Error: message file too big")
            }
        }
        public var logText: String {
            switch self {
            case .bareLF: "bare <LF> in message text"
            case .bareCR: "bare <CR> in message text"
            case .lineTooLong: "message line too long"
            case .tooBig: "message too big"
            }
        }
    }

    private enum State: Sendable { case lineStart, inLine, afterCR, dot, dotCR }

    public let maxSize: Int
    public let maxLine: Int
    private var state = State.lineStart
    private var lineLength = 0
    /// Octets of message text seen so far (dot-stuffed, CRLFs included, terminator excluded).
    public private(set) var size = 0
    public private(set) var problem: Problem?

    public init(maxSize: Int, maxLine: Int) {
        self.maxSize = maxSize
        self.maxLine = maxLine
    }

    public struct Result: Sendable, Equatable {
        /// How many leading octets of the input go to the backend (the terminator included when
        /// found and nothing was wrong).
        public var forward: Int
        /// When the message ended in this input: the offset just past the terminator. Octets
        /// after it are the client's next commands.
        public var end: Int?
    }

    /// Scans the next octets of message text.
    /// Scans the next octets of message text (a convenience for tests and small inputs).
    public mutating func scan<C: Collection>(_ bytes: C) -> Result where C.Element == UInt8 {
        Array(bytes).withUnsafeBytes { scan($0) }
    }

    /// Scans the next octets of message text. Works on raw memory so that the loop is
    /// specialised (the generic version cost more than all of the gateway's I/O).
    public mutating func scan(_ bytes: UnsafeRawBufferPointer) -> Result {
        var forward = problem == nil ? -1 : 0     // -1: everything up to here is fine
        let n = bytes.count
        var i = 0
        while i < n {
            if state == .inLine {
                // Fast path: the run of ordinary octets up to the next CR or LF.
                var j = i
                while j < n {
                    let c = bytes[j]
                    if c == 0x0D || c == 0x0A { break }
                    j += 1
                }
                let run = j - i
                if run > 0 {
                    if problem == nil {
                        // The first octet that breaks a limit, as countOctet would find it.
                        let lineRoom = (maxLine - 2) - lineLength
                        let sizeRoom = maxSize - size
                        if lineRoom < run || sizeRoom < run {
                            let p: Problem = lineRoom <= sizeRoom ? .lineTooLong : .tooBig
                            fail(p, at: i + max(0, min(lineRoom, sizeRoom)), &forward)
                        }
                    }
                    size += run
                    lineLength += run
                    i = j
                    continue
                }
            }
            let b = bytes[i]
            i += 1
            let offset = i
            switch state {
            case .lineStart, .inLine:
                if b == 0x0D { state = .afterCR; continue }
                // Not .lineStart after a bare LF: `<LF>.<CR><LF>` must not end the message.
                if b == 0x0A { fail(.bareLF, at: offset - 1, &forward); state = .inLine; lineLength = 0; continue }
                if state == .lineStart && b == UInt8(ascii: ".") { state = .dot } else { state = .inLine }
                countOctet(at: offset - 1, &forward)
            case .dot:
                if b == 0x0D { state = .dotCR; continue }
                state = .inLine
                if b == 0x0A { fail(.bareLF, at: offset - 1, &forward); state = .inLine; lineLength = 0; continue }
                countOctet(at: offset - 1, &forward)
            case .afterCR, .dotCR:
                if b == 0x0A {
                    if state == .dotCR {
                        // CRLF . CRLF: the end. The terminator is not message text.
                        size -= 1
                        state = .lineStart
                        lineLength = 0
                        return Result(forward: forward < 0 ? offset : forward, end: offset)
                    }
                    size += 2
                    lineLength = 0
                    state = .lineStart
                    if size > maxSize { fail(.tooBig, at: offset - 2, &forward) }
                    continue
                }
                // A CR not followed by LF.
                fail(.bareCR, at: offset - 2, &forward)
                state = .inLine
                if b == 0x0D { state = .afterCR; continue }
                countOctet(at: offset - 1, &forward)
            }
        }
        return Result(forward: forward < 0 ? n : forward, end: nil)
    }

    private mutating func countOctet(at index: Int, _ forward: inout Int) {
        size += 1
        lineLength += 1
        // maxLine counts the CRLF (RFC 5321 §4.5.3.1.6).
        if lineLength > maxLine - 2 { fail(.lineTooLong, at: index, &forward) }
        // A dot at the start of a line may be the terminator, which is not message text; the
        // octet after it is counted and checked if it is not.
        if size > maxSize && state != .dot { fail(.tooBig, at: index, &forward) }
    }

    private mutating func fail(_ p: Problem, at index: Int, _ forward: inout Int) {
        if problem == nil {
            problem = p
            forward = max(0, index)
        }
    }
}
