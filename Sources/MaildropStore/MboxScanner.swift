// The mbox parser: message boundaries, RFC 1939 sizes and unique-id material, in one streaming pass.
import Crypto
import Glibc
import POP3Core

/// One message of an mbox file ("record": its From line, its body, its separator line).
///
///     start      bodyStart                    bodyEnd     end
///     |From ...\n|Header: x\n\nbody text\n     |\n         |From ...
///
/// `[start, end)` is what compaction moves; `[bodyStart, bodyEnd)` is what RETR sends.
struct MboxRecord: Sendable, Equatable {
    var start: Int64
    var bodyStart: Int64
    var bodyEnd: Int64
    var end: Int64
    /// The first octets of the From line (with its LF when the line is short) and their hash:
    /// what openMessage and commit check to see that no other program rewrote the file.
    var fromCheckLength: Int
    var fromHash: UInt64
    /// RFC 1939 size of `[bodyStart, bodyEnd)` (POP3Octets, with the session's unquoting).
    var size: Int
    /// A valid `X-UIDL:` value (qpopper and other POP servers write these into mboxes).
    var uidl: String?
    /// Lowercase hex MD5 of the header section, volatile status fields left out.
    var headerDigest: String
    /// The UW-IMAP / Dovecot "DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA" message.
    var isPseudo: Bool
}

/// FNV-1a, 64 bit: a cheap fingerprint of From lines (not a security measure: it detects a file
/// rewritten by a mail program, not an adversary; the file is the user's own anyway).
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func add<C: Sequence>(_ bytes: C) where C.Element == UInt8 {
        for b in bytes { value = (value ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
    }
    static func hash<C: Sequence>(_ bytes: C) -> UInt64 where C.Element == UInt8 {
        var h = FNV1a()
        h.add(bytes)
        return h.value
    }
}

/// Splits an mbox into messages, streaming: feed it the file in chunks of any size (never the
/// whole file at once: a 1 GB mbox must work), then call `finish()`.
///
/// The rules (mboxo/mboxrd as written by Postfix local(8), procmail and Dovecot on Debian;
/// see also RFC 4155):
/// - A message starts at a line beginning with `From ` that is at the start of the file or
///   follows an empty line (LF or CRLF line ends). A body line `From ` right after a non-empty
///   line does not split (writers quote `From ` at a line start as `>From `, but not everyone
///   does, and mail that arrived unquoted must not be cut in two).
/// - The message given to POP3 runs from after its From line up to, not including, the empty
///   line before the next From line, which the MDA added as a separator (Postfix local(8)
///   appends one empty line after every message). At the end of the file a final empty line is
///   that separator too.
/// - Lines before the first From line may only be empty; otherwise the file is not an mbox and
///   `preambleHasText` is set.
/// - The header section (up to the first empty line, at most 64 KiB) gives the unique-id
///   material: a valid `X-UIDL:` and an MD5 of the fields that no mail reader changes.
/// - The first message is the folder's pseudo message when it has an `X-IMAP:` field (UW-IMAP
///   and Dovecot write one), or `X-IMAPbase:` with the "FOLDER INTERNAL DATA" subject. Dovecot
///   also writes `X-IMAPbase:` into the first *real* message when there is no pseudo message,
///   so that field alone does not make a message internal.
struct MboxScanner {
    static let headerCap = 64 * 1024
    static let fromCheckCap = 512
    private static let lf: UInt8 = 0x0A
    private static let cr: UInt8 = 0x0D
    private static let fromSpace: [UInt8] = Array("From ".utf8)

    private enum Phase {
        /// The first octets of a line (up to 5) are held back until it is known whether the
        /// line is a From line or an empty line.
        case head
        case fromLine
        case bodyLine
        case preambleLine
    }

    /// A message being scanned.
    private struct Builder {
        var start: Int64
        var bodyStart: Int64 = -1
        var fromHash = FNV1a()
        var fromHashed = 0
        var counter: POP3Octets.Counter
        var inHeaders = true
        var header: [UInt8] = []
        var info: HeaderInfo?
    }

    let mboxFromUnquote: Bool
    private(set) var records: [MboxRecord] = []
    /// Text before the first From line: not an mbox.
    private(set) var preambleHasText = false
    /// Octets consumed so far (the offset of the next one).
    private(set) var offset: Int64 = 0

    private var phase = Phase.head
    private var lineStart: Int64 = 0
    private var head: [UInt8] = []
    /// The previous line was empty (the start of the file counts as such).
    private var prevEmpty = true
    /// An empty line of the body held back: it is the separator if a From line follows.
    private var pendingStart: Int64 = -1
    private var pendingBytes: [UInt8] = []
    private var current: Builder?

    init(mboxFromUnquote: Bool) {
        self.mboxFromUnquote = mboxFromUnquote
        head.reserveCapacity(8)
    }

    mutating func consume(_ buf: UnsafeRawBufferPointer) {
        let n = buf.count
        let base = offset
        var i = 0
        while i < n {
            switch phase {
            case .head:
                let c = buf[i]
                if c == Self.lf {
                    i += 1
                    endShortLine(next: base + Int64(i))
                } else if head.isEmpty && c != Self.cr && (c != Self.fromSpace[0] || !prevEmpty) {
                    // Neither an empty line nor a From line (the common case): nothing to hold
                    // back, the line is taken whole below.
                    beginOrdinaryLine()
                } else {
                    i += 1
                    head.append(c)
                    decideHead()
                }
            case .fromLine, .bodyLine, .preambleLine:
                let j: Int
                if let p = memchr(buf.baseAddress! + i, Int32(Self.lf), n - i) {
                    j = buf.baseAddress!.distance(to: UnsafeRawPointer(p))
                } else {
                    j = n
                }
                let stop = j < n ? j + 1 : n
                let run = UnsafeRawBufferPointer(rebasing: buf[i..<stop])
                switch phase {
                case .fromLine:
                    hashFrom(run)
                    if j < n { current!.bodyStart = base + Int64(stop) }
                case .bodyLine:
                    feedBody(run)
                default:
                    break
                }
                i = stop
                if j < n { startLine(at: base + Int64(stop), afterEmpty: false) }
            }
        }
        offset = base + Int64(n)
    }

    /// Ends the scan at the current offset (the end of the file as scanned).
    mutating func finish() {
        let eof = offset
        if phase == .head && !head.isEmpty {
            // A last line without line end, shorter than "From ".
            if current == nil {
                preambleHasText = true
            } else {
                flushPending()
                feedBody(head)
            }
            head.removeAll()
        }
        if current != nil {
            // A final empty line is the separator (it is still pending); else the body runs to
            // the end of the file.
            finishRecord(bodyEnd: pendingStart >= 0 ? pendingStart : eof, end: eof)
        }
    }

    // MARK: - Lines

    private mutating func startLine(at pos: Int64, afterEmpty: Bool) {
        phase = .head
        lineStart = pos
        if !head.isEmpty { head.removeAll(keepingCapacity: true) }
        prevEmpty = afterEmpty
    }

    /// The line is known to be neither empty nor a From line: what was held back goes first.
    private mutating func beginOrdinaryLine() {
        if current == nil {
            preambleHasText = true
            phase = .preambleLine
            return
        }
        flushPending()
        if !head.isEmpty { feedBody(head) }
        phase = .bodyLine
    }

    /// A line that ended (LF at `next - 1`) while still in its first 5 octets.
    private mutating func endShortLine(next: Int64) {
        let empty = head.isEmpty || (head.count == 1 && head[0] == Self.cr)
        head.append(Self.lf)
        if current == nil {
            if !empty { preambleHasText = true }
        } else if empty {
            flushPending()
            if current!.inHeaders { endHeaders() }
            pendingStart = lineStart
            pendingBytes = head
        } else {
            flushPending()
            feedBody(head)
        }
        startLine(at: next, afterEmpty: empty)
    }

    /// Another octet of a line's start is held back: decide what the line is as soon as that
    /// is known (a From line needs all of "From ", an empty line is at most a CR).
    private mutating func decideHead() {
        let maybeFrom = prevEmpty && Self.fromSpace.starts(with: head)
        if maybeFrom && head.count == Self.fromSpace.count {
            if current != nil {
                // The held-back empty line was the separator: not part of the message.
                finishRecord(bodyEnd: pendingStart >= 0 ? pendingStart : lineStart, end: lineStart)
            }
            current = Builder(start: lineStart, counter: POP3Octets.Counter(mboxFromUnquote: mboxFromUnquote))
            hashFrom(head)
            phase = .fromLine
            return
        }
        if maybeFrom || (head.count == 1 && head[0] == Self.cr) { return }    // not known yet
        beginOrdinaryLine()
    }

    // MARK: - Message content

    private mutating func flushPending() {
        guard pendingStart >= 0 else { return }
        feedBody(pendingBytes)
        pendingStart = -1
        pendingBytes.removeAll(keepingCapacity: true)
    }

    private mutating func hashFrom<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        let take = min(bytes.count, Self.fromCheckCap - current!.fromHashed)
        guard take > 0 else { return }
        current!.fromHash.add(bytes.prefix(take))
        current!.fromHashed += take
    }

    private mutating func feedBody(_ bytes: UnsafeRawBufferPointer) {
        current!.counter.add(bytes)
        if current!.inHeaders && current!.header.count < Self.headerCap {
            current!.header.append(contentsOf: bytes.prefix(Self.headerCap - current!.header.count))
        }
    }

    private mutating func feedBody(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feedBody($0) }
    }

    private mutating func endHeaders() {
        current!.inHeaders = false
        current!.info = HeaderInfo(current!.header)
        current!.header = []
    }

    private mutating func finishRecord(bodyEnd: Int64, end: Int64) {
        if current!.inHeaders { endHeaders() }
        var b = current!
        current = nil
        pendingStart = -1
        pendingBytes.removeAll(keepingCapacity: true)
        // A From line without line end at the end of the file: an empty message.
        let bodyStart = b.bodyStart >= 0 ? b.bodyStart : end
        b.counter.finish()
        let info = b.info!
        records.append(MboxRecord(
            start: b.start, bodyStart: bodyStart, bodyEnd: max(bodyEnd, bodyStart), end: end,
            fromCheckLength: b.fromHashed, fromHash: b.fromHash.value,
            size: b.counter.octets, uidl: info.uidl, headerDigest: info.digest,
            isPseudo: records.isEmpty && info.isPseudo))
    }
}

/// What the header section of one mbox message tells about its identity.
struct HeaderInfo: Equatable {
    var uidl: String?
    var digest: String
    var isPseudo: Bool

    /// Fields that mail readers and IMAP servers rewrite in place in an mbox (mutt and pine
    /// write Status/X-Status, Dovecot X-UID/X-Keywords/X-IMAPbase/Content-Length, Thunderbird
    /// X-Mozilla-*): left out of the digest so that the unique-id survives them (RFC 1939 §7:
    /// the same message keeps its unique-id across sessions).
    static let volatileFields: Set<[UInt8]> = Set([
        "status", "x-status", "x-keywords", "x-uid", "x-imap", "x-imapbase", "content-length",
        "lines", "x-mozilla-status", "x-mozilla-status2", "x-mozilla-keys",
    ].map { Array($0.utf8) })

    static let xUIDL: [UInt8] = Array("x-uidl".utf8)
    static let xIMAP: [UInt8] = Array("x-imap".utf8)
    static let xIMAPbase: [UInt8] = Array("x-imapbase".utf8)
    static let subject: [UInt8] = Array("subject".utf8)

    /// The subject of the pseudo message is "DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA".
    static let internalDataMark: [UInt8] = Array("FOLDER INTERNAL DATA".utf8)

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return needle.isEmpty }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if haystack[i..<(i + needle.count)].elementsEqual(needle) { return true }
        }
        return false
    }

    init(_ header: [UInt8]) {
        var md5 = Insecure.MD5()
        var uidl: String?
        var hasXIMAP = false
        var hasXIMAPbase = false
        var internalSubject = false

        // Lines without their line ends; a line starting with SP or HT continues the field
        // before it (RFC 5322 §2.2.3 folding).
        var lines: [ArraySlice<UInt8>] = header.split(separator: 0x0A, omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        lines = lines.map { $0.last == 0x0D ? $0.dropLast() : $0 }
        var i = 0
        while i < lines.count {
            var j = i + 1
            while j < lines.count, let c = lines[j].first, c == 0x20 || c == 0x09 { j += 1 }
            let first = lines[i]
            let colon = first.firstIndex(of: 0x3A)
            var name: [UInt8] = []
            if let colon {
                name = first[..<colon].map { ($0 >= 0x41 && $0 <= 0x5A) ? $0 + 0x20 : $0 }
                while let l = name.last, l == 0x20 || l == 0x09 { name.removeLast() }
            }
            if colon == nil || !Self.volatileFields.contains(name) {
                for k in i..<j {
                    lines[k].withUnsafeBytes { md5.update(bufferPointer: $0) }
                    [UInt8(0x0A)].withUnsafeBytes { md5.update(bufferPointer: $0) }
                }
            }
            if let colon {
                // The unfolded value, trimmed: only for the few fields looked at.
                func value() -> [UInt8] {
                    var v = Array(first[(colon + 1)...])
                    for k in (i + 1)..<j { v += lines[k] }
                    let isBlank: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 }
                    guard let a = v.firstIndex(where: { !isBlank($0) }), let z = v.lastIndex(where: { !isBlank($0) }) else { return [] }
                    return Array(v[a...z])
                }
                switch name {
                case Self.xUIDL:
                    let text = String(decoding: value(), as: UTF8.self)
                    if uidl == nil && MessageInfo.isValidUID(text) { uidl = text }
                case Self.xIMAP:
                    hasXIMAP = true
                case Self.xIMAPbase:
                    hasXIMAPbase = true
                case Self.subject:
                    if Self.contains(value(), Self.internalDataMark) { internalSubject = true }
                default:
                    break
                }
            }
            i = j
        }
        self.uidl = uidl
        self.digest = hexString(md5.finalize())
        self.isPseudo = hasXIMAP || (hasXIMAPbase && internalSubject)
    }
}
