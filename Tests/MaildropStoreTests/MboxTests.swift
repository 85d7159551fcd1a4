// mbox sessions: locking (flock, dotlock, fcntl), sizes, unique-ids, RETR, compaction, rewrite checks.
import Foundation
import Glibc
import POP3Core
import XCTest
@testable import MaildropStore

final class MboxTests: XCTestCase {
    var dir: ScratchDir!
    var mbox: String { dir.sub("bob") }

    override func setUp() { dir = ScratchDir() }
    override func tearDown() { dir = nil }

    func options(timeout: Double = 0.3, unquote: Bool = false) -> MaildropOptions {
        var o = MaildropOptions()
        o.dotlockTimeout = timeout
        o.mboxFromUnquote = unquote
        return o
    }

    func open(_ o: MaildropOptions? = nil) throws -> any MaildropSession {
        try MaildropStore.open(.mbox(mbox), options: o ?? options())
    }

    /// Opens the mbox with the file system uid of nobody (65534), as an unprivileged user would.
    func openAsNobody() throws -> any MaildropSession {
        let old = setFSUID(65534)
        defer { _ = setFSUID(UInt32(old)) }
        return try open()
    }

    func retr(_ s: any MaildropSession, _ n: Int, buffer: Int = 5) throws -> String {
        let src = try s.openMessage(n)
        defer { src.close() }
        return String(decoding: try readAll(src, bufferSize: buffer), as: UTF8.self)
    }

    static let bodies = [
        "Subject: one\nMessage-ID: <1@x>\n\nfirst\n",
        "Subject: two\nMessage-ID: <2@x>\n\nsecond\nFrom me, inside\n\n>From quoted\n",
        "Subject: three\nMessage-ID: <3@x>\n\nthird\n.dot\n",
        "Subject: four\nMessage-ID: <4@x>\n\nfourth\n\n\n",
    ]
    static var messages: [String] { bodies.enumerated().map { mboxMessage($1, day: $0 + 1) } }

    func testOpenReadsMessagesAndRetrIsExact() throws {
        writeFile(mbox, Self.messages.joined())
        for unquote in [false, true] {
            let s = try open(options(unquote: unquote))
            XCTAssertEqual(s.messages.count, 4)
            XCTAssertEqual(s.usesMboxFromUnquote, unquote)
            for (i, body) in Self.bodies.enumerated() {
                XCTAssertEqual(try retr(s, i + 1), body)
                XCTAssertEqual(s.messages[i].size, POP3Octets.crlfSize(of: bytes(body), mboxFromUnquote: unquote))
            }
            XCTAssertEqual(s.warnings, [])
            XCTAssertNotNil(assertIOError(try s.openMessage(5)))
            s.close()
        }
        XCTAssertFalse(exists(mbox + ".lock"))
    }

    /// The event loop's path over an mbox: same octets as openMessage (never past the
    /// message), nil where the From line cannot be checked from memory or was rewritten.
    func testQuickOpenAndCachedReads() throws {
        writeFile(mbox, Self.messages.joined())
        let s = try open()
        for (i, body) in Self.bodies.enumerated() {
            let src = try XCTUnwrap(s.openMessageQuickly(i + 1))
            let (got, _) = try readCachedThenRest(src, bufferSize: 3)
            XCTAssertEqual(String(decoding: got, as: UTF8.self), body)
            src.close()
        }
        evictFromCache(mbox)
        for (i, body) in Self.bodies.enumerated() {
            // Evicted: nil (the From check needs the disk) or, if the kernel kept the page, exact.
            if let src = s.openMessageQuickly(i + 1) {
                XCTAssertEqual(String(decoding: try readCachedThenRest(src, bufferSize: 64).bytes, as: UTF8.self), body)
            }
            XCTAssertEqual(try retr(s, i + 1), body)
        }
        XCTAssertNil(s.openMessageQuickly(0))
        XCTAssertNil(s.openMessageQuickly(5))
        // Another program rewrote the file: the quick path declines, the blocking one explains.
        writeFile(mbox, "junk that is not an mbox any more\n" + Self.messages.joined())
        XCTAssertNil(s.openMessageQuickly(2))
        XCTAssertNotNil(assertIOError(try s.openMessage(2)))
        s.close()
    }

    func testCRLFMbox() throws {
        let text = "From a@b Mon Jan  1 00:00:00 2024\r\nSubject: a\r\n\r\nA\r\n\r\nFrom c@d Mon Jan  2 00:00:00 2024\r\nSubject: b\r\n\r\nB\r\n\r\n"
        writeFile(mbox, text)
        let s = try open()
        XCTAssertEqual(try retr(s, 1), "Subject: a\r\n\r\nA\r\n")
        XCTAssertEqual(try retr(s, 2), "Subject: b\r\n\r\nB\r\n")
        XCTAssertEqual(s.messages.map(\.size), [bytes("Subject: a\r\n\r\nA\r\n").count, bytes("Subject: b\r\n\r\nB\r\n").count])
    }

    func testPseudoMessageSkippedAndKept() throws {
        let pseudo = mboxMessage("Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\nX-IMAP: 1700000000 0000000002\n\ninternal\n",
                                 from: "MAILER-DAEMON")
        writeFile(mbox, pseudo + Self.messages.joined())
        let s = try open()
        XCTAssertEqual(s.messages.count, 4)
        XCTAssertEqual(try retr(s, 1), Self.bodies[0])
        try s.commit(deleting: [1, 2, 3, 4])
        s.close()
        XCTAssertEqual(readText(mbox), pseudo)
        XCTAssertEqual(try open().messages, [])
    }

    func testUIDsFromXUIDLAndHashesStableAndUnique() throws {
        let dupHeaders = "Subject: same\nMessage-ID: <same@x>\n\n"
        let text = mboxMessage("X-UIDL: uidl-1\nSubject: a\n\na\n")
            + mboxMessage("X-UIDL: uidl-1\nSubject: b\n\nb\n")                  // repeated X-UIDL: hashed
            + mboxMessage(dupHeaders + "first copy\n")
            + mboxMessage(dupHeaders + "second copy\n")
            + mboxMessage(dupHeaders + "third copy\n")
            + mboxMessage("Subject: plain\n\nplain\n")
        writeFile(mbox, text)
        let s1 = try open()
        let uids = s1.messages.map(\.uid)
        s1.close()
        XCTAssertEqual(uids[0], "uidl-1")
        XCTAssertEqual(uids[1], md5Hex(bytes("X-UIDL: uidl-1\nSubject: b\n")))
        let h = md5Hex(bytes("Subject: same\nMessage-ID: <same@x>\n"))
        XCTAssertEqual(Array(uids[2...4]), [h, h + ".2", h + ".3"])
        XCTAssertEqual(Set(uids).count, uids.count)
        for u in uids { XCTAssertTrue(MessageInfo.isValidUID(u), u) }

        // The same in the next session, also after a mail reader added Status: fields (mutt).
        XCTAssertEqual(try open().messages.map(\.uid), uids)
        writeFile(mbox, text.replacingOccurrences(of: "Subject: plain\n", with: "Subject: plain\nStatus: RO\nX-Status: A\n"))
        XCTAssertEqual(try open().messages.map(\.uid), uids)
    }

    func testInUseBetweenSessions() throws {
        writeFile(mbox, Self.messages.joined())
        let s1 = try open()
        XCTAssertThrowsError(try open()) { XCTAssertEqual($0 as? MaildropError, .inUse) }
        s1.close()
        XCTAssertEqual(try open().messages.count, 4)
    }

    func testMissingMboxIsEmptyAndCreatesNothing() throws {
        let s = try open()
        XCTAssertEqual(s.messages, [])
        XCTAssertNotNil(assertIOError(try s.openMessage(1)))
        try s.commit(deleting: [])
        s.close()
        XCTAssertFalse(exists(mbox))
        XCTAssertFalse(exists(mbox + ".lock"))
        // An empty file is an empty maildrop too.
        writeFile(mbox, "")
        XCTAssertEqual(try open().messages, [])
    }

    func testNotAnMboxOrNotAFile() throws {
        writeFile(mbox, "This is not\nan mbox\n\n" + Self.messages[0])
        XCTAssertNotNil(assertIOError(try open()))
        unlink(mbox)
        mkdir(mbox, 0o700)
        XCTAssertNotNil(assertIOError(try open()))
        rmdir(mbox)
        writeFile(dir.sub("elsewhere"), Self.messages[0])
        symlink(dir.sub("elsewhere"), mbox)
        let text = assertIOError(try open())
        XCTAssertTrue(text?.contains("symbolic link") ?? false, text ?? "")
    }

    // MARK: - Delivery locks

    func testHeldDotlockMakesOpenWaitThenFail() throws {
        writeFile(mbox, Self.messages.joined())
        writeFile(mbox + ".lock", "\(getpid())\n")       // a live MDA's lock
        let start = monotonicSeconds()
        let text = assertIOError(try open(options(timeout: 0.3)))
        let waited = monotonicSeconds() - start
        XCTAssertTrue(text?.contains("locked by another program") ?? false, text ?? "")
        XCTAssertGreaterThanOrEqual(waited, 0.28)
        XCTAssertLessThan(waited, 3)
        XCTAssertTrue(exists(mbox + ".lock"))              // not ours: left alone
        // No temporary lock files left behind.
        XCTAssertEqual(listNames(dir.path), ["bob", "bob.lock"])
        // The session lock was released with the failure.
        unlink(mbox + ".lock")
        XCTAssertEqual(try open().messages.count, 4)
    }

    func testDotlockReleasedByItsHolderWhileWaiting() throws {
        writeFile(mbox, Self.messages.joined())
        writeFile(mbox + ".lock", "")
        let lock = mbox + ".lock"
        let t = Thread { usleep(150_000); unlink(lock) }
        t.start()
        let s = try open(options(timeout: 5))
        XCTAssertEqual(s.messages.count, 4)
    }

    func testStaleDotlockRemoved() throws {
        writeFile(mbox, Self.messages.joined())
        // Old, and its pid is no process (above any pid_max).
        writeFile(mbox + ".lock", "2147483647\n")
        age(mbox + ".lock", secondsAgo: 1000)
        let s = try open()
        XCTAssertEqual(s.messages.count, 4)
        XCTAssertEqual(s.warnings.count, 1)
        XCTAssertTrue(s.warnings[0].contains("stale"), s.warnings[0])
        XCTAssertFalse(exists(mbox + ".lock"))
        s.close()

        // An old lock whose pid is alive is not stale; nor is a young empty one.
        writeFile(mbox + ".lock", "\(getpid())\n")
        age(mbox + ".lock", secondsAgo: 1000)
        XCTAssertNotNil(assertIOError(try open(options(timeout: 0.1))))
        writeFile(mbox + ".lock", "")
        age(mbox + ".lock", secondsAgo: 100)
        XCTAssertNotNil(assertIOError(try open(options(timeout: 0.1))))
        // An old empty one (Postfix writes no pid) is.
        age(mbox + ".lock", secondsAgo: 1000)
        XCTAssertEqual(try open().messages.count, 4)
    }

    func testFcntlLockOfAnotherProgramHonoured() throws {
        writeFile(mbox, Self.messages.joined())
        // A classic POSIX lock, as Postfix local(8) or procmail take it while delivering. Our
        // OFD lock conflicts with it even within one process.
        let fd = Glibc.open(mbox, O_RDWR)
        defer { Glibc.close(fd) }
        var fl = flock()
        fl.l_type = Int16(F_WRLCK)
        fl.l_whence = Int16(SEEK_SET)
        XCTAssertEqual(fcntl(fd, F_SETLK, &fl), 0)
        let start = monotonicSeconds()
        let text = assertIOError(try open(options(timeout: 0.2)))
        XCTAssertTrue(text?.contains("fcntl") ?? false, text ?? "")
        XCTAssertGreaterThanOrEqual(monotonicSeconds() - start, 0.18)
        XCTAssertFalse(exists(mbox + ".lock"))     // the dotlock was given back
    }

    func testDotlockImpossibleFallsBackToFcntl() throws {
        try XCTSkipUnless(geteuid() == 0, "needs root to switch the file system uid")
        chmod(dir.path, 0o755)                     // not writable for uid 65534 (like /var/mail for a non-member of group mail)
        writeFile(mbox, Self.messages.joined(), mode: 0o666)
        chmod(mbox, 0o666)
        let session = try openAsNobody()
        XCTAssertEqual(session.messages.count, 4)
        XCTAssertEqual(session.warnings.count, 1)
        XCTAssertTrue(session.warnings[0].hasPrefix("dotlock not possible in \(dir.path): Permission denied; used fcntl only"),
                      session.warnings[0])
    }

    func testReadOnlyMboxCanBeReadNotUpdated() throws {
        try XCTSkipUnless(geteuid() == 0, "needs root to switch the file system uid")
        chmod(dir.path, 0o755)
        writeFile(mbox, Self.messages.joined(), mode: 0o644)
        chmod(mbox, 0o644)                         // root's file: uid 65534 may only read it
        let session = try openAsNobody()
        XCTAssertEqual(session.messages.count, 4)
        XCTAssertEqual(try retr(session, 2), Self.bodies[1])
        XCTAssertEqual(session.warnings.count, 2, "\(session.warnings)")
        XCTAssertTrue(session.warnings[0].contains("opened read-only"), session.warnings[0])
        let text = assertIOError(try session.commit(deleting: [1]))
        XCTAssertTrue(text?.contains("read-only") ?? false, text ?? "")
        XCTAssertEqual(readText(mbox), Self.messages.joined())
    }

    // MARK: - UPDATE

    func testCommitCompactsInPlace() throws {
        let all = Self.messages
        for deleting in [[1], [2], [4], [1, 3], [2, 3], [1, 2, 3, 4], [4, 1]] {
            writeFile(mbox, all.joined())
            let s = try open()
            try s.commit(deleting: deleting)
            s.close()
            let expected = all.enumerated().filter { !deleting.contains($0.offset + 1) }.map(\.element).joined()
            XCTAssertEqual(readText(mbox), expected, "deleting \(deleting)")
            let kept = Self.bodies.enumerated().filter { !deleting.contains($0.offset + 1) }.map(\.element)
            let again = try open()
            XCTAssertEqual(try (1...max(1, kept.count)).prefix(kept.count).map { try retr(again, $0) }, kept)
        }
        XCTAssertFalse(exists(mbox + ".lock"))
    }

    func testCommitKeepsMailDeliveredDuringTheSession() throws {
        writeFile(mbox, Self.messages.joined())
        let s = try open()
        let late = mboxMessage("Subject: late\n\narrived during the session\n", day: 9)
        appendFile(mbox, late)                  // another MDA, after our scan
        try s.commit(deleting: [1, 2])
        s.close()
        XCTAssertEqual(readText(mbox), Self.messages[2] + Self.messages[3] + late)
        let s2 = try open()
        XCTAssertEqual(s2.messages.count, 3)
        XCTAssertEqual(try retr(s2, 3), "Subject: late\n\narrived during the session\n")
    }

    func testCommitWithNothingToDeleteTouchesNothing() throws {
        writeFile(mbox, Self.messages.joined())
        let s = try open()
        try s.commit(deleting: [])
        XCTAssertNotNil(assertIOError(try s.commit(deleting: [0])))
        XCTAssertNotNil(assertIOError(try s.commit(deleting: [5])))
        XCTAssertEqual(readText(mbox), Self.messages.joined())
    }

    func testRewrittenFileRefusedAndNothingDeleted() throws {
        let original = Self.messages.joined()
        // Truncated by another program.
        writeFile(mbox, original)
        var s = try open()
        XCTAssertEqual(truncate(mbox, off_t(bytes(Self.messages[0] + Self.messages[1]).count)), 0)
        let shorter = readText(mbox)
        var text = assertIOError(try s.commit(deleting: [1]))
        XCTAssertTrue(text?.contains("nothing deleted") ?? false, text ?? "")
        XCTAssertEqual(readText(mbox), shorter)
        s.close()

        // Rewritten in place, longer: messages moved (another POP3 server expunged one and new
        // mail came).
        writeFile(mbox, original)
        s = try open()
        let rewritten = Self.messages[1] + Self.messages[2] + Self.messages[3] + Self.messages[0] + Self.messages[0]
        let fd = Glibc.open(mbox, O_WRONLY)
        _ = bytes(rewritten).withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) }
        Glibc.close(fd)
        XCTAssertNotNil(assertIOError(try s.openMessage(2)))
        text = assertIOError(try s.commit(deleting: [2]))
        XCTAssertTrue(text?.contains("rewritten") ?? false, text ?? "")
        XCTAssertEqual(readText(mbox), rewritten)
        s.close()

        // Replaced by a new file (written elsewhere and renamed into place).
        writeFile(mbox, original)
        s = try open()
        writeFile(dir.sub("new"), original)
        XCTAssertEqual(rename(dir.sub("new"), mbox), 0)
        text = assertIOError(try s.commit(deleting: [1]))
        XCTAssertTrue(text?.contains("replaced") ?? false, text ?? "")
        XCTAssertEqual(readText(mbox), original)
        s.close()

        // Removed.
        s = try open()
        unlink(mbox)
        XCTAssertNotNil(assertIOError(try s.commit(deleting: [1])))
        XCTAssertFalse(exists(mbox))
    }

    func testCommitWaitsForDeliveryLocks() throws {
        writeFile(mbox, Self.messages.joined())
        let s = try open(options(timeout: 0.2))
        writeFile(mbox + ".lock", "\(getpid())\n")
        XCTAssertNotNil(assertIOError(try s.commit(deleting: [1])))
        XCTAssertEqual(readText(mbox), Self.messages.joined())
        unlink(mbox + ".lock")
        try s.commit(deleting: [1])
        XCTAssertEqual(readText(mbox), Self.messages.dropFirst().joined())
        // After UPDATE the session is finished.
        XCTAssertNotNil(assertIOError(try s.openMessage(1)))
        XCTAssertNotNil(assertIOError(try s.commit(deleting: [1])))
    }

    func testSourceAfterSessionClose() throws {
        writeFile(mbox, Self.messages.joined())
        let s = try open()
        let src = try s.openMessage(1)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 4, alignment: 1)
        defer { buf.deallocate() }
        XCTAssertEqual(try src.read(into: buf), 4)
        s.close()
        XCTAssertNotNil(assertIOError(try src.read(into: buf)))
        XCTAssertNotNil(assertIOError(try s.openMessage(1)))
    }

    func testSourceNeverReadsPastTheMessage() throws {
        writeFile(mbox, Self.messages.joined())
        let s = try open()
        let src = try s.openMessage(1)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 1)
        defer { buf.deallocate() }
        XCTAssertEqual(try src.read(into: buf), bytes(Self.bodies[0]).count)
        XCTAssertEqual(try src.read(into: buf), 0)
        XCTAssertEqual(try src.read(into: buf), 0)
        XCTAssertEqual(src.storedLength, bytes(Self.bodies[0]).count)
    }

    func testDescriptorsDoNotLeak() throws {
        writeFile(mbox, Self.messages.joined())
        let before = openFDCount()
        for i in 0..<200 {
            let s = try open()
            XCTAssertThrowsError(try open())
            if i == 0 { XCTAssertFalse(openFDs(under: dir.path).isEmpty) }   // the check sees our descriptors
            _ = try retr(s, 1 + i % 4, buffer: 4096)
            if i % 2 == 0 { s.close() }
        }
        // Missing mbox and a held dotlock (failure path) too.
        for _ in 0..<20 { _ = try MaildropStore.open(.mbox(dir.sub("nobody")), options: options()) }
        writeFile(mbox + ".lock", "\(getpid())\n")
        for _ in 0..<5 { _ = assertIOError(try open(options(timeout: 0.01))) }
        XCTAssertEqual(openFDs(under: dir.path), [])
        // 200 cycles: a leak of even one descriptor per cycle would show; a few descriptors
        // of other threads of the test process would not make this fail.
        XCTAssertLessThan(openFDCount() - before, 20)
    }

    /// Many messages: one pass, no quadratic work; every other one deleted, the rest intact.
    func testManyMessages() throws {
        var text = ""
        var bodies: [String] = []
        for i in 0..<5000 {
            let body = "Subject: message \(i)\nMessage-ID: <\(i)@x>\n\n" + String(repeating: "line of message \(i)\n", count: i % 7)
            bodies.append(body)
            text += mboxMessage(body, day: 1 + i % 28)
        }
        writeFile(mbox, text)
        let s = try open()
        XCTAssertEqual(s.messages.count, 5000)
        XCTAssertEqual(Set(s.messages.map(\.uid)).count, 5000)
        XCTAssertEqual(try retr(s, 4321, buffer: 4096), bodies[4320])
        try s.commit(deleting: Array(stride(from: 1, through: 5000, by: 2)))
        s.close()
        let kept = stride(from: 1, to: 5000, by: 2).map { i in mboxMessage(bodies[i], day: 1 + i % 28) }.joined()
        XCTAssertEqual(readText(mbox), kept)
        XCTAssertEqual(try open().messages.count, 2500)
    }

    /// A 20 MB message streams through a 64 KiB buffer, octet for octet.
    func testLargeMessageStreams() throws {
        let line = Array("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuv\r\n".utf8)
        let header = Array("Subject: big\r\n\r\n".utf8)
        var body = header
        body.reserveCapacity(20 * 1024 * 1024 + line.count)
        while body.count < 20 * 1024 * 1024 { body += line }
        writeFile(mbox, Array(fromLine().utf8) + body + [0x0A] + Array(Self.messages[0].utf8))
        let s = try open()
        XCTAssertEqual(s.messages.count, 2)
        XCTAssertEqual(s.messages[0].size, body.count)   // CRLF throughout: size = stored octets
        let src = try s.openMessage(1)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { buf.deallocate() }
        var offset = 0
        var same = true
        while true {
            let n = try src.read(into: buf)
            if n == 0 { break }
            XCTAssertLessThanOrEqual(n, 64 * 1024)
            if offset + n > body.count { same = false; break }
            body.withUnsafeBytes { b in
                if memcmp(buf.baseAddress!, b.baseAddress! + offset, n) != 0 { same = false }
            }
            offset += n
        }
        XCTAssertTrue(same)
        XCTAssertEqual(offset, body.count)
        XCTAssertEqual(try retr(s, 2), Self.bodies[0])
    }
}
