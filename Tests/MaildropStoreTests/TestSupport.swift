// Helpers for the maildrop store tests: scratch directories, whole-file I/O, reading a source.
import Glibc
import XCTest
@testable import MaildropStore

/// A fresh directory under /tmp, removed (with everything in it) when the test ends.
final class ScratchDir {
    let path: String

    init(_ test: String = #function) {
        var template = Array("/tmp/maildrop-test.XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(cString: made!)
    }

    func sub(_ name: String) -> String { path + "/" + name }

    deinit { removeTree(path) }
}

/// rm -rf, without following symbolic links.
func removeTree(_ path: String) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if (st.st_mode & S_IFMT) == S_IFDIR {
        if let dir = opendir(path) {
            var names: [String] = []
            while let ent = readdir(dir) {
                let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                    String(decoding: raw[0..<(raw.firstIndex(of: 0) ?? raw.count)], as: UTF8.self)
                }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(dir)
            for n in names { removeTree(path + "/" + n) }
        }
        rmdir(path)
    } else {
        unlink(path)
    }
}

func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o600) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    precondition(fd >= 0, "cannot create \(path): \(errno)")
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
        precondition(n > 0)
        done += n
    }
    close(fd)
}

func writeFile(_ path: String, _ text: String, mode: mode_t = 0o600) { writeFile(path, Array(text.utf8), mode: mode) }

/// Appends the way an MDA does (O_APPEND).
func appendFile(_ path: String, _ text: String) {
    let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
    precondition(fd >= 0)
    let b = Array(text.utf8)
    _ = b.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
    close(fd)
}

func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return out
}

func readText(_ path: String) -> String? { readFile(path).map { String(decoding: $0, as: UTF8.self) } }

func exists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

func listNames(_ dir: String) -> [String] {
    guard let d = opendir(dir) else { return [] }
    defer { closedir(d) }
    var names: [String] = []
    while let ent = readdir(d) {
        let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
            String(decoding: raw[0..<(raw.firstIndex(of: 0) ?? raw.count)], as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}

/// Makes a Maildir with new/, cur/, tmp/.
func makeMaildir(_ path: String) {
    mkdir(path, 0o700)
    for s in ["new", "cur", "tmp"] { mkdir(path + "/" + s, 0o700) }
}

/// Reads a message source to its end with a buffer of `bufferSize`.
func readAll(_ source: MessageSource, bufferSize: Int = 4096) throws -> [UInt8] {
    var out: [UInt8] = []
    let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 8)
    defer { buf.deallocate() }
    while true {
        let n = try source.read(into: buf)
        if n == 0 { return out }
        out += UnsafeRawBufferPointer(rebasing: buf[0..<n])
    }
}

func openFDCount() -> Int { listNames("/proc/self/fd").count }

/// Descriptors of this process open on something under `dir` (robust against other threads of
/// the test process opening and closing descriptors meanwhile).
func openFDs(under dir: String) -> [String] {
    var found: [String] = []
    for n in listNames("/proc/self/fd") {
        var buf = [CChar](repeating: 0, count: 4096)
        let len = readlink("/proc/self/fd/" + n, &buf, buf.count - 1)
        guard len > 0 else { continue }
        let target = String(decoding: buf[0..<len].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if target.hasPrefix(dir + "/") || target == dir { found.append(target) }
    }
    return found
}

/// Asserts that `body` throws `MaildropError.io` (any text); returns the text.
@discardableResult
func assertIOError<T>(_ body: @autoclosure () throws -> T, _ message: String = "", file: StaticString = #filePath, line: UInt = #line) -> String? {
    do {
        _ = try body()
        XCTFail("expected MaildropError.io, got success. \(message)", file: file, line: line)
    } catch let e as MaildropError {
        if case .io(let text) = e { return text }
        XCTFail("expected MaildropError.io, got \(e). \(message)", file: file, line: line)
    } catch {
        XCTFail("unexpected error \(error)", file: file, line: line)
    }
    return nil
}

/// setfsuid(2) (per thread on Linux; not exposed by Swift's Glibc module).
func setFSUID(_ uid: UInt32) -> Int32 {
    typealias Fn = @convention(c) (UInt32) -> Int32
    let sym = dlsym(dlopen(nil, RTLD_NOW), "setfsuid")!
    return unsafeBitCast(sym, to: Fn.self)(uid)
}

/// Sets a file's modification time `secondsAgo` in the past.
func age(_ path: String, secondsAgo: Int) {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    var times = [timespec(tv_sec: now.tv_sec - secondsAgo, tv_nsec: 0), timespec(tv_sec: now.tv_sec - secondsAgo, tv_nsec: 0)]
    _ = utimensat(AT_FDCWD, path, &times, 0)
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Everything `readIfCached` gives, then (where the cache ran out) the rest by `read`: the two
/// together must be the message, whatever the page cache held.
func readCachedThenRest(_ src: MessageSource, bufferSize: Int) throws -> (bytes: [UInt8], cached: Int) {
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: bufferSize)
    while true {
        guard let n = try buf.withUnsafeMutableBytes({ try src.readIfCached(into: $0) }) else { break }
        if n == 0 { return (out, out.count) }
        out += buf[0..<n]
    }
    let cached = out.count
    out += try readAll(src, bufferSize: bufferSize)
    return (out, cached)
}

/// Writes the file's pages to disk and asks the kernel to drop them from the page cache.
func evictFromCache(_ path: String) {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    precondition(fd >= 0)
    fsync(fd)
    _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    close(fd)
}
