import Testing
import UnderstudyProtocol

@Suite("GuestInputLog (the guest's input a takeover replays)")
struct GuestInputLogTests {
    @Test("a replica committed at n replays the frames of epoch n and later, in arrival order")
    func replayFromTheCommittedEpoch() {
        var log = GuestInputLog()
        log.record(epoch: 3, frame: [3])
        log.record(epoch: 4, frame: [4, 0])
        log.record(epoch: 5, frame: [5])
        log.record(epoch: 4, frame: [4, 1])  // tagged when written to QEMU: arrival order is kept
        #expect(log.replay(onto: 4) == [[4, 0], [5], [4, 1]])
        log.committed(4)
        #expect(log.count == 3 && log.bytes == 5, "frames of epoch 3 are in the replica")
        #expect(log.replay(onto: 4) == [[4, 0], [5], [4, 1]], "epoch 4's frames may have waited in the socket at its pause")
        log.committed(5)
        #expect(log.replay(onto: 5) == [[5]])
        log.removeAll()
        #expect(log.count == 0 && log.bytes == 0 && log.replay(onto: 0).isEmpty)
    }

    @Test("past its byte limit the oldest frames go first")
    func bounded() {
        var log = GuestInputLog(byteLimit: 10)
        for index in 0..<5 { log.record(epoch: 1, frame: [UInt8](repeating: UInt8(index), count: 4)) }
        #expect(log.count == 2 && log.bytes == 8 && log.droppedFrames == 3)
        #expect(log.replay(onto: 0) == [[3, 3, 3, 3], [4, 4, 4, 4]])
        log.record(epoch: 2, frame: [UInt8](repeating: 9, count: 11))
        #expect(log.count == 0 && log.bytes == 0 && log.droppedFrames == 6, "a frame larger than the limit is not kept either")
    }
}
