import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The preload library's pause channel (see preload.c): while QEMU saves the device state to
/// `deviceStateFile` with the VM stopped, it announces the save's number here and waits for it to
/// come back before the VM runs again. The checkpoint's pages are copied in between.
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

    /// Reads the number of the save that has just stopped the VM (call when `fd` is readable).
    func stopped() throws(QEMUError) -> UInt32 {
        var sequence: UInt32 = 0
        let n = recv(fd, &sequence, MemoryLayout<UInt32>.size, Int32(MSG_WAITALL))
        guard n == MemoryLayout<UInt32>.size else {
            throw .qmp(n == 0 ? "QEMU closed the pause channel" : "pause channel: \(String(cString: strerror(errno)))")
        }
        return sequence
    }

    /// Lets save `sequence` finish and the VM resume; `succeeded: false` makes the save fail.
    func release(_ sequence: UInt32, succeeded: Bool) throws(QEMUError) {
        var answer = succeeded ? sequence : ~sequence
        guard send(fd, &answer, MemoryLayout<UInt32>.size, Int32(MSG_NOSIGNAL)) == MemoryLayout<UInt32>.size else {
            throw .qmp("pause channel: \(String(cString: strerror(errno)))")
        }
    }
}
