// The maildrop store's front door: options, the session protocol, and `MaildropStore.open`.
import POP3Core

/// How maildrops are opened. The defaults suit Debian: Postfix local(8) or procmail delivering
/// to /var/mail/USER (mbox), or Dovecot LDA / maildrop / Postfix virtual(8) to a Maildir.
public struct MaildropOptions: Sendable {
    /// mboxrd unquoting (`>From ` loses one `>`): the sizes of an mbox session are counted with
    /// it, and the server must give the same flag to its `DotStuffer` (see
    /// `MaildropSession.usesMboxFromUnquote`). Never applies to a Maildir.
    public var mboxFromUnquote = false
    /// Seconds to wait for an mbox dotlock and for the fcntl lock of the mbox.
    public var dotlockTimeout: Double = 10
    /// A dotlock older than this many seconds, whose content is not the pid of a live process,
    /// is removed as stale (procmail and Postfix leave one behind when killed).
    public var staleDotlockAge: Double = 300
    /// Create a missing Maildir (and its new/, cur/, tmp/), mode 0700.
    public var createMaildir = true
    /// When the server runs as root: the owner given to what the store creates for a user (a
    /// missing Maildir and its subdirectories, the `drac-pop3d.lock` file), so that the user's
    /// MDA can deliver into them. nil: left to the creating process (the default).
    public var ownerUID: UInt32? = nil
    public var ownerGID: UInt32? = nil

    public init() {}
}

/// One session's locked maildrop. Not thread-safe: one thread at a time (the server serialises
/// calls). The session lock is held from `MaildropStore.open` until `close()` (or deinit).
public protocol MaildropSession: AnyObject {
    /// Messages in POP3 order (message 1 first), as of open.
    var messages: [MessageInfo] { get }
    /// Non-fatal things for the log (e.g. "dotlock not possible in /var/mail: Permission denied;
    /// used fcntl only").
    var warnings: [String] { get }
    /// Stream message `number` (1-based) from the start. Throws io when it vanished/unreadable.
    func openMessage(_ number: Int) throws(MaildropError) -> MessageSource
    /// `openMessage` for a thread that must not wait (the server's event loop): nil whenever
    /// the open would scan a directory (a Maildir file renamed by another reader) or read
    /// message data not in the page cache (an mbox's From line check), and on any error; the
    /// caller then calls `openMessage` on a thread that may block, which reports the error.
    /// A Maildir open still looks up the file's inode, normally cached since the login scan.
    func openMessageQuickly(_ number: Int) -> MessageSource?
    /// RFC 1939 UPDATE: remove these message numbers (1-based) durably (fsync file/dir) and
    /// return only when done.
    func commit(deleting numbers: [Int]) throws(MaildropError)
    /// Release the session lock; idempotent; also done in deinit.
    func close()
}

extension MaildropSession {
    public func openMessageQuickly(_ number: Int) -> MessageSource? { nil }

    /// The `mboxFromUnquote` flag the server must give its `DotStuffer` (and that the sizes were
    /// counted with): `MaildropOptions.mboxFromUnquote` for an mbox, always false for a Maildir.
    public var usesMboxFromUnquote: Bool {
        (self as? MboxSession)?.fromUnquote ?? false
    }
}

public enum MaildropStore {
    /// Opens and locks the maildrop for one POP3 session (RFC 1939 §8: "the POP3 server then
    /// acquires an exclusive-access lock on the maildrop"). `inUse` if another session (in this
    /// process or another drac-pop3d process) holds it. A missing mbox file = empty maildrop. A
    /// missing Maildir is created (`createMaildir`) or empty.
    public static func open(_ location: MailLocation, options: MaildropOptions) throws(MaildropError) -> any MaildropSession {
        switch location {
        case .maildir(let path): return try MaildirSession.open(path: path, options: options)
        case .mbox(let path): return try MboxSession.open(path: path, options: options)
        }
    }
}

/// A maildrop that does not exist (missing mbox file, missing Maildir not to be created): no
/// messages, nothing locked, nothing to commit.
final class EmptySession: MaildropSession {
    let messages: [MessageInfo] = []
    let warnings: [String]
    private let path: String

    init(path: String, warnings: [String] = []) {
        self.path = path
        self.warnings = warnings
    }

    func openMessage(_ number: Int) throws(MaildropError) -> MessageSource {
        throw .io("\(path): no message \(number) (empty maildrop)")
    }

    func commit(deleting numbers: [Int]) throws(MaildropError) {
        if let n = numbers.first { throw .io("\(path): no message \(n) to delete (empty maildrop)") }
    }

    func close() {}
}

/// Checks the message numbers handed to `commit`: each in 1...count. Returns them sorted,
/// without repeats.
func checkedNumbers(_ numbers: [Int], count: Int, path: String) throws(MaildropError) -> [Int] {
    for n in numbers where n < 1 || n > count {
        throw .io("\(path): commit: no message \(n) (the maildrop has \(count))")
    }
    return Array(Set(numbers)).sorted()
}
