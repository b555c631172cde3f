import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The preload library's pause channel (see preload.c): while QEMU saves the device state to
/// `deviceStateFile` with the VM stopped, it announces the save's number here (STOPPED), announces
/// the end of the save (SAVED) and waits for the number to come back before the VM runs again.
/// The checkpoint's pages are copied in between.
final class PauseChannel: @unchecked Sendable {
    let fd: Int32

    init(controlSocket: String, deviceStateFile: String) throws(QEMUError) {
        fd = try PreloadControl.connect(socket: controlSocket)
        let reply: String
        do {
            reply = try PreloadControl.exchange("PAUSE \(deviceStateFile)", fd: fd, socket: controlSocket)
        } catch {
            close(fd)
            throw error
        }
        guard reply == "OK" else {
            close(fd)
            throw .tracking("the preload library refused the pause channel: \(reply.isEmpty ? "no answer" : reply)")
        }
    }

    deinit { close(fd) }

    /// Drops whatever the library sent that no exchange read.
    func discardUnread() {
        var bytes = [UInt8](repeating: 0, count: 64)
        while recv(fd, &bytes, bytes.count, Int32(MSG_DONTWAIT)) > 0 {}
    }

    /// What the library sends (16 bytes, host order): a save's number, whether the VM has just
    /// stopped for it or its device state is written, and when (CLOCK_MONOTONIC nanoseconds).
    struct Message: Equatable {
        enum Kind: UInt32 {
            /// The save opened its file: the VM is stopped.
            case stopped = 0
            /// The save closed its file: the device state is written, QEMU waits for the answer.
            case saved = 1
        }

        var sequence: UInt32
        var kind: Kind
        var at: UInt64

        static let size = 16
    }

    /// Reads the message of the save that has just stopped the VM (call when `fd` is readable).
    func stopped() throws(QEMUError) -> Message {
        guard let message = try receive(flags: Int32(MSG_WAITALL)), message.kind == .stopped else {
            throw .qmp("pause channel: expected the VM's stop")
        }
        return message
    }

    /// The SAVED message of save `sequence`, if it came (it comes before QEMU resumes the VM, so
    /// it is there once the save's QMP reply is); never waits.
    func saved(_ sequence: UInt32) -> Message? {
        while let message = try? receive(flags: Int32(MSG_DONTWAIT)) {
            if message.kind == .saved && message.sequence == sequence { return message }
        }
        return nil
    }

    private func receive(flags: Int32) throws(QEMUError) -> Message? {
        var bytes = [UInt8](repeating: 0, count: Message.size)
        let n = recv(fd, &bytes, bytes.count, flags)
        if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return nil }
        guard n == Message.size else {
            throw .qmp(n == 0 ? "QEMU closed the pause channel" : "pause channel: \(n < 0 ? String(cString: strerror(errno)) : "a cut message")")
        }
        let words = bytes.withUnsafeBytes { ($0.load(fromByteOffset: 0, as: UInt32.self), $0.load(fromByteOffset: 4, as: UInt32.self),
                                             $0.load(fromByteOffset: 8, as: UInt64.self)) }
        guard let kind = Message.Kind(rawValue: words.1) else { throw .qmp("pause channel: unknown message kind \(words.1)") }
        return Message(sequence: words.0, kind: kind, at: words.2)
    }

    /// Lets save `sequence` finish and the VM resume; `succeeded: false` makes the save fail.
    func release(_ sequence: UInt32, succeeded: Bool) throws(QEMUError) {
        var answer = succeeded ? sequence : ~sequence
        guard send(fd, &answer, MemoryLayout<UInt32>.size, Int32(MSG_NOSIGNAL)) == MemoryLayout<UInt32>.size else {
            throw .qmp("pause channel: \(String(cString: strerror(errno)))")
        }
    }
}
