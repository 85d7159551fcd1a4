// Detaching from the terminal without fork(): re-execute ourselves and wait for a readiness line.
import DRACLog
import Foundation
import Glibc

/// Writes one message to standard error (not buffered, safe from any thread).

/// rpc.dracd daemonizes like DRAC did, but the parent only exits once the child is ready (or
/// prints why it is not). The child is the same program started again with
/// `--daemon-child-fd N`: forking a process that already runs Swift threads is unsafe.
public enum Daemonizer {
    /// Parent side: starts the child with stdio on /dev/null and waits for its report.
    /// Returns the exit status the parent should exit with.
    public static func spawnChildAndWait(arguments: [String]) -> Int32 {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            printStderr("rpc.dracd: pipe: \(String(cString: strerror(errno)))\n")
            return 1
        }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd in [Int32(0), 1, 2] {
            posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0)
        }
        // The child keeps nothing it inherited but stdio (on /dev/null) and the report pipe,
        // moved to fd 3: a daemon holding its caller's pipes would keep them from closing.
        // Only the copy on fd 3 may survive the exec (dup2 to another number clears
        // close-on-exec); the pipe's own write end must not, or the parent never sees EOF.
        var writeEnd = fds[1]
        if writeEnd == 3 { writeEnd = dup(3); close(3) }
        markInheritedDescriptorsCloseOnExec()
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 3)
        let argv = ["rpc.dracd"] + arguments + ["--daemon-child-fd", "3"]
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/proc/self/exe", &actions, nil, &cargs, environ)
        close(writeEnd)
        guard rc == 0 else {
            printStderr("rpc.dracd: cannot start daemon process: \(String(cString: strerror(rc)))\n")
            return 1
        }
        var report: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fds[0], &buf, buf.count)
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            report += buf[0..<n]
            if report.contains(UInt8(ascii: "\n")) { break }
        }
        close(fds[0])
        let text = String(decoding: report, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("ready") { return 0 }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        printStderr(text.isEmpty ? "rpc.dracd: daemon process exited during start-up\n" : "rpc.dracd: \(text)\n")
        return 1
    }

    /// Sets FD_CLOEXEC on every descriptor above stderr, so that the exec'd child
    /// starts with none of them. (The parent exits right after, so it loses nothing.)
    static func markInheritedDescriptorsCloseOnExec() {
        guard let dir = opendir("/proc/self/fd") else { return }
        defer { closedir(dir) }
        let own = dirfd(dir)
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard let fd = Int32(name), fd > 2, fd != own else { continue }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
    }

    /// Child side, early: its own session, no controlling terminal.
    public static func becomeSessionLeader() {
        _ = setsid()
        _ = chdir("/")
    }

    /// Child side: tells the parent how start-up went and closes the pipe.
    public static func report(fd: Int32, _ message: String) {
        _ = message.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }

    public static func writePidFile(_ path: String) throws {
        guard !path.isEmpty else { return }
        let text = "\(getpid())\n"
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else {
            throw StartError("cannot write pid file \(path)")
        }
    }
}
