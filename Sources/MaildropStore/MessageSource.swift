// MessageSource: one message's stored octets, streamed with pread from a byte range of a file.
import CLinux
import Glibc

/// The stored octets of one message, from its first octet to its last, read in pieces of the
/// caller's size (the server feeds them to its `DotStuffer`, RFC 1939 §3). Never reads past the
/// message: for an mbox, the From line, the separator line and the next message are outside it.
///
/// Not thread-safe; it may be handed to another thread but is used by one at a time.
public final class MessageSource: @unchecked Sendable {
    /// The octets this source delivers in all, as stored (the POP3 size counts line ends as
    /// CRLF, so it differs for LF files; see `POP3Octets`).
    public let storedLength: Int

    private let descriptor: Descriptor
    /// A Maildir source owns its descriptor; an mbox source shares the session's (closing a
    /// second descriptor of the mbox would drop the session's fcntl locks: POSIX record locks
    /// belong to the process and go with any close of the file).
    private let ownsDescriptor: Bool
    private var position: Int64
    private let end: Int64
    private let path: String
    private var closed = false

    init(descriptor: Descriptor, ownsDescriptor: Bool, start: Int64, length: Int64, path: String) {
        self.descriptor = descriptor
        self.ownsDescriptor = ownsDescriptor
        self.position = start
        self.end = start + length
        self.path = path
        self.storedLength = Int(length)
    }

    /// Reads up to buffer.count octets; returns 0 at the end of the message (never reads past
    /// it). Throws io when the file was shortened under us or the session was closed.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(MaildropError) -> Int {
        guard let (fd, want) = try nextRead(buffer) else { return 0 }
        while true {
            let n = pread(fd, buffer.baseAddress!, want, off_t(position))
            if n > 0 {
                position += Int64(n)
                return n
            }
            if n == 0 {
                throw .io("\(path): message ends \(end - position) octets early: the file was truncated by another program")
            }
            if errno != EINTR { throw ioError(path, "read", errno) }
        }
    }

    /// Like `read(into:)`, but only what the page cache holds already (preadv2 with RWF_NOWAIT):
    /// nil when the next octets would have to come from the disk (or the filesystem cannot
    /// tell), so the caller can read them on a thread that may block. The server's event loop
    /// uses this to send a cached message without a hop to its thread pool.
    public func readIfCached(into buffer: UnsafeMutableRawBufferPointer) throws(MaildropError) -> Int? {
        guard let (fd, want) = try nextRead(buffer) else { return 0 }
        while true {
            let n = drac_pread_nowait(fd, buffer.baseAddress!, UInt(want), Int64(position))
            if n > 0 {
                position += Int64(n)
                return n
            }
            if n == 0 {
                throw .io("\(path): message ends \(end - position) octets early: the file was truncated by another program")
            }
            if n == -Int(EINTR) { continue }
            // EAGAIN: not in memory; EOPNOTSUPP/EINVAL: no RWF_NOWAIT here. Real errors show
            // up again, with their text, when the blocking read retries.
            return nil
        }
    }

    /// The descriptor and how many octets the next read may take (nil at the end of the
    /// message); throws once the source or its session was closed.
    private func nextRead(_ buffer: UnsafeMutableRawBufferPointer) throws(MaildropError) -> (Int32, Int)? {
        if closed { throw .io("\(path): read after the message source was closed") }
        let fd = descriptor.raw
        if fd < 0 { throw .io("\(path): read after the maildrop session was closed") }
        let want = Int(min(Int64(buffer.count), end - position))
        return want > 0 ? (fd, want) : nil
    }

    /// Idempotent; deinit closes too.
    public func close() {
        guard !closed else { return }
        closed = true
        if ownsDescriptor { descriptor.close() }
    }

    deinit { close() }
}
