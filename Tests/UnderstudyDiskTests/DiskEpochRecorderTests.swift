import Testing
import UnderstudyDisk
import UnderstudyProtocol

@Suite struct DiskEpochRecorderTests {
    @Test func sealTakesTheChangesSinceThePreviousSealInOrder() throws {
        let recorder = DiskEpochRecorder()
        #expect(try recorder.seal().isEmpty)
        recorder.diskChanged(offset: 4096, data: .bytes([1, 2, 3]))
        recorder.diskChanged(offset: 0, data: .zeroes(length: 512))
        recorder.diskFlushed()
        #expect(recorder.pendingBytes == 515)
        #expect(try recorder.seal() == [.write(offset: 4096, data: .bytes([1, 2, 3])), .write(offset: 0, data: .zeroes(length: 512)), .flush])
        #expect(recorder.pendingBytes == 0)
        recorder.diskChanged(offset: 8, data: .bytes([9]))
        #expect(try recorder.seal() == [.write(offset: 8, data: .bytes([9]))])
        #expect(try recorder.seal().isEmpty)
    }

    /// A backup that stops acknowledging, or a long gap between sessions, must not let the record
    /// grow without bound: past the cap it is dropped (memory is freed at once), and the next seal
    /// reports the loss instead of handing out an incomplete epoch.
    @Test func writesBeyondTheCapAreDroppedAndTheNextSealReportsTheLoss() throws {
        let recorder = DiskEpochRecorder(limit: 1_000)
        recorder.diskChanged(offset: 0, data: .bytes([UInt8](repeating: 1, count: 600)))
        #expect(recorder.pendingBytes == 600)
        recorder.diskChanged(offset: 4096, data: .bytes([UInt8](repeating: 2, count: 600)))
        #expect(recorder.pendingBytes == 0, "the record is dropped, not kept growing")
        recorder.diskChanged(offset: 8192, data: .bytes([3]))
        recorder.diskFlushed()
        #expect(recorder.pendingBytes == 0, "nothing is recorded until the loss has been reported")
        #expect(throws: DiskError.recordOverflow(limit: 1_000)) { try recorder.seal() }
        recorder.diskChanged(offset: 8, data: .bytes([9]))
        #expect(try recorder.seal() == [.write(offset: 8, data: .bytes([9]))], "recording starts afresh after the report")
    }
}
