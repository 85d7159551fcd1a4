// Detaching from the terminal without fork(): re-execute ourselves and wait for a readiness line.
import Foundation
import Glibc

/// Writes one message to standard error (not buffered, safe from any thread).
public func printStderr(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }

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
        let argv = ["rpc.dracd"] + arguments + ["--daemon-child-fd", String(fds[1])]
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/proc/self/exe", &actions, nil, &cargs, environ)
        close(fds[1])
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
        }
        close(fds[0])
        let text = String(decoding: report, as: UTF8.self)
        if text.hasPrefix("ready") { return 0 }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        printStderr(text.isEmpty ? "rpc.dracd: daemon process exited during start-up\n" : "rpc.dracd: \(text)\n")
        return 1
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
