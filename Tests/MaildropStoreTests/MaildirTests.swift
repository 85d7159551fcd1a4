// Maildir sessions: new/ -> cur/, ",W=" sizes, stable unique-ids, order, locking, RETR, UPDATE.
import Glibc
import POP3Core
import XCTest
@testable import MaildropStore

final class MaildirTests: XCTestCase {
    var dir: ScratchDir!
    var md: String { dir.sub("Maildir") }

    override func setUp() {
        dir = ScratchDir()
        makeMaildir(md)
    }

    override func tearDown() { dir = nil }

    func open(_ options: MaildropOptions = MaildropOptions()) throws -> any MaildropSession {
        try MaildropStore.open(.maildir(md), options: options)
    }

    func retr(_ s: any MaildropSession, _ n: Int, buffer: Int = 7) throws -> [UInt8] {
        let src = try s.openMessage(n)
        defer { src.close() }
        return try readAll(src, bufferSize: buffer)
    }

    static let lfMessage = "Subject: one\nFrom: a@example.org\n\n.leading dot\nbody\n"
    static let crlfMessage = "Subject: two\r\nFrom: b@example.org\r\n\r\nbody\r\nline with bare \r in it\r\n"

    func testNewMovedToCurWithSizeAndFlags() throws {
        writeFile(md + "/new/1700000001.M1P1.host", Self.lfMessage)
        writeFile(md + "/new/1700000002.M2P2.host,S=61", Self.crlfMessage)
        let s = try open()
        XCTAssertEqual(s.messages.count, 2)
        XCTAssertEqual(s.messages[0], MessageInfo(size: POP3Octets.crlfSize(of: bytes(Self.lfMessage)), uid: "1700000001.M1P1.host"))
        XCTAssertEqual(s.messages[1], MessageInfo(size: bytes(Self.crlfMessage).count, uid: "1700000002.M2P2.host"))
        XCTAssertEqual(listNames(md + "/new"), [])
        let lfSize = POP3Octets.crlfSize(of: bytes(Self.lfMessage))
        XCTAssertEqual(listNames(md + "/cur"), [
            "1700000001.M1P1.host,W=\(lfSize):2,",
            "1700000002.M2P2.host,S=61,W=\(bytes(Self.crlfMessage).count):2,",
        ])
        XCTAssertEqual(s.warnings, [])
        XCTAssertFalse(s.usesMboxFromUnquote)
        s.close()
    }

    func testExistingWIsTrustedAndKept() throws {
        // Dovecot LDA names: ",S=<stored size>,W=<CRLF size>". W is believed without reading.
        writeFile(md + "/cur/1700000001.M1P1.host,S=5,W=12345:2,S", "short")
        writeFile(md + "/new/1700000002.M1P1.host,S=5,W=777", "short")
        let s = try open()
        XCTAssertEqual(s.messages.map(\.size), [12345, 777])
        XCTAssertEqual(listNames(md + "/cur"), ["1700000001.M1P1.host,S=5,W=12345:2,S", "1700000002.M1P1.host,S=5,W=777:2,"])
    }

    func testWAddedToCurFilesAndReusedNextSession() throws {
        writeFile(md + "/cur/1700000001.A:2,S", Self.lfMessage)
        writeFile(md + "/cur/1700000002.B,S=99:2,RS", Self.lfMessage)
        writeFile(md + "/cur/1700000003.C", Self.lfMessage)          // no info at all
        let size = POP3Octets.crlfSize(of: bytes(Self.lfMessage))
        var s = try open()
        XCTAssertEqual(s.messages.map(\.size), [size, size, size])
        s.close()
        XCTAssertEqual(listNames(md + "/cur"), [
            "1700000001.A,W=\(size):2,S", "1700000002.B,S=99,W=\(size):2,RS", "1700000003.C,W=\(size)",
        ])
        // The next session takes the size from the name: make the files lie to prove it.
        for n in listNames(md + "/cur") { writeFile(md + "/cur/" + n, "x") }
        s = try open()
        XCTAssertEqual(s.messages.map(\.size), [size, size, size])
        XCTAssertEqual(s.messages.map(\.uid), ["1700000001.A", "1700000002.B", "1700000003.C"])
    }

    func testUIDsStableAcrossSessionsAndFlagRenames() throws {
        let longBase = "1700000005." + String(repeating: "h", count: 80)    // over 70 octets
        writeFile(md + "/new/1700000001.M1P1.host", "a\n")
        writeFile(md + "/new/" + longBase, "b\n")
        writeFile(md + "/cur/1700000003.with space:2,S", "c\n")            // space: not a valid UID octet
        let s1 = try open()
        let uids = s1.messages.map(\.uid)
        s1.close()
        XCTAssertEqual(uids[0], "1700000001.M1P1.host")
        XCTAssertEqual(uids[1], md5Hex(Array("1700000003.with space".utf8)))
        XCTAssertEqual(uids[2], md5Hex(Array(longBase.utf8)))
        XCTAssertEqual(uids[2].count, 32)
        for u in uids { XCTAssertTrue(MessageInfo.isValidUID(u), u) }

        // Another reader (an IMAP server) marks everything replied and flagged.
        for n in listNames(md + "/cur") {
            XCTAssertEqual(rename(md + "/cur/" + n, md + "/cur/" + n + "RF"), 0)
        }
        let s2 = try open()
        XCTAssertEqual(s2.messages.map(\.uid), uids)
        XCTAssertEqual(s2.messages.map(\.size), [3, 3, 3])
    }

    func testOrderByDeliveryTimeThenName() throws {
        for n in ["1700000010.x", "999.y", "1700000002.z", "abc", "1700000002.a", "0999.w"] {
            writeFile(md + "/cur/" + n + ":2,", n)
        }
        let s = try open()
        XCTAssertEqual(s.messages.map(\.uid), ["abc", "0999.w", "999.y", "1700000002.a", "1700000002.z", "1700000010.x"])
    }

    func testIgnoresTmpDotFilesDirectoriesAndSymlinks() throws {
        writeFile(md + "/tmp/1700000001.tmp", "in delivery")
        writeFile(md + "/cur/.hidden:2,", "x")
        writeFile(md + "/new/.hidden", "x")
        mkdir(md + "/cur/1700000002.dir:2,", 0o700)
        writeFile(dir.sub("secret"), "not yours\n")
        symlink(dir.sub("secret"), md + "/cur/1700000003.link:2,")
        symlink(dir.sub("secret"), md + "/new/1700000004.link")
        writeFile(md + "/cur/1700000005.real:2,", "real\n")
        let s = try open()
        XCTAssertEqual(s.messages.map(\.uid), ["1700000005.real"])
        XCTAssertEqual(s.warnings.count, 3, "\(s.warnings)")
        XCTAssertTrue(exists(md + "/new/1700000004.link"))   // left where it is
    }

    func testDuplicateBaseNamesKeepFirst() throws {
        writeFile(md + "/cur/1700000001.D:2,S", "first\n")
        writeFile(md + "/cur/1700000001.D,W=9:2,", "second\n")
        let s = try open()
        XCTAssertEqual(s.messages.count, 1)
        XCTAssertEqual(s.messages[0].uid, "1700000001.D")
        XCTAssertEqual(s.warnings.count, 1)
        XCTAssertTrue(s.warnings[0].contains("same base name"), s.warnings[0])
    }

    func testInUseBetweenSessionsOfOneProcess() throws {
        let s1 = try open()
        XCTAssertThrowsError(try open()) { XCTAssertEqual($0 as? MaildropError, .inUse) }
        s1.close()
        s1.close()   // idempotent
        var s2: (any MaildropSession)? = try open()
        XCTAssertNotNil(s2)
        s2 = nil     // deinit releases the lock
        _ = try open()
        XCTAssertTrue(exists(md + "/drac-pop3d.lock"))
        var st = stat()
        stat(md + "/drac-pop3d.lock", &st)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
    }

    func testRetrBytesExact() throws {
        writeFile(md + "/cur/1700000001.lf:2,", Self.lfMessage)
        writeFile(md + "/cur/1700000002.crlf:2,", Self.crlfMessage)
        writeFile(md + "/cur/1700000003.empty:2,", "")
        writeFile(md + "/cur/1700000004.noeol:2,", "Subject: x\n\nno end of line")
        let s = try open()
        for (i, text) in [Self.lfMessage, Self.crlfMessage, "", "Subject: x\n\nno end of line"].enumerated() {
            for buffer in [1, 3, 64, 65536] {
                let got = try retr(s, i + 1, buffer: buffer)
                XCTAssertEqual(got, bytes(text))
                XCTAssertEqual(POP3Octets.crlfSize(of: got), s.messages[i].size)
            }
        }
        XCTAssertNotNil(assertIOError(try s.openMessage(0)))
        XCTAssertNotNil(assertIOError(try s.openMessage(5)))
    }

    /// The event loop's path: openMessageQuickly + readIfCached give the same octets as the
    /// blocking path, from the cache or (once evicted) partly or wholly by read; a renamed or
    /// removed file is left to openMessage (nil), never an error or a wrong file.
    func testQuickOpenAndCachedReads() throws {
        let big = String(repeating: "line of a larger message\n", count: 4000)
        writeFile(md + "/cur/1700000001.small:2,", Self.lfMessage)
        writeFile(md + "/cur/1700000002.big:2,", big)
        writeFile(md + "/cur/1700000003.gone:2,", "three\n")
        let s = try open()
        for (n, text) in [(1, Self.lfMessage), (2, big)] {
            let src = try XCTUnwrap(s.openMessageQuickly(n))
            XCTAssertEqual(src.storedLength, text.utf8.count)
            let (got, cached) = try readCachedThenRest(src, bufferSize: 4096)
            XCTAssertEqual(got, bytes(text))
            XCTAssertEqual(cached, text.utf8.count, "a file just written is in the page cache")
            src.close()
        }
        // The session added ,W= to the names.
        let bigName = try XCTUnwrap(listNames(md + "/cur").first { $0.hasPrefix("1700000002.") })
        evictFromCache(md + "/cur/" + bigName)
        let src = try XCTUnwrap(s.openMessageQuickly(2))
        let (got, cached) = try readCachedThenRest(src, bufferSize: 4096)
        XCTAssertEqual(got, bytes(big), "\(cached) octets came from the cache, the rest by read")
        src.close()

        let smallName = try XCTUnwrap(listNames(md + "/cur").first { $0.hasPrefix("1700000001.") })
        XCTAssertEqual(rename(md + "/cur/" + smallName, md + "/cur/" + smallName + "S"), 0)
        XCTAssertNil(s.openMessageQuickly(1), "renamed by another reader: only openMessage scans for it")
        XCTAssertEqual(try retr(s, 1), bytes(Self.lfMessage))
        unlink(md + "/cur/" + (listNames(md + "/cur").first { $0.hasPrefix("1700000003.") } ?? ""))
        XCTAssertNil(s.openMessageQuickly(3))
        XCTAssertNil(s.openMessageQuickly(0))
        XCTAssertNil(s.openMessageQuickly(4))
        try s.commit(deleting: [])
        s.close()
        XCTAssertNil(s.openMessageQuickly(2), "closed session")
    }

    func testRetrAfterAnotherReaderRenamedOrRemovedTheFile() throws {
        writeFile(md + "/new/1700000001.a", "one\n")
        writeFile(md + "/new/1700000002.b", "two\n")
        let s = try open()
        let names = listNames(md + "/cur")
        XCTAssertEqual(rename(md + "/cur/" + names[0], md + "/cur/" + names[0] + "S"), 0)
        XCTAssertEqual(try retr(s, 1), bytes("one\n"))
        unlink(md + "/cur/" + names[1])
        let text = assertIOError(try s.openMessage(2))
        XCTAssertTrue(text?.contains("removed") ?? false, text ?? "")
    }

    func testCommitDeletesOnlyTheGivenNumbers() throws {
        for i in 1...5 { writeFile(md + "/new/170000000\(i).m\(i)", "message \(i)\n") }
        let s = try open()
        let uids = s.messages.map(\.uid)
        // Another reader changes the flags of message 4 meanwhile: it must still go.
        let four = listNames(md + "/cur").first { $0.hasPrefix("1700000004.") }!
        XCTAssertEqual(rename(md + "/cur/" + four, md + "/cur/" + four + "S"), 0)
        XCTAssertNotNil(assertIOError(try s.commit(deleting: [2, 6])))   // out of range: nothing done
        XCTAssertEqual(listNames(md + "/cur").count, 5)
        try s.commit(deleting: [4, 2, 2])
        s.close()
        let s2 = try open()
        XCTAssertEqual(s2.messages.map(\.uid), [uids[0], uids[2], uids[4]])
        XCTAssertEqual(try retr(s2, 2), bytes("message 3\n"))
        try s2.commit(deleting: [])
        XCTAssertEqual(listNames(md + "/cur").count, 3)
    }

    func testCommitWhenAFileIsAlreadyGone() throws {
        writeFile(md + "/new/1700000001.a", "one\n")
        writeFile(md + "/new/1700000002.b", "two\n")
        let s = try open()
        for n in listNames(md + "/cur") where n.hasPrefix("1700000001") { unlink(md + "/cur/" + n) }
        try s.commit(deleting: [1, 2])
        XCTAssertEqual(listNames(md + "/cur"), [])
    }

    func testMissingMaildirCreatedOrEmpty() throws {
        var options = MaildropOptions()
        let missing = dir.sub("home/bob/Maildir")
        options.createMaildir = false
        let empty = try MaildropStore.open(.maildir(missing), options: options)
        XCTAssertEqual(empty.messages, [])
        XCTAssertNotNil(assertIOError(try empty.openMessage(1)))
        XCTAssertFalse(exists(dir.sub("home")))

        options.createMaildir = true
        let s = try MaildropStore.open(.maildir(missing), options: options)
        XCTAssertEqual(s.messages, [])
        for sub in ["", "/new", "/cur", "/tmp"] {
            var st = stat()
            XCTAssertEqual(stat(missing + sub, &st), 0, sub)
            XCTAssertEqual(st.st_mode & 0o777, 0o700, sub)
        }
        XCTAssertThrowsError(try MaildropStore.open(.maildir(missing), options: options)) {
            XCTAssertEqual($0 as? MaildropError, .inUse)
        }
    }

    func testCreatedMaildirHandedToOwner() throws {
        try XCTSkipUnless(geteuid() == 0, "needs root to chown")
        var options = MaildropOptions()
        options.ownerUID = 65534
        options.ownerGID = 65534
        let path = dir.sub("vmail/example.org/bob")
        let s = try MaildropStore.open(.maildir(path), options: options)
        s.close()
        for p in [dir.sub("vmail"), path, path + "/cur", path + "/new", path + "/tmp", path + "/drac-pop3d.lock"] {
            var st = stat()
            XCTAssertEqual(lstat(p, &st), 0, p)
            XCTAssertEqual(st.st_uid, 65534, p)
            XCTAssertEqual(st.st_gid, 65534, p)
        }
    }

    func testNotADirectoryIsAnError() {
        writeFile(dir.sub("file"), "x")
        XCTAssertNotNil(assertIOError(try MaildropStore.open(.maildir(dir.sub("file")), options: MaildropOptions())))
    }

    func testSessionClosedAndSourceAfterClose() throws {
        writeFile(md + "/new/1700000001.a", "one\n")
        let s = try open()
        let src = try s.openMessage(1)
        s.close()
        // A Maildir source owns its descriptor: it still reads after the session closed.
        XCTAssertEqual(try readAll(src), bytes("one\n"))
        src.close()
        src.close()
        XCTAssertNotNil(assertIOError(try readAll(src)))
        XCTAssertNotNil(assertIOError(try s.openMessage(1)))
        XCTAssertNotNil(assertIOError(try s.commit(deleting: [1])))
    }

    func testDescriptorsDoNotLeak() throws {
        for i in 1...3 { writeFile(md + "/new/170000000\(i).m", "message \(i)\n") }
        _ = try open()   // first open renames; warm up
        let before = openFDCount()
        for i in 0..<200 {
            let s = try open()
            XCTAssertThrowsError(try open())
            if i == 0 { XCTAssertFalse(openFDs(under: dir.path).isEmpty) }   // the check sees our descriptors
            let src = try s.openMessage(1 + i % 3)
            _ = try readAll(src)
            if i % 2 == 0 { src.close() }
            if i % 3 == 0 { s.close() }
        }
        XCTAssertEqual(openFDs(under: dir.path), [])
        // 200 cycles: a leak of even one descriptor per cycle would show; a few descriptors
        // of other threads of the test process would not make this fail.
        XCTAssertLessThan(openFDCount() - before, 20)
    }
}
