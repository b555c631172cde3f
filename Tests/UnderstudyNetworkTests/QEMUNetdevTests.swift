import Foundation
import Testing
import UnderstudyNetwork
import UnderstudyHarness
import UnderstudyTestTags
#if canImport(Glibc)
import Glibc
#endif

/// The gate with a real QEMU 7.2 using `OutputGate.qemuArguments`. No guest is needed: with no
/// disk, the firmware boots the NIC's iPXE ROM, which sends DHCP requests through the gate.
@Suite(.tags(.vm), .skippedInQuickLoop) struct QEMUNetdevTests {
    private static let mac: [UInt8] = [0x52, 0x54, 0x00, 0x99, 0x00, 0x07]

    private static func startQEMU(socketPath: String) throws -> Process {
        let qemu = Process()
        qemu.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let mac = Self.mac.map { String(format: "%02x", $0) }.joined(separator: ":")
        qemu.arguments = ["qemu-system-x86_64", "-nodefaults", "-no-user-config", "-vga", "none", "-display", "none",
                          "-monitor", "none", "-accel", "tcg", "-m", "64"]
            + OutputGate.qemuArguments(socketPath: socketPath, mac: mac)
        qemu.standardOutput = FileHandle.nullDevice
        qemu.standardError = FileHandle.nullDevice
        try qemu.run()
        return qemu
    }

    /// SIGKILL: QEMU started from a Swift Testing worker thread inherits a blocked SIGTERM.
    private static func stop(_ qemu: Process) {
        if qemu.isRunning { kill(qemu.processIdentifier, SIGKILL) }
        qemu.waitUntilExit()
    }

    @Test func qemuFramesWaitForReleaseAndARestartedQEMUIsAccepted() throws {
        let lab = try NetworkLab()
        defer { lab.remove() }
        let path = uniqueSocketPath()
        let gate = try OutputGate(guestSocketPath: path, tapName: lab.tap, logger: TestGuest.quietLogger)
        defer { gate.stop() }
        try lab.moveTAPIntoNamespace()
        let capture = try lab.frameCapture()
        let guestMAC = Self.mac.hex

        var qemu = try Self.startQEMU(socketPath: path)
        defer { Self.stop(qemu) }
        #expect(eventually(within: .seconds(30)) { gate.statistics.buffer.heldFrames > 0 }, "iPXE's frames arrive and are held")
        #expect(gate.statistics.guestConnections == 1)
        #expect(!capture.lines(within: 0.3).contains { $0.dropFirst(12).hasPrefix(guestMAC) }, "nothing from the guest before release")

        gate.seal(epoch: 1)
        let sealed = gate.statistics.buffer.heldFrames
        gate.release(through: 1)
        let fromGuest = capture.lines(within: 1).filter { $0.dropFirst(12).hasPrefix(guestMAC) }
        #expect(fromGuest.count >= sealed, "the released frames reach the network")

        Self.stop(qemu)
        #expect(eventually { !gate.statistics.guestConnected })
        qemu = try Self.startQEMU(socketPath: path)
        #expect(eventually(within: .seconds(30)) { gate.statistics.guestConnections == 2 && gate.statistics.guestConnected },
                "a restarted QEMU connects again")
    }
}
