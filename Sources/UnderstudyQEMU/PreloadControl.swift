import Foundation
import UnderstudySystem
#if canImport(Glibc)
import Glibc
#endif

/// Talks to the preload library inside QEMU over its control socket (see preload.c).
enum PreloadControl {
    /// Connects, retrying until `timeout` while QEMU is still starting.
    static func connect(socket path: String, timeout: Duration = .seconds(2)) throws(QEMUError) -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while true {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw .tracking("socket: \(String(cString: strerror(errno)))") }
            if UnixSocket.connect(fd, path: path) == 0 { return fd }
            let failure = errno
            close(fd)
            guard ContinuousClock.now < deadline else {
                throw .tracking("the preload library in QEMU does not answer on \(path): \(String(cString: strerror(failure))) (is libUnderstudyPreload.so loaded?)")
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }

    /// Sends one command line on `fd` and returns the reply line.
    static func exchange(_ line: String, fd: Int32, socket path: String) throws(QEMUError) -> String {
        let bytes = Array((line + "\n").utf8)
        guard send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else {
            throw .tracking("write to \(path) failed: \(String(cString: strerror(errno)))")
        }
        var reply: [UInt8] = []
        var byte: UInt8 = 0
        while read(fd, &byte, 1) == 1 && byte != UInt8(ascii: "\n") { reply.append(byte) }
        return String(decoding: reply, as: UTF8.self)
    }

    /// One command on a connection of its own.
    static func request(_ line: String, socket path: String) throws(QEMUError) -> String {
        let fd = try connect(socket: path)
        defer { close(fd) }
        return try exchange(line, fd: fd, socket: path)
    }
}
