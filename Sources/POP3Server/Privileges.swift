// Who drac-pop3d is while it serves: a virtual-mail account for good, or each system user in turn.
import CLinux
import Foundation

/// A passwd entry, the part we use.
public struct SystemUser: Sendable, Equatable {
    public var name: String
    public var uid: uid_t
    public var gid: gid_t
    public var home: String

    /// getpwnam_r: nil when there is no such user (or the lookup failed).
    public static func lookup(_ name: String) -> SystemUser? {
        guard !name.isEmpty, !name.utf8.contains(0) else { return nil }
        var pw = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buf = [CChar](repeating: 0, count: 16_384)
        let rc = getpwnam_r(name, &pw, &buf, buf.count, &result)
        guard rc == 0, result != nil else { return nil }
        return SystemUser(name: String(cString: pw.pw_name), uid: pw.pw_uid, gid: pw.pw_gid,
                          home: String(cString: pw.pw_dir))
    }
}

public struct PrivilegeError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

public enum Privileges {
    /// Becomes `user` for good (virtual users): supplementary groups from /etc/group
    /// (initgroups, so `adduser vmail sasl` gives access to sasldb and saslauthd), then the
    /// group, then the user; checks that root cannot be regained. glibc applies each change
    /// to every thread of the process. Nothing to do when we already are that user.
    public static func become(_ user: SystemUser) throws {
        if geteuid() == user.uid && getegid() == user.gid { return }
        guard geteuid() == 0 else {
            throw PrivilegeError("must start as root to serve as \(user.name) (running as uid \(geteuid()))")
        }
        guard user.uid != 0 else { throw PrivilegeError("pop3d_mail_user must not be root") }
        if initgroups(user.name, user.gid) != 0 { throw PrivilegeError("initgroups(\(user.name)): \(String(cString: strerror(errno)))") }
        if setgid(user.gid) != 0 { throw PrivilegeError("setgid(\(user.gid)): \(String(cString: strerror(errno)))") }
        if setuid(user.uid) != 0 { throw PrivilegeError("setuid(\(user.uid)): \(String(cString: strerror(errno)))") }
        if setuid(0) == 0 || geteuid() == 0 { throw PrivilegeError("root privileges could be regained after setuid(\(user.uid))") }
    }

    /// Runs `body` with `user`'s filesystem identity on this thread only (system users).
    /// setfsuid/setfsgid are per-thread on Linux (glibc does not broadcast them to other
    /// threads, unlike setuid), and a non-zero fsuid drops the filesystem capabilities
    /// (CAP_DAC_OVERRIDE, CAP_FOWNER...): the kernel checks every open, rename, unlink and
    /// creation as that user, and new files belong to them (as Samba does per request).
    /// Only the primary group applies; supplementary groups would need a raw setgroups(2).
    /// Without root (development), `body` runs as the process's own user.
    public static func asFilesystemUser<T>(_ user: SystemUser?, _ body: () throws -> T) rethrows -> T {
        guard let user, geteuid() == 0 else { return try body() }
        let oldGid = setfsgid(user.gid)
        let oldUid = setfsuid(user.uid)
        defer {
            _ = setfsuid(uid_t(oldUid))
            _ = setfsgid(gid_t(oldGid))
        }
        return try body()
    }
}
