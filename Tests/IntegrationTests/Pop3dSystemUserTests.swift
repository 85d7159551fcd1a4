// drac-pop3d serving system users (pop3d_mail_user empty): the process stays root and every
// maildrop access runs under the owner's filesystem identity (setfsuid/setfsgid per thread).
import XCTest
import Foundation
import Glibc

final class Pop3dSystemUserTests: XCTestCase {
    /// A system user made for the test (removed again in tearDown).
    let account = "dracpop1"
    let password = "system-secret"
    var dir = ""
    var home: String { dir + "/home/" + account }

    override func setUpWithError() throws {
        try Env.requireSandbox()
        _ = runCommand("userdel", [account])   // left over from an interrupted run
        dir = makeTempDir("pop3-system")
        chmod(dir, 0o755)
        let made = runCommand("useradd", ["-M", "-U", "-d", home, "-s", "/usr/sbin/nologin", account])
        XCTAssertEqual(made.status, 0, made.output)
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        chmod(dir + "/home", 0o755)
        chmod(home, 0o700)
        // A user made in the server's own realm authenticates as plain `dracpop1` (Cyrus
        // appends no realm then), the account the passwd lookup needs. root is there to be refused.
        for u in [account, "root"] {
            let r = runCommand("sh", ["-c", "printf %s \"$1\" | saslpasswd2 -c -p -f \"$2\" -u pop.example.org \"$3\"",
                                      "sh", password, dir + "/sasldb2", u])
            XCTAssertEqual(r.status, 0, r.output)
        }
    }

    override func tearDown() {
        _ = runCommand("userdel", [account])
    }

    var ids: (uid: uid_t, gid: gid_t) {
        let pw = getpwnam(account)!
        return (pw.pointee.pw_uid, pw.pointee.pw_gid)
    }

    func chownToUser(_ path: String) {
        XCTAssertEqual(runCommand("chown", ["-R", "\(account):\(account)", path]).status, 0)
    }

    func owner(_ path: String) -> (uid: uid_t, gid: gid_t)? {
        var st = stat()
        return lstat(path, &st) == 0 ? (st.st_uid, st.st_gid) : nil
    }

    /// Every file and directory under `path`, relative.
    func tree(_ path: String) -> [String] {
        (FileManager.default.enumerator(atPath: path)?.allObjects as? [String] ?? []).sorted()
    }

    func start(_ location: String) throws -> Pop3dInstance {
        try Pop3dInstance(dir: dir, settings: ["pop3d_mail_location = \(location)", "pop3d_mail_user ="])
    }

    func testMaildirInHomeReadAndUpdatedAsItsOwner() throws {
        let md = home + "/Maildir"
        let m1 = Mailbox.message(subject: "one", body: ["first", ".dotted"])
        let m2 = Mailbox.message(subject: "two", body: ["second"])
        let m3 = Mailbox.message(subject: "three", body: ["third"])
        let names = [m1, m2, m3].map { Mailbox.deliver($0, to: md) }
        chownToUser(home)
        // A file the user may not read (root's, 0600): served as root it would be readable.
        let third = "new/" + names[2]
        XCTAssertEqual(chown(md + "/" + third, 0, 0), 0)
        chmod(md + "/" + third, 0o600)

        let p = try start("maildir:~/Maildir")
        defer { p.stop() }
        XCTAssertTrue(p.log.contains("system users (each maildrop as its owner)"), p.log)
        let c = try POP3Raw.login(port: p.port, user: account, password: password)
        // The unreadable file is named in the log and left alone; the rest is served.
        XCTAssertEqual(c.command("STAT"), "+OK 2 \(Mailbox.crlfSize(m1) + Mailbox.crlfSize(m2))")
        XCTAssertTrue(p.log.contains("\(names[2]): cannot open: Permission denied; left in place, not served"), p.log)
        XCTAssertTrue(c.command("RETR 1").hasPrefix("+OK"))
        XCTAssertEqual(c.multilineBody(), Mailbox.expectedRetr(m1))
        // Reads happen as the owner too: message 2 made root's mid-session cannot be read.
        let second = try XCTUnwrap(tree(md).first { $0.hasPrefix("cur/") && $0.contains(names[1]) })
        XCTAssertEqual(chown(md + "/" + second, 0, 0), 0)
        chmod(md + "/" + second, 0o600)
        let refused = c.command("RETR 2")
        XCTAssertTrue(refused.hasPrefix("-ERR"), "read a file its owner cannot read: \(refused)")
        XCTAssertEqual(chown(md + "/" + second, ids.uid, ids.gid), 0)
        XCTAssertTrue(c.command("RETR 2").hasPrefix("+OK"))
        XCTAssertEqual(c.multilineBody(), Mailbox.expectedRetr(m2))
        XCTAssertTrue(c.command("DELE 1").hasPrefix("+OK"))
        XCTAssertEqual(c.command("QUIT"), "+OK Logging out, 1 message deleted (1 left).")

        // Message 1 is gone, the unreadable one still in new/; everything the server created
        // or renamed belongs to the user.
        let left = Mailbox.files(md)
        XCTAssertEqual(left.count, 2, "\(left)")
        XCTAssertFalse(left.contains { $0.contains(names[0]) }, "\(left)")
        XCTAssertTrue(left.contains(third), "\(left)")
        let (uid, gid) = ids
        for f in tree(md) where !f.contains(names[2]) {
            let o = owner(md + "/" + f)
            XCTAssertTrue(o?.uid == uid && o?.gid == gid, "\(f) belongs to \(String(describing: o)), not \(account)")
        }
        XCTAssertTrue(tree(md).contains { $0.hasSuffix("drac-pop3d.lock") }, "\(tree(md))")
        XCTAssertTrue(p.log.contains("Login: user=<\(account)>"), p.log)
    }

    func testDebianSpoolMboxWithoutDotlockPermission() throws {
        // Debian's /var/mail: root:mail 2775, the mbox USER:mail 0660. The user cannot create
        // USER.lock there, so the server says so and relies on the fcntl lock.
        let spool = dir + "/spool"
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        XCTAssertEqual(runCommand("chown", ["root:mail", spool]).status, 0)
        chmod(spool, 0o2775)
        let mbox = spool + "/" + account
        let bodies = ["Subject: one\n\nfirst\n", "Subject: two\n\nsecond\n>From quoted\n", "Subject: three\n\nthird\n"]
        let text = bodies.enumerated().map { "From sender@example.net Mon Nov \($0.offset + 1) 10:00:00 2026\n" + $0.element + "\n" }.joined()
        try text.write(toFile: mbox, atomically: false, encoding: .utf8)
        XCTAssertEqual(runCommand("chown", ["\(account):mail", mbox]).status, 0)
        chmod(mbox, 0o660)

        let p = try start("mbox:\(spool)/%u")
        defer { p.stop() }
        let c = try POP3Raw.login(port: p.port, user: account, password: password)
        XCTAssertTrue(c.command("STAT").hasPrefix("+OK 3 "))
        XCTAssertTrue(c.command("RETR 2").hasPrefix("+OK"))
        XCTAssertEqual(c.multilineBody(), Mailbox.expectedRetr(bodies[1]))
        XCTAssertTrue(c.command("DELE 1").hasPrefix("+OK"))
        XCTAssertTrue(c.command("QUIT").hasPrefix("+OK Logging out, 1 message deleted"))

        let after = try String(contentsOfFile: mbox, encoding: .utf8)
        XCTAssertFalse(after.contains("first"), after)
        XCTAssertTrue(after.contains("second") && after.contains("third"), after)
        XCTAssertTrue(after.hasPrefix("From sender@example.net Mon Nov 2 "), after)
        let o = owner(mbox)
        XCTAssertEqual(o?.uid, ids.uid, "the mbox changed owner")
        XCTAssertFalse(FileManager.default.fileExists(atPath: mbox + ".lock"))
        XCTAssertTrue(p.log.contains("dotlock"), "no warning about the dotlock:\n\(p.log)")
    }

    func testRootIsNotServed() throws {
        let p = try start("maildir:~/Maildir")
        defer { p.stop() }
        let c = try XCTUnwrap(POP3Raw(port: p.port))
        XCTAssertTrue(c.line()?.hasPrefix("+OK") == true)
        XCTAssertTrue(c.command("USER root").hasPrefix("+OK"))
        let r = c.command("PASS \(password)")
        XCTAssertTrue(r.hasPrefix("-ERR"), r)
        XCTAssertTrue(p.log.contains("root's mail is not served"), p.log)
    }
}
