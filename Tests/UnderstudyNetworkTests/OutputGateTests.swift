import Foundation
import Synchronization
import Testing
import UnderstudyNetwork
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTransport
#if canImport(Glibc)
import Glibc
#endif

/// The gate between a fake QEMU (the test, on the gate's unix socket) and a real TAP.
@Suite struct OutputGateTests {
    private static let port: UInt16 = 7001

    /// A UDP frame from the guest to the namespace's listener.
    private static func guestDatagram(_ text: String, tapMAC: [UInt8]) -> [UInt8] {
        udpFrame(to: tapMAC, from: NetworkLab.guestMAC, sourceIP: NetworkLab.guestIP, destinationIP: NetworkLab.hostIP,
                 sourcePort: 40000, destinationPort: port, payload: Array(text.utf8))
    }

    private static func hex(_ text: String) -> String { Array(text.utf8).hex }

    @Test func guestFramesReachTheNetworkOnlyWhenTheirEpochIsReleased() throws {
        let lab = try NetworkLab()
        defer { lab.remove() }
        let path = uniqueSocketPath()
        let gate = try OutputGate(guestSocketPath: path, tapName: lab.tap, logger: TestGuest.quietLogger)
        defer { gate.stop() }
        try lab.moveTAPIntoNamespace()
        let mac = try lab.tapMAC()
        let listener = try lab.udpListener(port: Self.port)
        let guest = try FakeQEMU(path: path)
        #expect(eventually { gate.statistics.guestConnected })

        for text in ["a1", "a2", "a3"] { guest.send(frame: Self.guestDatagram(text, tapMAC: mac)) }
        #expect(eventually { gate.statistics.buffer.heldFrames == 3 })
        gate.seal(epoch: 1)
        for text in ["b1", "b2"] { guest.send(frame: Self.guestDatagram(text, tapMAC: mac)) }
        #expect(eventually { gate.statistics.buffer.heldFrames == 5 })
        #expect(listener.line(within: 0.3) == nil, "nothing leaves before the acknowledgement")

        gate.release(through: 1)
        #expect(listener.lines(within: 0.5) == ["a1", "a2", "a3"].map(Self.hex), "epoch 1, in order, and not the frames read after seal(1)")
        gate.seal(epoch: 2)
        gate.release(through: 2)
        #expect(listener.lines(within: 0.5) == ["b1", "b2"].map(Self.hex))

        let statistics = gate.statistics
        #expect(statistics.buffer.releasedFrames == 5)
        #expect(statistics.buffer.heldFrames == 0)
        #expect(statistics.sentFrames == 5)
        #expect(statistics.sendDroppedFrames == 0)
        #expect(statistics.buffer.lastReleasedEpoch == 2)
    }

    @Test func outputWaitingMirrorsWhetherTheOpenEpochHoldsFrames() throws {
        let lab = try NetworkLab()
        defer { lab.remove() }
        let path = uniqueSocketPath()
        let waiting = WaitableFlag()
        let gate = try OutputGate(guestSocketPath: path, tapName: lab.tap, outputWaiting: waiting, logger: TestGuest.quietLogger)
        defer { gate.stop() }
        try lab.moveTAPIntoNamespace()
        let mac = try lab.tapMAC()
        let guest = try FakeQEMU(path: path)
        #expect(eventually { gate.statistics.guestConnected })
        #expect(!waiting.isSet)

        guest.send(frame: Self.guestDatagram("a1", tapMAC: mac))
        #expect(waiting.wait(until: .now + .seconds(5)), "the first held frame wakes the checkpoint loop")
        gate.seal(epoch: 1)
        #expect(!waiting.isSet, "sealed: nothing of the open epoch waits")
        gate.release(through: 1)
        #expect(!waiting.isSet, "releasing sealed epochs does not concern the open one")
        guest.send(frame: Self.guestDatagram("b1", tapMAC: mac))
        #expect(waiting.wait(until: .now + .seconds(5)))

        gate.setMode(.unprotected)
        #expect(!waiting.isSet, "output passes: nothing waits for a checkpoint")
        guest.send(frame: Self.guestDatagram("c1", tapMAC: mac))
        #expect(eventually { gate.statistics.buffer.passedFrames == 1 })
        #expect(!waiting.isSet)
    }

    @Test func framesToTheGuestPassAtOnce() throws {
        let lab = try NetworkLab()
        defer { lab.remove() }
        let path = uniqueSocketPath()
        let gate = try OutputGate(guestSocketPath: path, tapName: lab.tap, logger: TestGuest.quietLogger)
        defer { gate.stop() }
        try lab.moveTAPIntoNamespace()
        try lab.addGuestNeighbour()
        let guest = try FakeQEMU(path: path)
        #expect(eventually { gate.statistics.guestConnected })

        try lab.sendToGuest("to-guest", port: 5555)
        var received: [UInt8]?
        while received == nil, let frame = guest.receiveFrame(within: 5) {
            if udpPayload(of: frame, port: 5555) != nil, Array(frame[0..<6]) == NetworkLab.guestMAC { received = udpPayload(of: frame, port: 5555) }
        }
        #expect(received == Array("to-guest".utf8), "no seal, no acknowledgement: frames to the guest are not held")
        #expect(gate.statistics.framesToGuest >= 1)
    }

    /// Input replay: each frame the TAP gives the guest is observed with the epoch open then (the
    /// last sealed + 1), and frames delivered later reach QEMU like the TAP's.
    @Test func guestInputIsObservedWithItsEpochAndCanBeDeliveredAgain() throws {
        let lab = try NetworkLab()
        defer { lab.remove() }
        let path = uniqueSocketPath()
        let gate = try OutputGate(guestSocketPath: path, tapName: lab.tap, logger: TestGuest.quietLogger)
        defer { gate.stop() }
        try lab.moveTAPIntoNamespace()
        try lab.addGuestNeighbour()
        let guest = try FakeQEMU(path: path)
        #expect(eventually { gate.statistics.guestConnected })
        let observed = Mutex<[(UInt64, [UInt8])]>([])
        gate.observeGuestInput { epoch, frame in observed.withLock { $0.append((epoch, frame)) } }

        func nextToGuest(port: UInt16) -> [UInt8]? {
            while let frame = guest.receiveFrame(within: 5) {
                if udpPayload(of: frame, port: port) != nil, Array(frame[0..<6]) == NetworkLab.guestMAC { return frame }
            }
            return nil
        }
        try lab.sendToGuest("one", port: 5556)
        let first = try #require(nextToGuest(port: 5556))
        gate.seal(epoch: 7)
        try lab.sendToGuest("two", port: 5557)
        let second = try #require(nextToGuest(port: 5557))
        #expect(eventually { observed.withLock { $0.contains { $0.1 == second } } })
        let tagged = observed.withLock { $0 }
        #expect(tagged.first { $0.1 == first }?.0 == 1, "before any seal: epoch 1")
        #expect(tagged.first { $0.1 == second }?.0 == 8, "after seal(7): epoch 8")

        gate.observeGuestInput(nil)
        #expect(gate.deliverToGuest([first, second]) == 2)
        #expect(nextToGuest(port: 5556) == first && nextToGuest(port: 5557) == second)
        let count = observed.withLock { $0.count }
        try lab.sendToGuest("three", port: 5558)
        #expect(nextToGuest(port: 5558) != nil)
        #expect(observed.withLock { $0.count } == count, "no observer, nothing observed")
    }

    @Test func unbufferedGateSendsGuestFramesAtOnce() throws {
        let lab = try NetworkLab()
        defer { lab.remove() }
        let path = uniqueSocketPath()
        let gate = try OutputGate(guestSocketPath: path, tapName: lab.tap, mode: .unsafeUnbuffered, logger: TestGuest.quietLogger)
        defer { gate.stop() }
        try lab.moveTAPIntoNamespace()
        let mac = try lab.tapMAC()
        let listener = try lab.udpListener(port: Self.port)
        let guest = try FakeQEMU(path: path)
        for text in ["u1", "u2"] { guest.send(frame: Self.guestDatagram(text, tapMAC: mac)) }
        #expect(listener.lines(within: 1) == ["u1", "u2"].map(Self.hex))
        #expect(gate.statistics.buffer.passedFrames == 2)
        #expect(gate.statistics.buffer.heldFrames == 0)
    }

    /// A node that cannot prove it is the active copy puts nothing on the network, whether the
    /// frames pass at once or were released by an acknowledgement.
    @Test func nothingLeavesWhileTheFenceSaysNo() throws {
        let lab = try NetworkLab()
        defer { lab.remove() }
        let path = uniqueSocketPath()
        let active = Atomic<Bool>(false)
        let gate = try OutputGate(guestSocketPath: path, tapName: lab.tap, mode: .unprotected,
                                  mayTransmit: { active.load(ordering: .relaxed) }, logger: TestGuest.quietLogger)
        defer { gate.stop() }
        try lab.moveTAPIntoNamespace()
        let mac = try lab.tapMAC()
        let listener = try lab.udpListener(port: Self.port)
        let guest = try FakeQEMU(path: path)
        for text in ["f1", "f2"] { guest.send(frame: Self.guestDatagram(text, tapMAC: mac)) }
        #expect(eventually { gate.statistics.fencedFrames == 2 })
        #expect(listener.line(within: 0.3) == nil, "passing frames wait for nothing, but the fence stops them")

        active.store(true, ordering: .relaxed)
        guest.send(frame: Self.guestDatagram("p1", tapMAC: mac))
        #expect(listener.lines(within: 1) == ["p1"].map(Self.hex), "frames dropped while fenced are gone, not sent late")

        gate.setMode(.outputCommit)
        guest.send(frame: Self.guestDatagram("h1", tapMAC: mac))
        #expect(eventually { gate.statistics.buffer.heldFrames == 1 })
        gate.seal(epoch: 1)
        active.store(false, ordering: .relaxed)
        gate.release(through: 1)
        #expect(eventually { gate.statistics.fencedFrames == 3 }, "a released frame meets the fence on its way to the TAP")
        #expect(listener.line(within: 0.3) == nil)
        #expect(gate.statistics.sentFrames == 1)
    }

    /// A backup taking over announces the VM before QEMU runs: the announcement leaves through the
    /// same fenced sender as the guest's frames, so a node that is not the active copy cannot send it.
    @Test func theAnnouncementLeavesOnlyWhileTheFenceSaysYes() throws {
        let lab = try NetworkLab()
        defer { lab.remove() }
        let active = Atomic<Bool>(false)
        let gate = try OutputGate(guestSocketPath: uniqueSocketPath(), tapName: lab.tap, mode: .unprotected,
                                  mayTransmit: { active.load(ordering: .relaxed) }, logger: TestGuest.quietLogger)
        defer { gate.stop() }
        try lab.moveTAPIntoNamespace()
        gate.announce(mac: NetworkLab.guestMAC)
        #expect(eventually { gate.statistics.fencedFrames == 1 })
        #expect(gate.statistics.sentFrames == 0)
        active.store(true, ordering: .relaxed)
        gate.announce(mac: NetworkLab.guestMAC)
        #expect(eventually { gate.statistics.sentFrames == 1 }, "no QEMU connected: the agent announces the VM itself")
        #expect(gate.statistics.sentBytes == 60)
    }

    @Test func aFullBufferDropsGuestFramesAndFailedTAPWritesAreCounted() throws {
        let path = uniqueSocketPath()
        let tap = uniqueTAPName()
        // The gate creates this TAP and leaves it down: writes to it fail with EIO.
        let gate = try OutputGate(guestSocketPath: path, tapName: tap, bufferLimit: 1000, logger: TestGuest.quietLogger)
        defer { gate.stop() }
        let guest = try FakeQEMU(path: path)
        for tag in 1...5 { guest.send(frame: [UInt8](repeating: UInt8(tag), count: 300)) }
        #expect(eventually { gate.statistics.buffer.heldFrames + Int(gate.statistics.buffer.droppedFrames) == 5 })
        #expect(gate.statistics.buffer.heldFrames == 3)
        #expect(gate.statistics.buffer.droppedFrames == 2)
        #expect(gate.statistics.buffer.droppedBytes == 600)

        gate.seal(epoch: 1)
        gate.release(through: 1)
        guest.send(frame: [UInt8](repeating: 9, count: 300))
        #expect(eventually { gate.statistics.buffer.heldFrames == 1 }, "room again once released")
        #expect(eventually { gate.statistics.sendDroppedFrames == 3 }, "the down TAP refused the released frames")
        #expect(gate.statistics.sentFrames == 0)
    }

    @Test func aMalformedLengthClosesTheConnectionAndANewOneIsAccepted() throws {
        let path = uniqueSocketPath()
        let gate = try OutputGate(guestSocketPath: path, tapName: uniqueTAPName(), logger: TestGuest.quietLogger)
        defer { gate.stop() }
        let tooLong = UInt32(OutputGate.maxFrameLength + 1)
        for (number, header) in [[0, 0, 0, 0], [UInt8(tooLong >> 24), UInt8(tooLong >> 16 & 0xFF), UInt8(tooLong >> 8 & 0xFF), UInt8(tooLong & 0xFF)]].enumerated() {
            let guest = try FakeQEMU(path: path)
            guest.send(frame: [UInt8](repeating: 7, count: 60))
            guest.write(header + [1, 2, 3])
            #expect(guest.waitForClose(within: 5), "a length of \(header) ends the connection")
            #expect(eventually { gate.statistics.malformedConnections == UInt64(number + 1) })
        }
        let guest = try FakeQEMU(path: path)
        guest.send(frame: [UInt8](repeating: 8, count: OutputGate.maxFrameLength))
        #expect(eventually { gate.statistics.buffer.heldFrames == 3 }, "the frames before each bad length, then the largest allowed")
        #expect(gate.statistics.guestConnections == 3)
        #expect(gate.statistics.guestConnected)
    }

    @Test func stopClosesAConnectedClientAndCleansUp() throws {
        let path = uniqueSocketPath()
        let tap = uniqueTAPName()
        let gate = try OutputGate(guestSocketPath: path, tapName: tap, logger: TestGuest.quietLogger)
        var mode = stat()
        #expect(lstat(path, &mode) == 0 && mode.st_mode & 0o777 == 0o600, "owner-only socket")
        let guest = try FakeQEMU(path: path)
        guest.send(frame: [UInt8](repeating: 1, count: 100))
        #expect(eventually { gate.statistics.buffer.heldFrames == 1 })

        let started = Date()
        gate.stop()
        #expect(Date().timeIntervalSince(started) < 2)
        #expect(guest.waitForClose(within: 2))
        #expect(access(path, F_OK) != 0, "the socket file is gone")
        #expect((try? run("ip", "link", "show", tap)) == nil, "the TAP the gate created is gone")
        gate.stop()
        #expect(gate.statistics.buffer.heldFrames == 1, "held frames were never sent")
        #expect(gate.statistics.sentFrames == 0)
    }

    @Test func aStaleSocketIsReplacedButALiveOneIsNot() throws {
        let path = uniqueSocketPath()
        defer { unlink(path) }
        // A socket file left behind: bound, then closed without unlinking.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #expect(UnixSocket.bind(stale, path: path) == 0)
        close(stale)
        let gate = try OutputGate(guestSocketPath: path, tapName: uniqueTAPName(), logger: TestGuest.quietLogger)
        defer { gate.stop() }
        #expect(throws: NetworkError.listen(.inUse(path))) {
            try OutputGate(guestSocketPath: path, tapName: uniqueTAPName(), logger: TestGuest.quietLogger)
        }
        #expect(eventually { gate.statistics.guestConnections == 1 }, "the probe connected to the live gate")
        #expect(eventually { !gate.statistics.guestConnected })

        let file = uniqueSocketPath()
        defer { unlink(file) }
        #expect(FileManager.default.createFile(atPath: file, contents: Data()))
        #expect(throws: NetworkError.self) {
            try OutputGate(guestSocketPath: file, tapName: uniqueTAPName(), logger: TestGuest.quietLogger)
        }
        #expect(FileManager.default.fileExists(atPath: file), "a file that is not a socket is left alone")
    }

    @Test func qemuArgumentsUseAStreamNetdevAsClient() {
        #expect(OutputGate.qemuArguments(socketPath: "/run/u/a,b.sock", mac: "52:54:00:12:34:56", netdevID: "g0") == [
            "-netdev", "stream,id=g0,server=off,addr.type=unix,addr.path=/run/u/a,,b.sock",
            "-device", "virtio-net-pci,netdev=g0,mac=52:54:00:12:34:56",
        ])
    }
}
